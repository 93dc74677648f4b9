// SPDX-License-Identifier: Apache-2.0
#pragma once
// Sequence parallelism over MPI (SPEC §7): one sequence split across processes and machines.
//
// Rank ρ of the communicator's P ranks owns positions [ρ·n, (ρ+1)·n) of a sequence of N = P·n and
// passes its local [B, n, H, D] chunks. For each branch (w, r), with w' = min(w, N):
//   - w' ≤ n: local. The branch runs on the chunk alone (n must be a multiple of w').
//   - w' > n: long. Its segment spans g = w'/n ranks (w' must be a multiple of n, n a multiple of r).
//     Each rank packs its own selected K/V rows of each head (≈ n/r), all-gathers them within the
//     sub-communicator of the g ranks that share the segment (never the whole world), and attends its
//     selected queries to them. Causal: earlier ranks' keys fully visible, own block causal, later
//     ranks' keys invisible.
// Branches merge locally through their log-sum-exps, as in the single-process op: the output (and
// LSE) on every rank is bitwise equal to the rows [ρ·n, (ρ+1)·n) of longnet::dilated_attention on the
// full sequence. Per-rank traffic of a long branch: 2·(g − 1)·(n/r)·H·D·B elements (K and V), flat in
// N when r grows with w.
//
// Packed variable-length batches (dilated_attention_varlen, issue 22 §1): the global packed [total, H, D]
// tensors of longnet::dilated_attention_varlen are split into contiguous row chunks, rank ρ holding rows
// [c_ρ, c_ρ+1) as a local [1, n_ρ, H, D] view (chunk lengths may differ between ranks, even be 0); every
// rank passes the same global cu_seqlens. Sequence boundaries may fall anywhere, sequences may span
// ranks. A sequence inside one rank's chunk runs there alone, without communication; a sequence over
// several ranks is exchanged, point to point, among exactly the ranks that hold part of it: each receives
// from the others only the (row, head) pairs its own rows read — for every branch, the rows its heads
// select in the segments where they select one of its rows (K, V in the forward; Q, K, V, O, dO and L
// in the exact backward; stop_grad_weights exchanges every row) — and runs the single-process op on the
// whole sequence, the unread rows left 0, keeping its own rows. Every rank's out, lse, dq, dk, dv are
// bitwise its rows of the single-process longnet::dilated_attention_varlen (resp. its backward) on the
// whole packed tensors. Traffic: per branch the selected rows of the segments a rank shares with others
// (the dense op's per long branch, plus the few rows of short segments straddling a chunk edge), the
// union over branches; compute is the whole sequence on each of its g ranks (g-fold).
//
// Errors: every rank checks its inputs, then all ranks agree (small collectives) before any blocking
// one: when one rank's input is bad (a shape, options that differ between ranks, a precondition),
// every rank throws std::invalid_argument with the same message; none hangs.
//
// Thread use: MPI is called from the calling thread only, outside parallel regions (MPI_THREAD_FUNNELED
// is enough). Needs <mpi.h>: link the CMake target longnet::mpi (longnet::longnet + MPI::MPI_CXX).

#if defined(__has_include)
#if __has_include(<mpi.h>)
#define LONGNET_HAS_MPI_HEADER 1
#endif
#else
#define LONGNET_HAS_MPI_HEADER 1
#endif

#ifndef LONGNET_HAS_MPI_HEADER
// <mpi.h> is not on the include path: the header stays self-contained and any use says why.
namespace longnet::distributed {
template <class... Args>
void dilated_attention(Args&&...) {
    static_assert(sizeof...(Args) < 0, "longnet/distributed.hpp needs <mpi.h>: link longnet::mpi (MPI::MPI_CXX)");
}
template <class... Args>
void dilated_attention_backward(Args&&...) {
    static_assert(sizeof...(Args) < 0, "longnet/distributed.hpp needs <mpi.h>: link longnet::mpi (MPI::MPI_CXX)");
}
template <class... Args>
void dilated_attention_varlen(Args&&...) {
    static_assert(sizeof...(Args) < 0, "longnet/distributed.hpp needs <mpi.h>: link longnet::mpi (MPI::MPI_CXX)");
}
template <class... Args>
void dilated_attention_varlen_backward(Args&&...) {
    static_assert(sizeof...(Args) < 0, "longnet/distributed.hpp needs <mpi.h>: link longnet::mpi (MPI::MPI_CXX)");
}
}  // namespace longnet::distributed
#else

