// SPDX-License-Identifier: Apache-2.0
// Kernel body: compiled once per instruction-set path (detail/distributed_dispatch.hpp includes it in
// each path's namespace and target region), so no #pragma once; the toggle guard admits it once per path.
// The distributed forward (SPEC §7): the single-process forward of forward_driver.hpp, branch by branch in
// the same order, where a long branch attends this rank's selected queries to the selected K/V rows of
// its whole segment, all-gathered within the segment's group of ranks.
//
// Bitwise equal to the single-process forward on the full sequence: the gathered keys are the
// segment's selected rows in sequence order, so attend_packed sees the same key blocks (blocked from
// the segment's first selected row), the same causal limits (causal_shift counts the selected rows of
// the earlier ranks) and the same zero_pad keys, and branches merge into out/lse in the same order.

#include "longnet/detail/distributed_dispatch.hpp"  // first: the per-path passes (includes this file)

#include <algorithm>
#include <limits>
#include <vector>

#include "longnet/detail/distributed_common.hpp"
#include "longnet/detail/forward_driver.hpp"
#include "longnet/detail/pack.hpp"
#include "longnet/detail/segment_forward.hpp"
#include "longnet/detail/threading.hpp"

#if defined(LONGNET_DETAIL_DISTRIBUTED_FORWARD_BODY) == defined(LONGNET_DIST_ISA_TOGGLE)
#ifdef LONGNET_DETAIL_DISTRIBUTED_FORWARD_BODY
#undef LONGNET_DETAIL_DISTRIBUTED_FORWARD_BODY
#else
#define LONGNET_DETAIL_DISTRIBUTED_FORWARD_BODY
#endif

