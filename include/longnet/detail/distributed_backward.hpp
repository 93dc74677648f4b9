// SPDX-License-Identifier: Apache-2.0
// Kernel body: compiled once per instruction-set path (detail/distributed_dispatch.hpp includes it in
// each path's namespace and target region), so no #pragma once; the toggle guard admits it once per path.
// The distributed backward (SPEC §6, §7), built on the single-process backward (detail/backward_driver.hpp,
// detail/segment_backward.hpp). Branches run in the forward's order and add into [B, n, H, D]
// accumulators in accum_t, exactly as the single-process backward accumulates:
//   - a local branch is the single-process per-branch step (backward_accumulate) on the chunk;
//   - a long branch gathers, within its group, the selected K/V rows (as the forward) and the selected
//     Q/dO rows with their L and Δ. The dQ of this rank's queries is attend_backward_packed of those
//     queries against the gathered keys (causal_shift = rows of earlier ranks); the dK/dV of this rank's
//     keys is attend_backward_packed of ALL the segment's gathered queries against this rank's keys
//     (causal_shift = −rows of earlier ranks). Every key's dK/dV is then the same sweep over the same
//     query blocks as in the single-process kernel, and every query's dQ the same sweep over the same key
//     blocks, so the gradients are bitwise equal to the single-process backward on the full sequence.
// This is the reduce-scatter of SPEC §7 turned around: instead of sending each owner the g partial sums
// of its rows' dK/dV (whose sum order would differ from one sweep), each owner receives the queries
// (Q, dO rows and two scalars per row: the same volume as the partials) and sums in the single-process
// order itself. The cost is computing S, P and dS of a long branch twice (once per direction).
//
// grad_mode::exact uses Δ = dO·O with the merged output; stop_grad_weights uses Δ_i = dO·o_i with each
// branch's own output o_i, recomputed by the forward kernel against the gathered keys.

#include "longnet/detail/distributed_dispatch.hpp"  // first: the per-path passes (includes this file)

#include <algorithm>
#include <limits>
#include <vector>

#include "longnet/options.hpp"
#include "longnet/detail/backward_driver.hpp"
#include "longnet/detail/segment_backward.hpp"
#include "longnet/detail/distributed_common.hpp"
#include "longnet/detail/distributed_forward.hpp"
#include "longnet/detail/pack.hpp"
#include "longnet/detail/threading.hpp"

#if defined(LONGNET_DETAIL_DISTRIBUTED_BACKWARD_BODY) == defined(LONGNET_DIST_ISA_TOGGLE)
#ifdef LONGNET_DETAIL_DISTRIBUTED_BACKWARD_BODY
#undef LONGNET_DETAIL_DISTRIBUTED_BACKWARD_BODY
#else
#define LONGNET_DETAIL_DISTRIBUTED_BACKWARD_BODY
#endif

