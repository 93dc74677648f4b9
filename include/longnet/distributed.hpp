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
}  // namespace longnet::distributed
#else

#include <mpi.h>

#include <stdexcept>
#include <string>

#include "longnet/backward.hpp"
#include "longnet/detail/distributed_dispatch.hpp"  // the distributed kernels' one entry (and distributed_common.hpp)
#include "longnet/detail/validate.hpp"
#include "longnet/numeric.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"

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
        if (mode != grad_mode::exact && mode != grad_mode::stop_grad_weights)
            throw std::invalid_argument("unknown grad mode value " + std::to_string(static_cast<int>(mode)));
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

}  // namespace longnet::distributed

#endif  // LONGNET_HAS_MPI_HEADER
