// SPDX-License-Identifier: Apache-2.0
#pragma once
// The only file that talks to xsimd. Kernels are written against ops<A, Arch>:
//   reg, width, zero, load, store, broadcast, fma, max, mul, add, sub, exp_softmax, reduce_add, reduce_max.
// Arch is `scalar` (always available; width 1) or an xsimd architecture (default: xsimd::default_arch,
// which follows the compiler's target flags). xsimd's API changed between 8.x and later (hadd became
// reduce_add; 8.1 has no reduce_max): those differences live here only.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "longnet/config.hpp"

#if LONGNET_HAS_XSIMD
#include "longnet/detail/x86_intrinsics.hpp"  // first: GCC 12 AVX-512 warning, see there
#include <xsimd/xsimd.hpp>

#include "longnet/detail/exp_softmax.hpp"
#endif

namespace longnet::detail::simd {

struct scalar {};

#if LONGNET_HAS_XSIMD
using native = xsimd::default_arch;
#else
using native = scalar;
#endif

template <class A, class Arch>
struct ops;

struct x86_avx512;  // the dispatched AVX-512 path's architecture (simd_x86.hpp)

// Architectural vector registers the micro-kernels may plan for: 32 with AVX-512 (xsimd's or the
// dispatched path's), else 16.
template <class Arch>
constexpr int register_count() noexcept {
    if constexpr (std::is_same<Arch, x86_avx512>::value) return 32;
#if LONGNET_HAS_XSIMD
    if constexpr (std::is_base_of<xsimd::avx512f, Arch>::value) return 32;
#endif
    return 16;
}

template <class A>
struct ops<A, scalar> {
    using reg = A;
    static constexpr int width = 1;
    static reg zero() noexcept { return A(0); }
    static reg load(const A* p) noexcept { return *p; }
    static void store(A* p, reg x) noexcept { *p = x; }
    static reg broadcast(A x) noexcept { return x; }
    static reg fma(reg a, reg b, reg c) noexcept { return a * b + c; }
    static reg max(reg a, reg b) noexcept { return a < b ? b : a; }
    static reg mul(reg a, reg b) noexcept { return a * b; }
    static reg add(reg a, reg b) noexcept { return a + b; }
    static reg sub(reg a, reg b) noexcept { return a - b; }
    static reg exp_softmax(reg x) noexcept { return std::exp(x); }
    static A reduce_add(reg x) noexcept { return x; }
    static A reduce_max(reg x) noexcept { return x; }
};

#if LONGNET_HAS_XSIMD
// Arch-specific primitives that xsimd 8.1 would route through GCC 12's AVX-512 intrinsics that pass
// _mm512_undefined_*() as the merge source of an all-ones mask (_mm512_max_ps, _mm512_slli_epi32/64,
// _mm512_roundscale_round_ps, _mm512_cvttps_epi32, _mm512_extractf64x4_pd). GCC 12.2 inlines those into
// our kernels and then reports that undefined value as -Wmaybe-uninitialized (GCC PR 105593), which a
// user building with -Wall -Werror -march=native on an AVX-512 machine cannot silence without turning
// the warning off. The masked forms below name a defined merge source; with the all-ones mask the
// compiler emits the same unmasked instruction. Other architectures use xsimd unchanged.
namespace prim {

template <class Arch>
constexpr bool is_avx512() noexcept {
    return std::is_base_of<xsimd::avx512f, Arch>::value;
}

// max(a, b) with the x86 rule: the second operand is returned when either is NaN.
template <class A, class Arch>
inline xsimd::batch<A, Arch> max(const xsimd::batch<A, Arch>& a, const xsimd::batch<A, Arch>& b) noexcept {
#if defined(__AVX512F__)
    if constexpr (is_avx512<Arch>() && std::is_same<A, float>::value) {
        return _mm512_mask_max_ps(a, static_cast<__mmask16>(-1), a, b);
    } else if constexpr (is_avx512<Arch>() && std::is_same<A, double>::value) {
        return _mm512_mask_max_pd(a, static_cast<__mmask8>(-1), a, b);
    } else
#endif
    {
        return xsimd::max(a, b);
    }
}

// Integer shift left by a constant, lane by lane (int32 or int64 lanes).
template <int Bits, class I, class Arch>
inline xsimd::batch<I, Arch> shift_left(const xsimd::batch<I, Arch>& x) noexcept {
#if defined(__AVX512F__)
    if constexpr (is_avx512<Arch>() && sizeof(I) == 4) {
        return _mm512_mask_slli_epi32(x, static_cast<__mmask16>(-1), x, Bits);
    } else if constexpr (is_avx512<Arch>() && sizeof(I) == 8) {
        return _mm512_mask_slli_epi64(x, static_cast<__mmask8>(-1), x, Bits);
    } else
#endif
    {
        return x << Bits;
    }
}

template <class A, class Arch>
inline A reduce_add(const xsimd::batch<A, Arch>& x) noexcept {
#if defined(__AVX512F__)
    if constexpr (is_avx512<Arch>() && std::is_same<A, double>::value) {
        const __m256d z = _mm256_setzero_pd();  // _mm512_castpd512_pd256 too is an extract from undefined
        const __m256d lo = _mm512_mask_extractf64x4_pd(z, static_cast<__mmask8>(-1), x, 0);
        const __m256d hi = _mm512_mask_extractf64x4_pd(z, static_cast<__mmask8>(-1), x, 1);
        const __m256d s4 = _mm256_add_pd(lo, hi);
        const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
        return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
    } else
#endif
    {
#if XSIMD_VERSION_MAJOR >= 10
        return xsimd::reduce_add(x);
#else
        return xsimd::hadd(x);
#endif
    }
}

}  // namespace prim

template <class A, class Arch>
struct ops {
    using reg = xsimd::batch<A, Arch>;
    static constexpr int width = static_cast<int>(reg::size);
    static reg zero() noexcept { return reg(A(0)); }
    static reg load(const A* p) noexcept { return reg::load_unaligned(p); }
    static void store(A* p, reg x) noexcept { x.store_unaligned(p); }
    static reg broadcast(A x) noexcept { return reg(x); }
    static reg fma(reg a, reg b, reg c) noexcept { return xsimd::fma(a, b, c); }
    static reg max(reg a, reg b) noexcept { return prim::max(a, b); }
    static reg mul(reg a, reg b) noexcept { return a * b; }
    static reg add(reg a, reg b) noexcept { return a + b; }
    static reg sub(reg a, reg b) noexcept { return a - b; }
    // 2^n from the shifter register of exp_softmax (exp_softmax.hpp): its low mantissa bits into the exponent
    static reg pow2n(reg kn) noexcept {
        using I = std::conditional_t<std::is_same<A, float>::value, std::int32_t, std::int64_t>;
        using ireg = xsimd::batch<I, Arch>;
        return xsimd::bitwise_cast<reg>(prim::shift_left<exp_constants<A>::mantissa_bits>(xsimd::bitwise_cast<ireg>(kn)));
    }
    static reg exp_softmax(reg x) noexcept { LONGNET_EXP_SOFTMAX_BODY(A); }  // exp_softmax.hpp: the method
    static A reduce_add(reg x) noexcept { return prim::reduce_add(x); }
    static A reduce_max(reg x) noexcept {
        alignas(64) A tmp[reg::size];
        x.store_aligned(tmp);
        A m = tmp[0];
        for (std::size_t i = 1; i < reg::size; ++i) m = std::max(m, tmp[i]);
        return m;
    }
};
#endif

}  // namespace longnet::detail::simd
