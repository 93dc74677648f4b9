// SPDX-License-Identifier: Apache-2.0
// Kernel body: compiled once per instruction-set path (detail/dispatch.hpp includes it in each path's
// namespace and target region), so no #pragma once; the toggle guard below admits it once per path.
// The backward compute core: the flash-attention backward of one packed segment, in the transposed
// orientation (keys are rows, queries are columns) so that dK and dV of a block of keys are complete
// after one sweep over the queries and dQ is the only quantity carried across key blocks.
//
// For queries i and keys j of a segment, with the log-sum-exp L_i the probabilities are normalised by
// and Δ_i the row term of the softmax Jacobian (SPEC §6):
//   Pᵀ[j][i]  = exp(τ·k_j·q_i − L_i)                    (0 where causal hides key j from query i)
//   dPᵀ[j][i] = v_j·dO_i
//   dSᵀ[j][i] = τ·Pᵀ[j][i]·(dPᵀ[j][i] − Δ_i)
//   dV_j += Σ_i Pᵀ[j][i]·dO_i,   dK_j += Σ_i dSᵀ[j][i]·q_i,   dQ_i += Σ_j dSᵀ[j][i]·k_j
// Exact merged gradient: L = the merged LSE, Δ_i = dO_i·O_i (merged output).
// Merge weights held constant: the same L, Δ_i = dO_i·o_i (the branch's own output), because
// α_i·exp(S − l_i) = exp(S − L) with α_i = exp(l_i − L).
//
// Packed operands (A = float or double; D = head dim, Dv = kernel_shape::padded_dim(D)):
//   Qᵀ, dOᵀ  [query blocks][D][QC]   pack_keys layout (QC = kernel_shape::key_block), zero beyond nq
//   Q, dO    [nq][Dv]                pack_values layout
//   K, V     [round_up(nk, KR)][Dv]  pack_values layout, rows past nk zero (KR = kernel_shape::query_block)
// The same register-tiled micro-kernels as the forward do the five products (qk_tile for Sᵀ and dPᵀ,
// pv_tile for dV and dK, its transposed-coefficient form for dQ). Causal: query i sees key j iff
// j <= i + causal_shift; tiles wholly above the diagonal are skipped, tiles crossing it stop there.

#include "longnet/detail/dispatch.hpp"  // first: the per-path passes (includes this file)

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdint>
#include <utility>

#include "longnet/detail/bf16_tiles.hpp"
#include "longnet/detail/segment_forward.hpp"
#include "longnet/detail/simd.hpp"
#include "longnet/detail/workspace.hpp"
#include "longnet/tensor.hpp"

#if defined(LONGNET_DETAIL_BACKWARD_KERNEL_BODY) == defined(LONGNET_ISA_TOGGLE)
#ifdef LONGNET_DETAIL_BACKWARD_KERNEL_BODY
#undef LONGNET_DETAIL_BACKWARD_KERNEL_BODY
#else
#define LONGNET_DETAIL_BACKWARD_KERNEL_BODY
#endif

