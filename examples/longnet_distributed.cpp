// SPDX-License-Identifier: Apache-2.0
// longnet_distributed: one long sequence split across MPI ranks (sequence parallelism, SPEC §7).
//
//   mpirun -np 4 longnet_distributed --tokens 16M --heads 1 --dim 64
//
// Every rank generates its own chunk of Q, K, V from a counter-based generator (a value is a function
// of (seed, tensor, b, position, h, d), so any rank can regenerate any row without communication),
// runs longnet::distributed::dilated_attention, and checks a few sampled rows of its chunk against a
// double-precision brute force from the multiset definition (SPEC §3) over the regenerated rows of the
// sampled rows' segments, on all ranks. Rank 0 prints a progress line per phase, then per-rank timing
// and traffic, next to what an all-gather over the whole world (torchscale's scheme) would move.
//
// Options (sizes: decimal digits with an optional K, M or G, powers of 1024, at most 2^40; parsed by
// longnet_distributed_args.hpp, which the CLI fuzz target calls; B·N·H·D at most 2^50 elements, and one
// rank's tensors must fit in the machine's memory, checked before they are allocated):
//   --tokens N        total sequence length (default 1M); must be a multiple of the rank count
//   --heads H         heads (default 1)          --dim D    head dim (default 64)
//   --batch B         batch (default 1)          --causal   causal attention
//   --config C        paper: the paper's 5 branches w = 2048..32768, r = 1, 2, 4, 6, 12;
//                     paper-extended (default): those plus w = 65536, 131072, ... up to --max-segment
//                     (default: the sequence length) with r = w / 2048, so segments longer than a chunk
//                     exist and travel; each long branch keeps w / r = 2048 selected rows per segment
//   --branches LIST   explicit branches "w:r,w:r,..." (overrides --config)
//   --max-segment W   largest segment of paper-extended (default: --tokens)
//   --type T          bf16 (default: halves memory) or float
//   --offsets P       paper (default) or torchscale
//   --check-rows K    rows checked per rank (default 4; 0 disables; at most 2^20)
//   --backward        also run the distributed backward (exact) and report it
//   --seed S          generator seed (default 1)
// Timing per rank: wall time of the call, its process CPU time (the rank's own work, also when ranks
// share cores) and the time inside payload collectives (including waiting for slower peers).
// Prints one machine-readable line "result: key=value ..." (used by bench/bench_distributed.sh).
// Exit codes: 0 success, 1 check failed or runtime error, 2 bad arguments.

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <longnet/backward.hpp>
#include <longnet/distributed.hpp>
#include <longnet/options.hpp>

#include "cli_common.hpp"
#include "longnet_distributed_args.hpp"

using longnet::index_t;

