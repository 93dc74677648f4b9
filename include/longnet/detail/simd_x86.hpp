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

#include "longnet/detail/exp_softmax.hpp"
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
    LONGNET_AVX2_FN static reg pow2n(reg kn) noexcept {  // exp_softmax.hpp
        const __m256i i = _mm256_castps_si256(kn);
        return _mm256_castsi256_ps(_mm256_slli_epi32(i, 23));
    }
    LONGNET_AVX2_FN static reg exp_softmax(reg x) noexcept { LONGNET_EXP_SOFTMAX_BODY(float); }
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
    LONGNET_AVX2_FN static reg pow2n(reg kn) noexcept {  // exp_softmax.hpp
        const __m256i i = _mm256_castpd_si256(kn);
        return _mm256_castsi256_pd(_mm256_slli_epi64(i, 52));
    }
    LONGNET_AVX2_FN static reg exp_softmax(reg x) noexcept { LONGNET_EXP_SOFTMAX_BODY(double); }
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
    LONGNET_AVX512_FN static reg pow2n(reg kn) noexcept {  // exp_softmax.hpp
        const __m512i i = _mm512_castps_si512(kn);
        return _mm512_castsi512_ps(_mm512_mask_slli_epi32(i, static_cast<__mmask16>(-1), i, 23));
    }
    LONGNET_AVX512_FN static reg exp_softmax(reg x) noexcept { LONGNET_EXP_SOFTMAX_BODY(float); }
    LONGNET_AVX512_FN static __m256 half(reg x, int hi) noexcept {
        const __m256 z = _mm256_setzero_ps();
        return hi ? _mm512_mask_extractf32x8_ps(z, static_cast<__mmask8>(-1), x, 1)
                  : _mm512_mask_extractf32x8_ps(z, static_cast<__mmask8>(-1), x, 0);
    }
    // the two halves combined, then the AVX2 reduction (its instructions are a subset of this target's)
    LONGNET_AVX512_FN static float reduce_add(reg x) noexcept {
        return ops<float, x86_avx2>::reduce_add(_mm256_add_ps(half(x, 0), half(x, 1)));
    }
    LONGNET_AVX512_FN static float reduce_max(reg x) noexcept {
        return ops<float, x86_avx2>::reduce_max(_mm256_max_ps(half(x, 0), half(x, 1)));
    }
};

// The double registers: the float struct's members with the _pd intrinsics (one struct per register type,
// as xsimd has one batch per type; duplicates shows the two as one shape).
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
    LONGNET_AVX512_FN static reg pow2n(reg kn) noexcept {  // exp_softmax.hpp
        const __m512i i = _mm512_castpd_si512(kn);
        return _mm512_castsi512_pd(_mm512_mask_slli_epi64(i, static_cast<__mmask8>(-1), i, 52));
    }
    LONGNET_AVX512_FN static reg exp_softmax(reg x) noexcept { LONGNET_EXP_SOFTMAX_BODY(double); }
    LONGNET_AVX512_FN static __m256d half(reg x, int hi) noexcept {
        const __m256d z = _mm256_setzero_pd();
        return hi ? _mm512_mask_extractf64x4_pd(z, static_cast<__mmask8>(-1), x, 1)
                  : _mm512_mask_extractf64x4_pd(z, static_cast<__mmask8>(-1), x, 0);
    }
    LONGNET_AVX512_FN static double reduce_add(reg x) noexcept {
        return ops<double, x86_avx2>::reduce_add(_mm256_add_pd(half(x, 0), half(x, 1)));
    }
    LONGNET_AVX512_FN static double reduce_max(reg x) noexcept {
        return ops<double, x86_avx2>::reduce_max(_mm256_max_pd(half(x, 0), half(x, 1)));
    }
};

}  // namespace longnet::detail::simd
#endif