namespace longnet::detail {
LONGNET_ISA_BEGIN

template <class A, class Arch>
struct backward_shape {
    using K = kernel_shape<A, Arch>;
    static constexpr index_t width = K::width;
    static constexpr index_t query_cols = K::key_block;  // queries per block: the Qᵀ / dOᵀ block of pack_keys
    static constexpr index_t key_rows = K::query_block;  // keys per block: rows of the transposed score tile
    static constexpr index_t tile_rows = K::tile_rows;   // rows of one qk_tile / pv_tile
    static constexpr index_t tile_cols = K::qk_cols;     // columns of one qk_tile
    static_assert(query_cols % tile_cols == 0 && key_rows % tile_rows == 0, "blocks must hold whole tiles");
    static index_t round_up(index_t n, index_t m) noexcept { return (n + m - 1) / m * m; }
    // Rows the K and V buffers need for nk keys (the packers' rows and whole key blocks).
    static index_t key_buffer_rows(index_t nk) noexcept {
        return std::max(K::key_blocks(nk) * K::key_block, round_up(nk, key_rows)) + tile_rows;
    }
    // Rows the Q and dO buffers need for nq queries (pack_values writes whole key_block blocks).
    static index_t query_buffer_rows(index_t nq) noexcept { return K::key_blocks(nq) * K::key_block + tile_rows; }
    // Rows of the dQ accumulator for nq queries (whole query blocks plus one tile of slack).
    static index_t dq_rows(index_t nq) noexcept { return round_up(nq, query_cols) + tile_rows; }
};

// Pointers to the packed operands of one segment (see the layouts above).
template <class A>
struct backward_operands {
    const A* q_t;     // Qᵀ, unscaled
    const A* q;       // Q rows, unscaled
    const A* dout_t;  // dOᵀ
    const A* dout;    // dO rows
    const A* k;       // K rows, unscaled
    const A* v;       // V rows
    const A* lse;     // L_i, nq values (−inf: the query has no probability mass, its gradients are 0)
    const A* delta;   // Δ_i, nq values
};

// Per-thread scratch of attend_backward_packed (sizes in backward_scratch_buffers).
template <class A>
struct backward_scratch {
    A* p_t;     // [KR][QC]  Sᵀ, then Pᵀ
    A* ds_t;    // [KR][QC]  dPᵀ, then dSᵀ (τ included)
    A* tail;    // [KR][tile_rows] the columns of dSᵀ of a last, partial query tile, zero past the queries
    A* bias;    // [QC]  −L_i of the query block
    A* delta;   // [QC]  Δ_i of the query block
    A* dk;      // [KR][Dv] dK of the key block
    A* dv;      // [KR][Dv] dV of the key block
    std::uint16_t* p16 = nullptr;    // [KR][QC] Pᵀ rounded to bf16     (bf16 products only)
    std::uint16_t* ds16 = nullptr;   // [KR][QC] dSᵀ rounded to bf16
    std::uint16_t* ds16t = nullptr;  // [QC][KR] dS  rounded to bf16 (transposed: pairs of keys for dQ)
};

// Owns a backward_scratch for head dim `dim`.
template <class A, class Arch>
struct backward_scratch_buffers {
    using S = backward_shape<A, Arch>;
    aligned_buffer<A> p_t, ds_t, tail, bias, delta, dk, dv;
    aligned_buffer<std::uint16_t> p16, ds16, ds16t;
    explicit backward_scratch_buffers(index_t dim, bool bf16 = false) {
        const index_t dvp = S::K::padded_dim(dim);
        const auto tile = static_cast<std::size_t>(S::key_rows * S::query_cols);
        std::fill_n(p_t.reserve(tile), tile, A(0));  // finite from the start: skipped tiles are read, then zeroed
        std::fill_n(ds_t.reserve(tile), tile, A(0));
        tail.reserve(static_cast<std::size_t>(S::key_rows * S::tile_rows));
        bias.reserve(static_cast<std::size_t>(S::query_cols));
        delta.reserve(static_cast<std::size_t>(S::query_cols));
        dk.reserve(static_cast<std::size_t>(S::key_rows * dvp));
        dv.reserve(static_cast<std::size_t>(S::key_rows * dvp));
        if (bf16) {
            std::fill_n(p16.reserve(tile), tile, std::uint16_t(0));  // finite everywhere a 32-wide tile row reads
            std::fill_n(ds16.reserve(tile), tile, std::uint16_t(0));
            std::fill_n(ds16t.reserve(tile), tile, std::uint16_t(0));
        }
    }
    backward_scratch<A> scratch() const noexcept {
        return {p_t.data(), ds_t.data(),  tail.data(),  bias.data(), delta.data(),
                dk.data(),  dv.data(),    p16.data(),   ds16.data(), ds16t.data()};
    }
};

// Part of a segment's backward (for splitting one segment over threads): keys [key_begin, key_end) and
// queries [query_begin, query_end), both starting on a block boundary (multiples of key_rows and
// query_cols); with_dq / with_dkdv select the outputs. Blocks are visited in the same order as the whole
// call, so a key's dK/dV (all queries, with_dkdv) and a query's dQ (all keys, with_dq) are bitwise the
// same as attend_backward_packed's.
struct backward_part {
    index_t key_begin = 0, key_end = 0, query_begin = 0, query_end = 0;
    bool with_dq = true, with_dkdv = true;
};

// The five products of attend_backward_packed_part, as a policy (like attend_packed's, segment_forward.hpp):
// backward_fma (here) multiplies packed accumulator-type operands with FMAs, backward_bf16 (below) bf16
// pairs with vdpbf16ps. A policy holds the packed operands and provides
//   lse, delta                           L_i and Δ_i of the queries
//   scores(j, i0, c, dim, s, dp, ld)     Sᵀ (unscaled) and dPᵀ of key rows j .. j + TR − 1 and the TC
//                                        query columns from column c of the query block at i0
//   round(scratch, key_rows, cols, dkdv, dq)  after Pᵀ and dSᵀ are final: anything the products below
//                                        read besides them (the bf16 copies)
//   dkdv(scratch, jj, i0, f, rows, dim)  dV and dK of key rows jj .. jj + TR − 1 of the block += the
//                                        products with query columns f .. rows − 1 of the query block
//   dq(scratch, ii, rows, j0, keys, dim, dq_tile)  dQ of query rows ii .. ii + TR − 1 of the block (the
//                                        rows at dq_tile, Dv apart) += dS · K over keys j0 .. j0 + keys − 1
//   group_rows                           0 (TR = the register tile's rows), or the rows of a tile unit's
//                                        group (AMX: 16; TR = group_rows), whose policy computes whole rows
//                                        of scores: score_rows(j, i0, cols, dim, s, dp, ld)
template <class A, class Arch>
struct backward_fma {
    using S = backward_shape<A, Arch>;
    static constexpr index_t QC = S::query_cols, TR = S::tile_rows;
    backward_operands<A> in;
    const A* lse;
    const A* delta;
    static constexpr index_t group_rows = 0;
    explicit backward_fma(const backward_operands<A>& operands) noexcept
        : in(operands), lse(operands.lse), delta(operands.delta) {}

