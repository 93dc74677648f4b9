// SPDX-License-Identifier: Apache-2.0
#pragma once
// The AVX512-BF16 register tiles of the bf16 dot-product path (bf16_dot.hpp: the forward's QKᵀ and PV,
// the backward's five products). Compiled once, not once per path: they depend on no SIMD architecture
// template, only on the instruction set.
//
// vdpbf16ps multiplies 32 pairs of bf16 and adds each pair's two products into one of 16 float lanes:
// acc[l] += a[2l]·b[2l] + a[2l+1]·b[2l+1], float accumulation. Operands are packed as pairs, one 32-bit
// word holding two bf16 (the low half first): the pair is over the dimension a product sums over.
//
// Where the translation unit's target has AVX512-BF16 (LONGNET_HAS_BF16_DOT, e.g. -march=native on Zen 4
// or Sapphire Rapids) they are ordinary inline functions. In a build with runtime ISA dispatch
// (LONGNET_DISPATCH_BF16) they are compiled in their own target region (AVX-512 F/BW/VL + BF16), like
// the dispatched paths of kernels.hpp; the AVX-512 path calls them (out of line: the compiler does not
// inline code of a wider target) only when bf16_dot_cpu() (runtime_isa.hpp) saw AVX512-BF16 on the CPU,
// so a CPU without it never executes one of their instructions.

#include <cstdint>
#include <cstring>

#include "longnet/config.hpp"
#include "longnet/detail/x86_intrinsics.hpp"
#include "longnet/tensor.hpp"

#if LONGNET_BF16_TILES
#include <immintrin.h>

#if LONGNET_DISPATCH_BF16
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx,avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx,avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16")
#endif
#endif

namespace longnet::detail::bf16_tiles {

// S[0..R)[0..32) = scale·A[0..R)·B[·][0..32): rows of A are d2 pair-words apart (one word per pair of
// the summed dimension), B holds for every pair m a row of 32 words (ldb apart), one per column.
// Two registers of 16 columns; one vdpbf16ps per row, register and pair.
template <int R>
inline void dot_tile(const std::uint32_t* a, index_t d2, const std::uint32_t* b, index_t ldb, float scale, float* s,
                     index_t lds) noexcept {
    __m512 acc0[R], acc1[R];
    for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
    for (index_t m = 0; m < d2; ++m) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + m * ldb);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + m * ldb + 16);
        for (int i = 0; i < R; ++i) {
            const __m512bh ab = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[i * d2 + m]));
            acc0[i] = _mm512_dpbf16_ps(acc0[i], ab, b0);
            acc1[i] = _mm512_dpbf16_ps(acc1[i], ab, b1);
        }
    }
    const __m512 f = _mm512_set1_ps(scale);
    for (int i = 0; i < R; ++i) {
        _mm512_storeu_ps(s + i * lds, _mm512_mul_ps(acc0[i], f));
        _mm512_storeu_ps(s + i * lds + 16, _mm512_mul_ps(acc1[i], f));
    }
}

// O[0..R)[C registers] += P[0..R)[0..n) · V[0..n)[cols]: P as bf16 rows (ldp apart, read in pairs of
// entries), V as pair rows: word c of row p is v[2p][c] | v[2p+1][c] << 16 (ldv words apart). An odd n:
// the last pair's second entry belongs to no product here, so its value lanes are masked to 0 (a NaN
// or inf there cannot reach the output: 0·NaN would be NaN); P must hold a finite value at index n.
template <int R, int C>
inline void pair_tile(const std::uint16_t* p, index_t ldp, const std::uint32_t* v, index_t ldv, index_t n, float* o,
                      index_t ldo) noexcept {
    __m512 acc[R][C];
    for (int i = 0; i < R; ++i)
        for (int c = 0; c < C; ++c) acc[i][c] = _mm512_loadu_ps(o + i * ldo + c * 16);
    const index_t pairs = (n + 1) / 2;
    for (index_t jp = 0; jp < pairs; ++jp) {
        __m512i vr[C];
        for (int c = 0; c < C; ++c) vr[c] = _mm512_loadu_si512(v + jp * ldv + c * 16);
        if (2 * jp + 1 == n)
            for (int c = 0; c < C; ++c) vr[c] = _mm512_maskz_mov_epi16(static_cast<__mmask32>(0x55555555u), vr[c]);
        for (int i = 0; i < R; ++i) {
            std::uint32_t pair;
            std::memcpy(&pair, p + i * ldp + 2 * jp, sizeof pair);
            const __m512bh pb = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
            for (int c = 0; c < C; ++c) acc[i][c] = _mm512_dpbf16_ps(acc[i][c], pb, (__m512bh)vr[c]);
        }
    }
    for (int i = 0; i < R; ++i)
        for (int c = 0; c < C; ++c) _mm512_storeu_ps(o + i * ldo + c * 16, acc[i][c]);
}

// pair_tile over `regs` registers of 16 output columns (two at a time).
template <int R>
inline void pair_rows(const std::uint16_t* p, index_t ldp, const std::uint32_t* v, index_t ldv, index_t n, float* o,
                      index_t ldo, index_t regs) noexcept {
    index_t c = 0;
    for (; c + 2 <= regs; c += 2) pair_tile<R, 2>(p, ldp, v + c * 16, ldv, n, o + c * 16, ldo);
    if (c < regs) pair_tile<R, 1>(p, ldp, v + c * 16, ldv, n, o + c * 16, ldo);
}

// dst[0..n) = src[0..n) rounded to bf16 (round to nearest even, vcvtneps2bf16); n a multiple of 16.
inline void round_rows(const float* src, index_t n, std::uint16_t* dst) noexcept {
    for (index_t c = 0; c < n; c += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + c)));
}

}  // namespace longnet::detail::bf16_tiles

#if LONGNET_DISPATCH_BF16
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
#endif  // LONGNET_BF16_TILES
