// The sequential part of the Delta LSTM (RFWP Appendix A.2, Eqs. 20-40): given z_g = W_g q_g for the
// gates g ∈ (u, f, o) (plain delta rules, computed by the caller), the recurrent fast weights R_g,
// programmed by the delta rule from the slow net's rk, rv, rbeta, are read with s = f(y_{t−1}):
//   A: u = σ(z_u + R_u y),  y_t = softmax(c_t ⊙ o)        (f = identity)
//   B: u = σ(z_u + R_u s),  y_t = c_t ⊙ o
//   C: u = σ(z_u + R_u s),  y_t = c_t ⊙ o + z_u
//   D: u = z_u + R_u s,     y_t = c_t ⊙ o                 (Table 1)
// and f = σ(z_f + R_f s), o = σ(z_o + R_o s), c_t = f ⊙ c_{t−1} + (1 − f) ⊙ u in every version.
#include "delta_memory.h"

namespace rfwp {

static char lstm_version(const std::string& version) {
  TORCH_CHECK(version == "A" || version == "B" || version == "C" || version == "D",
              "Delta LSTM version must be one of A, B, C, D, got ", version);
  return version[0];
}

// What the forward records per step, each of size d: s, u, f, o and c_t.
enum Record : Index { kS, kU, kF, kO, kC, kRecord };

// z, rk, rv (B, H, 3, L, d), rbeta (B, H, 3, L), R0 (B, H, 3, d, d), c0, y0 (B, H, d), reset (B, L).
// Returns out (B, H, L, d), the final R, c and y, the checkpoints of R and the per-step record
// (B, H, L, 5, d) (the last two empty unless save).
std::vector<Tensor> delta_lstm_forward(Tensor z, Tensor rk, Tensor rv, Tensor rbeta, Tensor R0, Tensor c0,
                                       Tensor y0, std::optional<Tensor> reset, std::string version, bool save) {
  const char ver = lstm_version(version);
  const Index B = z.size(0), H = z.size(1), L = z.size(3), d = z.size(4);
  expect(z, {B, H, 3, L, d}, z, "z");
  expect(rk, {B, H, 3, L, d}, z, "rk");
  expect(rv, {B, H, 3, L, d}, z, "rv");
  expect(rbeta, {B, H, 3, L}, z, "rbeta");
  expect(R0, {B, H, 3, d, d}, z, "state.R");
  expect(c0, {B, H, d}, z, "state.c");
  expect(y0, {B, H, d}, z, "state.y");
  z = z.contiguous(), rk = rk.contiguous(), rv = rv.contiguous(), rbeta = rbeta.contiguous();
  Tensor reset_holder;
  const bool* reset_ptr = reset_data(reset, reset_holder);
  Tensor out = at::empty({B, H, L, d}, z.options());
  Tensor R = R0.clone(at::MemoryFormat::Contiguous);
  Tensor c = c0.clone(at::MemoryFormat::Contiguous), y = y0.clone(at::MemoryFormat::Contiguous);
  const Index nb = num_blocks(L, d);
  Tensor checkpoints = at::empty({save ? B * H * 3 * nb * d * d : 0}, z.options());
  Tensor record = at::empty({save ? B * H * L * kRecord * d : 0}, z.options());

  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "delta_lstm_forward", [&] {
    using T = scalar_t;
    const T *z_ = z.data_ptr<T>(), *rk_ = rk.data_ptr<T>(), *rv_ = rv.data_ptr<T>(), *rb_ = rbeta.data_ptr<T>();
    T *out_ = out.data_ptr<T>(), *R_ = R.data_ptr<T>(), *c_ = c.data_ptr<T>(), *y_ = y.data_ptr<T>();
    T *ck_ = save ? checkpoints.data_ptr<T>() : nullptr, *rec_ = save ? record.data_ptr<T>() : nullptr;
    at::parallel_for(0, B * H, 1, [&](Index begin, Index end) {
      std::vector<T> rec_scratch(kRecord * d), pre(3 * d);
      for (Index bh = begin; bh < end; ++bh) {
        std::vector<DeltaMemory<T>> mem;
        for (Index g = 0; g < 3; ++g) {
          const Index gi = bh * 3 + g;
          mem.push_back({d, d, L, rk_ + gi * L * d, rv_ + gi * L * d, rb_ + gi * L,
                         reset_ptr ? reset_ptr + (bh / H) * L : nullptr, ck_ ? ck_ + gi * nb * d * d : nullptr});
          mem[g].load(R_ + gi * d * d);
        }
        T *c_t = c_ + bh * d, *y_prev = y_ + bh * d;
        for (Index t = 0; t < L; ++t) {
          if (mem[0].resets(t)) {
            std::fill(c_t, c_t + d, T(0));
            std::fill(y_prev, y_prev + d, T(0));
          }
          T* rec = rec_ ? rec_ + (bh * L + t) * kRecord * d : rec_scratch.data();
          T *s = rec + kS * d, *u = rec + kU * d, *f = rec + kF * d, *o = rec + kO * d;
          if (ver == 'A') std::copy(y_prev, y_prev + d, s);
          else softmax(y_prev, s, d);
          for (Index g = 0; g < 3; ++g) {
            mem[g].forward(t, s, pre.data() + g * d);
            const T* z_g = z_ + ((bh * 3 + g) * L + t) * d;
            for (Index i = 0; i < d; ++i) pre[g * d + i] += z_g[i];
          }
          const T* z_u = z_ + (bh * 3 * L + t) * d;
          T* y_t = out_ + (bh * L + t) * d;
          if (ver == 'D') std::copy(pre.data(), pre.data() + d, u);
          else elementwise_sigmoid(pre.data(), u, d);
          elementwise_sigmoid(pre.data() + d, f, d);
          elementwise_sigmoid(pre.data() + 2 * d, o, d);
          for (Index i = 0; i < d; ++i) {
            c_t[i] = f[i] * c_t[i] + (1 - f[i]) * u[i];
            y_t[i] = c_t[i] * o[i] + (ver == 'C' ? z_u[i] : T(0));
          }
          if (ver == 'A') softmax(y_t, y_t, d);
          std::copy(c_t, c_t + d, rec + kC * d);
          std::copy(y_t, y_t + d, y_prev);
        }
        for (Index g = 0; g < 3; ++g) mem[g].store(R_ + (bh * 3 + g) * d * d);
      }
    });
  });
  return {out, R, c, y, checkpoints, record};
}

