// SPDX-License-Identifier: Apache-2.0
// Kernel body: compiled once per instruction-set path (detail/dispatch.hpp includes it in each path's
// namespace and target region), so no #pragma once; the toggle guard below admits it once per path.
// The compute core: dense softmax attention of packed queries against packed keys/values with an online
// (flash-style) softmax. Everything LongNet does is this kernel over other layouts: a dilated segment is
// the rows first, first + r, first + 2r, ... of a (b, h) slice (see pack.hpp), dense attention is one
// segment with r = 1.
//
// Packed formats (A = accumulator type, float or double):
//   Q  [nq_pad][D]          queries already multiplied by the scale τ; nq_pad = round_up(nq, row_tile)
//   Kt [nk_blocks][D][KB]   keys transposed per block of KB keys, zero beyond nk
//   V  [nk_blocks*KB][Dv]   values, Dv = round_up(D, width), zero padding
// Causal: query i (0-based) sees keys j <= i + causal_shift.
// Blocks of keys entirely above the diagonal are skipped, never computed.

#include "longnet/detail/dispatch.hpp"  // first: the per-path passes (includes this file)

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "longnet/detail/simd.hpp"
#include "longnet/tensor.hpp"

#if defined(LONGNET_DETAIL_SEGMENT_KERNEL_BODY) == defined(LONGNET_ISA_TOGGLE)
#ifdef LONGNET_DETAIL_SEGMENT_KERNEL_BODY
#undef LONGNET_DETAIL_SEGMENT_KERNEL_BODY
#else
#define LONGNET_DETAIL_SEGMENT_KERNEL_BODY
#endif

