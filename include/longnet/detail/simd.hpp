// SPDX-License-Identifier: Apache-2.0
#pragma once
// The only file that talks to xsimd. Kernels are written against ops<A, Arch>:
//   reg, width, zero, load, store, broadcast, fma, max, exp, reduce_add, reduce_max.
// Arch is `scalar` (always available; width 1) or an xsimd architecture (default: xsimd::default_arch,
// which follows the compiler's target flags). xsimd's API changed between 8.x and later (hadd became
// reduce_add; 8.1 has no reduce_max): those differences live here only.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "longnet/config.hpp"

#if LONGNET_HAS_XSIMD
#include <xsimd/xsimd.hpp>
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

// Architectural vector registers the micro-kernels may plan for: 32 with AVX-512, else 16.
template <class Arch>
constexpr int register_count() noexcept {
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
    static reg exp(reg x) noexcept { return std::exp(x); }
    static reg exp_softmax(reg x) noexcept { return std::exp(x); }
    static A reduce_add(reg x) noexcept { return x; }
    static A reduce_max(reg x) noexcept { return x; }
};

#if LONGNET_HAS_XSIMD
template <class A, class Arch>
struct ops {
    using reg = xsimd::batch<A, Arch>;
    static constexpr int width = static_cast<int>(reg::size);
    static reg zero() noexcept { return reg(A(0)); }
    static reg load(const A* p) noexcept { return reg::load_unaligned(p); }
    static void store(A* p, reg x) noexcept { x.store_unaligned(p); }
    static reg broadcast(A x) noexcept { return reg(x); }
    static reg fma(reg a, reg b, reg c) noexcept { return xsimd::fma(a, b, c); }
    static reg max(reg a, reg b) noexcept { return xsimd::max(a, b); }
    static reg mul(reg a, reg b) noexcept { return a * b; }
    static reg add(reg a, reg b) noexcept { return a + b; }
    static reg sub(reg a, reg b) noexcept { return a - b; }
    static reg exp(reg x) noexcept { return xsimd::exp(x); }
    // exp for softmax arguments x = s − max ≤ 0 (or NaN, which propagates). For float: Cody–Waite
    // reduction x = n·ln2 + t, |t| ≤ ln2/2, degree-6 Taylor polynomial (relative error < 2e-7), 2^n by
    // exponent arithmetic; arguments below −86 (weights < 5e-38, invisible next to the row maximum's
    // weight 1) are clamped there. Double uses xsimd::exp.
    static reg exp_softmax(reg x) noexcept {
        if constexpr (std::is_same<A, float>::value) {
            using ireg = xsimd::batch<std::int32_t, Arch>;
            x = xsimd::max(reg(-86.0f), x);  // second operand wins on NaN: NaN stays NaN
            const reg n = xsimd::nearbyint(x * reg(1.44269504088896341f));
            reg t = xsimd::fma(n, reg(-0.693359375f), x);
            t = xsimd::fma(n, reg(2.12194440e-4f), t);
            reg p = reg(1.0f / 720.0f);
            p = xsimd::fma(p, t, reg(1.0f / 120.0f));
            p = xsimd::fma(p, t, reg(1.0f / 24.0f));
            p = xsimd::fma(p, t, reg(1.0f / 6.0f));
            p = xsimd::fma(p, t, reg(0.5f));
            p = xsimd::fma(p, t, reg(1.0f));
            p = xsimd::fma(p, t, reg(1.0f));
            const ireg scaled = xsimd::bitwise_cast<ireg>(p) + (xsimd::to_int(n) << 23);
            return xsimd::bitwise_cast<reg>(scaled);
        } else {
            return xsimd::exp(x);
        }
    }
#if XSIMD_VERSION_MAJOR >= 10
    static A reduce_add(reg x) noexcept { return xsimd::reduce_add(x); }
#else
    static A reduce_add(reg x) noexcept { return xsimd::hadd(x); }
#endif
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
