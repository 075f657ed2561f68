// Shared by every CPU kernel: the delta rule step on the fast weight of one (batch, head) slice,
// its backward, and DeltaMemory, which checkpoints a sequence of such steps and replays it for the
// backward. Small helpers (softmax, matvec, shape checks) live here too.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "vector_math.h"

namespace rfwp {

using at::Tensor;
using Index = int64_t;

// The fast weight W (d_value × d_key) is held transposed, as d_key contiguous rows of d_value (row j is
// column j of W): every product of the forward step then runs along rows, v̄ = Σ_j k_j W[:, j], with
// no horizontal sums (measured: the forward step about twice as fast as with rows of W).

// Σ_i p[i], overwriting p. For a power-of-two width known at compile time, by halving: vectorised,
// log2(n) dependent adds. (An `omp simd` reduction ends in n dependent scalar adds, which made the
// per-row dot products of the backward its bottleneck.)
template <typename T, Index Width>
T sum_by_halving(T* p, Index n) {
  if constexpr (Width > 0 && (Width & (Width - 1)) == 0) {
#pragma GCC unroll 8
    for (Index h = Width / 2; h >= 1; h /= 2) {
#pragma omp simd
      for (Index i = 0; i < h; ++i) p[i] += p[i + h];
    }
    return p[0];
  } else {
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (Index i = 0; i < n; ++i) sum += p[i];
    return sum;
  }
}

// One forward step of the delta rule (RFWP Eqs. 8-10). Wt_prev holds W' (the state after any reset):
//   v̄ = W' k,  W_t = W' + β (v − v̄) ⊗ k,  y = W_t q = W' q + β (v − v̄) (k·q).
// W_t is written to Wt_next (which may equal Wt_prev; null skips the write), y when q is given (null q:
// replay without readout), v̄ to v_bar when given. scratch holds 3 · d_value values. Width is d_value
// when known at compile time (see delta_step), else 0.
template <typename T, Index Width>
void delta_step_rows(const T* Wt_prev, T* Wt_next, const T* k, const T* v, T beta, const T* q, T* y, T* v_bar,
                     Index rows_width, Index d_key, T* scratch) {
  const Index d_value = Width > 0 ? Width : rows_width;
  T local[Width > 0 ? 3 * Width : 1];
  T* work = Width > 0 ? local : scratch;
  T* __restrict vb = v_bar ? v_bar : work;
  T *__restrict wq = work + d_value, *__restrict u = work + 2 * d_value;
  std::fill(vb, vb + d_value, T(0));
  if (q) {
    std::fill(wq, wq + d_value, T(0));
    for (Index j = 0; j < d_key; ++j) {
      const T *row = Wt_prev + j * d_value, kj = k[j], qj = q[j];
#pragma omp simd
      for (Index i = 0; i < d_value; ++i) {
        vb[i] += row[i] * kj;
        wq[i] += row[i] * qj;
      }
    }
  } else {
    for (Index j = 0; j < d_key; ++j) {
      const T *row = Wt_prev + j * d_value, kj = k[j];
#pragma omp simd
      for (Index i = 0; i < d_value; ++i) vb[i] += row[i] * kj;
    }
  }
#pragma omp simd
  for (Index i = 0; i < d_value; ++i) u[i] = beta * (v[i] - vb[i]);
  if (q) {
    T kq = 0;
#pragma omp simd reduction(+ : kq)
    for (Index j = 0; j < d_key; ++j) kq += k[j] * q[j];
#pragma omp simd
    for (Index i = 0; i < d_value; ++i) y[i] = wq[i] + u[i] * kq;
  }
  if (Wt_next) {
    for (Index j = 0; j < d_key; ++j) {
      const T *row = Wt_prev + j * d_value, kj = k[j];
      T* next = Wt_next + j * d_value;
#pragma omp simd
      for (Index i = 0; i < d_value; ++i) next[i] = row[i] + u[i] * kj;
    }
  }
}

// Backward of delta_step. Wt_prev holds W' and v_bar its v̄ = W' k; dy is the cotangent of y and dWt
// that of W_t (transposed like W), overwritten with that of W'. With u = β (v − v̄) and G = dW + dy ⊗ q
// (the cotangent of W_t including the readout):
//   du = G k,  dv = β du,  dβ = du · (v − v̄),  dv̄ = −β du,
//   dW' = G + dv̄ ⊗ k,  dk = Gᵀ u + W'ᵀ dv̄,  dq = W_tᵀ dy = W'ᵀ dy + k (u · dy).
// Writes dq, dk, dv and returns dβ. scratch holds 5 · d_value values; Width as for delta_step_rows.
template <typename T, Index Width>
T delta_step_backward_rows(const T* Wt_prev, const T* v_bar, const T* k, const T* v, T beta, const T* q,
                           const T* dy, T* dWt, T* dq, T* dk, T* dv, Index rows_width, Index d_key, T* scratch) {
  const Index d_value = Width > 0 ? Width : rows_width;
  T local[Width > 0 ? 5 * Width : 1];
  T* work = Width > 0 ? local : scratch;
  T *__restrict u = work, *__restrict du = work + d_value, *__restrict dv_bar = work + 2 * d_value;
  T *__restrict to_k = work + 3 * d_value, *__restrict to_q = work + 4 * d_value;  // per-row products
  T qk = 0, u_dy = 0, dbeta = 0;
#pragma omp simd reduction(+ : qk)
  for (Index j = 0; j < d_key; ++j) qk += q[j] * k[j];
#pragma omp simd reduction(+ : u_dy)
  for (Index i = 0; i < d_value; ++i) {
    u[i] = beta * (v[i] - v_bar[i]);
    du[i] = dy[i] * qk;
    u_dy += u[i] * dy[i];
  }
  for (Index j = 0; j < d_key; ++j) {
    const T *row = dWt + j * d_value, kj = k[j];
#pragma omp simd
    for (Index i = 0; i < d_value; ++i) du[i] += row[i] * kj;
  }
#pragma omp simd reduction(+ : dbeta)
  for (Index i = 0; i < d_value; ++i) {
    dv[i] = beta * du[i];
    dbeta += du[i] * (v[i] - v_bar[i]);
    dv_bar[i] = -beta * du[i];
  }
  for (Index j = 0; j < d_key; ++j) {
    const T* row = Wt_prev + j * d_value;
    T* d_row = dWt + j * d_value;
    const T qj = q[j], kj = k[j];
#pragma omp simd
    for (Index i = 0; i < d_value; ++i) {
      to_k[i] = d_row[i] * u[i] + row[i] * dv_bar[i];
      to_q[i] = row[i] * dy[i];
      d_row[i] += qj * dy[i] + kj * dv_bar[i];
    }
    dk[j] = sum_by_halving<T, Width>(to_k, d_value) + qj * u_dy;
    dq[j] = sum_by_halving<T, Width>(to_q, d_value) + kj * u_dy;
  }
  return dbeta;
}

// Row widths met in practice get their own copy of a step, whose loops have a constant trip count:
// unrolled, without remainder handling, with the scratch vectors in registers.
template <typename F>
auto with_row_width(Index d_value, F&& f) {
  switch (d_value) {
    case 16: return f(std::integral_constant<Index, 16>());
    case 32: return f(std::integral_constant<Index, 32>());
    case 64: return f(std::integral_constant<Index, 64>());
    default: return f(std::integral_constant<Index, 0>());
  }
}

template <typename T>
void delta_step(const T* Wt_prev, T* Wt_next, const T* k, const T* v, T beta, const T* q, T* y, T* v_bar,
                Index d_value, Index d_key, T* scratch) {
  with_row_width(d_value, [&](auto width) {
    delta_step_rows<T, decltype(width)::value>(Wt_prev, Wt_next, k, v, beta, q, y, v_bar, d_value, d_key, scratch);
  });
}

template <typename T>
T delta_step_backward(const T* Wt_prev, const T* v_bar, const T* k, const T* v, T beta, const T* q, const T* dy,
                      T* dWt, T* dq, T* dk, T* dv, Index d_value, Index d_key, T* scratch) {
  return with_row_width(d_value, [&](auto width) {
    return delta_step_backward_rows<T, decltype(width)::value>(Wt_prev, v_bar, k, v, beta, q, dy, dWt, dq, dk, dv,
                                                               d_value, d_key, scratch);
  });
}

// Steps between checkpoints. C ≈ d_key keeps the checkpoints, L/C matrices of d_value × d_key, at
// O(L · d_value) like the inputs, and the replay scratch, C such matrices, at O(d³) per thread.
inline Index block_size(Index d_key) { return std::max<Index>(16, d_key); }
inline Index num_blocks(Index L, Index d_key) { return (L + block_size(d_key) - 1) / block_size(d_key); }

// The fast weight of one (batch, head) slice along a sequence whose keys, values and rates are known
// to the backward (inputs of the op, or recorded by its forward). The forward stores W' (after any
// reset) entering every C-th step. The backward, called for t = L−1 down to 0, replays each block of
// C steps from its checkpoint, keeping every step's W' and v̄, and walks it in reverse. No state is
// recovered by undoing an update, so no rounding accumulates across steps.
template <typename T>
struct DeltaMemory {
  Index d_value, d_key, L;
  const T* k;           // (L, d_key)
  const T* v;           // (L, d_value)
  const T* beta;        // (L)
  const bool* reset;    // (L), or null: the whole state is zeroed before the steps where true
  T* checkpoints;       // (num_blocks, d_key, d_value), or null when the forward saves nothing