namespace longnet::detail {
LONGNET_ISA_BEGIN

template <class A, class Arch>
struct kernel_shape {
    using ops_t = simd::ops<A, Arch>;
    static constexpr index_t width = ops_t::width;
    // Register tiles sized to the register file: 12 accumulators + 3 operands fit AVX2's 16 registers,
    // 16 + 3 fit AVX-512's 32.
    static constexpr index_t tile_rows = simd::register_count<Arch>() >= 32 ? 8 : 6;
    static constexpr index_t qk_rows = tile_rows;      // rows of the QKᵀ register tile
    static constexpr index_t qk_cols = 2 * width;      // columns of the QKᵀ register tile
    static constexpr index_t pv_rows = tile_rows;      // rows of the PV register tile
    static constexpr index_t query_block = 8 * tile_rows;  // queries per block
    static constexpr index_t key_block = 128;          // keys per block (multiple of qk_cols)
    static_assert(key_block % qk_cols == 0, "key block must hold whole QK tiles");
    static index_t padded_dim(index_t d) noexcept { return (d + width - 1) / width * width; }
    static index_t key_blocks(index_t nk) noexcept { return (nk + key_block - 1) / key_block; }
    static index_t padded_queries(index_t nq) noexcept { return (nq + qk_rows - 1) / qk_rows * qk_rows; }
};

// S[0..R)[0..2W) = Q[0..R)[0..D) · Kt[0..D)[0..2W)   (Kt rows are ldk apart)
template <class A, class Arch, int R>
inline void qk_tile(const A* q, index_t ldq, const A* kt, index_t ldk, index_t dim, A* s, index_t lds) noexcept {
    using O = simd::ops<A, Arch>;
    using reg = typename O::reg;
    constexpr index_t W = O::width;
    reg acc0[R], acc1[R];
    for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = O::zero();
    for (index_t d = 0; d < dim; ++d) {
        const reg k0 = O::load(kt + d * ldk);
        const reg k1 = O::load(kt + d * ldk + W);
        for (int i = 0; i < R; ++i) {
            const reg qb = O::broadcast(q[i * ldq + d]);
            acc0[i] = O::fma(qb, k0, acc0[i]);
            acc1[i] = O::fma(qb, k1, acc1[i]);
        }
    }
    for (int i = 0; i < R; ++i) {
        O::store(s + i * lds, acc0[i]);
        O::store(s + i * lds + W, acc1[i]);
    }
}

// O[0..R)[cols] += P[0..R)[0..nk) · V[0..nk)[cols], cols = C registers starting at column c0. P's
// element (i, j) is p[i·ldp + j], or p[j·ldp + i] when Transposed (P stored transposed: the backward's
// dQ = dS·K reads dSᵀ without a transpose); the flag picks the strides at compile time, so both forms
// compile to the loop they would be written as.
template <class A, class Arch, int R, int C, bool Transposed = false>
inline void pv_tile(const A* p, index_t ldp, const A* v, index_t ldv, index_t nk, A* o, index_t ldo) noexcept {
    using O = simd::ops<A, Arch>;
    using reg = typename O::reg;
    constexpr index_t W = O::width;
    const index_t row_stride = Transposed ? 1 : ldp, key_stride = Transposed ? ldp : 1;
    reg acc[R][C];
    for (int i = 0; i < R; ++i)
        for (int c = 0; c < C; ++c) acc[i][c] = O::load(o + i * ldo + c * W);
    for (index_t j = 0; j < nk; ++j) {
        reg vr[C];
        for (int c = 0; c < C; ++c) vr[c] = O::load(v + j * ldv + c * W);
        const A* pj = p + j * key_stride;
        for (int i = 0; i < R; ++i) {
            const reg pb = O::broadcast(pj[i * row_stride]);
            for (int c = 0; c < C; ++c) acc[i][c] = O::fma(pb, vr[c], acc[i][c]);
        }
    }
    for (int i = 0; i < R; ++i)
        for (int c = 0; c < C; ++c) O::store(o + i * ldo + c * W, acc[i][c]);
}

// pv_tile over `regs` registers of columns, two at a time.
template <class A, class Arch, int R, bool Transposed = false>
inline void pv_rows(const A* p, index_t ldp, const A* v, index_t ldv, index_t nk, A* o, index_t ldo,
                    index_t regs) noexcept {
    constexpr index_t W = simd::ops<A, Arch>::width;
    index_t c = 0;
    for (; c + 2 <= regs; c += 2) pv_tile<A, Arch, R, 2, Transposed>(p, ldp, v + c * W, ldv, nk, o + c * W, ldo);
    if (c < regs) pv_tile<A, Arch, R, 1, Transposed>(p, ldp, v + c * W, ldv, nk, o + c * W, ldo);
}

// Scratch of one thread for attend_packed: S [query_block][key_block], O [query_block][Dv], m, l.
template <class A>
struct attend_scratch {
    A* s;
    A* o;
    A* row_max;
    A* row_sum;
    std::uint16_t* p16 = nullptr;  // [query_block][key_block] P rounded to bf16 (bf16_dot only)
};

// The products of attend_packed, as a policy: fma_dot (this file) multiplies packed accumulator-type
// operands with FMAs; bf16_dot (bf16_dot.hpp) multiplies bf16 pairs with vdpbf16ps. A policy provides
//   packed                         element type of the packed Q, Kt, V
//   query_row(q, i, dim)           packed query row i
//   key_block(kt, blk, dim)        packed Kt block blk
//   value_rows(v, j0, dim)         packed V from key j0 (j0 a multiple of key_block)
//   qk(q_rows, ktb, dim, s)        S[0..qk_rows)[0..qk_cols) = τ·Q·Kᵀ (Kt block columns from ktb)
//   round_p(srow, cols, i, scr)    after the softmax of row i: P row ready for pv (bf16: rounded copy)
//   pv<R>(scr, i, vb, dim, k0, k1, o)   O[i..i+R) += P[i..i+R)[k0..k1) · V[k0..k1)
//   key_granule                    k0 of pv is a multiple of it (bf16: keys come in pairs)
//   group_rows                     0, or the rows of a tile unit's group (AMX: 16), whose policy also has
//     scores(q_rows, rows, ktb, cols, dim, s)   S[0..rows)[0..cols) (rows a multiple of group_rows, cols of
//                                               qk_cols) in one call, every tile (the softmax masks), and
//     pv_group(scr, i, vb, dim, n, o)           O[i..i+group_rows) += P·V over keys 0 .. n − 1 (n a multiple
//                                               of group_key_granule; P and V finite there)
template <class A, class Arch>
struct fma_dot {
    using K = kernel_shape<A, Arch>;
    using packed = A;
    static const A* query_row(const A* q, index_t i, index_t dim) noexcept { return q + i * dim; }
    static const A* key_block(const A* kt, index_t blk, index_t dim) noexcept { return kt + blk * dim * K::key_block; }
    static const A* value_rows(const A* v, index_t j0, index_t dim) noexcept { return v + j0 * K::padded_dim(dim); }
    // Q was packed pre-multiplied by τ (pack_queries)
    static void qk(const A* q, const A* ktb, index_t dim, A* s) noexcept {
        qk_tile<A, Arch, K::qk_rows>(q, dim, ktb, K::key_block, dim, s, K::key_block);
    }
    static void round_p(A*, index_t, index_t, const attend_scratch<A>&) noexcept {}
    static constexpr index_t key_granule = 1;
    static constexpr index_t group_rows = 0;
    template <int R>
    static void pv(const attend_scratch<A>& scr, index_t i, const A* vb, index_t dim, index_t k0, index_t k1,
                   A* o) noexcept {
        const index_t dv = K::padded_dim(dim);
        pv_rows<A, Arch, R>(scr.s + i * K::key_block + k0, K::key_block, vb + k0 * dv, dv, k1 - k0, o, dv, dv / K::width);
    }
};

// Attend nq packed queries to nk packed keys. For every query i calls sink(i, o_row, lse) with the
// normalised output row (Dv values, the first D meaningful) and its log-sum-exp. `pad_keys` extra keys
// with logit 0 and value 0 join every query's softmax (torchscale zero_pad parity; 0 otherwise).
template <class A, class Arch, class Dot = fma_dot<A, Arch>, class Sink>
void attend_packed(const typename Dot::packed* q, index_t nq, const typename Dot::packed* kt,
                   const typename Dot::packed* v, index_t nk, index_t dim, bool causal, index_t causal_shift,
                   index_t pad_keys, const attend_scratch<A>& scratch, Sink&& sink, const Dot& dot = Dot{}) {
    using K = kernel_shape<A, Arch>;
    using O = simd::ops<A, Arch>;
    using reg = typename O::reg;
    constexpr index_t W = K::width, QB = K::query_block, KB = K::key_block;
    constexpr A neg_inf = -std::numeric_limits<A>::infinity();
    const index_t dv = K::padded_dim(dim);
    const index_t dv_regs = dv / W;
    A* const s = scratch.s;
    A* const o = scratch.o;
    A* const row_max = scratch.row_max;
    A* const row_sum = scratch.row_sum;

    for (index_t i0 = 0; i0 < nq; i0 += QB) {
        const index_t rows = std::min(QB, nq - i0);
        const index_t rows_pad = (rows + K::tile_rows - 1) / K::tile_rows * K::tile_rows;
        std::fill(o, o + rows_pad * dv, A(0));
        std::fill(row_max, row_max + rows_pad, neg_inf);
        std::fill(row_sum, row_sum + rows_pad, A(0));
        // keys this query block can see: causal stops at the last row's diagonal
        const index_t key_end = causal ? std::min(nk, i0 + rows - 1 + causal_shift + 1) : nk;
        for (index_t j0 = 0; j0 < key_end; j0 += KB) {
            const index_t kb = std::min(KB, key_end - j0);
            const index_t kb_cols = (kb + K::qk_cols - 1) / K::qk_cols * K::qk_cols;
            const auto* ktb = dot.key_block(kt, j0 / KB, dim);
            // S = Q·Kᵀ over register tiles; causal tiles wholly above the diagonal are skipped
            if constexpr (Dot::group_rows > 0) {
                dot.scores(dot.query_row(q, i0, dim), (rows_pad + Dot::group_rows - 1) / Dot::group_rows * Dot::group_rows,
                           ktb, kb_cols, dim, s);
            } else {
                for (index_t ii = 0; ii < rows_pad; ii += K::qk_rows) {
                    const index_t last_visible = i0 + ii + K::qk_rows - 1 + causal_shift;  // for the tile's last row
                    for (index_t jj = 0; jj < kb_cols; jj += K::qk_cols) {
                        if (causal && j0 + jj > last_visible) break;
                        dot.qk(dot.query_row(q, i0 + ii, dim), ktb + jj, dim, s + ii * KB + jj);
                    }
                }
            }
            // online softmax per row: mask, new max, rescale, P = exp(S − max)
            for (index_t i = 0; i < rows_pad; ++i) {
                A* srow = s + i * KB;
                index_t visible = kb;  // keys j0 .. j0+visible-1 are seen by this row
                if (i >= rows) visible = 0;
                else if (causal) visible = std::clamp<index_t>(i0 + i + causal_shift - j0 + 1, 0, kb);
                if (visible == 0) {
                    std::fill(srow, srow + kb_cols, A(0));
                    dot.round_p(srow, kb_cols, i, scratch);
                    continue;
                }
                std::fill(srow + visible, srow + kb_cols, neg_inf);
                const index_t nregs = (visible + W - 1) / W;
                reg mx = O::load(srow);
                for (index_t c = 1; c < nregs; ++c) mx = O::max(mx, O::load(srow + c * W));
                const A m_old = row_max[i];
                const A m_new = std::max(m_old, O::reduce_max(mx));
                const reg mb = O::broadcast(m_new);
                reg sum = O::zero();
                for (index_t c = 0; c < nregs; ++c) {
                    const reg p = O::exp_softmax(O::sub(O::load(srow + c * W), mb));
                    O::store(srow + c * W, p);
                    sum = O::add(sum, p);
                }
                std::fill(srow + visible, srow + kb_cols, A(0));  // masked keys get exactly zero weight
                if (m_old != m_new) {  // rescale acc: new row max
                    const A alpha = std::exp(m_old - m_new);
                    row_sum[i] *= alpha;
                    const reg ab = O::broadcast(alpha);
                    A* orow = o + i * dv;
                    for (index_t c = 0; c < dv_regs; ++c) O::store(orow + c * W, O::mul(O::load(orow + c * W), ab));
                }
                row_max[i] = m_new;
                row_sum[i] += O::reduce_add(sum);
                dot.round_p(srow, kb_cols, i, scratch);
            }
            // O += P·V
            const auto* vb = dot.value_rows(v, j0, dim);
            if constexpr (Dot::group_rows > 0) {
                // groups of group_rows rows on the tile unit: the keys every row of the group sees, rounded
                // down to the unit's key granule (all kb keys, rounded up, without causal: P is 0 and V is
                // packed as 0 past them), then the rest of each row's keys row by row
                constexpr index_t G = Dot::group_rows, KG = Dot::group_key_granule;
                for (index_t ii = 0; ii < rows_pad; ii += G) {
                    const index_t shared =
                        causal ? std::clamp<index_t>(i0 + ii + causal_shift - j0 + 1, 0, kb) / KG * KG
                               : (kb + KG - 1) / KG * KG;
                    if (shared > 0) dot.pv_group(scratch, ii, vb, dim, shared, o + ii * dv);
                    if (!causal) continue;
                    for (index_t r = ii; r < std::min(ii + G, rows); ++r) {
                        const index_t own = std::clamp<index_t>(i0 + r + causal_shift - j0 + 1, 0, kb);
                        if (own > shared) dot.template pv<1>(scratch, r, vb, dim, shared, own, o + r * dv);
                    }
                }
                continue;
            }
            for (index_t ii = 0; ii < rows_pad; ii += K::pv_rows) {
                if (!causal) {
                    dot.template pv<K::pv_rows>(scratch, ii, vb, dim, 0, kb, o + ii * dv);
                    continue;
                }
                // causal: the keys every row of the tile sees as one tile (rounded down to the policy's key
                // granule), then the diagonal row by row, each row up to its own last key. Never P = 0 times
                // a value a row must not see: 0·NaN would make that row NaN.
                const index_t shared = std::clamp<index_t>(i0 + ii + causal_shift - j0 + 1, 0, kb) / Dot::key_granule *
                                       Dot::key_granule;
                if (shared > 0) dot.template pv<K::pv_rows>(scratch, ii, vb, dim, 0, shared, o + ii * dv);
                for (index_t r = ii; r < std::min(ii + K::pv_rows, rows); ++r) {
                    const index_t own = std::clamp<index_t>(i0 + r + causal_shift - j0 + 1, 0, kb);
                    if (own > shared) dot.template pv<1>(scratch, r, vb, dim, shared, own, o + r * dv);
                }
            }
        }
        // finish: fold in zero-padding keys, normalise, hand each row to the sink
        for (index_t i = 0; i < rows; ++i) {
            A m = row_max[i], l = row_sum[i];
            A* orow = o + i * dv;
            if (pad_keys > 0) {  // pad_keys keys with logit 0 and value 0
                const A m_new = std::max(m, A(0));
                const A alpha = std::exp(m - m_new);
                for (index_t d = 0; d < dv; ++d) orow[d] *= alpha;
                l = l * alpha + static_cast<A>(pad_keys) * std::exp(-m_new);
                m = m_new;
            }
            const A inv = A(1) / l;
            for (index_t d = 0; d < dv; ++d) orow[d] *= inv;
            sink(i0 + i, static_cast<const A*>(orow), m + std::log(l));
        }
    }
}

LONGNET_ISA_END
}  // namespace longnet::detail
#endif  // LONGNET_DETAIL_SEGMENT_KERNEL_BODY
