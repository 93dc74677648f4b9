// SPDX-License-Identifier: Apache-2.0
#pragma once
// The instructions of the bf16 dot-product path (bf16_dot.hpp: the forward's QKᵀ and PV; segment_backward.hpp:
// the backward's five products): AVX512-BF16 register tiles (vdpbf16ps), the rounding and transposition
// of P and dS to bf16, and, further down, the AMX tiles (TDPBF16PS). Compiled once, not once per path:
// they depend on no SIMD architecture template, only on the instruction set.
//
// vdpbf16ps multiplies 32 pairs of bf16 and adds each pair's two products into one of 16 float lanes:
// acc[l] += a[2l]·b[2l] + a[2l+1]·b[2l+1], float accumulation. Operands are packed as pairs, one 32-bit
// word holding two bf16 (the low half first): the pair is over the dimension a product sums over.
//
// Where the translation unit's target has AVX512-BF16 (LONGNET_HAS_BF16_DOT, e.g. -march=native on Zen 4
// or Sapphire Rapids) they are ordinary inline functions. In a build with runtime ISA dispatch
// (LONGNET_DISPATCH_BF16) they are compiled in their own target region (AVX-512 F/BW/VL + BF16), like
// the dispatched paths of dispatch.hpp; the AVX-512 path calls them (out of line: the compiler does not
// inline code of a wider target) only when bf16_dot_cpu() (runtime_isa.hpp) saw AVX512-BF16 on the CPU,
// so a CPU without it never executes one of their instructions.

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "longnet/config.hpp"
#include "longnet/detail/target_region.hpp"
#include "longnet/detail/x86_intrinsics.hpp"
#include "longnet/tensor.hpp"

#if LONGNET_BF16_TILES
#include <immintrin.h>

#if LONGNET_DISPATCH_BF16
LONGNET_PUSH_TARGET(LONGNET_TARGET_BF16_FEATURES)
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

// dst[i][j] = src[j][i] rounded to bf16 (as round_rows) for i < cols (a multiple of 16) and j < rows
// (whole blocks of 16 rows; rows past `rows` of a block read as 0): src rows lds floats apart, dst rows
// ldd elements apart. 16×16 blocks transposed in registers (64 shuffles each).
inline void transpose_round(const float* src, index_t lds, index_t rows, index_t cols, std::uint16_t* dst,
                            index_t ldd) noexcept {
    // masked forms with a defined merge source and a full mask: the same instructions as the unmasked
    // ones, which GCC 12 implements with an undefined merge source and then warns about (PR 105593) where
    // <immintrin.h> came before longnet's headers (x86_intrinsics.hpp)
    constexpr __mmask16 all16 = 0xFFFF;
    constexpr __mmask8 all8 = 0xFF;
    for (index_t j0 = 0; j0 < rows; j0 += 16)
        for (index_t i0 = 0; i0 < cols; i0 += 16) {
            __m512 a[16], t[16];
            for (int k = 0; k < 16; ++k)
                a[k] = j0 + k < rows ? _mm512_loadu_ps(src + (j0 + k) * lds + i0) : _mm512_setzero_ps();
            for (int k = 0; k < 16; k += 2) {
                t[k] = _mm512_mask_unpacklo_ps(a[k], all16, a[k], a[k + 1]);
                t[k + 1] = _mm512_mask_unpackhi_ps(a[k], all16, a[k], a[k + 1]);
            }
            // u[4g + c]: lane L holds column 4L + c of rows 4g .. 4g + 3
            __m512 u[16];
            for (int g = 0; g < 4; ++g) {
                const __m512d t0 = _mm512_castps_pd(t[4 * g]), t1 = _mm512_castps_pd(t[4 * g + 1]);
                const __m512d t2 = _mm512_castps_pd(t[4 * g + 2]), t3 = _mm512_castps_pd(t[4 * g + 3]);
                u[4 * g + 0] = _mm512_castpd_ps(_mm512_mask_unpacklo_pd(t0, all8, t0, t2));
                u[4 * g + 1] = _mm512_castpd_ps(_mm512_mask_unpackhi_pd(t0, all8, t0, t2));
                u[4 * g + 2] = _mm512_castpd_ps(_mm512_mask_unpacklo_pd(t1, all8, t1, t3));
                u[4 * g + 3] = _mm512_castpd_ps(_mm512_mask_unpackhi_pd(t1, all8, t1, t3));
            }
            for (int c = 0; c < 4; ++c) {
                // lanes 0, 2 of each (0x88), lanes 1, 3 of each (0xDD)
                const __m512 x01_lo = _mm512_mask_shuffle_f32x4(u[c], all16, u[c], u[4 + c], 0x88);
                const __m512 x01_hi = _mm512_mask_shuffle_f32x4(u[c], all16, u[c], u[4 + c], 0xDD);
                const __m512 x23_lo = _mm512_mask_shuffle_f32x4(u[8 + c], all16, u[8 + c], u[12 + c], 0x88);
                const __m512 x23_hi = _mm512_mask_shuffle_f32x4(u[8 + c], all16, u[8 + c], u[12 + c], 0xDD);
                const __m512 out[4] = {_mm512_mask_shuffle_f32x4(x01_lo, all16, x01_lo, x23_lo, 0x88),
                                       _mm512_mask_shuffle_f32x4(x01_hi, all16, x01_hi, x23_hi, 0x88),
                                       _mm512_mask_shuffle_f32x4(x01_lo, all16, x01_lo, x23_lo, 0xDD),
                                       _mm512_mask_shuffle_f32x4(x01_hi, all16, x01_hi, x23_hi, 0xDD)};
                for (int l = 0; l < 4; ++l)  // column 4L + c of the block
                    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + (i0 + 4 * l + c) * ldd + j0),
                                        (__m256i)_mm512_cvtneps_pbh(out[l]));
            }
        }
}

}  // namespace longnet::detail::bf16_tiles