namespace longnet::detail {
LONGNET_ISA_BEGIN
namespace dist_kernels {
using namespace ::longnet::detail::dist;  // plans, groups, MPI helpers (distributed_common.hpp)

// Δ and L of this rank's selected queries of a long branch: [B·H][c] each.
template <class T, class Arch>
void query_terms(const tensor_view<const T>& q, const tensor_view<const T>& out, const lse_view<const accum_t<T>>& lse,
                 const tensor_view<const T>& dout, const T* kg, const T* vg, const dilated_options& opt,
                 const branch_plan& p, grad_mode mode, bool bf16_path, std::vector<accum_t<T>>& lse_rows,
                 std::vector<accum_t<T>>& delta_rows) {
    using A = accum_t<T>;
    const index_t B = q.batch(), H = q.heads(), D = q.head_dim();
    const index_t c = p.rows_per_rank, total = p.group_size * c, rows_before = p.group_rank * c;
    const A scale = static_cast<A>(effective_scale(opt.scale, D));
    lse_rows.assign(static_cast<std::size_t>(B * H * c), A(0));
    delta_rows.assign(lse_rows.size(), A(0));
    const tensor_view<const T> kv_k(kg, {B, total, H, D}, {H * total * D, D, total * D});
    const tensor_view<const T> kv_v(vg, {B, total, H, D}, {H * total * D, D, total * D});
    const bool own_output = mode == grad_mode::stop_grad_weights;
    const index_t nk = opt.causal ? rows_before + c : total;
    const index_t pad_keys = (opt.tail == tail_mode::zero_pad && !opt.causal) ? p.max_selected - total : 0;
    parallel_tasks(
        B * H, [&] { return forward_workspace<A, Arch>(own_output ? c : 0, own_output ? nk : 0, D, bf16_path); },
        [&](forward_workspace<A, Arch>& ws, index_t t) {
            const index_t h = t % H, b = t / H;
            const row_selection sel{head_offset(opt.offsets, h, H, p.dilation), p.dilation, c};
            A* l_out = lse_rows.data() + t * c;
            A* d_out = delta_rows.data() + t * c;
            for (index_t i = 0; i < c; ++i) l_out[i] = lse(b, sel.position(i), h);
            if (!own_output) {
                // Δ_i = dO_i · O_i with the merged output
                for (index_t i = 0; i < c; ++i)
                    d_out[i] = output_delta<A>(dout.row(b, sel.position(i), h), out.row(b, sel.position(i), h), D);
                return;
            }
            // Δ_i = dO_i · o_i with this branch's own output, recomputed against the gathered keys (on the
            // products the backward uses, as the single-process backward)
            attend_selection<T, Arch>(ws, q, kv_k, kv_v, b, h, sel, 0, c, row_selection{0, 1, nk}, nk, scale,
                                      opt.causal, rows_before, pad_keys, bf16_path, [&](index_t i, const A* o_row, A) {
                                          d_out[i] = output_delta<A>(dout.row(b, sel.position(i), h), o_row, D);
                                      });
        });
}

// One whole backward_segment call (detail/backward_driver.hpp) on the operands `a`: dq_sink(i, row) gets
// each query's dQ row, key_sink(j, dk_row, dv_row) each key's.
template <class T, class Arch, class QuerySink, class KeySink>
void backward_call(backward_workspace<accum_t<T>, Arch>& ws, const segment_backward_args<T>& a, QuerySink&& dq_sink,
                   KeySink&& key_sink) {
    using A = accum_t<T>;
    const index_t nq = a.sel_q.count, dvp = backward_shape<A, Arch>::K::padded_dim(a.dim);
    backward_part whole;
    whole.key_end = a.sel_k.count;
    whole.query_end = nq;
    backward_segment<T, Arch>(ws, a,
                              [&](index_t j0, index_t count, const A* dk_rows, const A* dv_rows) {
                                  for (index_t j = 0; j < count; ++j)
                                      key_sink(j0 + j, dk_rows + j * dvp, dv_rows + j * dvp);
                              },
                              whole);
    const A* dq_rows = ws.dq.data();
    for (index_t i = 0; i < nq; ++i) dq_sink(i, dq_rows + i * dvp);
}

template <class T, class Arch = isa_arch>
void backward(tensor_view<const T> q, tensor_view<const T> k, tensor_view<const T> v, tensor_view<const T> out,
              lse_view<const accum_t<T>> lse, tensor_view<const T> dout, tensor_view<T> dq, tensor_view<T> dk,
              tensor_view<T> dv, const dilated_options& opt, grad_mode mode, MPI_Comm comm,
              const std::vector<branch_plan>& plans, distributed::comm_stats& st) {
    using A = accum_t<T>;
    const index_t B = q.batch(), N = q.seq_len(), H = q.heads(), D = q.head_dim();
    if (B == 0 || N == 0 || H == 0) return;
    const A scale = static_cast<A>(effective_scale(opt.scale, D));
    // bfloat16 storage on the bf16 dot-product path: read once (the local branches' backward_accumulate
    // reads the same switch), so one call never mixes paths
    const bool bf16_path = bf16_dot_active<T, Arch>();
    // gradients accumulate here in branch order, as the single-process backward accumulates
    const auto size = static_cast<std::size_t>(B * N * H * D);
    std::vector<A> acc_q(size, A(0)), acc_k(size, A(0)), acc_v(size, A(0));
    const tensor_view<A> gq(acc_q.data(), B, N, H, D), gk(acc_k.data(), B, N, H, D), gv(acc_v.data(), B, N, H, D);

    std::vector<T> kg, vg, qg, dog, send;
    std::vector<A> lse_rows, delta_rows, lse_g, delta_g;
    for (std::size_t bi = 0; bi < opt.branches.size(); ++bi) {
        const branch_plan& p = plans[bi];
        if (!p.is_long) {
            ++st.local_branches;
            dilated_options one = opt;
            one.branches = {opt.branches[bi]};
            backward_accumulate<T, Arch>(q, k, v, out, lse, dout, gq, gk, gv, one, mode);
            continue;
        }
        ++st.long_branches;
        MPI_Comm group = group_communicator(comm, p, st);
        const index_t c = p.rows_per_rank, g = p.group_size, total = g * c, rows_before = p.group_rank * c;
        // the segment's selected K, V (for dQ and Δ) and Q, dO, L, Δ (for dK, dV) from every group rank
        gather_branch_kv<T>(group, k, v, opt.offsets, p, kg, vg, st);
        gather_branch_kv<T>(group, q, dout, opt.offsets, p, qg, dog, st);
        query_terms<T, Arch>(q, out, lse, dout, kg.data(), vg.data(), opt, p, mode, bf16_path, lse_rows, delta_rows);
        lse_g.resize(static_cast<std::size_t>(B * H * total));
        delta_g.resize(lse_g.size());
        all_gather_rows<A>(group, lse_rows.data(), lse_g.data(), B * H, c, g, 1, st);
        all_gather_rows<A>(group, delta_rows.data(), delta_g.data(), B * H, c, g, 1, st);

        const tensor_view<const T> gk_view(kg.data(), {B, total, H, D}, {H * total * D, D, total * D});
        const tensor_view<const T> gv_view(vg.data(), {B, total, H, D}, {H * total * D, D, total * D});
        const tensor_view<const T> gq_view(qg.data(), {B, total, H, D}, {H * total * D, D, total * D});
        const tensor_view<const T> gdo_view(dog.data(), {B, total, H, D}, {H * total * D, D, total * D});
        const index_t nk_visible = opt.causal ? rows_before + c : total;  // later ranks' keys: invisible
        // task 2t: dQ of this rank's queries; task 2t + 1: dK, dV of this rank's keys (disjoint rows)
        parallel_tasks(
            2 * B * H, [&] { return backward_workspace<A, Arch>(total, D, false, bf16_path); },
            [&](backward_workspace<A, Arch>& ws, index_t task) {
                const index_t t = task / 2, h = t % H, b = t / H;
                const row_selection own{head_offset(opt.offsets, h, H, p.dilation), p.dilation, c};
                segment_backward_args<T> args;
                args.bq = b, args.hq = h, args.bk = b, args.hk = h;
                args.dim = D, args.scale = scale, args.causal = opt.causal, args.bf16_path = bf16_path;
                if (task % 2 == 0) {  // this rank's queries against the group's keys
                    args.q = q, args.dout = dout, args.sel_q = own;
                    args.lse = lse_rows.data() + t * c, args.delta = delta_rows.data() + t * c;
                    args.k = gk_view, args.v = gv_view, args.sel_k = row_selection{0, 1, nk_visible};
                    args.shift = rows_before;
                    backward_call<T, Arch>(
                        ws, args,
                        [&](index_t i, const A* row) {
                            A* dst = gq.row(b, own.position(i), h);
                            for (index_t d = 0; d < D; ++d) dst[d] += row[d];
                        },
                        [](index_t, const A*, const A*) {});
                } else {  // the group's queries against this rank's keys
                    args.q = gq_view, args.dout = gdo_view, args.sel_q = row_selection{0, 1, total};
                    args.lse = lse_g.data() + t * total, args.delta = delta_g.data() + t * total;
                    args.k = k, args.v = v, args.sel_k = own;
                    args.shift = -rows_before;
                    backward_call<T, Arch>(
                        ws, args, [](index_t, const A*) {},
                        [&](index_t j, const A* dk_row, const A* dv_row) {
                            A* dk_dst = gk.row(b, own.position(j), h);
                            A* dv_dst = gv.row(b, own.position(j), h);
                            for (index_t d = 0; d < D; ++d) dk_dst[d] += dk_row[d];
                            for (index_t d = 0; d < D; ++d) dv_dst[d] += dv_row[d];
                        });
                }
            });
    }
    // write the gradients in the storage type (one rounding for 16-bit types)
    parallel_tasks(
        B * N, [] { return 0; },
        [&](int&, index_t t) {
            const index_t b = t / N, n = t % N;
            for (index_t h = 0; h < H; ++h)
                for (index_t d = 0; d < D; ++d) {
                    dq(b, n, h, d) = from_accum<T>(gq(b, n, h, d));
                    dk(b, n, h, d) = from_accum<T>(gk(b, n, h, d));
                    dv(b, n, h, d) = from_accum<T>(gv(b, n, h, d));
                }
        });
}

}  // namespace dist_kernels
LONGNET_ISA_END
}  // namespace longnet::detail
#endif  // LONGNET_DETAIL_DISTRIBUTED_BACKWARD_BODY
