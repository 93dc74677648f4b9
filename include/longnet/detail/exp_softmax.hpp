// SPDX-License-Identifier: Apache-2.0
#pragma once
// exp for softmax arguments, written once for every vector ops struct (simd.hpp's xsimd ops<A, Arch>,
// simd_x86.hpp's AVX2 and AVX-512 ops): LONGNET_EXP_SOFTMAX_BODY(A) is the body of a static member
// `reg exp_softmax(reg x)` of an ops struct, and calls that struct's own broadcast, fma, sub, mul, max
// and pow2n (2^n from the shifter register kn: its low mantissa bits shifted into the exponent field).
//
// A macro, not a function template over the ops: the dispatched ops carry target attributes
// (always_inline, target("avx2,...")), and a template defined outside their target regions could not
// inline them (GCC refuses always_inline across a target mismatch); expanded inside each member it has
// that member's target.
//
// The method, for arguments x = s − max ≤ 0 (or NaN, which propagates): Cody–Waite reduction
// x = n·ln2 + t, |t| ≤ ln2/2, a Taylor polynomial in t, and 2^n by exponent arithmetic:
//   float:  degree 6 (relative error < 2e-7); arguments below −86 (weights < 5e-38) clamped there;
//   double: degree 13 (relative error < 1e-15); arguments below −700 (weights < 1e-304) clamped.
// n = round(x·log2 e) comes from the "shifter" trick: adding S = 1.5·2^m + bias (m = 23 and bias 127
// for float, 52 and 1023 for double) to x·log2 e rounds it to an integer whose low mantissa bits hold
// n + bias, so one register gives n (subtract S) and 2^n (shift those bits into the exponent field)
// with no float→int conversion. The result is p·2^n, a multiply, so a NaN in p (from a NaN argument)
// stays NaN whatever its payload did to the exponent bits. The clamp keeps 2^n a normal number.

#include <type_traits>

namespace longnet::detail::simd {
template <class A>
struct exp_constants;
template <>
struct exp_constants<float> {
    static constexpr float clamp = -86.0f, shifter = 12582912.0f + 127.0f;
    static constexpr float ln2_hi = -0.693359375f, ln2_lo = 2.12194440e-4f;
    static constexpr int mantissa_bits = 23;
};
template <>
struct exp_constants<double> {
    static constexpr double clamp = -700.0, shifter = 6755399441055744.0 + 1023.0;
    static constexpr double ln2_hi = -6.93147180369123816490e-01;  // 32 significant bits
    static constexpr double ln2_lo = -1.90821492927058770002e-10;
    static constexpr int mantissa_bits = 52;
};
}  // namespace longnet::detail::simd

#define LONGNET_EXP_SOFTMAX_BODY(A)                                                                                \
    using C = ::longnet::detail::simd::exp_constants<A>;                                                           \
    x = max(broadcast(C::clamp), x); /* second operand wins on NaN: NaN stays NaN */                               \
    const reg shift = broadcast(C::shifter);                                                                       \
    const reg kn = fma(x, broadcast(A(1.44269504088896340736)), shift);                                            \
    const reg n = sub(kn, shift);                                                                                  \
    reg t = fma(n, broadcast(C::ln2_hi), x);                                                                       \
    t = fma(n, broadcast(C::ln2_lo), t);                                                                           \
    reg p;                                                                                                         \
    if constexpr (std::is_same<A, float>::value) {                                                                 \
        p = broadcast(1.0f / 720.0f);                                                                              \
        p = fma(p, t, broadcast(1.0f / 120.0f));                                                                   \
        p = fma(p, t, broadcast(1.0f / 24.0f));                                                                    \
        p = fma(p, t, broadcast(1.0f / 6.0f));                                                                     \
        p = fma(p, t, broadcast(0.5f));                                                                            \
    } else {                                                                                                       \
        constexpr double inv_fact[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,                   \
                                       1.0 / 3628800.0,    1.0 / 362880.0,    1.0 / 40320.0,                      \
                                       1.0 / 5040.0,       1.0 / 720.0,       1.0 / 120.0,                        \
                                       1.0 / 24.0,         1.0 / 6.0,         0.5};                               \
        p = broadcast(A(inv_fact[0]));                                                                             \
        for (int i = 1; i < 12; ++i) p = fma(p, t, broadcast(A(inv_fact[i])));                                     \
    }                                                                                                              \
    p = fma(p, t, broadcast(A(1)));                                                                                \
    p = fma(p, t, broadcast(A(1)));                                                                                \
    return mul(p, pow2n(kn))