#if LONGNET_DISPATCH_BF16
LONGNET_POP_TARGET
#endif
#if LONGNET_AMX_TILES
// ---- AMX (AMX-TILE + AMX-BF16: TDPBF16PS) --------------------------------------------------------------
// The same pair layouts feed Intel's tile unit: TDPBF16PS C[16][16] += A[16][32 bf16] · B[16 pairs][16],
// float accumulation, where a row of B is one pair word per column: exactly the Kt layout (pairs over d,
// one word per key) and the V layout (pairs of keys, one word per column) above. One configuration: all
// eight tiles 16 rows × 64 bytes; tmm0..3 accumulate (16×16 floats), tmm4 holds A, tmm6/tmm7 B.
// Tiles are loaded with explicit byte strides, so the operands stay in the scratch buffers they are in.
// Where the translation unit's target lacks AMX they are compiled in their own region, like the AVX512-BF16
// tiles, and called only where bf16_amx_available() (runtime_isa.hpp) found the CPU's AMX-BF16 and the
// operating system's permission for the tile state.
#if !(defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__) && defined(__AVX512BW__))
#define LONGNET_DETAIL_AMX_REGION_ 1
LONGNET_PUSH_TARGET(LONGNET_TARGET_AMX_FEATURES)
#endif

namespace longnet::detail::bf16_tiles {

// The 64-byte tile configuration of LDTILECFG (palette 1).
struct amx_config {
    std::uint8_t palette = 1, start_row = 0;
    std::uint8_t reserved[14] = {};
    std::uint16_t colsb[16] = {};
    std::uint8_t rows[16] = {};
};

// Configure this thread's tiles (every tile 16 rows × 64 bytes); once per call of the products that use
// them, since other code on the thread may configure its own.
inline void amx_begin() noexcept {
    amx_config cfg;
    for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
#if defined(__clang__)
    _tile_loadconfig(&cfg);
#else
    // GCC 12's _tile_loadconfig tells the compiler it reads 8 bytes of the configuration, so the stores of
    // the rest may be dropped: name the whole 64-byte object as the operand instead
    __asm__ __volatile__("ldtilecfg %0" ::"m"(cfg));
#endif
}
// Return the tile state to its initial state (cheaper context switches).
inline void amx_end() noexcept { _tile_release(); }

// GCC's tile loads are asm statements that do not say they read memory: order the stores before them.
inline void amx_fence() noexcept { __asm__ __volatile__("" ::: "memory"); }

// tmm0 .. tmm(n−1) += A · B_t for n ≤ 4 column tiles: A (16 rows of 64 bytes, sa bytes apart) into tmm4,
// B_t the 16 pair rows (sb bytes apart) from b + 16·t, alternating tmm6 and tmm7.
inline void amx_accumulate(const void* a, long sa, const std::uint32_t* b, long sb, int n) noexcept {
    _tile_loadd(4, a, sa);
    _tile_loadd(6, b, sb);
    _tile_dpbf16ps(0, 4, 6);
    if (n > 1) {
        _tile_loadd(7, b + 16, sb);
        _tile_dpbf16ps(1, 4, 7);
    }
    if (n > 2) {
        _tile_loadd(6, b + 32, sb);
        _tile_dpbf16ps(2, 4, 6);
    }
    if (n > 3) {
        _tile_loadd(7, b + 48, sb);
        _tile_dpbf16ps(3, 4, 7);
    }
}

// Load / store the accumulators tmm0 .. tmm(n−1): 16×16 floats each, side by side from c (rows sc bytes apart).
inline void amx_load_accumulators(const float* c, long sc, int n) noexcept {
    _tile_loadd(0, c, sc);
    if (n > 1) _tile_loadd(1, c + 16, sc);
    if (n > 2) _tile_loadd(2, c + 32, sc);
    if (n > 3) _tile_loadd(3, c + 48, sc);
}
inline void amx_store_accumulators(float* c, long sc, int n) noexcept {
    _tile_stored(0, c, sc);
    if (n > 1) _tile_stored(1, c + 16, sc);
    if (n > 2) _tile_stored(2, c + 32, sc);
    if (n > 3) _tile_stored(3, c + 48, sc);
}

// S[0..16)[0..16n) = scale·A·B for the 16 rows of A from a (d2 pair words per row, d2 a multiple of 16)
// and n ≤ 4 column tiles of B from b (pair rows ldb words apart).
inline void amx_score_tiles(const std::uint32_t* a, index_t d2, const std::uint32_t* b, index_t ldb, int n, float scale,
                            float* s, index_t lds) noexcept {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const long sa = static_cast<long>(d2 * 4), sb = static_cast<long>(ldb * 4);
    for (index_t m = 0; m < d2; m += 16) amx_accumulate(a + m, sa, b + m * ldb, sb, n);
    amx_store_accumulators(s, static_cast<long>(lds * 4), n);
    if (scale != 1.0f) {
        const __m512 f = _mm512_set1_ps(scale);
        for (index_t i = 0; i < 16; ++i)
            for (int c = 0; c < n; ++c) {
                float* x = s + i * lds + c * 16;
                _mm512_storeu_ps(x, _mm512_mul_ps(_mm512_loadu_ps(x), f));
            }
    }
}

// S[0..rows)[0..cols) = scale·A·B: rows a multiple of 16 (A rows d2 pair words apart, d2 a multiple of
// 16), cols a multiple of 16 (B: d2 pair rows of at least cols words, ldb apart).
inline void amx_scores(const std::uint32_t* a, index_t d2, index_t rows, const std::uint32_t* b, index_t ldb, index_t cols,
                       float scale, float* s, index_t lds) noexcept {
    amx_fence();
    for (index_t g = 0; g < rows; g += 16)
        for (index_t c0 = 0; c0 < cols; c0 += 64)
            amx_score_tiles(a + g * d2, d2, b + c0, ldb, static_cast<int>(std::min<index_t>(4, (cols - c0) / 16)), scale,
                            s + g * lds + c0, lds);
}

// O[0..16)[0..cols) += P[0..16)[0..n) · V[0..n)[0..cols): P as bf16 rows (ldp elements apart), V as pair
// rows (ldv words apart), n a multiple of 32 and cols of 16; every P and V entry read must be finite.
inline void amx_pv(const std::uint16_t* p, index_t ldp, const std::uint32_t* v, index_t ldv, index_t n, float* o,
                   index_t ldo, index_t cols) noexcept {
    amx_fence();
    const long sp = static_cast<long>(ldp * 2), sv = static_cast<long>(ldv * 4), so = static_cast<long>(ldo * 4);
    for (index_t c0 = 0; c0 < cols; c0 += 64) {
        const int tiles = static_cast<int>(std::min<index_t>(4, (cols - c0) / 16));
        amx_load_accumulators(o + c0, so, tiles);
        for (index_t k = 0; k < n; k += 32) amx_accumulate(p + k, sp, v + k / 2 * ldv + c0, sv, tiles);
        amx_store_accumulators(o + c0, so, tiles);
    }
}

}  // namespace longnet::detail::bf16_tiles

#ifdef LONGNET_DETAIL_AMX_REGION_
#undef LONGNET_DETAIL_AMX_REGION_
LONGNET_POP_TARGET
#endif
#endif  // LONGNET_AMX_TILES
#endif  // LONGNET_BF16_TILES