namespace longnet::detail {
LONGNET_ISA_BEGIN
namespace dist_kernels {
using namespace ::longnet::detail::dist;  // plans, groups, MPI helpers (distributed_common.hpp)

// dst[b·H + h][t][:] = x[b, o_h + t·r, h, :] for t < c: this rank's selected rows of a long branch
// (the chunk starts at a multiple of r, so the in-segment residue o_h is the in-chunk residue).
template <class T, class X>
void pack_selected_rows(const tensor_view<X>& x, offset_policy offsets, const branch_plan& p, T* dst) {
    const index_t B = x.batch(), H = x.heads(), D = x.head_dim(), c = p.rows_per_rank;
    parallel_tasks(
        B * H, [] { return 0; },
        [&](int&, index_t t) {
            const index_t b = t / H, h = t % H;
            const index_t o = head_offset(offsets, h, H, p.dilation);
            T* out = dst + t * c * D;
            for (index_t i = 0; i < c; ++i) std::copy_n(x.row(b, o + i * p.dilation, h), D, out + i * D);
        });
}

// Rows [B·H][c][D] of every group rank -> recv [B·H][g·c][D] (rank k's rows at row offset k·c).
template <class E>
void all_gather_rows(MPI_Comm group, const E* send, E* recv, index_t bh, index_t c, index_t g, index_t dim,
                     distributed::comm_stats& st) {
    const std::size_t row_bytes = static_cast<std::size_t>(dim) * sizeof(E);
    const mpi_type row = row_type(row_bytes);
    const mpi_type send_type = strided_block_type(row, row_bytes, bh, c, c);
    const mpi_type recv_type = strided_block_type(row, row_bytes, bh, c, g * c);
    const auto t0 = clock::now();
    {
        cpu_scope cpu(st.cpu_seconds_communication);
        mpi_check(MPI_Allgather(send, 1, send_type.get(), recv, 1, recv_type.get(), group), "MPI_Allgather (K/V rows)");
    }
    st.seconds_communication += seconds_since(t0);
    const auto bytes = static_cast<std::uint64_t>(g - 1) * static_cast<std::uint64_t>(bh * c) * row_bytes;
    st.bytes_sent += bytes;
    st.bytes_received += bytes;
    st.collectives += 1;
}

// A long branch: this rank's selected queries against the gathered keys kg/vg ([B·H][g·c][D]).
template <class T, class Arch>
void forward_long_branch(const tensor_view<const T>& q, const T* kg, const T* vg, const tensor_view<T>& out,
                         const lse_view<accum_t<T>>& lse, const dilated_options& opt, const branch_plan& p,
                         accum_t<T> scale) {
    using A = accum_t<T>;
    using K = kernel_shape<A, Arch>;
    const index_t B = q.batch(), H = q.heads(), D = q.head_dim();
    const index_t c = p.rows_per_rank, total = p.group_size * c;
    const index_t rows_before = p.group_rank * c;  // selected rows of the segment on earlier ranks
    const tensor_view<const T> kv_k(kg, {B, total, H, D}, {H * total * D, D, total * D});
    const tensor_view<const T> kv_v(vg, {B, total, H, D}, {H * total * D, D, total * D});
    const index_t chunks = query_chunks<A, Arch>(B * H, c);
    const index_t chunk = (c + chunks - 1) / chunks;
    const index_t chunk_rows = (chunk + K::query_block - 1) / K::query_block * K::query_block;
    const index_t pad_keys = (opt.tail == tail_mode::zero_pad && !opt.causal) ? p.max_selected - total : 0;
    const index_t max_keys = opt.causal ? rows_before + c : total;
    const bool bf16_dot_path = bf16_dot_active<T, Arch>();
    parallel_tasks(
        B * H * chunks, [&] { return forward_workspace<A, Arch>(chunk_rows, max_keys, D, bf16_dot_path); },
        [&](forward_workspace<A, Arch>& ws, index_t t) {
            const index_t ci = t % chunks;
            const index_t h = (t / chunks) % H;
            const index_t b = t / chunks / H;
            const row_selection sel_q{head_offset(opt.offsets, h, H, p.dilation), p.dilation, c};
            const row_selection sel_k{0, 1, total};
            const index_t q_begin = ci * chunk_rows;
            if (q_begin >= c) return;
            const index_t nq = std::min(c, q_begin + chunk_rows) - q_begin;
            // causal: earlier ranks' keys all visible, own block up to the diagonal, later ranks' not at all
            const index_t shift = rows_before + q_begin;
            const index_t nk = opt.causal ? shift + nq : total;
            attend_selection<T, Arch>(ws, q, kv_k, kv_v, b, h, sel_q, q_begin, nq, sel_k, nk, scale, opt.causal, shift,
                                      pad_keys, bf16_dot_path, [&](index_t i, const A* o_row, A l) {
                                          const index_t pos = sel_q.position(q_begin + i);
                                          merge_row<T, A>(out.row(b, pos, h), lse(b, pos, h), o_row, l, D);
                                      });
        });
}

// Gather this rank's selected K and V rows of a long branch within its group: [B·H][g·c][D] each.
template <class T>
void gather_branch_kv(MPI_Comm group, const tensor_view<const T>& k, const tensor_view<const T>& v,
                      offset_policy offsets, const branch_plan& p, std::vector<T>& kg, std::vector<T>& vg,
                      distributed::comm_stats& st) {
    const index_t B = k.batch(), H = k.heads(), D = k.head_dim(), c = p.rows_per_rank, g = p.group_size;
    std::vector<T> send(static_cast<std::size_t>(B * H * c * D));
    kg.resize(static_cast<std::size_t>(B * H * g * c * D));
    vg.resize(kg.size());
    pack_selected_rows<T>(k, offsets, p, send.data());
    all_gather_rows<T>(group, send.data(), kg.data(), B * H, c, g, D, st);
    pack_selected_rows<T>(v, offsets, p, send.data());
    all_gather_rows<T>(group, send.data(), vg.data(), B * H, c, g, D, st);
}

template <class T, class Arch = isa_arch>
void forward(tensor_view<const T> q, tensor_view<const T> k, tensor_view<const T> v, tensor_view<T> out,
             const dilated_options& opt, lse_view<accum_t<T>> lse_user, MPI_Comm comm,
             const std::vector<branch_plan>& plans, distributed::comm_stats& st) {
    using A = accum_t<T>;
    const index_t B = q.batch(), N = q.seq_len(), H = q.heads(), D = q.head_dim();
    if (B == 0 || N == 0 || H == 0) return;
    const A scale = static_cast<A>(effective_scale(opt.scale, D));
    std::vector<A> lse_own;
    const lse_view<A> lse = running_lse(lse_user, lse_own, B, N, H);
    init_output<T, A>(out, lse);
    std::vector<T> kg, vg;
    for (std::size_t i = 0; i < opt.branches.size(); ++i) {
        const branch_plan& p = plans[i];
        if (!p.is_long) {
            ++st.local_branches;
            forward_branch<T, Arch>(q, k, v, out, lse, opt, opt.branches[i], scale);
            continue;
        }
        ++st.long_branches;
        gather_branch_kv<T>(group_communicator(comm, p, st), k, v, opt.offsets, p, kg, vg, st);
        forward_long_branch<T, Arch>(q, kg.data(), vg.data(), out, lse, opt, p, scale);
    }
}

}  // namespace dist_kernels
LONGNET_ISA_END
}  // namespace longnet::detail
#endif  // LONGNET_DETAIL_DISTRIBUTED_FORWARD_BODY
