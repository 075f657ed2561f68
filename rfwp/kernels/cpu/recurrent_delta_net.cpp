// Recurrent Delta Net (RFWP Sec. 3.2, Eqs. 15-18): the slow net also reads h = tanh(y_{t−1}),
//   q_t = φ(W_q x + R_q h),  k_t = φ(W_k x + R_k h),  v_t = W_v x + R_v h,  β_t = σ(W_β x + R_β h),
//   W_t = W_{t−1} + β_t (v_t − W_{t−1} k_t) ⊗ k_t,  y_t = W_t q_t,
// so every step depends on the last: sequential throughout, parallel over batch × heads.
#include "delta_memory.h"

namespace rfwp {

static bool softmax_keys(const std::string& key_map) {
  TORCH_CHECK(key_map == "softmax" || key_map == "elu_sum",
              "RDN key_map must be 'softmax' or 'elu_sum', got ", key_map);
  return key_map == "softmax";
}

// φ(x): softmax, or ELU+1 then sum normalisation; returns the normaliser S = Σ (ELU(x) + 1) of the latter.
template <typename T>
T feature_map(const T* x, T* phi, Index n, bool use_softmax) {
  if (use_softmax) {
    softmax(x, phi, n);
    return T(1);
  }
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (Index i = 0; i < n; ++i) {
    phi[i] = x[i] > 0 ? x[i] + 1 : vexp(x[i]);
    sum += phi[i];
  }
#pragma omp simd
  for (Index i = 0; i < n; ++i) phi[i] /= sum;
  return sum;
}

// dx from dφ. For ELU+1, e = φ S and de/dx is 1 where x > 0 (there e = x + 1 > 1) and e elsewhere
// (there e = exp(x) ≤ 1), so dx = (e > 1 ? 1/S : φ) ⊙ (dφ − dφ·φ) needs only φ and S.
template <typename T>
void feature_map_backward(const T* phi, T S, const T* dphi, T* dx, Index n, bool use_softmax) {
  if (use_softmax) return softmax_backward(phi, dphi, dx, n);
  T dot = 0;
  for (Index i = 0; i < n; ++i) dot += phi[i] * dphi[i];
  for (Index i = 0; i < n; ++i) dx[i] = (phi[i] * S > 1 ? 1 / S : phi[i]) * (dphi[i] - dot);
}

// q, k (B, H, L, d_key), v (B, H, L, d_value), beta (B, H, L), Rq, Rk (H, d_key, d_value),
// Rv (H, d_value, d_value), rbeta (H, d_value), W0 (B, H, d_value, d_key), y0 (B, H, d_value), reset (B, L).
// Returns out (B, H, L, d_value), the final W and y, the checkpoints (empty unless save), and the
// per-step records φ(q_t), φ(k_t), v_t, β_t, (S_q, S_k).
std::vector<Tensor> recurrent_delta_net_forward(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor Rq, Tensor Rk,
                                                Tensor Rv, Tensor rbeta, Tensor W0, Tensor y0,
                                                std::optional<Tensor> reset, std::string key_map, bool save) {
  const bool use_softmax = softmax_keys(key_map);
  const Index B = k.size(0), H = k.size(1), L = k.size(2), dk = k.size(3), dv = v.size(3);
  expect(q, {B, H, L, dk}, k, "q");
  expect(v, {B, H, L, dv}, k, "v");
  expect(beta, {B, H, L}, k, "beta");
  expect(Rq, {H, dk, dv}, k, "Rq");
  expect(Rk, {H, dk, dv}, k, "Rk");
  expect(Rv, {H, dv, dv}, k, "Rv");
  expect(rbeta, {H, dv}, k, "rbeta");
  expect(W0, {B, H, dv, dk}, k, "state.W");
  expect(y0, {B, H, dv}, k, "state.y");
  q = q.contiguous(), k = k.contiguous(), v = v.contiguous(), beta = beta.contiguous();
  Rq = Rq.contiguous(), Rk = Rk.contiguous(), Rv = Rv.contiguous(), rbeta = rbeta.contiguous();
  Tensor reset_holder;
  const bool* reset_ptr = reset_data(reset, reset_holder);
  Tensor out = at::empty({B, H, L, dv}, k.options());
  Tensor W = W0.clone(at::MemoryFormat::Contiguous), y = y0.clone(at::MemoryFormat::Contiguous);
  Tensor checkpoints = at::empty({save ? B * H * num_blocks(L, dk) * dv * dk : 0}, k.options());
  // The memory reads its keys, values and rates from these records, so they are kept even without save.
  Tensor rq = at::empty({B * H, L, dk}, k.options()), rk = at::empty_like(rq);
  Tensor rv = at::empty({B * H, L, dv}, k.options()), rb = at::empty({B * H, L}, k.options());
  Tensor norms = at::empty({B * H, L, 2}, k.options());

  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "recurrent_delta_net_forward", [&] {
    using T = scalar_t;
    const T *q_ = q.data_ptr<T>(), *k_ = k.data_ptr<T>(), *v_ = v.data_ptr<T>(), *beta_ = beta.data_ptr<T>();
    const T *Rq_ = Rq.data_ptr<T>(), *Rk_ = Rk.data_ptr<T>(), *Rv_ = Rv.data_ptr<T>(), *Rb_ = rbeta.data_ptr<T>();
    T *out_ = out.data_ptr<T>(), *W_ = W.data_ptr<T>(), *y_ = y.data_ptr<T>();
    T *ck_ = save ? checkpoints.data_ptr<T>() : nullptr, *norms_ = norms.data_ptr<T>();
    T *rq_ = rq.data_ptr<T>(), *rk_ = rk.data_ptr<T>(), *rv_ = rv.data_ptr<T>(), *rb_ = rb.data_ptr<T>();
    at::parallel_for(0, B * H, 1, [&](Index begin, Index end) {
      std::vector<T> h(dv), pre(std::max(dk, dv));
      for (Index bh = begin; bh < end; ++bh) {
        const Index head = bh % H;
        const T *Rq_h = Rq_ + head * dk * dv, *Rk_h = Rk_ + head * dk * dv, *Rv_h = Rv_ + head * dv * dv;
        const T* Rb_h = Rb_ + head * dv;
        DeltaMemory<T> mem{dv, dk, L, rk_ + bh * L * dk, rv_ + bh * L * dv, rb_ + bh * L,
                           reset_ptr ? reset_ptr + (bh / H) * L : nullptr,
                           ck_ ? ck_ + bh * num_blocks(L, dk) * dv * dk : nullptr};
        mem.load(W_ + bh * dv * dk);
        T* y_prev = y_ + bh * dv;
        for (Index t = 0; t < L; ++t) {
          if (mem.resets(t)) std::fill(y_prev, y_prev + dv, T(0));
          elementwise_tanh(y_prev, h.data(), dv);
          const Index ok = (bh * L + t) * dk, ov = (bh * L + t) * dv;
          matvec(Rq_h, h.data(), pre.data(), dk, dv);
          for (Index i = 0; i < dk; ++i) pre[i] += q_[ok + i];
          norms_[(bh * L + t) * 2] = feature_map(pre.data(), rq_ + ok, dk, use_softmax);
          matvec(Rk_h, h.data(), pre.data(), dk, dv);
          for (Index i = 0; i < dk; ++i) pre[i] += k_[ok + i];
          norms_[(bh * L + t) * 2 + 1] = feature_map(pre.data(), rk_ + ok, dk, use_softmax);
          matvec(Rv_h, h.data(), rv_ + ov, dv, dv);
          for (Index i = 0; i < dv; ++i) rv_[ov + i] += v_[ov + i];
          T b = beta_[bh * L + t];
          for (Index i = 0; i < dv; ++i) b += Rb_h[i] * h[i];
          rb_[bh * L + t] = vsigmoid(b);
          mem.forward(t, rq_ + ok, out_ + ov);
          std::copy(out_ + ov, out_ + ov + dv, y_prev);
        }
        mem.store(W_ + bh * dv * dk);
      }
    });
  });
  return {out, W, y, checkpoints, rq, rk, rv, rb, norms};
}