namespace {

using namespace distributed_cli;

// Counter-based inputs: a value in [-1, 1) from (seed, tensor, b, position, h, d) (splitmix64).
inline float input_value(std::uint64_t seed, int tensor, index_t b, index_t pos, index_t h, index_t d, index_t N,
                         index_t H, index_t D) {
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(tensor) * 0xD1B54A32D192ED03ull +
                      static_cast<std::uint64_t>(((b * N + pos) * H + h) * D + d);
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    return static_cast<float>(static_cast<double>(x >> 40) / static_cast<double>(1ull << 23) - 1.0);
}

template <class T>
T store(float x) {
    return T(x);
}
template <class T>
double widen(T x) {
    return static_cast<double>(static_cast<float>(x));
}

double now() { return MPI_Wtime(); }

struct rank_report {  // one row per rank, gathered on rank 0
    double seconds_total, seconds_comm, cpu_seconds, bytes_sent, bytes_received, world_bytes, check_error, checked_rows,
        bwd_seconds, bwd_comm, bwd_sent, long_branches, local_branches;
};
constexpr int report_fields = 13;

template <class T>
int run(const config& c, MPI_Comm comm) {
    using A = longnet::accum_t<T>;
    int rank = 0, ranks = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &ranks);
    const longnet::dilated_options opt = make_options(c);
    const index_t B = c.batch, H = c.heads, D = c.dim, N = c.tokens;
    if (N % ranks != 0) throw usage_error("--tokens " + std::to_string(N) + " is not a multiple of the rank count " + std::to_string(ranks));
    const index_t n = N / ranks, first = rank * n;
    // This rank's tensors (q, k, v, out, and dout, dq, dk, dv for --backward; lse), checked against the
    // machine's memory before they are allocated. Every rank decides alike (MIN), so none waits for another.
    const double rank_bytes = static_cast<double>(B * n * H * D) * static_cast<double>(sizeof(T)) * (c.backward ? 8 : 4) +
                              static_cast<double>(B * n * H) * static_cast<double>(sizeof(A));
    const std::uint64_t memory = cli::physical_memory_bytes();
    int fits = memory == 0 || rank_bytes <= static_cast<double>(memory) ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &fits, 1, MPI_INT, MPI_MIN, comm);
    if (!fits)
        throw usage_error("the tensors of one rank need " + cli::human_bytes(rank_bytes) + " (B x N/P x H x D = " + std::to_string(B) +
                          " x " + std::to_string(n) + " x " + std::to_string(H) + " x " + std::to_string(D) +
                          "), more than this machine's memory (" + cli::human_bytes(static_cast<double>(memory)) + ")");
    const double t_start = now();
    auto progress = [&](const std::string& what) {
        if (rank == 0) {
            std::fprintf(stderr, "[%7.1f s] %s\n", now() - t_start, what.c_str());
            std::fflush(stderr);
        }
    };
    if (rank == 0) {
        std::printf("longnet_distributed: %d ranks, N = %lld tokens (n = %lld per rank), B = %lld, H = %lld, D = %lld, %s, %s\n",
                    ranks, static_cast<long long>(N), static_cast<long long>(n), static_cast<long long>(B),
                    static_cast<long long>(H), static_cast<long long>(D), c.bf16 ? "bfloat16" : "float",
                    c.causal ? "causal" : "non-causal");
        std::printf("branches (w:r):");
        for (const auto& br : opt.branches) {
            const index_t w = std::min(br.segment_length, N);
            std::printf(" %lld:%lld%s", static_cast<long long>(br.segment_length), static_cast<long long>(br.dilation),
                        w > n ? "(long)" : "");
        }
        std::printf("\n");
    }
    progress("generating this rank's chunk of q, k, v");
    const auto elems = static_cast<std::size_t>(B * n * H * D);
    std::vector<T> q(elems), k(elems), v(elems), out(elems);
    std::vector<A> lse(static_cast<std::size_t>(B * n * H));
    std::vector<T>* tensors[3] = {&q, &k, &v};
    for (int t = 0; t < 3; ++t) {
        T* data = tensors[t]->data();
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
        for (index_t row = 0; row < B * n; ++row) {
            const index_t b = row / n, i = row % n;
            for (index_t h = 0; h < H; ++h)
                for (index_t d = 0; d < D; ++d)
                    data[((b * n + i) * H + h) * D + d] = store<T>(input_value(c.seed, t, b, first + i, h, d, N, H, D));
        }
    }
    MPI_Barrier(comm);
    progress("forward: longnet::distributed::dilated_attention");
    longnet::distributed::comm_stats st;
    const std::clock_t cpu0 = std::clock();  // process CPU time: the rank's own work, even on shared cores
    longnet::distributed::dilated_attention(longnet::make_bnhd(static_cast<const T*>(q.data()), B, n, H, D),
                                            longnet::make_bnhd(static_cast<const T*>(k.data()), B, n, H, D),
                                            longnet::make_bnhd(static_cast<const T*>(v.data()), B, n, H, D),
                                            longnet::make_bnhd(out.data(), B, n, H, D), opt, comm,
                                            longnet::make_lse_bnh(lse.data(), B, n, H), &st);
    const double cpu_seconds = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
    MPI_Barrier(comm);

    // whole-world all-gather (torchscale's scheme): every long branch gathers from all P ranks
    double world_bytes = 0;
    for (const auto& br : opt.branches)
        if (std::min(br.segment_length, N) > n)
            world_bytes += 2.0 * (ranks - 1) * static_cast<double>(B * H * (n / br.dilation) * D) * sizeof(T);

    // check sampled rows against the brute force on regenerated rows
    progress("checking " + std::to_string(c.check_rows) + " sampled rows per rank (all heads) against a double brute force");
    double max_error = 0;
    index_t checked = 0;
    const double tau = longnet::effective_scale(opt.scale, D);
    auto regen = [&](int t, index_t b, index_t pos, index_t h, index_t d) {
        return widen<T>(store<T>(input_value(c.seed, t, b, pos, h, d, N, H, D)));
    };
    for (index_t s = 0; s < c.check_rows && n > 0; ++s) {
        // first and last row of the chunk, then spread positions
        const index_t i = s == 0 ? 0 : s == 1 ? n - 1 : (s * 7919 * 104729 + rank * 31) % n;
        const index_t b = s % B, p = first + i;
        for (index_t h = 0; h < H; ++h) {
            std::vector<double> qrow(static_cast<std::size_t>(D));
            for (index_t d = 0; d < D; ++d) qrow[static_cast<std::size_t>(d)] = regen(0, b, p, h, d);
            std::vector<double> logits;
            std::vector<index_t> keys;
            double pads = 0;
            for (const auto& br : opt.branches) {
                const index_t w = std::min(br.segment_length, N), r = br.dilation;
                const index_t start = p / w * w, len = std::min(w, N - start);
                const index_t o = longnet::head_offset(opt.offsets, h, H, r);
                if (p - start < o || (p - start - o) % r != 0) continue;
                index_t count = 0;
                for (index_t j = start + o; j < start + len; j += r, ++count)
                    if (!opt.causal || j <= p) keys.push_back(j);
                if (opt.tail == longnet::tail_mode::zero_pad && !opt.causal) pads += static_cast<double>((w + r - 1) / r - count);
            }
            double mx = pads > 0 ? 0.0 : -std::numeric_limits<double>::infinity();
            for (index_t j : keys) {
                double dot = 0;
                for (index_t d = 0; d < D; ++d) dot += qrow[static_cast<std::size_t>(d)] * regen(1, b, j, h, d);
                logits.push_back(tau * dot);
                mx = std::max(mx, logits.back());
            }
            double sum = pads * std::exp(-mx);
            for (double l : logits) sum += std::exp(l - mx);
            std::vector<double> ref(static_cast<std::size_t>(D), 0.0);
            for (std::size_t j = 0; j < keys.size(); ++j) {
                const double wgt = std::exp(logits[j] - mx) / sum;
                for (index_t d = 0; d < D; ++d) ref[static_cast<std::size_t>(d)] += wgt * regen(2, b, keys[j], h, d);
            }
            const double ref_lse = keys.empty() && pads == 0 ? -std::numeric_limits<double>::infinity() : mx + std::log(sum);
            const double got_lse = static_cast<double>(lse[static_cast<std::size_t>((b * n + i) * H + h)]);
            if (std::isfinite(ref_lse)) max_error = std::max(max_error, std::fabs(got_lse - ref_lse) / std::max(1.0, std::fabs(ref_lse)));
            else if (got_lse != ref_lse) max_error = std::max(max_error, 1.0);
            for (index_t d = 0; d < D; ++d)
                max_error = std::max(max_error, std::fabs(widen<T>(out[static_cast<std::size_t>(((b * n + i) * H + h) * D + d)]) -
                                                          ref[static_cast<std::size_t>(d)]));
            ++checked;
        }
    }

    double bwd_seconds = 0, bwd_comm = 0, bwd_sent = 0;
    if (c.backward) {
        progress("backward: longnet::distributed::dilated_attention_backward (exact)");
        std::vector<T> dout(elems), dq(elems), dk(elems), dv(elems);
        for (std::size_t e = 0; e < elems; ++e) dout[e] = store<T>(0.5f * static_cast<float>(widen<T>(q[e])));
        longnet::distributed::comm_stats bst;
        auto cv = [&](const std::vector<T>& x) { return longnet::make_bnhd(static_cast<const T*>(x.data()), B, n, H, D); };
        longnet::distributed::dilated_attention_backward(
            cv(q), cv(k), cv(v), cv(out), longnet::make_lse_bnh(static_cast<const A*>(lse.data()), B, n, H), cv(dout),
            longnet::make_bnhd(dq.data(), B, n, H, D), longnet::make_bnhd(dk.data(), B, n, H, D),
            longnet::make_bnhd(dv.data(), B, n, H, D), opt, comm, longnet::grad_mode::exact, &bst);
        bwd_seconds = bst.seconds_total;
        bwd_comm = bst.seconds_communication;
        bwd_sent = static_cast<double>(bst.bytes_sent);
    }

    const rank_report mine{st.seconds_total, st.seconds_communication, cpu_seconds, static_cast<double>(st.bytes_sent),
                           static_cast<double>(st.bytes_received), world_bytes, max_error, static_cast<double>(checked),
                           bwd_seconds, bwd_comm, bwd_sent, static_cast<double>(st.long_branches),
                           static_cast<double>(st.local_branches)};
    std::vector<rank_report> all(static_cast<std::size_t>(ranks));
    MPI_Gather(&mine, report_fields, MPI_DOUBLE, all.data(), report_fields, MPI_DOUBLE, 0, comm);
    const double tolerance = c.bf16 ? 2e-2 : 1e-4;  // bf16 output rounding is 2^-9 relative
    int ok = 1;
    if (rank == 0) {
        progress("done");
        std::printf("%-5s %10s %10s %10s %12s %12s %14s %8s %10s\n", "rank", "fwd s", "cpu s", "comm s", "sent B",
                    "recv B", "world-AG B", "checked", "max err");
        double worst = 0, max_total = 0, max_cpu = 0, max_sent = 0, max_world = 0, max_comm = 0, max_bwd = 0, max_bwd_sent = 0;
        for (int r = 0; r < ranks; ++r) {
            const rank_report& x = all[static_cast<std::size_t>(r)];
            std::printf("%-5d %10.3f %10.3f %10.4f %12.0f %12.0f %14.0f %8.0f %10.2e\n", r, x.seconds_total,
                        x.cpu_seconds, x.seconds_comm,
                        x.bytes_sent, x.bytes_received, x.world_bytes, x.checked_rows, x.check_error);
            worst = std::max(worst, x.check_error);
            max_total = std::max(max_total, x.seconds_total);
            max_cpu = std::max(max_cpu, x.cpu_seconds);
            max_comm = std::max(max_comm, x.seconds_comm);
            max_sent = std::max(max_sent, std::max(x.bytes_sent, x.bytes_received));
            max_world = std::max(max_world, x.world_bytes);
            max_bwd = std::max(max_bwd, x.bwd_seconds);
            max_bwd_sent = std::max(max_bwd_sent, x.bwd_sent);
        }
        if (c.backward)
            for (int r = 0; r < ranks; ++r) {
                const rank_report& x = all[static_cast<std::size_t>(r)];
                std::printf("rank %d backward: %.3f s (comm %.4f s), sent %.0f B\n", r, x.bwd_seconds, x.bwd_comm, x.bwd_sent);
            }
        ok = worst <= tolerance ? 1 : 0;
        std::printf("check: max error %.3e over the sampled rows (tolerance %.0e): %s\n", worst, tolerance, ok ? "OK" : "FAILED");
        std::printf("result: ranks=%d tokens=%lld per_rank=%lld heads=%lld dim=%lld type=%s causal=%d long_branches=%.0f "
                    "fwd_seconds=%.4f cpu_seconds=%.4f comm_seconds=%.4f bytes_per_rank=%.0f world_allgather_bytes_per_rank=%.0f "
                    "bwd_seconds=%.4f bwd_bytes_per_rank=%.0f check=%s\n",
                    ranks, static_cast<long long>(N), static_cast<long long>(n), static_cast<long long>(H),
                    static_cast<long long>(D), c.bf16 ? "bf16" : "float", c.causal ? 1 : 0, all[0].long_branches, max_total,
                    max_cpu, max_comm, max_sent, max_world, max_bwd, max_bwd_sent, ok ? "ok" : "failed");
        std::fflush(stdout);
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, comm);
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int code = 0;
    try {
        const config c = parse(argc, argv);
        code = c.bf16 ? run<longnet::bfloat16>(c, MPI_COMM_WORLD) : run<float>(c, MPI_COMM_WORLD);
    } catch (...) {
        const cli::failure f = cli::current_failure();
        if (f.code != 2) {  // a runtime failure on this rank: the others may wait in a collective
            std::fprintf(stderr, "longnet_distributed (rank %d): %s\n", rank, f.message.c_str());
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        // bad arguments and refused options are identical on every rank: report once
        if (rank == 0) std::fprintf(stderr, "longnet_distributed: %s\n", f.message.c_str());
        code = 2;
    }
    MPI_Finalize();
    return code;
}
