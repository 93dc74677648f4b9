// SPDX-License-Identifier: Apache-2.0
// Kernel body: compiled once per instruction-set path (detail/dispatch.hpp includes it in each path's
// namespace and target region), so no #pragma once; the toggle guard below admits it once per path.
// The backward driver (SPEC §6). Branches run one after another in the order given; inside a branch
// one task per (batch, head, segment) packs the segment's selected rows, computes L_i and Δ_i, runs
// attend_backward_packed and adds the segment's dQ, dK, dV into the gradient rows it selected. Within a
// branch a row belongs to exactly one task, so no two threads ever add into the same row, and each row
// receives the branches' contributions in branch order: results are bitwise identical for any thread
// count. With fewer segments than threads (exact mode), a segment is split into key-range tasks (dK, dV)
// and query-range tasks (dQ), which recompute P and dS (≈ 1.4× the flops) and give the same bits.
//
// Accumulation: float and double gradients are accumulated directly in the caller's dq/dk/dv (in their
// own precision, which is accum_t). bfloat16 / half gradients are accumulated in float buffers of the
// gradients' size and rounded to storage once at the end (one rounding per element).
// Memory: per thread O(segment rows × D) of packed operands; no N×N and no per-branch full-size buffers.

#include "longnet/detail/dispatch.hpp"  // first: the per-path passes (includes this file)

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "longnet/detail/segment_backward.hpp"
#include "longnet/detail/bf16_dot.hpp"
#include "longnet/detail/forward_driver.hpp"
#include "longnet/detail/pack.hpp"
#include "longnet/detail/segment_forward.hpp"
#include "longnet/detail/simd.hpp"
#include "longnet/detail/threading.hpp"
#include "longnet/detail/workspace.hpp"
#include "longnet/numeric.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"

#if defined(LONGNET_DETAIL_BACKWARD_BODY) == defined(LONGNET_ISA_TOGGLE)
#ifdef LONGNET_DETAIL_BACKWARD_BODY
#undef LONGNET_DETAIL_BACKWARD_BODY
#else
#define LONGNET_DETAIL_BACKWARD_BODY
#endif

namespace longnet::detail {
LONGNET_ISA_BEGIN

// grad_mode (which Δ the backward uses) is the public enum of options.hpp: it crosses the dispatch as is.

// Per-thread state of the backward for segments of up to max_rows selected rows.
template <class A, class Arch>
struct backward_workspace {
    using S = backward_shape<A, Arch>;
    using K = kernel_shape<A, Arch>;
    aligned_buffer<A> q_t, q, dout_t, dout, k, v, lse, delta, dq;
    // bf16 products (backward_bf16): the pair layouts of backward_operands_bf16 instead of q_t .. v
    aligned_buffer<std::uint32_t> k_rows, v_rows, q_t_pairs, dout_t_pairs, q_pairs, dout_pairs, k_pairs;
    backward_scratch_buffers<A, Arch> tiles;
    std::optional<forward_workspace<A, Arch>> forward;  // branch outputs (merge weights held constant only)