    void scores(index_t j, index_t i0, index_t c, index_t dim, A* st, A* dpt, index_t ld) const noexcept {
        const index_t dvp = S::K::padded_dim(dim);
        const index_t block = (i0 / QC) * dim * QC;
        qk_tile<A, Arch, TR>(in.k + j * dvp, dvp, in.q_t + block + c, QC, dim, st, ld);
        qk_tile<A, Arch, TR>(in.v + j * dvp, dvp, in.dout_t + block + c, QC, dim, dpt, ld);
    }
    static void round(const backward_scratch<A>&, index_t, index_t, bool, bool) noexcept {}
    void dkdv(const backward_scratch<A>& scr, index_t jj, index_t i0, index_t f, index_t rows, index_t dim) const noexcept {
        const index_t dvp = S::K::padded_dim(dim), regs = dvp / S::width;
        pv_rows<A, Arch, TR>(scr.p_t + jj * QC + f, QC, in.dout + (i0 + f) * dvp, dvp, rows - f, scr.dv + jj * dvp, dvp,
                             regs);
        pv_rows<A, Arch, TR>(scr.ds_t + jj * QC + f, QC, in.q + (i0 + f) * dvp, dvp, rows - f, scr.dk + jj * dvp, dvp,
                             regs);
    }
    // a partial last tile reads a zero-padded copy of its columns
    void dq(const backward_scratch<A>& scr, index_t ii, index_t rows, index_t j0, index_t keys, index_t dim,
            A* dq_tile) const noexcept {
        const index_t dvp = S::K::padded_dim(dim);
        const A* coefficients = scr.ds_t + ii;
        index_t ld = QC;
        if (ii + TR > rows) {
            for (index_t j = 0; j < keys; ++j)
                for (index_t r = 0; r < TR; ++r) scr.tail[j * TR + r] = ii + r < rows ? scr.ds_t[j * QC + ii + r] : A(0);
            coefficients = scr.tail;
            ld = TR;
        }
        pv_rows<A, Arch, TR, true>(coefficients, ld, in.k + j0 * dvp, dvp, keys, dq_tile, dvp, dvp / S::width);
    }
};

template <class A, class Arch, class Products, class KeySink>
void attend_backward_products(const Products& in, index_t nq, index_t nk, index_t dim, A scale, bool causal,
                              index_t causal_shift, const backward_scratch<A>& scratch, A* dq, KeySink&& key_sink,
                              const backward_part& part) {
    using S = backward_shape<A, Arch>;
    using O = simd::ops<A, Arch>;
    using reg = typename O::reg;
    constexpr index_t W = S::width, QC = S::query_cols, KR = S::key_rows, TC = S::tile_cols;
    // rows of one products call: a register tile, or a tile unit's group (Products::group_rows, AMX: 16)
    constexpr index_t TR = Products::group_rows > 0 ? Products::group_rows : S::tile_rows;
    static_assert(Products::group_rows == 0 || (KR % TR == 0 && TC % TR == 0),
                  "key blocks and score tiles must hold whole row groups");
    constexpr A neg_inf = -std::numeric_limits<A>::infinity();
    const index_t dvp = S::K::padded_dim(dim);
    const reg tau = O::broadcast(scale);

    const index_t key_end = std::min(nk, part.key_end), query_end = std::min(nq, part.query_end);
    for (index_t j0 = part.key_begin; j0 < key_end; j0 += KR) {
        // causal: no query of the part sees this key block or any later one
        if (causal && !part.with_dkdv && j0 > query_end - 1 + causal_shift) break;
        const index_t kb = std::min(KR, nk - j0);
        const index_t kb_pad = S::round_up(kb, TR);
        std::fill(scratch.dk, scratch.dk + kb_pad * dvp, A(0));
        std::fill(scratch.dv, scratch.dv + kb_pad * dvp, A(0));
        // causal: the first query block with a query that sees key j0
        index_t i_first = 0;
        if (causal && j0 - causal_shift > 0) i_first = (j0 - causal_shift) / QC * QC;
        for (index_t i0 = std::max(i_first, part.query_begin); i0 < query_end; i0 += QC) {
            const index_t rows = std::min(QC, nq - i0);   // queries of this block
            const index_t cols = S::round_up(rows, TC);   // columns computed
            bool massless = false;  // a query with L = −inf: its column of P must be exactly 0
            for (index_t i = 0; i < cols; ++i) {
                const A l = i < rows ? in.lse[i0 + i] : A(0);  // padding columns are never read back
                massless = massless || l == neg_inf;
                scratch.bias[i] = l == neg_inf ? A(0) : -l;
                scratch.delta[i] = i < rows ? in.delta[i0 + i] : A(0);
            }
            // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ over register tiles; tiles wholly above the diagonal are skipped (a
            // tile unit computes whole rows: the masking below zeroes what no query sees)
            for (index_t jj = 0; jj < kb_pad; jj += TR) {
                if constexpr (Products::group_rows > 0) {
                    in.score_rows(j0 + jj, i0, cols, dim, scratch.p_t + jj * QC, scratch.ds_t + jj * QC, QC);
                    continue;
                }
                for (index_t ii = 0; ii < cols; ii += TC) {
                    if (causal && i0 + ii + TC - 1 + causal_shift < j0 + jj) continue;
                    in.scores(j0 + jj, i0, ii, dim, scratch.p_t + jj * QC + ii, scratch.ds_t + jj * QC + ii, QC);
                }
            }
            // Pᵀ = exp(τ·Sᵀ − L), dSᵀ = τ·Pᵀ·(dPᵀ − Δ); masked entries exactly 0
            for (index_t j = 0; j < kb_pad; ++j) {
                A* prow = scratch.p_t + j * QC;
                A* dsrow = scratch.ds_t + j * QC;
                index_t first = 0;  // first visible column of this key row
                if (j >= kb) first = cols;
                else if (causal) first = std::clamp<index_t>(j0 + j - causal_shift - i0, 0, cols);
                for (index_t c = first / W * W; c < cols; c += W) {
                    // τ·s − L ≤ 0 (L sums this key's weight too): the forward's softmax exp applies
                    const reg p = O::exp_softmax(O::fma(tau, O::load(prow + c), O::load(scratch.bias + c)));
                    const reg ds = O::mul(O::mul(p, tau), O::sub(O::load(dsrow + c), O::load(scratch.delta + c)));
                    O::store(prow + c, p);
                    O::store(dsrow + c, ds);
                }
                std::fill(prow, prow + first, A(0));
                std::fill(dsrow, dsrow + first, A(0));
                if (massless)
                    for (index_t i = 0; i < rows; ++i)
                        if (in.lse[i0 + i] == neg_inf) prow[i] = dsrow[i] = A(0);
            }
            in.round(scratch, kb_pad, cols, part.with_dkdv, part.with_dq);
            // dV += Pᵀ·dO and dK += dSᵀ·Q for the key block
            for (index_t jj = 0; part.with_dkdv && jj < kb_pad; jj += TR) {
                // causal: columns before the tile's first row's diagonal are zero in every row of the tile
                const index_t f = causal ? std::clamp<index_t>(j0 + jj - causal_shift - i0, 0, rows) : 0;
                if (f == rows) continue;
                in.dkdv(scratch, jj, i0, f, rows, dim);
            }
            // dQ += dS·K, read from dSᵀ
            if (!part.with_dq) continue;
            for (index_t ii = 0; ii < rows; ii += TR) {
                // causal: the tile's last query sees no key past its diagonal, dS is zero there
                const index_t keys = causal ? std::clamp<index_t>(i0 + ii + TR - 1 + causal_shift - j0 + 1, 0, kb) : kb;
                if (keys == 0) continue;
                in.dq(scratch, ii, rows, j0, keys, dim, dq + (i0 + ii) * dvp);
            }
        }
        if (part.with_dkdv) key_sink(j0, kb, static_cast<const A*>(scratch.dk), static_cast<const A*>(scratch.dv));
    }
}

// The fma products over backward_operands (the float and double path, and bfloat16 / half storage
// widened to float).
template <class A, class Arch, class KeySink>
void attend_backward_packed_part(const backward_operands<A>& in, index_t nq, index_t nk, index_t dim, A scale,
                                 bool causal, index_t causal_shift, const backward_scratch<A>& scratch, A* dq,
                                 KeySink&& key_sink, const backward_part& part) {
    attend_backward_products<A, Arch>(backward_fma<A, Arch>(in), nq, nk, dim, scale, causal, causal_shift, scratch, dq,
                                      std::forward<KeySink>(key_sink), part);
}

// Backward of nq packed queries against nk packed keys. Adds the queries' gradient to dq
// ([backward_shape::dq_rows(nq)][Dv], the caller zeroes it once; rows past nq are scratch) and, for
// every block of keys, calls key_sink(j0, count, dk_rows, dv_rows) once with the complete gradients of
// keys j0 .. j0 + count − 1 (rows Dv apart). Keys no query sees get zero rows.
template <class A, class Arch, class KeySink>
void attend_backward_packed(const backward_operands<A>& in, index_t nq, index_t nk, index_t dim, A scale, bool causal,
                            index_t causal_shift, const backward_scratch<A>& scratch, A* dq, KeySink&& key_sink) {
    backward_part whole;
    whole.key_end = nk;
    whole.query_end = nq;
    attend_backward_packed_part<A, Arch>(in, nq, nk, dim, scale, causal, causal_shift, scratch, dq,
                                         std::forward<KeySink>(key_sink), whole);
}

#if LONGNET_BF16_TILES
// ---- bf16 products (bfloat16 storage where use_bf16_dot<bfloat16, Arch>(), bf16_dot.hpp) ----------------
// The operands packed as bf16 pairs (bf16_dot.hpp's packers; one 32-bit word holds two bf16):
//   k_rows, v_rows        [rows][D2]           pairs over d     (pack_queries_bf16)   for Sᵀ and dPᵀ
//   q_t, dout_t           [blocks][D2][QC]     pairs over d     (pack_keys_bf16)      for Sᵀ and dPᵀ
//   q_pairs, dout_pairs   [rows/2][Dv]         pairs of queries (pack_values_bf16)    for dK and dV
//   k_pairs               [rows/2][Dv]         pairs of keys    (pack_values_bf16)    for dQ
// Sᵀ and dPᵀ come from exact bf16 inputs with float accumulation; Pᵀ and dSᵀ (float, as in the fma path)
// are rounded to bf16 for dV = Pᵀ·dO, dK = dSᵀ·Q and dQ = dS·K: a relative error of at most 2⁻⁹ per
// term, as flash-attention's half-precision backward. A product summing over queries starts on an even
// query (the causal zeros before it are exact zeros), one summing over an odd count of keys or queries
// masks the last pair's second value (bf16_tiles::pair_tile).
struct backward_operands_bf16 {
    const std::uint32_t* k_rows;
    const std::uint32_t* v_rows;
    const std::uint32_t* q_t;
    const std::uint32_t* dout_t;
    const std::uint32_t* q_pairs;
    const std::uint32_t* dout_pairs;
    const std::uint32_t* k_pairs;
    const float* lse;
    const float* delta;
};

template <class Arch>
struct backward_bf16 {
    using S = backward_shape<float, Arch>;
    static constexpr index_t QC = S::query_cols, KR = S::key_rows, TR = S::tile_rows;
    static_assert(S::tile_cols == 32 && S::width == 16, "backward_bf16: AVX-512 float tiles expected");
    // a dQ tile of TR query rows never reaches past the columns computed (a multiple of tile_cols)
    static_assert(S::tile_cols % TR == 0, "backward_bf16: query tiles must divide the score tile");
    backward_operands_bf16 in;
    const float* lse;
    const float* delta;
    static constexpr index_t group_rows = 0;
    explicit backward_bf16(const backward_operands_bf16& operands) noexcept
        : in(operands), lse(operands.lse), delta(operands.delta) {}