// Cotangents of (z, rk, rv, rbeta, R0, c0, y0) from those of out and the final R, c and y.
std::vector<Tensor> delta_lstm_backward(Tensor rk, Tensor rv, Tensor rbeta, Tensor c0, std::optional<Tensor> reset,
                                        Tensor checkpoints, Tensor record, Tensor out, std::string version,
                                        Tensor d_out, Tensor d_R, Tensor d_c, Tensor d_y) {
  const char ver = lstm_version(version);
  const Index B = rk.size(0), H = rk.size(1), L = rk.size(3), d = rk.size(4);
  rk = rk.contiguous(), rv = rv.contiguous(), rbeta = rbeta.contiguous(), c0 = c0.contiguous();
  d_out = d_out.contiguous();
  Tensor reset_holder;
  const bool* reset_ptr = reset_data(reset, reset_holder);
  Tensor dz = at::empty_like(rk), drk = at::empty_like(rk), drv = at::empty_like(rv), drb = at::empty_like(rbeta);
  Tensor dR0 = d_R.clone(at::MemoryFormat::Contiguous);
  Tensor dc0 = d_c.clone(at::MemoryFormat::Contiguous), dy0 = d_y.clone(at::MemoryFormat::Contiguous);
  const Index nb = num_blocks(L, d);

  AT_DISPATCH_FLOATING_TYPES(rk.scalar_type(), "delta_lstm_backward", [&] {
    using T = scalar_t;
    const T *rk_ = rk.data_ptr<T>(), *rv_ = rv.data_ptr<T>(), *rb_ = rbeta.data_ptr<T>(), *c0_ = c0.data_ptr<T>();
    const T *rec_ = record.data_ptr<T>(), *out_ = out.data_ptr<T>(), *dout_ = d_out.data_ptr<T>();
    T *dz_ = dz.data_ptr<T>(), *drk_ = drk.data_ptr<T>(), *drv_ = drv.data_ptr<T>(), *drb_ = drb.data_ptr<T>();
    T *dR_ = dR0.data_ptr<T>(), *dc_ = dc0.data_ptr<T>(), *dy_ = dy0.data_ptr<T>(), *ck_ = checkpoints.data_ptr<T>();
    at::parallel_for(0, B * H, 1, [&](Index begin, Index end) {
      std::vector<T> dy(d), dm(d), dpre(3 * d), ds(d), ds_g(d), zeros(d, T(0));
      for (Index bh = begin; bh < end; ++bh) {
        std::vector<DeltaMemory<T>> mem;
        for (Index g = 0; g < 3; ++g) {
          const Index gi = bh * 3 + g;
          mem.push_back({d, d, L, rk_ + gi * L * d, rv_ + gi * L * d, rb_ + gi * L,
                         reset_ptr ? reset_ptr + (bh / H) * L : nullptr, ck_ + gi * nb * d * d});
          mem[g].load(dR_ + gi * d * d);
        }
        T *carry_y = dy_ + bh * d, *carry_c = dc_ + bh * d;  // cotangents of y_t, c_t through step t + 1
        for (Index t = L - 1; t >= 0; --t) {
          const bool resets = mem[0].resets(t);
          const T* rec = rec_ + (bh * L + t) * kRecord * d;
          const T *s = rec + kS * d, *u = rec + kU * d, *f = rec + kF * d, *o = rec + kO * d, *c_t = rec + kC * d;
          const T* c_prev = resets ? zeros.data() : t > 0 ? rec - kRecord * d + kC * d : c0_ + bh * d;
          const Index o_t = (bh * L + t) * d;
          for (Index i = 0; i < d; ++i) dy[i] = dout_[o_t + i] + carry_y[i];
          if (ver == 'A') softmax_backward(out_ + o_t, dy.data(), dm.data(), d);
          else std::copy(dy.begin(), dy.end(), dm.begin());
          for (Index i = 0; i < d; ++i) {
            const T dc = carry_c[i] + dm[i] * o[i], d_o = dm[i] * c_t[i];
            const T df = dc * (c_prev[i] - u[i]), du = dc * (1 - f[i]);
            carry_c[i] = resets ? T(0) : dc * f[i];
            dpre[i] = ver == 'D' ? du : du * u[i] * (1 - u[i]);
            dpre[d + i] = df * f[i] * (1 - f[i]);
            dpre[2 * d + i] = d_o * o[i] * (1 - o[i]);
          }
          std::fill(ds.begin(), ds.end(), T(0));
          for (Index g = 0; g < 3; ++g) {
            const Index og = ((bh * 3 + g) * L + t) * d;
            for (Index i = 0; i < d; ++i) dz_[og + i] = dpre[g * d + i] + (ver == 'C' && g == 0 ? dy[i] : T(0));
            drb_[(bh * 3 + g) * L + t] = mem[g].backward(t, s, dpre.data() + g * d, ds_g.data(), drk_ + og, drv_ + og);
            for (Index i = 0; i < d; ++i) ds[i] += ds_g[i];
          }
          if (resets) std::fill(carry_y, carry_y + d, T(0));
          else if (ver == 'A') std::copy(ds.begin(), ds.end(), carry_y);
          else softmax_backward(s, ds.data(), carry_y, d);
        }
        for (Index g = 0; g < 3; ++g) mem[g].store(dR_ + (bh * 3 + g) * d * d);
      }
    });
  });
  return {dz, drk, drv, drb, dR0, dc0, dy0};
}

}  // namespace rfwp
