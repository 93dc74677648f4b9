// SPDX-License-Identifier: Apache-2.0
#pragma once
// The distributed exact backward (SPEC §6 `exact`, §7). Per branch and segment, with the merged
// output O and log-sum-exp L of the forward and the upstream gradient dO:
//   P = exp(τ·q·kᵀ − L),  Δ = rowsum(dO ∘ O),  dS = P ∘ (dO·vᵀ − Δ),
//   dQ = τ·dS·K,  dK = τ·dSᵀ·Q,  dV = Pᵀ·dO,
// summed over branches. A local branch does this on the chunk. A long branch all-gathers the selected
// K/V rows within its group (as the forward), computes the dQ of this rank's queries and the partial
// dK/dV of every gathered row, and sends each partial back to the rank that owns the row (all-to-all
// within the group, the "reduce-scatter" of SPEC §7); the owner sums the g partials in rank order, so
// the result does not depend on MPI's reduction algorithm.
// The per-segment gradient here is plain loops in the accumulator type, parallel over segments.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "longnet/detail/distributed_common.hpp"
#include "longnet/detail/distributed_forward.hpp"
#include "longnet/detail/pack.hpp"
#include "longnet/detail/threading.hpp"

namespace longnet::detail::dist {

// Gradient of one segment: nq queries (rows q, dout; their L and Δ) against nk keys (rows k, v), all
// [rows][D] in A. Causal: query i sees keys j <= i + shift. Accumulates into dq [nq][D], dk and dv [nk][D].
template <class A>
void segment_gradient(const A* q, const A* dout, const A* L, const A* delta, index_t nq, const A* k, const A* v,
                      index_t nk, index_t dim, bool causal, index_t shift, A scale, A* dq, A* dk, A* dv) {
    for (index_t i = 0; i < nq; ++i) {
        const A* qi = q + i * dim;
        const A* gi = dout + i * dim;
        A* dqi = dq + i * dim;
        const index_t keys = causal ? std::min(nk, i + shift + 1) : nk;
        for (index_t j = 0; j < keys; ++j) {
            const A* kj = k + j * dim;
            const A* vj = v + j * dim;
            A s = 0, dp = 0;
            for (index_t d = 0; d < dim; ++d) {
                s += qi[d] * kj[d];
                dp += gi[d] * vj[d];
            }
            const A p = std::exp(scale * s - L[i]);          // softmax weight with the merged L
            const A ds = scale * p * (dp - delta[i]);         // τ·dS
            A* dkj = dk + j * dim;
            A* dvj = dv + j * dim;
            for (index_t d = 0; d < dim; ++d) {
                dqi[d] += ds * kj[d];
                dkj[d] += ds * qi[d];
                dvj[d] += p * gi[d];
            }
        }
    }
}

// rows[i][:] = x[b, sel(i), h, :] in A, i < count.
template <class A, class T>
void gather_rows_accum(const tensor_view<const T>& x, index_t b, index_t h, const row_selection& sel, A* dst) {
    const index_t D = x.head_dim();
    for (index_t i = 0; i < sel.count; ++i) {
        const T* src = x.row(b, sel.position(i), h);
        for (index_t d = 0; d < D; ++d) dst[i * D + d] = to_accum<A>(src[d]);
    }
}

// Scratch of one backward task.
template <class A>
struct backward_workspace {
    std::vector<A> q, dout, lse, delta, k, v, dq, dk, dv;
    void size(index_t nq, index_t nk, index_t dim) {
        q.assign(static_cast<std::size_t>(nq * dim), A(0));
        dout.assign(q.size(), A(0));
        dq.assign(q.size(), A(0));
        lse.assign(static_cast<std::size_t>(nq), A(0));
        delta.assign(lse.size(), A(0));
        k.assign(static_cast<std::size_t>(nk * dim), A(0));
        v.assign(k.size(), A(0));
        dk.assign(k.size(), A(0));
        dv.assign(k.size(), A(0));
    }
};

// Accumulators [B, n, H, D] in A, contiguous.
template <class A>
struct grad_accumulator {
    index_t N, H, D;
    std::vector<A> data;
    grad_accumulator(index_t b, index_t n, index_t h, index_t d)
        : N(n), H(h), D(d), data(static_cast<std::size_t>(b * n * h * d), A(0)) {}
    A* row(index_t b, index_t n, index_t h) noexcept { return data.data() + ((b * N + n) * H + h) * D; }
};

template <class T, class Arch = simd::native>
void backward(tensor_view<const T> q, tensor_view<const T> k, tensor_view<const T> v, tensor_view<const T> out,
              lse_view<const accum_t<T>> lse, tensor_view<const T> dout, tensor_view<T> dq, tensor_view<T> dk,
              tensor_view<T> dv, const dilated_options& opt, MPI_Comm comm, const std::vector<branch_plan>& plans,
              distributed::comm_stats& st) {
    using A = accum_t<T>;
    const index_t B = q.batch(), N = q.seq_len(), H = q.heads(), D = q.head_dim();
    if (B == 0 || N == 0 || H == 0) return;
    const A scale = static_cast<A>(effective_scale(opt.scale, D));
    grad_accumulator<A> gq(B, N, H, D), gk(B, N, H, D), gv(B, N, H, D);

    // Δ = rowsum(dO ∘ O) per row
    std::vector<A> delta(static_cast<std::size_t>(B * N * H));
    parallel_tasks(
        B * N, [] { return 0; },
        [&](int&, index_t t) {
            const index_t b = t / N, n = t % N;
            for (index_t h = 0; h < H; ++h) {
                A s = 0;
                const T* o = out.row(b, n, h);
                const T* g = dout.row(b, n, h);
                for (index_t d = 0; d < D; ++d) s += to_accum<A>(o[d]) * to_accum<A>(g[d]);
                delta[static_cast<std::size_t>((b * N + n) * H + h)] = s;
            }
        });
    // queries of a selection: q, dO, L, Δ rows
    auto load_queries = [&](backward_workspace<A>& ws, index_t b, index_t h, const row_selection& sel) {
        gather_rows_accum<A, T>(q, b, h, sel, ws.q.data());
        gather_rows_accum<A, T>(dout, b, h, sel, ws.dout.data());
        for (index_t i = 0; i < sel.count; ++i) {
            const index_t pos = sel.position(i);
            ws.lse[static_cast<std::size_t>(i)] = lse(b, pos, h);
            ws.delta[static_cast<std::size_t>(i)] = delta[static_cast<std::size_t>((b * N + pos) * H + h)];
        }
    };

    group_cache groups;
    std::vector<T> kg, vg;
    for (std::size_t bi = 0; bi < opt.branches.size(); ++bi) {
        const branch_plan& p = plans[bi];
        if (!p.is_long) {
            ++st.local_branches;
            const branch_geometry geo(opt.branches[bi], N);
            parallel_tasks(
                B * H * geo.segments, [] { return backward_workspace<A>(); },
                [&](backward_workspace<A>& ws, index_t t) {
                    const index_t g = t % geo.segments, h = (t / geo.segments) % H, b = t / geo.segments / H;
                    const row_selection sel = geo.select(g, head_offset(opt.offsets, h, H, geo.dilation), N);
                    if (sel.count == 0) return;
                    ws.size(sel.count, sel.count, D);
                    load_queries(ws, b, h, sel);
                    gather_rows_accum<A, T>(k, b, h, sel, ws.k.data());
                    gather_rows_accum<A, T>(v, b, h, sel, ws.v.data());
                    segment_gradient<A>(ws.q.data(), ws.dout.data(), ws.lse.data(), ws.delta.data(), sel.count,
                                        ws.k.data(), ws.v.data(), sel.count, D, opt.causal, 0, scale, ws.dq.data(),
                                        ws.dk.data(), ws.dv.data());
                    for (index_t i = 0; i < sel.count; ++i) {  // this task owns these rows for this branch
                        const index_t pos = sel.position(i);
                        A* rq = gq.row(b, pos, h);
                        A* rk = gk.row(b, pos, h);
                        A* rv = gv.row(b, pos, h);
                        for (index_t d = 0; d < D; ++d) {
                            rq[d] += ws.dq[static_cast<std::size_t>(i * D + d)];
                            rk[d] += ws.dk[static_cast<std::size_t>(i * D + d)];
                            rv[d] += ws.dv[static_cast<std::size_t>(i * D + d)];
                        }
                    }
                });
            continue;
        }
        ++st.long_branches;
        MPI_Comm group = groups.get(comm, p, st.control_bytes);
        gather_branch_kv<T>(group, k, v, opt.offsets, p, kg, vg, st);
        const index_t c = p.rows_per_rank, g = p.group_size, total = g * c, rows_before = p.group_rank * c;
        const index_t nk = opt.causal ? rows_before + c : total;  // later ranks' keys are invisible
        // partial dK/dV of every gathered row, [B·H][total][D]; rows of later ranks stay 0 when causal
        std::vector<A> pk(static_cast<std::size_t>(B * H * total * D), A(0)), pv(pk.size(), A(0));
        parallel_tasks(
            B * H, [] { return backward_workspace<A>(); },
            [&](backward_workspace<A>& ws, index_t t) {
                const index_t h = t % H, b = t / H;
                const row_selection sel_q{head_offset(opt.offsets, h, H, p.dilation), p.dilation, c};
                ws.size(c, nk, D);
                load_queries(ws, b, h, sel_q);
                for (index_t j = 0; j < nk * D; ++j) {
                    ws.k[static_cast<std::size_t>(j)] = to_accum<A>(kg[static_cast<std::size_t>(t * total * D + j)]);
                    ws.v[static_cast<std::size_t>(j)] = to_accum<A>(vg[static_cast<std::size_t>(t * total * D + j)]);
                }
                segment_gradient<A>(ws.q.data(), ws.dout.data(), ws.lse.data(), ws.delta.data(), c, ws.k.data(),
                                    ws.v.data(), nk, D, opt.causal, rows_before, scale, ws.dq.data(), ws.dk.data(),
                                    ws.dv.data());
                for (index_t i = 0; i < c; ++i) {
                    A* rq = gq.row(b, sel_q.position(i), h);
                    for (index_t d = 0; d < D; ++d) rq[d] += ws.dq[static_cast<std::size_t>(i * D + d)];
                }
                std::copy(ws.dk.begin(), ws.dk.end(), pk.begin() + t * total * D);
                std::copy(ws.dv.begin(), ws.dv.end(), pv.begin() + t * total * D);
            });
        // send each owner its rows' partials; receive [g][B·H][c][D] and sum in rank order
        const std::size_t row_bytes = static_cast<std::size_t>(D) * sizeof(A);
        const mpi_type row = row_type(row_bytes);
        const mpi_type send_type = strided_block_type(row, row_bytes, B * H, c, total);
        MPI_Datatype recv_raw;
        mpi_check(MPI_Type_vector(static_cast<int>(B * H), static_cast<int>(c), static_cast<int>(c), row.get(), &recv_raw),
                  "MPI_Type_vector");
        const mpi_type recv_type(recv_raw);
        std::vector<A> recv(static_cast<std::size_t>(g * B * H * c * D));
        for (int which = 0; which < 2; ++which) {
            std::vector<A>& partial = which == 0 ? pk : pv;
            grad_accumulator<A>& acc = which == 0 ? gk : gv;
            const auto t0 = clock::now();
            mpi_check(MPI_Alltoall(partial.data(), 1, send_type.get(), recv.data(), 1, recv_type.get(), group),
                      "MPI_Alltoall (dK/dV partials)");
            st.seconds_communication += seconds_since(t0);
            const auto bytes = static_cast<std::uint64_t>(g - 1) * static_cast<std::uint64_t>(B * H * c) * row_bytes;
            st.bytes_sent += bytes;
            st.bytes_received += bytes;
            st.collectives += 1;
            parallel_tasks(
                B * H, [] { return 0; },
                [&](int&, index_t t) {
                    const index_t h = t % H, b = t / H;
                    const index_t o = head_offset(opt.offsets, h, H, p.dilation);
                    for (index_t i = 0; i < c; ++i) {
                        A* dst = acc.row(b, o + i * p.dilation, h);
                        for (index_t d = 0; d < D; ++d) {
                            A s = 0;
                            for (index_t r = 0; r < g; ++r) s += recv[static_cast<std::size_t>(((r * B * H + t) * c + i) * D + d)];
                            dst[d] += s;
                        }
                    }
                });
        }
    }
    // write the gradients in the storage type
    parallel_tasks(
        B * N, [] { return 0; },
        [&](int&, index_t t) {
            const index_t b = t / N, n = t % N;
            for (index_t h = 0; h < H; ++h)
                for (index_t d = 0; d < D; ++d) {
                    dq(b, n, h, d) = from_accum<T>(gq.row(b, n, h)[d]);
                    dk(b, n, h, d) = from_accum<T>(gk.row(b, n, h)[d]);
                    dv(b, n, h, d) = from_accum<T>(gv.row(b, n, h)[d]);
                }
        });
}

}  // namespace longnet::detail::dist