#include <mpi.h>

#include <stdexcept>
#include <string>

#include "longnet/backward.hpp"
#include "longnet/detail/distributed_dispatch.hpp"  // the distributed kernels' one entry (and distributed_common.hpp)
#include "longnet/detail/distributed_varlen.hpp"
#include "longnet/detail/validate.hpp"
#include "longnet/numeric.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"
#include "longnet/varlen.hpp"

namespace longnet::distributed {

// Forward on this rank's chunk. q, k, v, out: local [B, n, H, D] views; lse: optional local [B, n, H].
// Collective over comm: every rank must call it (same B, n, H, D, element type and options).
// stats, when given, is overwritten with this call's traffic and timings on this rank.
template <class TQ, class TK, class TV, class TO>
void dilated_attention(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, tensor_view<TO> out,
                       const dilated_options& opt, MPI_Comm comm, lse_view<accum_t<TO>> lse = {},
                       comm_stats* stats = nullptr) {
    using T = std::remove_const_t<TO>;
    static_assert(!std::is_const_v<TO>, "longnet::distributed::dilated_attention: out must be a mutable view");
    static_assert(std::is_same_v<std::remove_const_t<TQ>, T> && std::is_same_v<std::remove_const_t<TK>, T> &&
                      std::is_same_v<std::remove_const_t<TV>, T>,
                  "longnet::distributed::dilated_attention: q, k, v and out must have the same element type");
    static_assert(is_storage_type<T>::value,
                  "longnet::distributed::dilated_attention: element type must be float, double, bfloat16 or half");
    const auto t0 = detail::dist::clock::now();
    comm_stats st;
    std::string error;
    try {
        validate(opt);
        detail::check_shapes("distributed::dilated_attention", q, k, v, out, lse);
    } catch (const std::invalid_argument& e) {
        error = detail::dist::with_prefix("longnet::distributed::dilated_attention: ", e.what());
    }
    const double cpu0 = detail::dist::thread_cpu_seconds();  // the agreement's collectives absorb waiting
    const auto plans = detail::dist::agree_and_plan<T>(comm, "dilated_attention", error, q.batch(), q.seq_len(),
                                                       q.heads(), q.head_dim(), opt, 0, st.control_bytes);
    st.cpu_seconds_communication += detail::dist::thread_cpu_seconds() - cpu0;
    detail::run_dist_forward<T>(tensor_view<const T>(q), tensor_view<const T>(k), tensor_view<const T>(v), out, opt, lse,
                             comm, plans, st);
    st.seconds_total = detail::dist::seconds_since(t0);
    if (stats) *stats = st;
}

// Backward (SPEC §6) on this rank's chunk: from the forward's inputs, its merged out and lse (local
// [B, n, H, D] and [B, n, H]) and the upstream gradient dout, overwrite dq, dk, dv (local [B, n, H, D])
// with the gradients of sum(out ∘ dout). mode: grad_mode::exact (default) or stop_grad_weights, as
// longnet::dilated_attention_backward. A long branch gathers its segment's selected K/V and Q/dO rows
// (with L and Δ) within its group; each rank computes the dQ of its own queries and the dK/dV of its
// own keys, in the single-process kernel's summation order: bitwise equal to
// longnet::dilated_attention_backward on the full sequence. Collective over comm.
template <class TQ, class TK, class TV, class TO, class TL, class TG, class TDQ, class TDK, class TDV>
void dilated_attention_backward(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, tensor_view<TO> out,
                                lse_view<TL> lse, tensor_view<TG> dout, tensor_view<TDQ> dq, tensor_view<TDK> dk,
                                tensor_view<TDV> dv, const dilated_options& opt, MPI_Comm comm,
                                grad_mode mode = grad_mode::exact, comm_stats* stats = nullptr) {
    using T = std::remove_const_t<TQ>;
    using A = accum_t<T>;
    static_assert(is_storage_type<T>::value,
                  "longnet::distributed::dilated_attention_backward: element type must be float, double, bfloat16 or "
                  "half");
    static_assert(detail::backward_types_ok<TQ, TK, TV, TO, TL, TG, TDQ, TDK, TDV>(),
                  "longnet::distributed::dilated_attention_backward: q, k, v, out, dout, dq, dk, dv must share one "
                  "element type T (dq, dk, dv mutable) and lse must be accum_t<T>");
    const auto t0 = detail::dist::clock::now();
    comm_stats st;
    std::string error;
    try {
        validate(opt);
        detail::dist::check_grad_mode(mode);
        const char* op = "distributed::dilated_attention_backward";
        detail::check_shapes(op, q, k, v, out, lse);
        detail::check_backward_shapes(op, q, out, lse, dout, dq, dk, dv);
    } catch (const std::invalid_argument& e) {
        error = detail::dist::with_prefix("longnet::distributed::dilated_attention_backward: ", e.what());
    }
    const double cpu0 = detail::dist::thread_cpu_seconds();  // the agreement's collectives absorb waiting
    const auto plans = detail::dist::agree_and_plan<T>(comm, "dilated_attention_backward", error, q.batch(),
                                                       q.seq_len(), q.heads(), q.head_dim(), opt,
                                                       1 + static_cast<long long>(mode), st.control_bytes);
    st.cpu_seconds_communication += detail::dist::thread_cpu_seconds() - cpu0;
    detail::run_dist_backward<T>(tensor_view<const T>(q), tensor_view<const T>(k), tensor_view<const T>(v),
                              tensor_view<const T>(out), lse_view<const A>(lse), tensor_view<const T>(dout), dq, dk, dv,
                              opt, mode, comm, plans, st);
    st.seconds_total = detail::dist::seconds_since(t0);
    if (stats) *stats = st;
}

// Forward of packed variable-length sequences on this rank's rows (see the header comment): q, k, v, out
// local [1, n, H, D] views of rows [c_ρ, c_ρ + n) of the packed tensors; cu_seqlens the GLOBAL offsets
// (B + 1, int32 or int64, flash-attn's convention, last = the sum of every rank's n), the same on every
// rank; lse optional local [1, n, H]. Collective over comm (same H, D, element type, options and
// cu_seqlens on every rank, else every rank throws the same std::invalid_argument). stats: traffic of
// this call (collectives counts the point-to-point sends; local_/long_branches stay 0).
template <class TQ, class TK, class TV, class TO, class I>
void dilated_attention_varlen(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, const std::vector<I>& cu_seqlens,
                              tensor_view<TO> out, const dilated_options& opt, MPI_Comm comm,
                              lse_view<accum_t<TO>> lse = {}, comm_stats* stats = nullptr) {
    using T = std::remove_const_t<TO>;
    using A = accum_t<T>;
    static_assert(!std::is_const_v<TO>, "longnet::distributed::dilated_attention_varlen: out must be a mutable view");
    static_assert(std::is_same_v<std::remove_const_t<TQ>, T> && std::is_same_v<std::remove_const_t<TK>, T> &&
                      std::is_same_v<std::remove_const_t<TV>, T>,
                  "longnet::distributed::dilated_attention_varlen: q, k, v and out must have the same element type");
    static_assert(is_storage_type<T>::value,
                  "longnet::distributed::dilated_attention_varlen: element type must be float, double, bfloat16 or half");
    const auto t0 = detail::dist::clock::now();
    comm_stats st;
    std::string error;
    const char* op = "distributed::dilated_attention_varlen";
    try {
        validate(opt);
        varlen_views::check_forward_packed(op, q, k, v, out, lse);
    } catch (const std::invalid_argument& e) {
        error = detail::dist::with_prefix("longnet::distributed::dilated_attention_varlen: ", e.what());
    }
    const index_t H = q.extent(2), D = q.extent(3);
    const double cpu0 = detail::dist::thread_cpu_seconds();
    const detail::dist::varlen_layout lay = detail::dist::agree_varlen<T>(
        comm, "dilated_attention_varlen", error, q.extent(1), H, D, opt, cu_seqlens, 0, st.control_bytes);
    st.cpu_seconds_communication += detail::dist::thread_cpu_seconds() - cpu0;
    using detail::dist::full_rows;
    using varlen_views::rows;
    const index_t c0 = lay.local_begin(), row = H * D;
    struct spanning {
        const detail::dist::varlen_sequence* s;
        full_rows<T> k, v;
    };
    std::vector<spanning> far;
    for (const auto& s : lay.sequences) {
        if (!s.spans) {
            const index_t a = s.begin - c0, n = s.length;
            longnet::dilated_attention(rows(q, a, n), rows(k, a, n), rows(v, a, n), rows(out, a, n), opt,
                                       lse.empty() ? lse_view<A>() : rows(lse, a, n));
        } else {
            far.push_back({&s, full_rows<T>(s, k, c0), full_rows<T>(s, v, c0)});
        }
    }
    {
        // its own point-to-point matching space, duplicated once per communicator (kept across calls)
        detail::dist::row_exchange ex(detail::dist::cached_dup(comm), lay, opt, H, false);
        for (auto& f : far) {
            ex.add(*f.s, f.k.data.data(), D, 0);
            ex.add(*f.s, f.v.data.data(), D, 1);
        }
        ex.run(st);
    }
    for (auto& f : far) {
        // only this rank's query rows matter: the others stay 0 (a query's row never reads another's)
        const auto& s = *f.s;
        full_rows<T> qf(s, q, c0), of(s, H, D);
        std::vector<A> lf(lse.empty() ? 0 : static_cast<std::size_t>(s.length * H));
        longnet::dilated_attention(qf.view(s, H, D), f.k.view(s, H, D), f.v.view(s, H, D), of.view(s, H, D), opt,
                                   lse.empty() ? lse_view<A>() : make_lse_bnh(lf.data(), 1, s.length, H));
        detail::dist::copy_rows_in(of.own(s, row), s.own_length, out, s.own_begin - c0);
        if (!lse.empty()) detail::dist::copy_lse_in(lf.data() + (s.own_begin - s.begin) * H, s.own_length, lse, s.own_begin - c0);
    }
    st.seconds_total = detail::dist::seconds_since(t0);
    if (stats) *stats = st;
}

// Backward of dilated_attention_varlen on this rank's rows: arguments as the single-process
// longnet::dilated_attention_varlen_backward, local [1, n, H, D] views (lse the forward's local
// [1, n, H], required) and the GLOBAL cu_seqlens, plus comm. dq, dk, dv are overwritten with this
// rank's rows of the single-process gradients, bitwise. Collective over comm.
template <class TQ, class TK, class TV, class TO, class TL, class TG, class TDQ, class TDK, class TDV, class I>
void dilated_attention_varlen_backward(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, tensor_view<TO> out,
                                       lse_view<TL> lse, tensor_view<TG> dout, tensor_view<TDQ> dq,
                                       tensor_view<TDK> dk, tensor_view<TDV> dv, const std::vector<I>& cu_seqlens,
                                       const dilated_options& opt, MPI_Comm comm, grad_mode mode = grad_mode::exact,
                                       comm_stats* stats = nullptr) {
    using T = std::remove_const_t<TQ>;
    using A = accum_t<T>;
    static_assert(is_storage_type<T>::value,
                  "longnet::distributed::dilated_attention_varlen_backward: element type must be float, double, "
                  "bfloat16 or half");
    static_assert(detail::backward_types_ok<TQ, TK, TV, TO, TL, TG, TDQ, TDK, TDV>(),
                  "longnet::distributed::dilated_attention_varlen_backward: q, k, v, out, dout, dq, dk, dv must share "
                  "one element type T (dq, dk, dv mutable) and lse must be accum_t<T>");
    const auto t0 = detail::dist::clock::now();
    comm_stats st;
    std::string error;
    const char* op = "distributed::dilated_attention_varlen_backward";
    try {
        validate(opt);
        detail::dist::check_grad_mode(mode);
        varlen_views::check_backward_packed(op, q, k, v, out, lse, dout, dq, dk, dv);
    } catch (const std::invalid_argument& e) {
        error = detail::dist::with_prefix("longnet::distributed::dilated_attention_varlen_backward: ", e.what());
    }
    const index_t H = q.extent(2), D = q.extent(3);
    const double cpu0 = detail::dist::thread_cpu_seconds();
    const detail::dist::varlen_layout lay =
        detail::dist::agree_varlen<T>(comm, "dilated_attention_varlen_backward", error, q.extent(1), H, D, opt,
                                      cu_seqlens, 1 + static_cast<long long>(mode), st.control_bytes);
    st.cpu_seconds_communication += detail::dist::thread_cpu_seconds() - cpu0;
    using detail::dist::full_rows;
    using varlen_views::rows;
    const index_t c0 = lay.local_begin(), row = H * D;
    struct spanning {
        const detail::dist::varlen_sequence* s;
        full_rows<T> q, k, v, o, g;
        std::vector<A> l;
    };
    std::vector<spanning> far;
    for (const auto& s : lay.sequences) {
        if (!s.spans) {
            const index_t a = s.begin - c0, n = s.length;
            longnet::dilated_attention_backward(rows(q, a, n), rows(k, a, n), rows(v, a, n), rows(out, a, n),
                                                rows(lse, a, n), rows(dout, a, n), rows(dq, a, n), rows(dk, a, n),
                                                rows(dv, a, n), opt, mode);
            continue;
        }
        spanning f{&s, full_rows<T>(s, q, c0), full_rows<T>(s, k, c0), full_rows<T>(s, v, c0),
                   full_rows<T>(s, out, c0), full_rows<T>(s, dout, c0),
                   std::vector<A>(static_cast<std::size_t>(s.length * H))};
        detail::dist::copy_lse_out(lse, s.own_begin - c0, s.own_length, f.l.data() + (s.own_begin - s.begin) * H);
        far.push_back(std::move(f));
    }
    {
        // its own point-to-point matching space, duplicated once per communicator (kept across calls)
        detail::dist::row_exchange ex(detail::dist::cached_dup(comm), lay, opt, H, mode != grad_mode::exact);
        for (auto& f : far) {
            ex.add(*f.s, f.q.data.data(), D, 0);
            ex.add(*f.s, f.k.data.data(), D, 1);
            ex.add(*f.s, f.v.data.data(), D, 2);
            ex.add(*f.s, f.o.data.data(), D, 3);
            ex.add(*f.s, f.g.data.data(), D, 4);
            ex.add(*f.s, f.l.data(), 1, 5);
        }
        ex.run(st);
    }
    for (auto& f : far) {
        const auto& s = *f.s;
        full_rows<T> gq(s, H, D), gk(s, H, D), gv(s, H, D);
        longnet::dilated_attention_backward(f.q.view(s, H, D), f.k.view(s, H, D), f.v.view(s, H, D), f.o.view(s, H, D),
                                            make_lse_bnh(f.l.data(), 1, s.length, H), f.g.view(s, H, D),
                                            gq.view(s, H, D), gk.view(s, H, D), gv.view(s, H, D), opt, mode);
        const index_t a = s.own_begin - c0;
        detail::dist::copy_rows_in(gq.own(s, row), s.own_length, dq, a);
        detail::dist::copy_rows_in(gk.own(s, row), s.own_length, dk, a);
        detail::dist::copy_rows_in(gv.own(s, row), s.own_length, dv, a);
    }
    st.seconds_total = detail::dist::seconds_since(t0);
    if (stats) *stats = st;
}

}  // namespace longnet::distributed

#endif  // LONGNET_HAS_MPI_HEADER