    backward_workspace(index_t max_rows, index_t dim, bool need_forward, bool bf16 = false) : tiles(dim, bf16) {
        const index_t dvp = K::padded_dim(dim);
        lse.reserve(static_cast<std::size_t>(max_rows));
        delta.reserve(static_cast<std::size_t>(max_rows));
        dq.reserve(static_cast<std::size_t>(S::dq_rows(max_rows) * dvp));
        if (need_forward) forward.emplace(max_rows, max_rows, dim, bf16);
        if (bf16) {
            using P = bf16_shape<Arch>;
            const auto rows = static_cast<std::size_t>(P::query_words(max_rows, dim));
            const auto transposed = static_cast<std::size_t>(P::key_words(max_rows, dim));
            const auto pairs = static_cast<std::size_t>(P::value_words(max_rows, dim));
            k_rows.reserve(rows);
            v_rows.reserve(rows);
            q_t_pairs.reserve(transposed);
            dout_t_pairs.reserve(transposed);
            q_pairs.reserve(pairs);
            dout_pairs.reserve(pairs);
            k_pairs.reserve(pairs);
            return;
        }
        const auto transposed = static_cast<std::size_t>(K::key_blocks(max_rows) * K::key_block * dim);
        q_t.reserve(transposed);
        dout_t.reserve(transposed);
        q.reserve(static_cast<std::size_t>(S::query_buffer_rows(max_rows) * dvp));
        dout.reserve(static_cast<std::size_t>(S::query_buffer_rows(max_rows) * dvp));
        k.reserve(static_cast<std::size_t>(S::key_buffer_rows(max_rows) * dvp));
        v.reserve(static_cast<std::size_t>(S::key_buffer_rows(max_rows) * dvp));
    }
};

// Zero the rows of K/V past the packers' output up to the buffer's rows (tiles read whole row groups).
template <class A, class Arch>
inline void zero_key_tail(A* rows, index_t packed_rows, index_t nk, index_t dim) noexcept {
    using S = backward_shape<A, Arch>;
    const index_t dvp = S::K::padded_dim(dim);
    const index_t written = std::max(nk, S::K::key_blocks(nk) * S::K::key_block);
    std::fill(rows + written * dvp, rows + packed_rows * dvp, A(0));
}

// The operands of one backward_segment call, named (flash-attention's Flash_bwd_params in miniature): the
// queries are rows sel_q of q (with their output gradients in dout; batch bq, head hq), with L_i and Δ_i
// in lse and delta (sel_q.count each); the keys are rows sel_k of k, v (batch bk, head hk). shift: the
// queries' causal offset against the keys (key j is visible to query i when j <= i + shift). bf16_path:
// bf16 pairs for backward_bf16 (bfloat16 storage where use_bf16_dot holds), accumulator rows otherwise.
template <class T>
struct segment_backward_args {
    using A = accum_t<T>;
    tensor_view<const T> q, dout;
    index_t bq = 0, hq = 0;
    row_selection sel_q;
    const A* lse = nullptr;
    const A* delta = nullptr;
    tensor_view<const T> k, v;
    index_t bk = 0, hk = 0;
    row_selection sel_k;
    index_t dim = 0;
    A scale = 0;
    bool causal = false;
    index_t shift = 0;
    bool bf16_path = false;
};

// One call of the backward kernel: packs the queries and keys of `a` in the layout of the products, zeroes
// ws.dq and runs attend_backward_products over `part`: ws.dq gets the queries' dQ rows (Dv apart),
// key_sink(j0, count, dk_rows, dv_rows) each key block's dK and dV. Shared by the single-process and the
// distributed backward, so both run the same packing and the same products.
template <class T, class Arch, class KeySink>
void backward_segment(backward_workspace<accum_t<T>, Arch>& ws, const segment_backward_args<T>& a, KeySink&& key_sink,
                      const backward_part& part) {
    using A = accum_t<T>;
    using S = backward_shape<A, Arch>;
    const index_t nq = a.sel_q.count, nk = a.sel_k.count, dvp = S::K::padded_dim(a.dim);
    A* dq_rows = ws.dq.data();
    std::fill(dq_rows, dq_rows + S::dq_rows(nq) * dvp, A(0));
#if LONGNET_BF16_TILES
    if constexpr (use_bf16_dot<T, Arch>()) {
        if (a.bf16_path) {
            pack_queries_bf16<Arch>(a.k, a.bk, a.hk, a.sel_k, 0, nk, ws.k_rows.data());
            pack_queries_bf16<Arch>(a.v, a.bk, a.hk, a.sel_k, 0, nk, ws.v_rows.data());
            pack_keys_bf16<Arch>(a.q, a.bq, a.hq, a.sel_q, nq, ws.q_t_pairs.data());
            pack_keys_bf16<Arch>(a.dout, a.bq, a.hq, a.sel_q, nq, ws.dout_t_pairs.data());
            pack_values_bf16<Arch>(a.q, a.bq, a.hq, a.sel_q, nq, ws.q_pairs.data());
            pack_values_bf16<Arch>(a.dout, a.bq, a.hq, a.sel_q, nq, ws.dout_pairs.data());
            pack_values_bf16<Arch>(a.k, a.bk, a.hk, a.sel_k, nk, ws.k_pairs.data());
            const backward_operands_bf16 operands{ws.k_rows.data(),  ws.v_rows.data(),     ws.q_t_pairs.data(),
                                                  ws.dout_t_pairs.data(), ws.q_pairs.data(), ws.dout_pairs.data(),
                                                  ws.k_pairs.data(), a.lse,                  a.delta};
#if LONGNET_AMX_TILES
            if (backward_amx<Arch>::fits(a.dim) && bf16_amx_switch().load(std::memory_order_relaxed)) {
                bf16_tiles::amx_begin();
                attend_backward_products<A, Arch>(backward_amx<Arch>(operands), nq, nk, a.dim, a.scale, a.causal, a.shift,
                                                  ws.tiles.scratch(), dq_rows, std::forward<KeySink>(key_sink), part);
                bf16_tiles::amx_end();
                return;
            }
#endif
            attend_backward_products<A, Arch>(backward_bf16<Arch>(operands), nq, nk, a.dim, a.scale, a.causal, a.shift,
                                              ws.tiles.scratch(), dq_rows, std::forward<KeySink>(key_sink), part);
            return;
        }
    }
#endif
    pack_keys<A, Arch>(a.q, a.bq, a.hq, a.sel_q, nq, ws.q_t.data());
    pack_values<A, Arch>(a.q, a.bq, a.hq, a.sel_q, nq, ws.q.data());
    pack_keys<A, Arch>(a.dout, a.bq, a.hq, a.sel_q, nq, ws.dout_t.data());
    pack_values<A, Arch>(a.dout, a.bq, a.hq, a.sel_q, nq, ws.dout.data());
    pack_values<A, Arch>(a.k, a.bk, a.hk, a.sel_k, nk, ws.k.data());
    pack_values<A, Arch>(a.v, a.bk, a.hk, a.sel_k, nk, ws.v.data());
    zero_key_tail<A, Arch>(ws.k.data(), S::key_buffer_rows(nk), nk, a.dim);
    zero_key_tail<A, Arch>(ws.v.data(), S::key_buffer_rows(nk), nk, a.dim);
    const backward_operands<A> operands{ws.q_t.data(), ws.q.data(), ws.dout_t.data(), ws.dout.data(),
                                        ws.k.data(),   ws.v.data(), a.lse,               a.delta};
    attend_backward_packed_part<A, Arch>(operands, nq, nk, a.dim, a.scale, a.causal, a.shift, ws.tiles.scratch(), dq_rows,
                                         std::forward<KeySink>(key_sink), part);
}

// Δ_i = dO_i · o (o: the merged output row, or a branch's own output row from the forward kernel), in the
// order every backward uses: dO widened to A, times o widened to A, summed from 0 over d.
template <class A, class T, class O>
inline A output_delta(const T* dout_row, const O* o_row, index_t dim) noexcept {
    A s = 0;
    for (index_t d = 0; d < dim; ++d) s += to_accum<A>(dout_row[d]) * to_accum<A>(o_row[d]);
    return s;
}

// dq, dk, dv: accumulate views of A (the caller's gradients for float/double, own float buffers else),
// zeroed by the caller.
template <class T, class Arch = isa_arch>
void backward_accumulate(tensor_view<const T> q, tensor_view<const T> k, tensor_view<const T> v,
                         tensor_view<const T> out, lse_view<const accum_t<T>> lse, tensor_view<const T> dout,
                         tensor_view<accum_t<T>> dq, tensor_view<accum_t<T>> dk, tensor_view<accum_t<T>> dv,
                         const dilated_options& opt, grad_mode mode) {
    using A = accum_t<T>;
    using S = backward_shape<A, Arch>;
    const index_t B = q.batch(), N = q.seq_len(), H = q.heads(), D = q.head_dim();
    if (B == 0 || N == 0 || H == 0) return;
    const A scale = static_cast<A>(effective_scale(opt.scale, D));
    const index_t dvp = S::K::padded_dim(D);
    const bool own_output = mode == grad_mode::stop_grad_weights;

    // bfloat16 storage on the bf16 dot-product path (bf16_dot.hpp): read once, so one call never mixes paths
    const bool bf16_path = bf16_dot_active<T, Arch>();
    const int threads = max_threads();
    for (const branch& br : opt.branches) {
        const branch_geometry geo(br, N);
        const index_t pad_keys_full = (opt.tail == tail_mode::zero_pad && !opt.causal) ? geo.max_selected : 0;
        const index_t segment_tasks = B * H * geo.segments;
        // Too few segments to keep every thread busy (dense attention, few heads): split each segment into
        // `splits` key ranges (dK, dV) and as many query ranges (dQ). Each part recomputes P and dS, and
        // visits blocks in the whole-segment order, so results do not depend on the split. Exact mode only
        // (the merge-weights-constant Δ needs the branch's forward over the whole segment).
        index_t splits = 1;
        if (!own_output && segment_tasks < 2 * threads) {
            const index_t key_blocks = (geo.max_selected + S::key_rows - 1) / S::key_rows;
            const index_t query_blocks = (geo.max_selected + S::query_cols - 1) / S::query_cols;
            splits = std::max<index_t>(1, std::min({(4 * threads + segment_tasks - 1) / segment_tasks, key_blocks, query_blocks}));
        }
        const index_t tasks_per_segment = splits == 1 ? 1 : 2 * splits;  // key parts, then query parts
        parallel_tasks(
            segment_tasks * tasks_per_segment,
            [&] { return backward_workspace<A, Arch>(geo.max_selected, D, own_output, bf16_path); },
            [&](backward_workspace<A, Arch>& ws, index_t task) {
                const index_t part_index = task % tasks_per_segment;
                const index_t t = task / tasks_per_segment;
                const index_t g = t % geo.segments;
                const index_t h = (t / geo.segments) % H;
                const index_t b = t / geo.segments / H;
                const row_selection sel = geo.select(g, head_offset(opt.offsets, h, H, geo.dilation), N);
                const index_t n = sel.count;
                if (n == 0) return;
                backward_part part;
                part.key_end = n;
                part.query_end = n;
                if (splits > 1) {
                    const bool key_part = part_index < splits;
                    const index_t c = key_part ? part_index : part_index - splits;
                    const index_t block = key_part ? S::key_rows : S::query_cols;
                    const index_t per_part = ((n + block - 1) / block + splits - 1) / splits * block;
                    const index_t begin = c * per_part, end = std::min(n, begin + per_part);
                    if (begin >= end) return;
                    if (key_part) part.key_begin = begin, part.key_end = end, part.with_dq = false;
                    else part.query_begin = begin, part.query_end = end, part.with_dkdv = false;
                }
                A* lse_rows = ws.lse.data();
                A* delta = ws.delta.data();
                for (index_t i = 0; i < n; ++i) lse_rows[i] = lse(b, sel.position(i), h);
                if (!own_output) {
                    // Δ_i = dO_i · O_i with the merged output
                    for (index_t i = 0; i < n; ++i)
                        delta[i] = output_delta<A>(dout.row(b, sel.position(i), h), out.row(b, sel.position(i), h), D);
                } else {
                    // Δ_i = dO_i · o_i with the branch's own output o_i, recomputed by the forward kernel (on the
                    // products the backward uses)
                    const index_t pad_keys = pad_keys_full > 0 ? pad_keys_full - n : 0;
                    attend_selection<T, Arch>(*ws.forward, q, k, v, b, h, sel, 0, n, sel, n, scale, opt.causal, 0,
                                              pad_keys, bf16_path, [&](index_t i, const A* o_row, A) {
                                                  delta[i] = output_delta<A>(dout.row(b, sel.position(i), h), o_row, D);
                                              });
                }
                segment_backward_args<T> args;
                args.q = q, args.dout = dout, args.bq = b, args.hq = h, args.sel_q = sel;
                args.lse = lse_rows, args.delta = delta;
                args.k = k, args.v = v, args.bk = b, args.hk = h, args.sel_k = sel;
                args.dim = D, args.scale = scale, args.causal = opt.causal, args.shift = 0, args.bf16_path = bf16_path;
                backward_segment<T, Arch>(
                    ws, args,
                    [&](index_t j0, index_t count, const A* dk_rows, const A* dv_rows) {
                        for (index_t j = 0; j < count; ++j) {  // scatter-add to the rows they came from
                            const index_t p = sel.position(j0 + j);
                            A* dk_out = dk.row(b, p, h);
                            A* dv_out = dv.row(b, p, h);
                            for (index_t d = 0; d < D; ++d) dk_out[d] += dk_rows[j * dvp + d];
                            for (index_t d = 0; d < D; ++d) dv_out[d] += dv_rows[j * dvp + d];
                        }
                    },
                    part);
                const A* dq_rows = ws.dq.data();
                if (!part.with_dq) return;
                for (index_t i = part.query_begin; i < part.query_end; ++i) {
                    A* dq_out = dq.row(b, sel.position(i), h);
                    for (index_t d = 0; d < D; ++d) dq_out[d] += dq_rows[i * dvp + d];
                }
            });
    }
}

// Fill every row of the [B, N, H, D] views with value (parallel over rows).
template <class T>
void fill_rows(tensor_view<T> x, T value) {
    const index_t B = x.batch(), N = x.seq_len(), H = x.heads(), D = x.head_dim();
    constexpr index_t rows_per_task = 4096;
    const index_t tasks = (B * N + rows_per_task - 1) / rows_per_task;
    parallel_tasks(
        tasks, [] { return 0; },
        [&](int&, index_t t) {
            for (index_t bn = t * rows_per_task; bn < std::min(B * N, (t + 1) * rows_per_task); ++bn)
                for (index_t h = 0; h < H; ++h) std::fill(x.row(bn / N, bn % N, h), x.row(bn / N, bn % N, h) + D, value);
        });
}

// The public backward: overwrites dq, dk, dv with the gradient of sum(out ∘ dout).
template <class T, class Arch = isa_arch>
void backward(tensor_view<const T> q, tensor_view<const T> k, tensor_view<const T> v, tensor_view<const T> out,
              lse_view<const accum_t<T>> lse, tensor_view<const T> dout, tensor_view<T> dq, tensor_view<T> dk,
              tensor_view<T> dv, const dilated_options& opt, grad_mode mode) {
    using A = accum_t<T>;
    const index_t B = q.batch(), N = q.seq_len(), H = q.heads(), D = q.head_dim();
    if (B == 0 || N == 0 || H == 0) return;
    if constexpr (std::is_same_v<T, A>) {
        fill_rows<T>(dq, T(0));
        fill_rows<T>(dk, T(0));
        fill_rows<T>(dv, T(0));
        backward_accumulate<T, Arch>(q, k, v, out, lse, dout, dq, dk, dv, opt, mode);
    } else {
        // 16-bit storage: accumulate the branches in float, round once
        const auto size = static_cast<std::size_t>(B * N * H * D);
        std::vector<A> acc_q(size, A(0)), acc_k(size, A(0)), acc_v(size, A(0));
        const auto view = [&](std::vector<A>& buf) { return tensor_view<A>(buf.data(), B, N, H, D); };
        backward_accumulate<T, Arch>(q, k, v, out, lse, dout, view(acc_q), view(acc_k), view(acc_v), opt, mode);
        constexpr index_t rows_per_task = 4096;
        parallel_tasks(
            (B * N + rows_per_task - 1) / rows_per_task, [] { return 0; },
            [&](int&, index_t t) {
                for (index_t bn = t * rows_per_task; bn < std::min(B * N, (t + 1) * rows_per_task); ++bn)
                    for (index_t h = 0; h < H; ++h) {
                        const index_t b = bn / N, n = bn % N;
                        const std::size_t src = static_cast<std::size_t>(((b * N + n) * H + h) * D);
                        for (index_t d = 0; d < D; ++d) {
                            dq(b, n, h, d) = from_accum<T>(acc_q[src + static_cast<std::size_t>(d)]);
                            dk(b, n, h, d) = from_accum<T>(acc_k[src + static_cast<std::size_t>(d)]);
                            dv(b, n, h, d) = from_accum<T>(acc_v[src + static_cast<std::size_t>(d)]);
                        }
                    }
            });
    }
}

LONGNET_ISA_END
}  // namespace longnet::detail
#endif  // LONGNET_DETAIL_BACKWARD_BODY
