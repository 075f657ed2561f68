// exp, expm1, sigmoid and tanh written so that loops over them vectorise. The library's exp and tanh
// are scalar calls (tanhf about 20 ns) and would dominate the Recurrent Delta Net and Delta LSTM steps,
// which take O(d) of them against O(d²) multiply-adds.
//
// x = n ln2 + r with n = round(x / ln2) and |r| ≤ ln2/2, the product n ln2 taken in two parts so that
// n ln2_hi is exact (Cody-Waite); e^r − 1 by its Taylor series to the precision of T; then
//   e^x − 1 = 2^n (e^r − 1) + (2^n − 1),   e^x = 2^n ((e^r − 1) + 1).
// Keeping the series without its leading 1 keeps e^x − 1 accurate near 0, which tanh of small x needs.
// Arguments are clamped to the finite range of T (below it, e^x is the smallest normal number instead
// of 0, a difference far under any tolerance); NaN propagates.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace rfwp {

template <typename T>
struct ExpParameters;

template <>
struct ExpParameters<double> {
  using Bits = int64_t;
  static constexpr int terms = 13, mantissa_bits = 52, exponent_bias = 1023;
  static constexpr double lowest = -708.0, highest = 709.0;
  static constexpr double ln2_hi = 6.93145751953125e-1, ln2_lo = 1.42860682030941723212e-6;
};

template <>
struct ExpParameters<float> {
  using Bits = int32_t;
  static constexpr int terms = 7, mantissa_bits = 23, exponent_bias = 127;
  static constexpr float lowest = -87.0f, highest = 88.0f;
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
};

constexpr double inverse_factorial(int k) { return k <= 1 ? 1.0 : inverse_factorial(k - 1) / k; }

// Σ_{k=K..N} r^(k−K) / k! by Horner, unrolled at compile time so every coefficient is a constant.
template <typename T, int K, int N>
inline T taylor_tail(T r) {
  constexpr T c = T(inverse_factorial(K));
  if constexpr (K == N) return c;
  else return c + r * taylor_tail<T, K + 1, N>(r);
}

// Returns e^r − 1 (NaN for NaN x) and sets scale = 2^n.
template <typename T>
inline T reduced_expm1(T x, T& scale) {
  using P = ExpParameters<T>;
  using Bits = typename P::Bits;
  // Clamped (NaN to the lowest, restored below) so that 2^n is a normal number.
  const T lowest = P::lowest, highest = P::highest;
  const T xc = std::max(lowest, std::min(x, highest));
  // n = round(x / ln2) by adding 1.5 · 2^mantissa_bits: the sum is rounded to an integer, held in its
  // low bits. (std::floor or an int-to-float conversion here would block vectorisation.)
  const T magic = T(1.5) * T(Bits(1) << P::mantissa_bits);
  const T shifted = xc * T(1.4426950408889634) + magic;
  const T n = shifted - magic;
  const Bits n_bits = __builtin_bit_cast(Bits, shifted) - __builtin_bit_cast(Bits, magic);
  const T r = (xc - n * P::ln2_hi) - n * P::ln2_lo;
  const T q = r * taylor_tail<T, 1, P::terms>(r);  // e^r − 1
  scale = __builtin_bit_cast(T, (n_bits + P::exponent_bias) << P::mantissa_bits);
  return x == x ? q : x;
}

template <typename T>
inline T vexp(T x) {
  T scale;
  const T q = reduced_expm1(x, scale);
  return scale * q + scale;
}

template <typename T>
inline T vexpm1(T x) {
  T scale;
  const T q = reduced_expm1(x, scale);
  return scale * q + (scale - T(1));
}

template <typename T>
inline T vsigmoid(T x) {
  return T(1) / (T(1) + vexp(-x));
}

// tanh x = sign(x) (1 − e^{−2|x|}) / (1 + e^{−2|x|}) = −sign(x) m / (2 + m), m = e^{−2|x|} − 1.
template <typename T>
inline T vtanh(T x) {
  const T m = vexpm1(T(-2) * std::abs(x));
  return std::copysign(-m / (T(2) + m), x);
}

}  // namespace rfwp