    void scores(index_t j, index_t i0, index_t c, index_t dim, float* st, float* dpt, index_t ld) const noexcept {
        const index_t d2 = (dim + 1) / 2, block = (i0 / QC) * d2 * QC;
        bf16_tiles::dot_tile<TR>(in.k_rows + j * d2, d2, in.q_t + block + c, QC, 1.0f, st, ld);
        bf16_tiles::dot_tile<TR>(in.v_rows + j * d2, d2, in.dout_t + block + c, QC, 1.0f, dpt, ld);
    }
    // Pᵀ and dSᵀ to bf16 (columns 0 .. cols − 1, a multiple of 32) for dV and dK; dS transposed for dQ's
    // key pairs (whole 16-key blocks: keys past key_rows up to the block's end get 0)
    static void round(const backward_scratch<float>& scr, index_t key_rows, index_t cols, bool dkdv, bool dq) noexcept {
        for (index_t j = 0; dkdv && j < key_rows; ++j) {
            bf16_tiles::round_rows(scr.p_t + j * QC, cols, scr.p16 + j * QC);
            bf16_tiles::round_rows(scr.ds_t + j * QC, cols, scr.ds16 + j * QC);
        }
        if (dq) bf16_tiles::transpose_round(scr.ds_t, QC, key_rows, cols, scr.ds16t, KR);
    }
    void dkdv(const backward_scratch<float>& scr, index_t jj, index_t i0, index_t f, index_t rows,
              index_t dim) const noexcept {
        const index_t dvp = S::K::padded_dim(dim), regs = dvp / 16;
        f -= f % 2;  // start on a pair of queries (i0 is even)
        bf16_tiles::pair_rows<TR>(scr.p16 + jj * QC + f, QC, in.dout_pairs + (i0 + f) / 2 * dvp, dvp, rows - f,
                                  scr.dv + jj * dvp, dvp, regs);
        bf16_tiles::pair_rows<TR>(scr.ds16 + jj * QC + f, QC, in.q_pairs + (i0 + f) / 2 * dvp, dvp, rows - f,
                                  scr.dk + jj * dvp, dvp, regs);
    }
    // rows of a partial last tile past the queries read dS of padding columns (finite: 0 unless an input
    // is not) and write only dq's scratch rows
    void dq(const backward_scratch<float>& scr, index_t ii, index_t, index_t j0, index_t keys, index_t dim,
            float* dq_tile) const noexcept {
        const index_t dvp = S::K::padded_dim(dim);
        bf16_tiles::pair_rows<TR>(scr.ds16t + ii * KR, KR, in.k_pairs + j0 / 2 * dvp, dvp, keys, dq_tile, dvp, dvp / 16);
    }
};
#endif

#if LONGNET_AMX_TILES
// The bf16 products on Intel's tile unit (bf16_tiles.hpp, AMX): backward_bf16's layouts and roundings, in
// groups of 16 rows with TDPBF16PS. A product over queries runs over whole 32-query tile rows from the
// group's first visible query rounded down (the causal zeros before a row's first query are exact zeros,
// and queries past the segment are packed as zero rows); dQ over the group's keys rounded up to 32 (dS
// is exactly 0 for keys a query does not see; the transposed dS is zeroed up to whole 32-key rows). Head
// dims a multiple of 32; the caller brackets the call with bf16_tiles::amx_begin() / amx_end().
template <class Arch>
struct backward_amx : backward_bf16<Arch> {
    using base = backward_bf16<Arch>;
    using S = typename base::S;
    static constexpr index_t QC = base::QC, KR = base::KR, group_rows = 16;
    static_assert(KR % 32 == 0, "backward_amx: key blocks of whole 32-key tile rows");
    using base::base;
    static bool fits(index_t dim) noexcept { return dim % 32 == 0; }

