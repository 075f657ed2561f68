// The sequential part of the Delta RNN (RFWP Sec. 3.1): given z_t = W_t q_t (a plain delta rule,
// computed by the caller), the recurrent fast weight R_t, programmed by the delta rule from the slow
// net's rk, rv, rbeta, is read with the previous output:
//   version B (Eq. 12):  y_t = z_t + R_t softmax(y_{t−1})
//   version A (Eq. 19):  y_t = softmax(z_t + R_t y_{t−1})
#include "delta_memory.h"

namespace rfwp {

static bool softmax_feedback(const std::string& version) {
  TORCH_CHECK(version == "A" || version == "B", "Delta RNN version must be 'A' (Eq. 19) or 'B' (Eq. 12), got ",
              version);
  return version == "B";
}

// z, rk, rv (B, H, L, d), rbeta (B, H, L), R0 (B, H, d, d), y0 (B, H, d), reset (B, L).
// Returns out (B, H, L, d), the final R and y, the checkpoints of R, and the read-out queries
// s_t = f(y_{t−1}) (the last two empty unless save).
std::vector<Tensor> delta_rnn_forward(Tensor z, Tensor rk, Tensor rv, Tensor rbeta, Tensor R0, Tensor y0,
                                      std::optional<Tensor> reset, std::string version, bool save) {
  const bool version_b = softmax_feedback(version);
  const Index B = z.size(0), H = z.size(1), L = z.size(2), d = z.size(3);
  expect(rk, {B, H, L, d}, z, "rk");
  expect(rv, {B, H, L, d}, z, "rv");
  expect(rbeta, {B, H, L}, z, "rbeta");
  expect(R0, {B, H, d, d}, z, "state.R");
  expect(y0, {B, H, d}, z, "state.y");
  z = z.contiguous(), rk = rk.contiguous(), rv = rv.contiguous(), rbeta = rbeta.contiguous();
  Tensor reset_holder;
  const bool* reset_ptr = reset_data(reset, reset_holder);
  Tensor out = at::empty({B, H, L, d}, z.options());
  Tensor R = R0.clone(at::MemoryFormat::Contiguous), y = y0.clone(at::MemoryFormat::Contiguous);
  Tensor checkpoints = at::empty({save ? B * H * num_blocks(L, d) * d * d : 0}, z.options());
  Tensor queries = at::empty({save ? B * H * L * d : 0}, z.options());

  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "delta_rnn_forward", [&] {
    using T = scalar_t;
    const T *z_ = z.data_ptr<T>(), *rk_ = rk.data_ptr<T>(), *rv_ = rv.data_ptr<T>(), *rb_ = rbeta.data_ptr<T>();
    T *out_ = out.data_ptr<T>(), *R_ = R.data_ptr<T>(), *y_ = y.data_ptr<T>();
    T *ck_ = save ? checkpoints.data_ptr<T>() : nullptr, *s_ = save ? queries.data_ptr<T>() : nullptr;
    at::parallel_for(0, B * H, 1, [&](Index begin, Index end) {
      std::vector<T> s_scratch(d), r(d);
      for (Index bh = begin; bh < end; ++bh) {
        DeltaMemory<T> mem{d, d, L, rk_ + bh * L * d, rv_ + bh * L * d, rb_ + bh * L,
                           reset_ptr ? reset_ptr + (bh / H) * L : nullptr,
                           ck_ ? ck_ + bh * num_blocks(L, d) * d * d : nullptr};
        mem.load(R_ + bh * d * d);
        T* y_prev = y_ + bh * d;
        for (Index t = 0; t < L; ++t) {
          if (mem.resets(t)) std::fill(y_prev, y_prev + d, T(0));
          T* s = s_ ? s_ + (bh * L + t) * d : s_scratch.data();
          if (version_b) softmax(y_prev, s, d);
          else std::copy(y_prev, y_prev + d, s);
          mem.forward(t, s, r.data());
          const T* z_t = z_ + (bh * L + t) * d;
          T* y_t = out_ + (bh * L + t) * d;
          for (Index i = 0; i < d; ++i) y_t[i] = z_t[i] + r[i];
          if (!version_b) softmax(y_t, y_t, d);
          std::copy(y_t, y_t + d, y_prev);
        }
        mem.store(R_ + bh * d * d);
      }
    });
  });
  return {out, R, y, checkpoints, queries};
}