  Index C = block_size(d_key);
  std::vector<T> Wt = std::vector<T>(d_key * d_value);   // the state (forward) or its cotangent (backward)
  std::vector<T> scratch = std::vector<T>(5 * d_value);
  Index block = -1;                                       // the block replayed into W_prime, v_bar
  std::vector<T> W_prime, v_bar;

  Index size() const { return d_value * d_key; }
  bool resets(Index t) const { return reset != nullptr && reset[t]; }

  // Wt = Wᵀ for W (d_value, d_key) row-major, and back.
  void load(const T* W) {
    for (Index i = 0; i < d_value; ++i)
      for (Index j = 0; j < d_key; ++j) Wt[j * d_value + i] = W[i * d_key + j];
  }
  void store(T* W) const {
    for (Index i = 0; i < d_value; ++i)
      for (Index j = 0; j < d_key; ++j) W[i * d_key + j] = Wt[j * d_value + i];
  }

  // Step t forward from the loaded state: reset, checkpoint, update, and y = W_t q.
  void forward(Index t, const T* q, T* y) {
    if (resets(t)) std::fill(Wt.begin(), Wt.end(), T(0));
    if (checkpoints && t % C == 0) std::copy(Wt.begin(), Wt.end(), checkpoints + (t / C) * size());
    delta_step(Wt.data(), Wt.data(), k + t * d_key, v + t * d_value, beta[t], q, y, static_cast<T*>(nullptr),
               d_value, d_key, scratch.data());
  }

