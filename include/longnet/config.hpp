// SPDX-License-Identifier: Apache-2.0
#pragma once
// Feature macros, decided at compile time from what the translation unit can see.
//
//   LONGNET_HAS_OPENMP   1 when compiled with OpenMP (-fopenmp): kernels run in parallel.
//   LONGNET_HAS_XSIMD    1 when <xsimd/xsimd.hpp> is available and LONGNET_FORCE_SCALAR is not set.
//   LONGNET_FORCE_SCALAR define to 1 (or CMake option LONGNET_FORCE_SCALAR) to select the portable
//                        scalar kernels, e.g. to test them against the SIMD ones.
//   LONGNET_HAS_BF16_DOT 1 when the SIMD kernels are on and the target has AVX512-BF16 (with AVX512BW,
//                        e.g. -march=native on Zen 4, Sapphire Rapids, Cooper Lake): bfloat16 storage
//                        computes the attention's products, forward and backward, with vdpbf16ps
//                        (detail/bf16_dot.hpp, detail/segment_backward.hpp).
//                        Define LONGNET_NO_BF16_DOT=1 to keep the float path there.

#if defined(_OPENMP)
#define LONGNET_HAS_OPENMP 1
#else
#define LONGNET_HAS_OPENMP 0
#endif

#ifndef LONGNET_FORCE_SCALAR
#define LONGNET_FORCE_SCALAR 0
#endif

#if !LONGNET_FORCE_SCALAR && defined(__has_include)
#if __has_include(<xsimd/xsimd.hpp>)
#define LONGNET_HAS_XSIMD 1
#else
#define LONGNET_HAS_XSIMD 0
#endif
#else
#define LONGNET_HAS_XSIMD 0
#endif

#ifndef LONGNET_NO_BF16_DOT
#define LONGNET_NO_BF16_DOT 0
#endif

#if LONGNET_HAS_XSIMD && !LONGNET_NO_BF16_DOT && defined(__AVX512BF16__) && defined(__AVX512BW__)
#define LONGNET_HAS_BF16_DOT 1
#else
#define LONGNET_HAS_BF16_DOT 0
#endif

//   LONGNET_DISPATCH     runtime ISA dispatch (detail/dispatch.hpp). 1 by default where it pays: x86-64,
//                        GCC or clang, SIMD kernels on, and a target without AVX2 + FMA (a build without
//                        -march: the x86-64 baseline, SSE2). The attention kernels are then compiled once
//                        more for AVX2 + FMA and for AVX-512 (F, CD, BW, DQ, VL), and the first call picks
//                        the best one the CPU runs (longnet::simd_isa(), isa.hpp; LONGNET_ISA forces one).
//                        A build with -march=native (or any target with AVX2 + FMA) has one path and no
//                        dispatch. Define 0 to turn dispatch off; 1 to turn it on from an AVX2 target, to
//                        reach AVX-512 (only the targets above the build's own are added).
#if !defined(LONGNET_DISPATCH)
#if LONGNET_HAS_XSIMD && defined(__x86_64__) && defined(__GNUC__) && !(defined(__AVX2__) && defined(__FMA__))
#define LONGNET_DISPATCH 1
#else
#define LONGNET_DISPATCH 0
#endif
#endif

#if LONGNET_DISPATCH && LONGNET_HAS_XSIMD && defined(__x86_64__) && defined(__GNUC__) && \
    !(defined(__AVX2__) && defined(__FMA__))
#define LONGNET_DISPATCH_AVX2 1
#else
#define LONGNET_DISPATCH_AVX2 0
#endif

#if LONGNET_DISPATCH && LONGNET_HAS_XSIMD && defined(__x86_64__) && defined(__GNUC__) &&                      \
    !(defined(__AVX512F__) && defined(__AVX512CD__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
      defined(__AVX512VL__))
#define LONGNET_DISPATCH_AVX512 1
#else
#define LONGNET_DISPATCH_AVX512 0
#endif

//   LONGNET_DISPATCH_BF16 1 when the dispatched AVX-512 path carries the bf16 dot-product tiles
//                        (detail/bf16_tiles.hpp, compiled in their own AVX512-BF16 target region and
//                        called only where the CPU reports AVX512-BF16). Off with LONGNET_NO_BF16_DOT.
//   LONGNET_BF16_TILES   1 when the bf16 dot-product tiles are compiled in at all: the target has them
//                        (LONGNET_HAS_BF16_DOT) or the dispatched AVX-512 path does (LONGNET_DISPATCH_BF16).
#if LONGNET_DISPATCH_AVX512 && !LONGNET_NO_BF16_DOT && !LONGNET_HAS_BF16_DOT
#define LONGNET_DISPATCH_BF16 1
#else
#define LONGNET_DISPATCH_BF16 0
#endif
#if LONGNET_HAS_BF16_DOT || LONGNET_DISPATCH_BF16
#define LONGNET_BF16_TILES 1
#else
#define LONGNET_BF16_TILES 0
#endif

//   LONGNET_AMX_TILES    1 when the bf16 dot-product path also carries AMX tiles (detail/bf16_tiles.hpp:
//                        TDPBF16PS on 16×16 float tiles, Intel Sapphire Rapids and later; forward and
//                        backward, head dims a multiple of 32), used at run time
//                        where the CPU has AMX-BF16 and Linux grants the tile state (bf16_amx_available(),
//                        runtime_isa.hpp). Linux, x86-64, GCC >= 11 or clang >= 12. Define LONGNET_NO_AMX=1
//                        to leave them out.
#ifndef LONGNET_NO_AMX
#define LONGNET_NO_AMX 0
#endif
#if LONGNET_BF16_TILES && !LONGNET_NO_AMX && defined(__linux__) && defined(__x86_64__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define LONGNET_AMX_TILES 1
#else
#define LONGNET_AMX_TILES 0
#endif
