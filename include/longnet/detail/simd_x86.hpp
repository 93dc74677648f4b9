// SPDX-License-Identifier: Apache-2.0
#pragma once
// The architectures of runtime dispatch (detail/dispatch.hpp): ops<A, Arch> (the interface of simd.hpp)
// for AVX2+FMA and AVX-512, written with intrinsics, each function carrying its own target attribute.
//
// Why not xsimd here: xsimd 8.1 defines an architecture's kernels only when the translation unit is
// compiled for it (__AVX2__, __AVX512F__ at include time), so a build without -march has none but SSE2.
// The functions below are always_inline with a target attribute; they are called only from kernel code
// compiled in a region of the same target (dispatch.hpp), where they inline into plain vector code.
// The computations are those of simd.hpp's xsimd ops (same polynomial, same shifter trick); only the
// order of the horizontal sums may differ, so results agree to rounding, not bit for bit.

#include <cstdint>
#include <type_traits>

#include "longnet/config.hpp"

#if LONGNET_DISPATCH_AVX2 || LONGNET_DISPATCH_AVX512
#include "longnet/detail/x86_intrinsics.hpp"  // GCC 12 AVX-512 warning, see there
#include <immintrin.h>

#include "longnet/detail/target_region.hpp"  // the feature strings

#define LONGNET_AVX2_FN __attribute__((target(LONGNET_TARGET_AVX2_FEATURES), always_inline)) inline
#define LONGNET_AVX512_FN __attribute__((target(LONGNET_TARGET_AVX512_FEATURES), always_inline)) inline

namespace longnet::detail::simd {

template <class A, class Arch>
struct ops;

// AVX2 + FMA (x86-64-v3): 256-bit registers, 16 of them.
struct x86_avx2 {
    static constexpr const char* name() noexcept { return "fma3+avx2"; }
};
// AVX-512 F/CD/BW/DQ/VL (x86-64-v4): 512-bit registers, 32 of them.
struct x86_avx512 {
    static constexpr const char* name() noexcept { return "avx512bw"; }
};

namespace x86 {
// exp for softmax arguments, as simd.hpp's ops::exp_softmax (see the comment there).
template <class A>
struct exp_constants;
template <>
struct exp_constants<float> {
    static constexpr float clamp = -86.0f, shifter = 12582912.0f + 127.0f;
    static constexpr float ln2_hi = -0.693359375f, ln2_lo = 2.12194440e-4f;
};
template <>
struct exp_constants<double> {
    static constexpr double clamp = -700.0, shifter = 6755399441055744.0 + 1023.0;
    static constexpr double ln2_hi = -6.93147180369123816490e-01, ln2_lo = -1.90821492927058770002e-10;
};
}  // namespace x86

#define LONGNET_X86_EXP_BODY(A, set1, fmadd, sub, mul, maxf, shl, cast_i, cast_f)                                \
    using C = x86::exp_constants<A>;                                                                           \
    x = maxf(set1(C::clamp), x); /* second operand wins on NaN: NaN stays NaN */                               \
    const reg shift = set1(C::shifter);                                                                        \
    const reg kn = fmadd(x, set1(A(1.44269504088896340736)), shift);                                           \
    const reg n = sub(kn, shift);                                                                              \
    reg t = fmadd(n, set1(C::ln2_hi), x);                                                                      \
    t = fmadd(n, set1(C::ln2_lo), t);                                                                          \
    reg p;                                                                                                     \
    if constexpr (std::is_same<A, float>::value) {                                                             \
        p = set1(1.0f / 720.0f);                                                                               \
        p = fmadd(p, t, set1(1.0f / 120.0f));                                                                  \
        p = fmadd(p, t, set1(1.0f / 24.0f));                                                                   \
        p = fmadd(p, t, set1(1.0f / 6.0f));                                                                    \
        p = fmadd(p, t, set1(0.5f));                                                                           \
    } else {                                                                                                   \
        constexpr double inv_fact[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,               \
                                       1.0 / 3628800.0,    1.0 / 362880.0,    1.0 / 40320.0,                  \
                                       1.0 / 5040.0,       1.0 / 720.0,       1.0 / 120.0,                    \
                                       1.0 / 24.0,         1.0 / 6.0,         0.5};                           \
        p = set1(A(inv_fact[0]));                                                                              \
        for (int i = 1; i < 12; ++i) p = fmadd(p, t, set1(A(inv_fact[i])));                                   \
    }                                                                                                          \
    p = fmadd(p, t, set1(A(1)));                                                                               \
    p = fmadd(p, t, set1(A(1)));                                                                               \
    return mul(p, cast_f(shl(cast_i(kn))))

// ---- AVX2 + FMA ---------------------------------------------------------------------------------------
template <>
struct ops<float, x86_avx2> {
    using reg = __m256;
    static constexpr int width = 8;
    LONGNET_AVX2_FN static reg zero() noexcept { return _mm256_setzero_ps(); }
    LONGNET_AVX2_FN static reg load(const float* p) noexcept { return _mm256_loadu_ps(p); }
    LONGNET_AVX2_FN static void store(float* p, reg x) noexcept { _mm256_storeu_ps(p, x); }
    LONGNET_AVX2_FN static reg broadcast(float x) noexcept { return _mm256_set1_ps(x); }
    LONGNET_AVX2_FN static reg fma(reg a, reg b, reg c) noexcept { return _mm256_fmadd_ps(a, b, c); }
    LONGNET_AVX2_FN static reg max(reg a, reg b) noexcept { return _mm256_max_ps(a, b); }
    LONGNET_AVX2_FN static reg mul(reg a, reg b) noexcept { return _mm256_mul_ps(a, b); }
    LONGNET_AVX2_FN static reg add(reg a, reg b) noexcept { return _mm256_add_ps(a, b); }
    LONGNET_AVX2_FN static reg sub(reg a, reg b) noexcept { return _mm256_sub_ps(a, b); }
    LONGNET_AVX2_FN static __m256i shl(__m256i x) noexcept { return _mm256_slli_epi32(x, 23); }
    LONGNET_AVX2_FN static reg exp_softmax(reg x) noexcept {
        LONGNET_X86_EXP_BODY(float, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_sub_ps, _mm256_mul_ps, _mm256_max_ps, shl,
                             _mm256_castps_si256, _mm256_castsi256_ps);
    }
    LONGNET_AVX2_FN static float reduce_add(reg x) noexcept {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        return _mm_cvtss_f32(s);
    }
    LONGNET_AVX2_FN static float reduce_max(reg x) noexcept {
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        return _mm_cvtss_f32(m);
    }
};

template <>
struct ops<double, x86_avx2> {
    using reg = __m256d;
    static constexpr int width = 4;
    LONGNET_AVX2_FN static reg zero() noexcept { return _mm256_setzero_pd(); }
    LONGNET_AVX2_FN static reg load(const double* p) noexcept { return _mm256_loadu_pd(p); }
    LONGNET_AVX2_FN static void store(double* p, reg x) noexcept { _mm256_storeu_pd(p, x); }
    LONGNET_AVX2_FN static reg broadcast(double x) noexcept { return _mm256_set1_pd(x); }
    LONGNET_AVX2_FN static reg fma(reg a, reg b, reg c) noexcept { return _mm256_fmadd_pd(a, b, c); }
    LONGNET_AVX2_FN static reg max(reg a, reg b) noexcept { return _mm256_max_pd(a, b); }
    LONGNET_AVX2_FN static reg mul(reg a, reg b) noexcept { return _mm256_mul_pd(a, b); }
    LONGNET_AVX2_FN static reg add(reg a, reg b) noexcept { return _mm256_add_pd(a, b); }
    LONGNET_AVX2_FN static reg sub(reg a, reg b) noexcept { return _mm256_sub_pd(a, b); }
    LONGNET_AVX2_FN static __m256i shl(__m256i x) noexcept { return _mm256_slli_epi64(x, 52); }
    LONGNET_AVX2_FN static reg exp_softmax(reg x) noexcept {
        LONGNET_X86_EXP_BODY(double, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_sub_pd, _mm256_mul_pd, _mm256_max_pd, shl,
                             _mm256_castpd_si256, _mm256_castsi256_pd);
    }
    LONGNET_AVX2_FN static double reduce_add(reg x) noexcept {
        const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(x), _mm256_extractf128_pd(x, 1));
        return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
    }
    LONGNET_AVX2_FN static double reduce_max(reg x) noexcept {
        const __m128d m = _mm_max_pd(_mm256_castpd256_pd128(x), _mm256_extractf128_pd(x, 1));
        return _mm_cvtsd_f64(_mm_max_sd(m, _mm_unpackhi_pd(m, m)));
    }
};

