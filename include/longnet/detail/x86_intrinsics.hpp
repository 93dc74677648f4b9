// SPDX-License-Identifier: Apache-2.0
#pragma once
// Included first by every longnet header that pulls in SIMD code (detail/simd.hpp before xsimd,
// nn/common.hpp before Eigen).
//
// GCC 12 + AVX-512 (GCC PR 105593): GCC's own intrinsic headers implement _mm512_undefined_*() as a
// self-initialised variable (`__m512 __Y = __Y;`), and many unmasked intrinsics (_mm512_max_ps,
// _mm512_extractf64x4_pd, _mm512_slli_epi32, ...) pass that value as the merge source of an all-ones
// mask. Once inlined, -Wmaybe-uninitialized (or, at -O1, -Wuninitialized) reports it inside
// avx512fintrin.h, in any program that uses those intrinsics with -march=native on an AVX-512 machine
// (about 100 errors under -Werror).
//
// longnet's own kernels do not rely on what follows: detail/simd.hpp calls masked intrinsics with a
// defined merge source instead (same instructions). Eigen's AVX-512 packet code (used by longnet/nn/)
// does use the affected intrinsics, and we cannot change it; so <immintrin.h> is included here, once,
// with those two warnings ignored *for the lines of GCC's intrinsic headers only*: GCC attributes the
// inlined warning to those lines, and the pragma state is recorded by location. Code outside them,
// the user's, ours and Eigen's, keeps -Wmaybe-uninitialized. If <immintrin.h> was included before any
// longnet header, this does nothing and the user's build sees what it would see without longnet.
// Other compilers and GCC versions: nothing.

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif
