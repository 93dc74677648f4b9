// SPDX-License-Identifier: Apache-2.0
// Kernel body: compiled once per instruction-set path (detail/dispatch.hpp includes it in each path's
// namespace and target region), so no #pragma once; the toggle guard below admits it once per path.
// The forward driver: branches run one after another; inside a branch, tasks (batch, head, segment,
// query chunk) run in parallel, each packing its segment's selected rows and calling attend_packed.
// Every output row is written by exactly one task per branch, and branches merge into the output in a
// fixed order through the running log-sum-exp (online merge, no per-branch buffers), so results are
// bitwise identical for any thread count.

#include "longnet/detail/dispatch.hpp"  // first: the per-path passes (includes this file)

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "longnet/detail/bf16_dot.hpp"
#include "longnet/detail/pack.hpp"
#include "longnet/detail/segment_forward.hpp"
#include "longnet/detail/simd.hpp"
#include "longnet/detail/threading.hpp"
#include "longnet/detail/workspace.hpp"
#include "longnet/numeric.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"

#if defined(LONGNET_DETAIL_FORWARD_BODY) == defined(LONGNET_ISA_TOGGLE)
#ifdef LONGNET_DETAIL_FORWARD_BODY
#undef LONGNET_DETAIL_FORWARD_BODY
#else
#define LONGNET_DETAIL_FORWARD_BODY
#endif

namespace longnet::detail {
LONGNET_ISA_BEGIN

// Geometry of one branch over a sequence of length N for one head.
struct branch_geometry {
    index_t segment_length;  // min(w, N): a branch longer than the sequence is one segment
    index_t dilation;
    index_t segments;        // ceil(N / segment_length)
    index_t max_selected;    // ceil(segment_length / r): selected rows of a full segment

    branch_geometry(const branch& br, index_t seq) noexcept
        : segment_length(std::min(br.segment_length, seq)),
          dilation(br.dilation),
          segments((seq + segment_length - 1) / segment_length),
          max_selected((segment_length + br.dilation - 1) / br.dilation) {}

    // The rows head offset `offset` selects in segment g.
    row_selection select(index_t g, index_t offset, index_t seq) const noexcept {
        const index_t start = g * segment_length;
        const index_t len = std::min(segment_length, seq - start);
        row_selection s;
        s.first = start + offset;
        s.stride = dilation;
        s.count = len > offset ? (len - offset + dilation - 1) / dilation : 0;
        return s;
    }
};

// Per-thread scratch of the forward, sized for a segment of up to max_keys selected rows. With bf16 the
// packed operands are the bf16 pair layouts of bf16_dot.hpp (q_pairs, kt_pairs, v_pairs, p_bf16)
// instead of q, kt, v.
template <class A, class Arch>
struct forward_workspace {
    using K = kernel_shape<A, Arch>;
    aligned_buffer<A> q, kt, v, s, o, stats;
    aligned_buffer<std::uint32_t> q_pairs, kt_pairs, v_pairs;
    aligned_buffer<std::uint16_t> p_bf16;
    forward_workspace(index_t max_queries, index_t max_keys, index_t dim, bool bf16 = false) {
        const index_t dv = K::padded_dim(dim);
        const index_t keys_pad = K::key_blocks(max_keys) * K::key_block;
        if (bf16) {
            using P = bf16_shape<Arch>;
            q_pairs.reserve(static_cast<std::size_t>(P::query_words(max_queries, dim)));
            kt_pairs.reserve(static_cast<std::size_t>(P::key_words(max_keys, dim)));
            v_pairs.reserve(static_cast<std::size_t>(P::value_words(max_keys, dim)));
            // zero: AMX groups read whole 16-row groups of P and O, rows past a block's own included
            const auto p_size = static_cast<std::size_t>(K::query_block * K::key_block);
            std::fill_n(p_bf16.reserve(p_size), p_size, std::uint16_t(0));
        } else {
            q.reserve(static_cast<std::size_t>(K::padded_queries(max_queries) * dim));
            kt.reserve(static_cast<std::size_t>(keys_pad * dim));
            v.reserve(static_cast<std::size_t>(keys_pad * dv));
        }
        s.reserve(static_cast<std::size_t>(K::query_block * K::key_block));
        std::fill_n(o.reserve(static_cast<std::size_t>(K::query_block * dv)), K::query_block * dv, A(0));
        stats.reserve(static_cast<std::size_t>(2 * K::query_block));
    }
    attend_scratch<A> scratch() const noexcept {
        return {s.data(), o.data(), stats.data(), stats.data() + K::query_block, p_bf16.data()};
    }
};

// One forward task: pack queries q_begin .. q_begin + nq − 1 of sel_q and keys/values 0 .. nk − 1 of
// sel_k, attend (attend_packed: causal_shift, pad_keys as there) and hand every row to sink. The one
// copy of "pack, then attend" that the forward and the distributed forward share; with bf16_dot
// (bf16_dot_active<T, Arch>(), read once per forward; the workspace made with the same flag) bfloat16
// storage takes the bf16 dot-product path, everything else the fma path.
template <class T, class Arch, class Sink>
void attend_selection(forward_workspace<accum_t<T>, Arch>& ws, const tensor_view<const T>& q,
                      const tensor_view<const T>& k, const tensor_view<const T>& v, index_t b, index_t h,
                      const row_selection& sel_q, index_t q_begin, index_t nq, const row_selection& sel_k, index_t nk,
                      accum_t<T> scale, bool causal, index_t causal_shift, index_t pad_keys, bool bf16_dot_path,
                      Sink&& sink) {
    using A = accum_t<T>;
    const index_t D = q.head_dim();
    (void)bf16_dot_path;
#if LONGNET_BF16_TILES
    if constexpr (use_bf16_dot<T, Arch>()) {
        if (bf16_dot_path) {
            pack_queries_bf16<Arch>(q, b, h, sel_q, q_begin, nq, ws.q_pairs.data());
            pack_keys_bf16<Arch>(k, b, h, sel_k, nk, ws.kt_pairs.data());
            pack_values_bf16<Arch>(v, b, h, sel_k, nk, ws.v_pairs.data());
#if LONGNET_AMX_TILES
            if (amx_dot<Arch>::fits(D) && bf16_amx_switch().load(std::memory_order_relaxed)) {
                amx_dot<Arch> dot;
                dot.scale = scale;
                bf16_tiles::amx_begin();
                attend_packed<A, Arch, amx_dot<Arch>>(ws.q_pairs.data(), nq, ws.kt_pairs.data(), ws.v_pairs.data(), nk,
                                                      D, causal, causal_shift, pad_keys, ws.scratch(), sink, dot);
                bf16_tiles::amx_end();
                return;
            }
#endif
            bf16_dot<Arch> dot;
            dot.scale = scale;
            attend_packed<A, Arch, bf16_dot<Arch>>(ws.q_pairs.data(), nq, ws.kt_pairs.data(), ws.v_pairs.data(), nk,
                                                   D, causal, causal_shift, pad_keys, ws.scratch(), sink, dot);
            return;
        }
    }
#endif
    pack_queries<A, Arch>(q, b, h, sel_q, q_begin, nq, scale, ws.q.data());
    pack_keys<A, Arch>(k, b, h, sel_k, nk, ws.kt.data());
    pack_values<A, Arch>(v, b, h, sel_k, nk, ws.v.data());
    attend_packed<A, Arch>(ws.q.data(), nq, ws.kt.data(), ws.v.data(), nk, D, causal, causal_shift, pad_keys,
                           ws.scratch(), sink);
}

// Merge one branch's (o_i, l_i) for a row into out/lse: L' = logaddexp(L, l_i),
// out = out·exp(L − L') + o_i·exp(l_i − L').
template <class T, class A>
inline void merge_row(T* out_row, A& lse, const A* o_row, A l, index_t dim) noexcept {
    const A old = lse;
    if (old == -std::numeric_limits<A>::infinity()) {  // first branch to reach this row
        for (index_t d = 0; d < dim; ++d) out_row[d] = from_accum<T>(o_row[d]);
        lse = l;
        return;
    }
    const A hi = std::max(old, l);
    const A merged = hi + std::log1p(std::exp(-std::fabs(old - l)));
    const A w_old = std::exp(old - merged), w_new = std::exp(l - merged);
    for (index_t d = 0; d < dim; ++d) out_row[d] = from_accum<T>(w_old * to_accum<A>(out_row[d]) + w_new * o_row[d]);
    lse = std::isnan(l) ? l : merged;
}

// Rows no branch selects stay O = 0, LSE = −inf: the starting point of the online merge.
template <class T, class A>
void init_output(const tensor_view<T>& out, const lse_view<A>& lse) {
    const index_t B = out.batch(), N = out.seq_len(), H = out.heads(), D = out.head_dim();
    constexpr index_t init_rows = 4096;  // rows per initialisation task
    parallel_tasks(
        (B * N + init_rows - 1) / init_rows, [] { return 0; },
        [&](int&, index_t t) {
            for (index_t bn = t * init_rows; bn < std::min(B * N, (t + 1) * init_rows); ++bn) {
                const index_t b = bn / N, n = bn % N;
                for (index_t h = 0; h < H; ++h) {
                    std::fill(out.row(b, n, h), out.row(b, n, h) + D, from_accum<T>(A(0)));
                    lse(b, n, h) = -std::numeric_limits<A>::infinity();
                }
            }
        });
}

// How many query chunks to cut each of `tasks` segments into: one, unless there are too few segments to
// keep every thread busy. Results do not depend on the choice (every row sees the same key blocks).
template <class A, class Arch>
index_t query_chunks(index_t tasks, index_t max_selected) {
    using K = kernel_shape<A, Arch>;
    const index_t threads = max_threads();
    const index_t max_chunks = (max_selected + K::query_block - 1) / K::query_block;
    if (tasks >= 4 * threads || max_chunks < 1) return 1;
    return std::min(max_chunks, (4 * threads + tasks - 1) / tasks);
}

// One branch over the whole sequence, merged into out/lse: tasks (batch, head, segment, query chunk).
template <class T, class Arch>
void forward_branch(const tensor_view<const T>& q, const tensor_view<const T>& k, const tensor_view<const T>& v,
                    const tensor_view<T>& out, const lse_view<accum_t<T>>& lse, const dilated_options& opt,
                    const branch& br, accum_t<T> scale) {
    using A = accum_t<T>;
    using K = kernel_shape<A, Arch>;
    const index_t B = q.batch(), N = q.seq_len(), H = q.heads(), D = q.head_dim();
    const branch_geometry geo(br, N);
    const index_t segment_tasks = B * H * geo.segments;
    const index_t chunks = query_chunks<A, Arch>(segment_tasks, geo.max_selected);
    const index_t chunk = (geo.max_selected + chunks - 1) / chunks;
    const index_t chunk_rows = (chunk + K::query_block - 1) / K::query_block * K::query_block;
    const index_t pad_keys_full = (opt.tail == tail_mode::zero_pad && !opt.causal) ? geo.max_selected : 0;
    const bool bf16_dot_path = bf16_dot_active<T, Arch>();
    parallel_tasks(
        segment_tasks * chunks,
        [&] { return forward_workspace<A, Arch>(chunk_rows, geo.max_selected, D, bf16_dot_path); },
        [&](forward_workspace<A, Arch>& ws, index_t t) {
            const index_t c = t % chunks;
            const index_t g = (t / chunks) % geo.segments;
            const index_t h = (t / chunks / geo.segments) % H;
            const index_t b = t / chunks / geo.segments / H;
            const index_t offset = head_offset(opt.offsets, h, H, geo.dilation);
            const row_selection sel = geo.select(g, offset, N);
            const index_t q_begin = c * chunk_rows;
            if (q_begin >= sel.count) return;
            const index_t nq = std::min(sel.count, q_begin + chunk_rows) - q_begin;
            const index_t nk = opt.causal ? q_begin + nq : sel.count;
            const index_t pad_keys = pad_keys_full > 0 ? pad_keys_full - sel.count : 0;
            attend_selection<T, Arch>(ws, q, k, v, b, h, sel, q_begin, nq, sel, nk, scale, opt.causal, q_begin, pad_keys,
                                      bf16_dot_path, [&](index_t i, const A* o_row, A l) {
                                          const index_t p = sel.position(q_begin + i);
                                          merge_row<T, A>(out.row(b, p, h), lse(b, p, h), o_row, l, D);
                                      });
        });
}

// The running log-sum-exp per row of a forward: the caller's lse, else `own` as a [B, N, H] buffer.
template <class A>
lse_view<A> running_lse(lse_view<A> user, std::vector<A>& own, index_t B, index_t N, index_t H) {
    if (!user.empty()) return user;
    own.resize(static_cast<std::size_t>(B * N * H));
    return lse_view<A>(own.data(), B, N, H);
}

template <class T, class Arch = isa_arch>
void forward(tensor_view<const T> q, tensor_view<const T> k, tensor_view<const T> v, tensor_view<T> out,
             const dilated_options& opt, lse_view<accum_t<T>> lse_user) {
    using A = accum_t<T>;
    const index_t B = q.batch(), N = q.seq_len(), H = q.heads(), D = q.head_dim();
    if (B == 0 || N == 0 || H == 0) return;
    const A scale = static_cast<A>(effective_scale(opt.scale, D));
    std::vector<A> lse_own;
    const lse_view<A> lse = running_lse(lse_user, lse_own, B, N, H);
    init_output<T, A>(out, lse);
    for (const branch& br : opt.branches) forward_branch<T, Arch>(q, k, v, out, lse, opt, br, scale);
}

LONGNET_ISA_END
}  // namespace longnet::detail
#endif  // LONGNET_DETAIL_FORWARD_BODY
