// Delta Net (RFWP Eqs. 8-10): W_t = W_{t−1} + β_t (v_t − W_{t−1} k_t) ⊗ k_t,  y_t = W_t q_t.
// Parallel over batch × heads, sequential in time; the backward replays checkpointed blocks.
#include "delta_memory.h"

namespace rfwp {

// q, k (B, H, L, d_key), v (B, H, L, d_value), beta (B, H, L), W0 (B, H, d_value, d_key), reset (B, L).
// Returns out (B, H, L, d_value), the final W, and the checkpoints for the backward (empty unless save).
std::vector<Tensor> delta_rule_forward(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor W0,
                                       std::optional<Tensor> reset, bool save) {
  const Index B = k.size(0), H = k.size(1), L = k.size(2), dk = k.size(3), dv = v.size(3);
  expect(q, {B, H, L, dk}, k, "q");
  expect(v, {B, H, L, dv}, k, "v");
  expect(beta, {B, H, L}, k, "beta");
  expect(W0, {B, H, dv, dk}, k, "state");
  q = q.contiguous(), k = k.contiguous(), v = v.contiguous(), beta = beta.contiguous();
  Tensor reset_holder;
  const bool* reset_ptr = reset_data(reset, reset_holder);
  Tensor out = at::empty({B, H, L, dv}, k.options());
  Tensor W = W0.clone(at::MemoryFormat::Contiguous);
  Tensor checkpoints = at::empty({save ? B * H * num_blocks(L, dk) * dv * dk : 0}, k.options());

  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "delta_rule_forward", [&] {
    using T = scalar_t;
    const T *q_ = q.data_ptr<T>(), *k_ = k.data_ptr<T>(), *v_ = v.data_ptr<T>(), *beta_ = beta.data_ptr<T>();
    T *out_ = out.data_ptr<T>(), *W_ = W.data_ptr<T>(), *ck_ = save ? checkpoints.data_ptr<T>() : nullptr;
    at::parallel_for(0, B * H, 1, [&](Index begin, Index end) {
      for (Index bh = begin; bh < end; ++bh) {
        DeltaMemory<T> mem{dv, dk, L, k_ + bh * L * dk, v_ + bh * L * dv, beta_ + bh * L,
                           reset_ptr ? reset_ptr + (bh / H) * L : nullptr,
                           ck_ ? ck_ + bh * num_blocks(L, dk) * dv * dk : nullptr};
        mem.load(W_ + bh * dv * dk);
        for (Index t = 0; t < L; ++t) mem.forward(t, q_ + (bh * L + t) * dk, out_ + (bh * L + t) * dv);
        mem.store(W_ + bh * dv * dk);
      }
    });
  });
  return {out, W, checkpoints};
}

// Cotangents of (q, k, v, beta, W0) from those of out and the final W.
std::vector<Tensor> delta_rule_backward(Tensor q, Tensor k, Tensor v, Tensor beta, std::optional<Tensor> reset,
                                        Tensor checkpoints, Tensor d_out, Tensor d_W) {
  const Index B = k.size(0), H = k.size(1), L = k.size(2), dk = k.size(3), dv = v.size(3);
  q = q.contiguous(), k = k.contiguous(), v = v.contiguous(), beta = beta.contiguous();
  d_out = d_out.contiguous();
  Tensor reset_holder;
  const bool* reset_ptr = reset_data(reset, reset_holder);
  Tensor dq = at::empty_like(q), dk_ = at::empty_like(k), dv_ = at::empty_like(v), dbeta = at::empty_like(beta);
  Tensor dW0 = d_W.clone(at::MemoryFormat::Contiguous);

  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "delta_rule_backward", [&] {
    using T = scalar_t;
    const T *q_ = q.data_ptr<T>(), *k_ = k.data_ptr<T>(), *v_ = v.data_ptr<T>(), *beta_ = beta.data_ptr<T>();
    const T* dout_ = d_out.data_ptr<T>();
    T *dq_p = dq.data_ptr<T>(), *dk_p = dk_.data_ptr<T>(), *dv_p = dv_.data_ptr<T>(), *db_p = dbeta.data_ptr<T>();
    T *dW_ = dW0.data_ptr<T>(), *ck_ = checkpoints.data_ptr<T>();
    at::parallel_for(0, B * H, 1, [&](Index begin, Index end) {
      for (Index bh = begin; bh < end; ++bh) {
        DeltaMemory<T> mem{dv, dk, L, k_ + bh * L * dk, v_ + bh * L * dv, beta_ + bh * L,
                           reset_ptr ? reset_ptr + (bh / H) * L : nullptr, ck_ + bh * num_blocks(L, dk) * dv * dk};
        mem.load(dW_ + bh * dv * dk);
        for (Index t = L - 1; t >= 0; --t) {
          const Index qk = (bh * L + t) * dk, vo = (bh * L + t) * dv;
          db_p[bh * L + t] = mem.backward(t, q_ + qk, dout_ + vo, dq_p + qk, dk_p + qk, dv_p + vo);
        }
        mem.store(dW_ + bh * dv * dk);
      }
    });
  });
  return {dq, dk_, dv_, dbeta, dW0};
}

}  // namespace rfwp
