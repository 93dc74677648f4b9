// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the kernels of this translation unit compute with. Decided at compile time from the flags of the
// code that includes longnet (the library never adds -march): -march=native on an AVX-512 machine gives
// "avx512bw", on an AVX2 machine "fma3+avx2", a build without -march xsimd's baseline ("sse2" on
// x86-64), a build without xsimd or with LONGNET_FORCE_SCALAR "scalar".

#include "longnet/config.hpp"
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

// True where the forward of bfloat16 storage computes QKᵀ and PV with AVX512-BF16 dot products
// (vdpbf16ps; P rounded to bf16 for PV): the target has AVX512-BF16 and LONGNET_NO_BF16_DOT is not set.
constexpr bool bf16_dot_products() noexcept { return LONGNET_HAS_BF16_DOT != 0; }

}  // namespace longnet