// Cotangents of (z, rk, rv, rbeta, R0, y0) from those of out and the final R and y.
std::vector<Tensor> delta_rnn_backward(Tensor rk, Tensor rv, Tensor rbeta, std::optional<Tensor> reset,
                                       Tensor checkpoints, Tensor queries, Tensor out, std::string version,
                                       Tensor d_out, Tensor d_R, Tensor d_y) {
  const bool version_b = softmax_feedback(version);
  const Index B = rk.size(0), H = rk.size(1), L = rk.size(2), d = rk.size(3);
  rk = rk.contiguous(), rv = rv.contiguous(), rbeta = rbeta.contiguous(), d_out = d_out.contiguous();
  Tensor reset_holder;
  const bool* reset_ptr = reset_data(reset, reset_holder);
  Tensor dz = at::empty_like(rk), drk = at::empty_like(rk), drv = at::empty_like(rv), drb = at::empty_like(rbeta);
  Tensor dR0 = d_R.clone(at::MemoryFormat::Contiguous), dy0 = d_y.clone(at::MemoryFormat::Contiguous);

  AT_DISPATCH_FLOATING_TYPES(rk.scalar_type(), "delta_rnn_backward", [&] {
    using T = scalar_t;
    const T *rk_ = rk.data_ptr<T>(), *rv_ = rv.data_ptr<T>(), *rb_ = rbeta.data_ptr<T>();
    const T *s_ = queries.data_ptr<T>(), *out_ = out.data_ptr<T>(), *dout_ = d_out.data_ptr<T>();
    T *dz_ = dz.data_ptr<T>(), *drk_ = drk.data_ptr<T>(), *drv_ = drv.data_ptr<T>(), *drb_ = drb.data_ptr<T>();
    T *dR_ = dR0.data_ptr<T>(), *dy_ = dy0.data_ptr<T>(), *ck_ = checkpoints.data_ptr<T>();
    at::parallel_for(0, B * H, 1, [&](Index begin, Index end) {
      std::vector<T> dy(d), ds(d);
      for (Index bh = begin; bh < end; ++bh) {
        DeltaMemory<T> mem{d, d, L, rk_ + bh * L * d, rv_ + bh * L * d, rb_ + bh * L,
                           reset_ptr ? reset_ptr + (bh / H) * L : nullptr, ck_ + bh * num_blocks(L, d) * d * d};
        mem.load(dR_ + bh * d * d);
        T* carry = dy_ + bh * d;  // cotangent of y_t reaching it through step t + 1
        for (Index t = L - 1; t >= 0; --t) {
          const Index o = (bh * L + t) * d;
          for (Index i = 0; i < d; ++i) dy[i] = dout_[o + i] + carry[i];
          // dz_t is also the cotangent of the read-out R_t s_t, as both enter y_t as a sum.
          if (version_b) std::copy(dy.begin(), dy.end(), dz_ + o);
          else softmax_backward(out_ + o, dy.data(), dz_ + o, d);
          drb_[bh * L + t] = mem.backward(t, s_ + o, dz_ + o, ds.data(), drk_ + o, drv_ + o);
          if (mem.resets(t)) std::fill(carry, carry + d, T(0));
          else if (version_b) softmax_backward(s_ + o, ds.data(), carry, d);
          else std::copy(ds.begin(), ds.end(), carry);
        }
        mem.store(dR_ + bh * d * d);
      }
    });
  });
  return {dz, drk, drv, drb, dR0, dy0};
}

}  // namespace rfwp