// ---- AVX-512 ------------------------------------------------------------------------------------------
// As in simd.hpp: the masked forms with a defined merge source (GCC PR 105593), same instructions.
template <>
struct ops<float, x86_avx512> {
    using reg = __m512;
    static constexpr int width = 16;
    LONGNET_AVX512_FN static reg zero() noexcept { return _mm512_setzero_ps(); }
    LONGNET_AVX512_FN static reg load(const float* p) noexcept { return _mm512_loadu_ps(p); }
    LONGNET_AVX512_FN static void store(float* p, reg x) noexcept { _mm512_storeu_ps(p, x); }
    LONGNET_AVX512_FN static reg broadcast(float x) noexcept { return _mm512_set1_ps(x); }
    LONGNET_AVX512_FN static reg fma(reg a, reg b, reg c) noexcept { return _mm512_fmadd_ps(a, b, c); }
    LONGNET_AVX512_FN static reg max(reg a, reg b) noexcept { return _mm512_mask_max_ps(a, static_cast<__mmask16>(-1), a, b); }
    LONGNET_AVX512_FN static reg mul(reg a, reg b) noexcept { return _mm512_mul_ps(a, b); }
    LONGNET_AVX512_FN static reg add(reg a, reg b) noexcept { return _mm512_add_ps(a, b); }
    LONGNET_AVX512_FN static reg sub(reg a, reg b) noexcept { return _mm512_sub_ps(a, b); }
    LONGNET_AVX512_FN static __m512i shl(__m512i x) noexcept {
        return _mm512_mask_slli_epi32(x, static_cast<__mmask16>(-1), x, 23);
    }
    LONGNET_AVX512_FN static reg exp_softmax(reg x) noexcept {
        LONGNET_X86_EXP_BODY(float, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_sub_ps, _mm512_mul_ps, max, shl,
                             _mm512_castps_si512, _mm512_castsi512_ps);
    }
    LONGNET_AVX512_FN static __m256 half(reg x, int hi) noexcept {
        const __m256 z = _mm256_setzero_ps();
        return hi ? _mm512_mask_extractf32x8_ps(z, static_cast<__mmask8>(-1), x, 1)
                  : _mm512_mask_extractf32x8_ps(z, static_cast<__mmask8>(-1), x, 0);
    }
    LONGNET_AVX512_FN static float reduce_add(reg x) noexcept {
        const __m256 s8 = _mm256_add_ps(half(x, 0), half(x, 1));
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        return _mm_cvtss_f32(s);
    }
    LONGNET_AVX512_FN static float reduce_max(reg x) noexcept {
        const __m256 m8 = _mm256_max_ps(half(x, 0), half(x, 1));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        return _mm_cvtss_f32(m);
    }
};

template <>
struct ops<double, x86_avx512> {
    using reg = __m512d;
    static constexpr int width = 8;
    LONGNET_AVX512_FN static reg zero() noexcept { return _mm512_setzero_pd(); }
    LONGNET_AVX512_FN static reg load(const double* p) noexcept { return _mm512_loadu_pd(p); }
    LONGNET_AVX512_FN static void store(double* p, reg x) noexcept { _mm512_storeu_pd(p, x); }
    LONGNET_AVX512_FN static reg broadcast(double x) noexcept { return _mm512_set1_pd(x); }
    LONGNET_AVX512_FN static reg fma(reg a, reg b, reg c) noexcept { return _mm512_fmadd_pd(a, b, c); }
    LONGNET_AVX512_FN static reg max(reg a, reg b) noexcept { return _mm512_mask_max_pd(a, static_cast<__mmask8>(-1), a, b); }
    LONGNET_AVX512_FN static reg mul(reg a, reg b) noexcept { return _mm512_mul_pd(a, b); }
    LONGNET_AVX512_FN static reg add(reg a, reg b) noexcept { return _mm512_add_pd(a, b); }
    LONGNET_AVX512_FN static reg sub(reg a, reg b) noexcept { return _mm512_sub_pd(a, b); }
    LONGNET_AVX512_FN static __m512i shl(__m512i x) noexcept {
        return _mm512_mask_slli_epi64(x, static_cast<__mmask8>(-1), x, 52);
    }
    LONGNET_AVX512_FN static reg exp_softmax(reg x) noexcept {
        LONGNET_X86_EXP_BODY(double, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_sub_pd, _mm512_mul_pd, max, shl,
                             _mm512_castpd_si512, _mm512_castsi512_pd);
    }
    LONGNET_AVX512_FN static __m256d half(reg x, int hi) noexcept {
        const __m256d z = _mm256_setzero_pd();
        return hi ? _mm512_mask_extractf64x4_pd(z, static_cast<__mmask8>(-1), x, 1)
                  : _mm512_mask_extractf64x4_pd(z, static_cast<__mmask8>(-1), x, 0);
    }
    LONGNET_AVX512_FN static double reduce_add(reg x) noexcept {
        const __m256d s4 = _mm256_add_pd(half(x, 0), half(x, 1));
        const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
        return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
    }
    LONGNET_AVX512_FN static double reduce_max(reg x) noexcept {
        const __m256d m4 = _mm256_max_pd(half(x, 0), half(x, 1));
        const __m128d m2 = _mm_max_pd(_mm256_castpd256_pd128(m4), _mm256_extractf128_pd(m4, 1));
        return _mm_cvtsd_f64(_mm_max_sd(m2, _mm_unpackhi_pd(m2, m2)));
    }
};

#undef LONGNET_X86_EXP_BODY

}  // namespace longnet::detail::simd
#endif
