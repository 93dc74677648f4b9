// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the kernels of this translation unit compute with. Decided at compile time from the flags of the
// code that includes longnet (the library never adds -march): -march=native on an AVX-512 machine gives
// "avx512bw", on an AVX2 machine "fma3+avx2", a build without -march xsimd's baseline ("sse2" on
// x86-64), a build without xsimd or with LONGNET_FORCE_SCALAR "scalar".

#include <atomic>

#include "longnet/config.hpp"
#include "longnet/detail/bf16_dot.hpp"
#include "longnet/detail/simd.hpp"

namespace longnet {

// Name of the SIMD instruction set the kernels use: xsimd's architecture name, or "scalar".
inline const char* simd_isa() noexcept {
#if LONGNET_HAS_XSIMD
    return detail::simd::native::name();
#else
    return "scalar";
#endif
}

// The bf16 dot-product forward (detail/bf16_dot.hpp): bfloat16 storage computes QKᵀ and PV with
// AVX512-BF16 dot products (vdpbf16ps; P rounded to bf16 for PV) instead of widening to float.
//
// Compiled in where the target has AVX512-BF16 (LONGNET_HAS_BF16_DOT, config.hpp). Whether it runs is
// decided once per process, because it pays only where vdpbf16ps issues as fast as an FMA: AMD Zen 4
// and later run it at the FMA rate (twice the multiply-adds: measured 458 vs 230 GFLOP/s on 2 threads);
// on an Intel Sapphire Rapids-class Xeon its flop peak measured 0.54x the FMA peak, and the float path
// is faster (bf16 on the dot path: 0.69x float). Default: on for AuthenticAMD, off for other vendors.
// The environment variable LONGNET_BF16_DOT=1 or =0 overrides the default; set_bf16_dot_products()
// changes it at run time (not while a forward runs on another thread).

// True when the bf16 dot-product forward runs (compiled in and enabled).
inline bool bf16_dot_products() noexcept { return detail::bf16_dot_switch().load(std::memory_order_relaxed); }

// Enable or disable the bf16 dot-product forward; returns what is now in force (false when it is not
// compiled in).
inline bool set_bf16_dot_products(bool on) noexcept {
    detail::bf16_dot_switch().store(on && LONGNET_HAS_BF16_DOT, std::memory_order_relaxed);
    return bf16_dot_products();
}

}  // namespace longnet