    void score_rows(index_t j, index_t i0, index_t cols, index_t dim, float* st, float* dpt, index_t ld) const noexcept {
        const index_t d2 = (dim + 1) / 2, block = (i0 / QC) * d2 * QC;
        bf16_tiles::amx_scores(this->in.k_rows + j * d2, d2, 16, this->in.q_t + block, QC, cols, 1.0f, st, ld);
        bf16_tiles::amx_scores(this->in.v_rows + j * d2, d2, 16, this->in.dout_t + block, QC, cols, 1.0f, dpt, ld);
    }
    static void round(const backward_scratch<float>& scr, index_t key_rows, index_t cols, bool dkdv, bool dq) noexcept {
        base::round(scr, key_rows, cols, dkdv, dq);
        if (!dq) return;
        const index_t keys32 = (key_rows + 31) / 32 * 32;
        for (index_t i = 0; i < cols; ++i) std::fill(scr.ds16t + i * KR + key_rows, scr.ds16t + i * KR + keys32, std::uint16_t(0));
    }
    void dkdv(const backward_scratch<float>& scr, index_t jj, index_t i0, index_t f, index_t rows,
              index_t dim) const noexcept {
        const index_t dvp = S::K::padded_dim(dim);
        f -= f % 32;
        const index_t n = (rows + 31) / 32 * 32 - f;  // columns up to cols (a multiple of 32): computed
        bf16_tiles::amx_pv(scr.p16 + jj * QC + f, QC, this->in.dout_pairs + (i0 + f) / 2 * dvp, dvp, n, scr.dv + jj * dvp,
                           dvp, dvp);
        bf16_tiles::amx_pv(scr.ds16 + jj * QC + f, QC, this->in.q_pairs + (i0 + f) / 2 * dvp, dvp, n, scr.dk + jj * dvp,
                           dvp, dvp);
    }
    void dq(const backward_scratch<float>& scr, index_t ii, index_t, index_t j0, index_t keys, index_t dim,
            float* dq_tile) const noexcept {
        const index_t dvp = S::K::padded_dim(dim);
        bf16_tiles::amx_pv(scr.ds16t + ii * KR, KR, this->in.k_pairs + j0 / 2 * dvp, dvp, (keys + 31) / 32 * 32, dq_tile,
                           dvp, dvp);
    }
};
#endif

LONGNET_ISA_END
}  // namespace longnet::detail
#endif  // LONGNET_DETAIL_BACKWARD_KERNEL_BODY