// Cotangents of (q, k, v, beta, Rq, Rk, Rv, rbeta, W0, y0) from those of out and the final W and y.
std::vector<Tensor> recurrent_delta_net_backward(Tensor Rq, Tensor Rk, Tensor Rv, Tensor rbeta, Tensor y0,
                                                 std::optional<Tensor> reset, std::string key_map, Tensor out,
                                                 Tensor checkpoints, Tensor rq, Tensor rk, Tensor rv, Tensor rb,
                                                 Tensor norms, Tensor d_out, Tensor d_W, Tensor d_y) {
  const bool use_softmax = softmax_keys(key_map);
  const Index B = d_out.size(0), H = d_out.size(1), L = d_out.size(2), dv = d_out.size(3), dk = rq.size(2);
  Rq = Rq.contiguous(), Rk = Rk.contiguous(), Rv = Rv.contiguous(), rbeta = rbeta.contiguous();
  y0 = y0.contiguous(), d_out = d_out.contiguous();
  Tensor reset_holder;
  const bool* reset_ptr = reset_data(reset, reset_holder);
  Tensor dq = at::empty({B, H, L, dk}, d_out.options()), dk_ = at::empty_like(dq);
  Tensor dv_ = at::empty({B, H, L, dv}, d_out.options()), dbeta = at::empty({B, H, L}, d_out.options());
  // Per (batch, head) gradients of the slow weights, summed over the batch at the end.
  Tensor dRq = at::zeros({B, H, dk, dv}, d_out.options()), dRk = at::zeros_like(dRq);
  Tensor dRv = at::zeros({B, H, dv, dv}, d_out.options()), drbeta = at::zeros({B, H, dv}, d_out.options());
  Tensor dW0 = d_W.clone(at::MemoryFormat::Contiguous), dy0 = d_y.clone(at::MemoryFormat::Contiguous);

  AT_DISPATCH_FLOATING_TYPES(d_out.scalar_type(), "recurrent_delta_net_backward", [&] {
    using T = scalar_t;
    const T *Rq_ = Rq.data_ptr<T>(), *Rk_ = Rk.data_ptr<T>(), *Rv_ = Rv.data_ptr<T>(), *Rb_ = rbeta.data_ptr<T>();
    const T *y0_ = y0.data_ptr<T>(), *out_ = out.data_ptr<T>(), *dout_ = d_out.data_ptr<T>();
    const T *rq_ = rq.data_ptr<T>(), *rk_ = rk.data_ptr<T>(), *rv_ = rv.data_ptr<T>(), *rb_ = rb.data_ptr<T>();
    const T* norms_ = norms.data_ptr<T>();
    T *dq_p = dq.data_ptr<T>(), *dk_p = dk_.data_ptr<T>(), *dv_p = dv_.data_ptr<T>(), *db_p = dbeta.data_ptr<T>();
    T *dRq_ = dRq.data_ptr<T>(), *dRk_ = dRk.data_ptr<T>(), *dRv_ = dRv.data_ptr<T>(), *drb_ = drbeta.data_ptr<T>();
    T *dW_ = dW0.data_ptr<T>(), *dy_ = dy0.data_ptr<T>(), *ck_ = checkpoints.data_ptr<T>();
    at::parallel_for(0, B * H, 1, [&](Index begin, Index end) {
      std::vector<T> h(dv), dy(dv), dphi_q(dk), dphi_k(dk), dh(dv);
      for (Index bh = begin; bh < end; ++bh) {
        const Index head = bh % H;
        const T *Rq_h = Rq_ + head * dk * dv, *Rk_h = Rk_ + head * dk * dv, *Rv_h = Rv_ + head * dv * dv;
        const T* Rb_h = Rb_ + head * dv;
        T *dRq_b = dRq_ + bh * dk * dv, *dRk_b = dRk_ + bh * dk * dv, *dRv_b = dRv_ + bh * dv * dv;
        T* drb_b = drb_ + bh * dv;
        DeltaMemory<T> mem{dv, dk, L, rk_ + bh * L * dk, rv_ + bh * L * dv, rb_ + bh * L,
                           reset_ptr ? reset_ptr + (bh / H) * L : nullptr, ck_ + bh * num_blocks(L, dk) * dv * dk};
        mem.load(dW_ + bh * dv * dk);
        T* carry = dy_ + bh * dv;  // cotangent of y_t reaching it through step t + 1
        for (Index t = L - 1; t >= 0; --t) {
          const Index ok = (bh * L + t) * dk, ov = (bh * L + t) * dv, ob = bh * L + t;
          const T* y_prev = t > 0 ? out_ + ov - dv : y0_ + bh * dv;
          if (mem.resets(t)) std::fill(h.begin(), h.end(), T(0));
          else elementwise_tanh(y_prev, h.data(), dv);
          for (Index i = 0; i < dv; ++i) dy[i] = dout_[ov + i] + carry[i];
          const T drate = mem.backward(t, rq_ + ok, dy.data(), dphi_q.data(), dphi_k.data(), dv_p + ov);
          feature_map_backward(rq_ + ok, norms_[ob * 2], dphi_q.data(), dq_p + ok, dk, use_softmax);
          feature_map_backward(rk_ + ok, norms_[ob * 2 + 1], dphi_k.data(), dk_p + ok, dk, use_softmax);
          const T dpre_beta = drate * rb_[ob] * (1 - rb_[ob]);
          db_p[ob] = dpre_beta;
          // Through the slow recurrent weights: dR += dpre ⊗ h, dh = Σ Rᵀ dpre.
          const T *dpq = dq_p + ok, *dpk = dk_p + ok, *dpv = dv_p + ov;
          for (Index j = 0; j < dv; ++j) dh[j] = Rb_h[j] * dpre_beta;
          add_transposed_matvec(Rq_h, dpq, dh.data(), dk, dv);
          add_transposed_matvec(Rk_h, dpk, dh.data(), dk, dv);
          add_transposed_matvec(Rv_h, dpv, dh.data(), dv, dv);
          add_outer(dRq_b, dpq, h.data(), dk, dv);
          add_outer(dRk_b, dpk, h.data(), dk, dv);
          add_outer(dRv_b, dpv, h.data(), dv, dv);
          for (Index j = 0; j < dv; ++j) drb_b[j] += dpre_beta * h[j];
          for (Index j = 0; j < dv; ++j) carry[j] = mem.resets(t) ? T(0) : dh[j] * (1 - h[j] * h[j]);
        }
        mem.store(dW_ + bh * dv * dk);
      }
    });
  });
  return {dq, dk_, dv_, dbeta, dRq.sum(0), dRk.sum(0), dRv.sum(0), drbeta.sum(0), dW0, dy0};
}

}  // namespace rfwp