  // Step t backward, after load(cotangent of the final W): the loaded cotangent of W_t becomes that of
  // W_{t−1} (zero across a reset). Writes the cotangents of q, k_t, v_t and returns that of β_t.
  T backward(Index t, const T* q, const T* dy, T* dq, T* dk, T* dv) {
    if (t / C != block) replay(t / C);
    const Index s = t - block * C;
    const T dbeta = delta_step_backward(W_prime.data() + s * size(), v_bar.data() + s * d_value, k + t * d_key,
                                        v + t * d_value, beta[t], q, dy, Wt.data(), dq, dk, dv, d_value, d_key,
                                        scratch.data());
    if (resets(t)) std::fill(Wt.begin(), Wt.end(), T(0));
    return dbeta;
  }

  void replay(Index b) {
    block = b;
    const Index t0 = b * C, n = std::min(C, L - t0);
    W_prime.resize(std::min(C, L) * size());
    v_bar.resize(std::min(C, L) * d_value);
    std::copy(checkpoints + b * size(), checkpoints + (b + 1) * size(), W_prime.data());
    for (Index s = 0; s < n; ++s) {
      const Index t = t0 + s;
      const bool last = s + 1 == n, next_resets = !last && resets(t + 1);
      T* next = (last || next_resets) ? nullptr : W_prime.data() + (s + 1) * size();
      delta_step(W_prime.data() + s * size(), next, k + t * d_key, v + t * d_value, beta[t],
                 static_cast<const T*>(nullptr), static_cast<T*>(nullptr), v_bar.data() + s * d_value, d_value,
                 d_key, scratch.data());
      if (next_resets) std::fill(W_prime.data() + (s + 1) * size(), W_prime.data() + (s + 2) * size(), T(0));
    }
  }
};

// y = softmax(x); y may alias x.
template <typename T>
void softmax(const T* x, T* y, Index n) {
  T m = x[0];
#pragma omp simd reduction(max : m)
  for (Index i = 1; i < n; ++i) m = std::max(m, x[i]);
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (Index i = 0; i < n; ++i) {
    y[i] = vexp(x[i] - m);
    sum += y[i];
  }
#pragma omp simd
  for (Index i = 0; i < n; ++i) y[i] /= sum;
}

// dx = J_softmaxᵀ dy with y = softmax(x): y ⊙ (dy − y·dy). dx may alias dy.
template <typename T>
void softmax_backward(const T* y, const T* dy, T* dx, Index n) {
  T dot = 0;
#pragma omp simd reduction(+ : dot)
  for (Index i = 0; i < n; ++i) dot += y[i] * dy[i];
#pragma omp simd
  for (Index i = 0; i < n; ++i) dx[i] = y[i] * (dy[i] - dot);
}

template <typename T>
void elementwise_sigmoid(const T* x, T* y, Index n) {
#pragma omp simd
  for (Index i = 0; i < n; ++i) y[i] = vsigmoid(x[i]);
}

template <typename T>
void elementwise_tanh(const T* x, T* y, Index n) {
#pragma omp simd
  for (Index i = 0; i < n; ++i) y[i] = vtanh(x[i]);
}

// M += a ⊗ b for a row-major (rows, cols) matrix.
template <typename T>
void add_outer(T* M, const T* a, const T* b, Index rows, Index cols) {
  for (Index i = 0; i < rows; ++i) {
#pragma omp simd
    for (Index j = 0; j < cols; ++j) M[i * cols + j] += a[i] * b[j];
  }
}

// y += Mᵀ x for a row-major (rows, cols) matrix.
template <typename T>
void add_transposed_matvec(const T* M, const T* x, T* y, Index rows, Index cols) {
  for (Index i = 0; i < rows; ++i) {
#pragma omp simd
    for (Index j = 0; j < cols; ++j) y[j] += M[i * cols + j] * x[i];
  }
}

// y = M x for a row-major (rows, cols) matrix.
template <typename T>
void matvec(const T* M, const T* x, T* y, Index rows, Index cols) {
  for (Index i = 0; i < rows; ++i) {
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (Index j = 0; j < cols; ++j) acc += M[i * cols + j] * x[j];
    y[i] = acc;
  }
}

// One clear error for a tensor of the wrong shape or dtype, naming what was expected.
inline void expect(const Tensor& t, at::IntArrayRef shape, const Tensor& like, const char* name) {
  TORCH_CHECK(t.sizes() == shape, name, " has shape ", t.sizes(), " but must be ", shape);
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, " is ", t.scalar_type(), " but the inputs are ",
              like.scalar_type(), ": pass every tensor in one dtype");
  TORCH_CHECK(t.device().is_cpu(), name, " is on ", t.device(), "; the compiled kernels run on CPU tensors only");
}

// The reset flags as a contiguous bool (batch, length) buffer, or null.
inline const bool* reset_data(const std::optional<Tensor>& reset, Tensor& holder) {
  if (!reset.has_value() || !reset->defined()) return nullptr;
  holder = reset->to(at::kBool).contiguous();
  return holder.data_ptr<bool>();
}

}  // namespace rfwp
