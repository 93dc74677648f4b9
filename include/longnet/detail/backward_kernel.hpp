// SPDX-License-Identifier: Apache-2.0
// Kernel body: compiled once per instruction-set path (detail/kernels.hpp includes it in each path's
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
// pv_tile for dV and dK, its transposed-coefficient twin for dQ). Causal: query i sees key j iff
// j <= i + causal_shift; tiles wholly above the diagonal are skipped, tiles crossing it stop there.

#include "longnet/detail/kernels.hpp"  // first: the per-path passes (includes this file)

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "longnet/detail/segment_kernel.hpp"
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

// O[0..R)[cols] += Pᵀ-view · V: like pv_tile, but the coefficient of row i and key j is pt[j·ldp + i]
// (P stored transposed), so dQ = dS·K is read straight from dSᵀ without a transpose.
template <class A, class Arch, int R, int C>
inline void pv_tile_transposed(const A* pt, index_t ldp, const A* v, index_t ldv, index_t nk, A* o, index_t ldo) noexcept {
    using O = simd::ops<A, Arch>;
    using reg = typename O::reg;
    constexpr index_t W = O::width;
    reg acc[R][C];
    for (int i = 0; i < R; ++i)
        for (int c = 0; c < C; ++c) acc[i][c] = O::load(o + i * ldo + c * W);
    for (index_t j = 0; j < nk; ++j) {
        reg vr[C];
        for (int c = 0; c < C; ++c) vr[c] = O::load(v + j * ldv + c * W);
        const A* pj = pt + j * ldp;
        for (int i = 0; i < R; ++i) {
            const reg pb = O::broadcast(pj[i]);
            for (int c = 0; c < C; ++c) acc[i][c] = O::fma(pb, vr[c], acc[i][c]);
        }
    }
    for (int i = 0; i < R; ++i)
        for (int c = 0; c < C; ++c) O::store(o + i * ldo + c * W, acc[i][c]);
}

template <class A, class Arch, int R>
inline void pv_rows_transposed(const A* pt, index_t ldp, const A* v, index_t ldv, index_t nk, A* o, index_t ldo,
                               index_t regs) noexcept {
    constexpr index_t W = simd::ops<A, Arch>::width;
    index_t c = 0;
    for (; c + 2 <= regs; c += 2) pv_tile_transposed<A, Arch, R, 2>(pt, ldp, v + c * W, ldv, nk, o + c * W, ldo);
    if (c < regs) pv_tile_transposed<A, Arch, R, 1>(pt, ldp, v + c * W, ldv, nk, o + c * W, ldo);
}

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
};

// Owns a backward_scratch for head dim `dim`.
template <class A, class Arch>
struct backward_scratch_buffers {
    using S = backward_shape<A, Arch>;
    aligned_buffer<A> p_t, ds_t, tail, bias, delta, dk, dv;
    explicit backward_scratch_buffers(index_t dim) {
        const index_t dvp = S::K::padded_dim(dim);
        const auto tile = static_cast<std::size_t>(S::key_rows * S::query_cols);
        std::fill_n(p_t.reserve(tile), tile, A(0));  // finite from the start: skipped tiles are read, then zeroed
        std::fill_n(ds_t.reserve(tile), tile, A(0));
        tail.reserve(static_cast<std::size_t>(S::key_rows * S::tile_rows));
        bias.reserve(static_cast<std::size_t>(S::query_cols));
        delta.reserve(static_cast<std::size_t>(S::query_cols));
        dk.reserve(static_cast<std::size_t>(S::key_rows * dvp));
        dv.reserve(static_cast<std::size_t>(S::key_rows * dvp));
    }
    backward_scratch<A> scratch() const noexcept {
        return {p_t.data(), ds_t.data(), tail.data(), bias.data(), delta.data(), dk.data(), dv.data()};
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

template <class A, class Arch, class KeySink>
void attend_backward_packed_part(const backward_operands<A>& in, index_t nq, index_t nk, index_t dim, A scale,
                                 bool causal, index_t causal_shift, const backward_scratch<A>& scratch, A* dq,
                                 KeySink&& key_sink, const backward_part& part) {
    using S = backward_shape<A, Arch>;
    using O = simd::ops<A, Arch>;
    using reg = typename O::reg;
    constexpr index_t W = S::width, QC = S::query_cols, KR = S::key_rows, TR = S::tile_rows, TC = S::tile_cols;
    constexpr A neg_inf = -std::numeric_limits<A>::infinity();
    const index_t dvp = S::K::padded_dim(dim);
    const index_t dv_regs = dvp / W;
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
            const A* q_t = in.q_t + (i0 / QC) * dim * QC;
            const A* dout_t = in.dout_t + (i0 / QC) * dim * QC;
            // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ over register tiles; tiles wholly above the diagonal are skipped
            for (index_t jj = 0; jj < kb_pad; jj += TR)
                for (index_t ii = 0; ii < cols; ii += TC) {
                    if (causal && i0 + ii + TC - 1 + causal_shift < j0 + jj) continue;
                    qk_tile<A, Arch, TR>(in.k + (j0 + jj) * dvp, dvp, q_t + ii, QC, dim, scratch.p_t + jj * QC + ii, QC);
                    qk_tile<A, Arch, TR>(in.v + (j0 + jj) * dvp, dvp, dout_t + ii, QC, dim, scratch.ds_t + jj * QC + ii, QC);
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
            // dV += Pᵀ·dO and dK += dSᵀ·Q for the key block
            for (index_t jj = 0; part.with_dkdv && jj < kb_pad; jj += TR) {
                // causal: columns before the tile's first row's diagonal are zero in every row of the tile
                const index_t f = causal ? std::clamp<index_t>(j0 + jj - causal_shift - i0, 0, rows) : 0;
                if (f == rows) continue;
                pv_rows<A, Arch, TR>(scratch.p_t + jj * QC + f, QC, in.dout + (i0 + f) * dvp, dvp, rows - f,
                                     scratch.dv + jj * dvp, dvp, dv_regs);
                pv_rows<A, Arch, TR>(scratch.ds_t + jj * QC + f, QC, in.q + (i0 + f) * dvp, dvp, rows - f,
                                     scratch.dk + jj * dvp, dvp, dv_regs);
            }
            // dQ += dS·K, read from dSᵀ; a partial last tile reads a zero-padded copy of its columns
            if (!part.with_dq) continue;
            for (index_t ii = 0; ii < rows; ii += TR) {
                // causal: the tile's last query sees no key past its diagonal, dS is zero there
                const index_t keys = causal ? std::clamp<index_t>(i0 + ii + TR - 1 + causal_shift - j0 + 1, 0, kb) : kb;
                if (keys == 0) continue;
                const A* coefficients = scratch.ds_t + ii;
                index_t ld = QC;
                if (ii + TR > rows) {
                    for (index_t j = 0; j < keys; ++j)
                        for (index_t r = 0; r < TR; ++r)
                            scratch.tail[j * TR + r] = ii + r < rows ? scratch.ds_t[j * QC + ii + r] : A(0);
                    coefficients = scratch.tail;
                    ld = TR;
                }
                pv_rows_transposed<A, Arch, TR>(coefficients, ld, in.k + j0 * dvp, dvp, keys, dq + (i0 + ii) * dvp, dvp,
                                                dv_regs);
            }
        }
        if (part.with_dkdv) key_sink(j0, kb, static_cast<const A*>(scratch.dk), static_cast<const A*>(scratch.dv));
    }
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

LONGNET_ISA_END
}  // namespace longnet::detail
#endif  // LONGNET_DETAIL_BACKWARD_KERNEL_BODY
