// SPDX-License-Identifier: Apache-2.0
// longnet::distributed under mpirun (any rank count; CTest runs 1, 2 and 4 ranks).
//
// Every rank generates the full [B, N, H, D] inputs from a shared seed, computes the single-process
// reference on the whole sequence itself, runs the distributed op on its chunk [ρ·n, (ρ+1)·n) and
// compares its slice:
//   - forward out and LSE: bitwise (float, double, bfloat16, half), causal and not, both offset policies,
//     both tail modes, branches shorter and longer than a chunk (and longer than the sequence);
//   - backward dq, dk, dv: bitwise against the single-process backward (float, double, bfloat16; both
//     grad modes) and, in exact mode, against a double-precision oracle written from the multiset
//     definition (SPEC §3, §6): ≤ 1e-9 relative (double), ≤ 2e-5 relative (float), max-norm;
//   - traffic: bytes_sent/received equal 2·(g − 1)·B·H·(n/r)·D·sizeof(T) per long branch (forward);
//     twice that plus the L and Δ rows (backward);
//   - bad preconditions on one rank (or all): every rank throws std::invalid_argument with the same
//     message, then a good call still works (nobody was left inside a collective).
// The harness (check, agreement, main's start and finish) is mpi_check.hpp. Exit code 1 on any failure on
// any rank.

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/backward.hpp"
#include "longnet/dilated_attention.hpp"
#include "longnet/distributed.hpp"

#include "mpi_check.hpp"

using longnet::index_t;

namespace {

using namespace mpi_check;

template <class T>
double as_double(T x) {
    return static_cast<double>(static_cast<float>(x));
}
template <>
double as_double<double>(double x) {
    return x;
}

struct problem {
    index_t B = 2, n = 32, H = 3, D = 5;
    index_t N() const { return n * g_size; }
};

std::string describe(const longnet::dilated_options& o) {
    std::string s = "{";
    for (const auto& br : o.branches)
        s += "(" + std::to_string(br.segment_length) + "," + std::to_string(br.dilation) + ")";
    s += "} causal=" + std::to_string(o.causal) + " offsets=" + longnet::to_string(o.offsets) +
         " tail=" + longnet::to_string(o.tail);
    return s;
}

// Expected payload bytes of a forward: per long branch 2·(g − 1)·B·H·(n/r)·D·sizeof(T).
std::uint64_t expected_forward_bytes(const problem& pr, const longnet::dilated_options& o, std::size_t elem) {
    std::uint64_t bytes = 0;
    const index_t N = pr.N();
    for (const auto& br : o.branches) {
        const index_t w = std::min(br.segment_length, N);
        if (w <= pr.n) continue;
        const index_t span = w / pr.n, first = g_rank / span * span;
        const index_t g = std::min(span, static_cast<index_t>(g_size) - first);
        bytes += 2ull * static_cast<std::uint64_t>((g - 1) * pr.B * pr.H * (pr.n / br.dilation) * pr.D) * elem;
    }
    return bytes;
}

template <class T>
bool same_bits(const T& a, const T& b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// Forward: distributed slice vs single-process, bitwise.
template <class T>
void test_forward(const problem& pr, const longnet::dilated_options& opt, const char* type_name) {
    using A = longnet::accum_t<T>;
    const index_t B = pr.B, n = pr.n, H = pr.H, D = pr.D, N = pr.N();
    const std::size_t full = static_cast<std::size_t>(B * N * H * D);
    const auto q = random_tensor<T>(full, 11, 2.0), k = random_tensor<T>(full, 12, 2.0), v = random_tensor<T>(full, 13, 1.0);
    std::vector<T> out_ref(full);
    std::vector<A> lse_ref(static_cast<std::size_t>(B * N * H));
    longnet::dilated_attention(longnet::make_bnhd(q.data(), B, N, H, D), longnet::make_bnhd(k.data(), B, N, H, D),
                               longnet::make_bnhd(v.data(), B, N, H, D), longnet::make_bnhd(out_ref.data(), B, N, H, D),
                               opt, longnet::make_lse_bnh(lse_ref.data(), B, N, H));
    // the chunk as strided views into the full arrays (non-contiguous in B)
    const index_t off = g_rank * n * H * D;
    auto chunk = [&](const std::vector<T>& x) {
        return longnet::tensor_view<const T>(x.data() + off, {B, n, H, D}, {N * H * D, H * D, D});
    };
    std::vector<T> out(static_cast<std::size_t>(B * n * H * D));
    std::vector<A> lse(static_cast<std::size_t>(B * n * H));
    longnet::distributed::comm_stats st;
    longnet::distributed::dilated_attention(chunk(q), chunk(k), chunk(v), longnet::make_bnhd(out.data(), B, n, H, D), opt,
                                            MPI_COMM_WORLD, longnet::make_lse_bnh(lse.data(), B, n, H), &st);
    std::size_t bad_out = 0, bad_lse = 0;
    for (index_t b = 0; b < B; ++b)
        for (index_t i = 0; i < n; ++i)
            for (index_t h = 0; h < H; ++h) {
                const index_t p = g_rank * n + i;
                if (!same_bits(lse[static_cast<std::size_t>((b * n + i) * H + h)], lse_ref[static_cast<std::size_t>((b * N + p) * H + h)]))
                    ++bad_lse;
                for (index_t d = 0; d < D; ++d)
                    if (!same_bits(out[static_cast<std::size_t>(((b * n + i) * H + h) * D + d)],
                                   out_ref[static_cast<std::size_t>(((b * N + p) * H + h) * D + d)]))
                        ++bad_out;
            }
    const std::string what = std::string("forward ") + type_name + " " + describe(opt);
    check(bad_out == 0, what + ": " + std::to_string(bad_out) + " output values differ from the single-process op");
    check(bad_lse == 0, what + ": " + std::to_string(bad_lse) + " LSE values differ from the single-process op");
    const std::uint64_t expect = expected_forward_bytes(pr, opt, sizeof(T));
    check(st.bytes_sent == expect && st.bytes_received == expect,
          what + ": traffic " + std::to_string(st.bytes_sent) + "/" + std::to_string(st.bytes_received) +
              " bytes, expected " + std::to_string(expect));
    check(st.local_branches + st.long_branches == static_cast<int>(opt.branches.size()), what + ": branch counts");
}

// The group communicators are split by the first call on a communicator and kept across calls
// (detail::dist::comm_cache, on the communicator's attributes): later calls split none and give bitwise
// the first call's results; freeing the communicator frees them.
void test_kept_communicators() {
    using T = float;
    const index_t B = 1, n = 32, H = 2, D = 8, N = n * g_size;
    const auto opt = longnet::dilated_options::from_lists({8, 64, 128}, {1, 2, 4}, true);
    const std::size_t full = static_cast<std::size_t>(B * N * H * D), own = static_cast<std::size_t>(B * n * H * D);
    const auto q = random_tensor<T>(full, 21, 2.0), k = random_tensor<T>(full, 22, 2.0), v = random_tensor<T>(full, 23, 1.0);
    const auto dout = random_tensor<T>(full, 24, 1.0);
    const index_t off = g_rank * n * H * D;
    auto chunk = [&](const std::vector<T>& x) { return longnet::make_bnhd(x.data() + off, B, n, H, D); };
    MPI_Comm comm = MPI_COMM_NULL;
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    const long long live0 = longnet::detail::dist::comm_cache::live();
    // distinct ranks per segment group (w' / n) among the long branches: the splits the first call makes
    int expect_splits = 0;
    {
        std::vector<index_t> spans;
        for (const auto& br : opt.branches) {
            const index_t w = std::min(br.segment_length, N);
            if (w > n && std::find(spans.begin(), spans.end(), w / n) == spans.end()) spans.push_back(w / n);
        }
        expect_splits = static_cast<int>(spans.size());
    }
    std::vector<T> first(own), out(own), dq(own), dk(own), dv(own), dq1(own);
    std::vector<float> lse(static_cast<std::size_t>(B * n * H));
    for (int call = 0; call < 3; ++call) {
        longnet::distributed::comm_stats st;
        longnet::distributed::dilated_attention(chunk(q), chunk(k), chunk(v), longnet::make_bnhd(out.data(), B, n, H, D), opt,
                                                comm, longnet::make_lse_bnh(lse.data(), B, n, H), &st);
        const std::string what = "kept communicators: forward call " + std::to_string(call + 1);
        check(st.communicators_created == (call == 0 ? expect_splits : 0),
              what + " split " + std::to_string(st.communicators_created) + " communicators, expected " +
                  std::to_string(call == 0 ? expect_splits : 0));
        if (call == 0) first = out;
        check(std::memcmp(out.data(), first.data(), own * sizeof(T)) == 0, what + ": output differs from the first call's");
        longnet::distributed::comm_stats sb;
        longnet::distributed::dilated_attention_backward(
            chunk(q), chunk(k), chunk(v), longnet::make_bnhd(static_cast<const T*>(out.data()), B, n, H, D),
            longnet::make_lse_bnh(static_cast<const float*>(lse.data()), B, n, H), chunk(dout),
            longnet::make_bnhd(dq.data(), B, n, H, D), longnet::make_bnhd(dk.data(), B, n, H, D),
            longnet::make_bnhd(dv.data(), B, n, H, D), opt, comm, longnet::grad_mode::exact, &sb);
        check(sb.communicators_created == 0, what + ": the backward split " + std::to_string(sb.communicators_created) +
                                                 " communicators (the forward's are kept)");
        if (call == 0) dq1 = dq;
        check(std::memcmp(dq.data(), dq1.data(), own * sizeof(T)) == 0, what + ": dq differs from the first call's");
    }
    check(longnet::detail::dist::comm_cache::live() == live0 + expect_splits,
          "kept communicators: " + std::to_string(longnet::detail::dist::comm_cache::live() - live0) +
              " alive for the communicator, expected " + std::to_string(expect_splits));
    MPI_Comm_free(&comm);
    check(longnet::detail::dist::comm_cache::live() == live0,
          "kept communicators: MPI_Comm_free left " + std::to_string(longnet::detail::dist::comm_cache::live() - live0) +
              " of them alive");
}

// Double-precision oracle of the exact gradient from the multiset definition, on the full sequence.
void oracle_backward(const problem& pr, const longnet::dilated_options& opt, const std::vector<double>& q,
                     const std::vector<double>& k, const std::vector<double>& v, const std::vector<double>& dout,
                     std::vector<double>& dq, std::vector<double>& dk, std::vector<double>& dv) {
    const index_t B = pr.B, H = pr.H, D = pr.D, N = pr.N();
    const double tau = opt.scale ? *opt.scale : 1.0 / std::sqrt(static_cast<double>(D));
    dq.assign(q.size(), 0.0);
    dk.assign(q.size(), 0.0);
    dv.assign(q.size(), 0.0);
    auto at = [&](index_t b, index_t p, index_t h) { return static_cast<std::size_t>(((b * N + p) * H + h) * D); };
    for (index_t b = 0; b < B; ++b)
        for (index_t h = 0; h < H; ++h)
            for (index_t p = 0; p < N; ++p) {
                std::vector<index_t> keys;
                double pads = 0;
                for (const auto& br : opt.branches) {
                    const index_t w = std::min(br.segment_length, N), r = br.dilation;
                    const index_t start = p / w * w, len = std::min(w, N - start);
                    const index_t o = longnet::head_offset(opt.offsets, h, H, r);
                    if ((p - start) < o || (p - start - o) % r != 0) continue;
                    index_t count = 0;
                    for (index_t j = start + o; j < start + len; j += r, ++count)
                        if (!opt.causal || j <= p) keys.push_back(j);
                    if (opt.tail == longnet::tail_mode::zero_pad && !opt.causal) pads += static_cast<double>((w + r - 1) / r - count);
                }
                if (keys.empty()) continue;
                std::vector<double> s(keys.size());
                double mx = pads > 0 ? 0.0 : -std::numeric_limits<double>::infinity();
                for (std::size_t j = 0; j < keys.size(); ++j) {
                    double dot = 0;
                    for (index_t d = 0; d < D; ++d) dot += q[at(b, p, h) + d] * k[at(b, keys[j], h) + d];
                    s[j] = tau * dot;
                    mx = std::max(mx, s[j]);
                }
                double sum = pads * std::exp(-mx);
                for (double x : s) sum += std::exp(x - mx);
                const double L = mx + std::log(sum);
                std::vector<double> o(static_cast<std::size_t>(D), 0.0);
                for (std::size_t j = 0; j < keys.size(); ++j)
                    for (index_t d = 0; d < D; ++d) o[d] += std::exp(s[j] - L) * v[at(b, keys[j], h) + d];
                double delta = 0;
                for (index_t d = 0; d < D; ++d) delta += dout[at(b, p, h) + d] * o[d];
                for (std::size_t j = 0; j < keys.size(); ++j) {
                    const double P = std::exp(s[j] - L);
                    double dp = 0;
                    for (index_t d = 0; d < D; ++d) dp += dout[at(b, p, h) + d] * v[at(b, keys[j], h) + d];
                    const double ds = P * (dp - delta);
                    for (index_t d = 0; d < D; ++d) {
                        dq[at(b, p, h) + d] += tau * ds * k[at(b, keys[j], h) + d];
                        dk[at(b, keys[j], h) + d] += tau * ds * q[at(b, p, h) + d];
                        dv[at(b, keys[j], h) + d] += P * dout[at(b, p, h) + d];
                    }
                }
            }
}

// Backward: distributed forward + backward on the chunk vs the single-process backward on the full
// sequence (bitwise) and, when oracle_tolerance >= 0 (exact mode), vs the double oracle.
template <class T>
void test_backward(const problem& pr, const longnet::dilated_options& opt, const char* type_name, longnet::grad_mode mode,
                   double oracle_tolerance) {
    using A = longnet::accum_t<T>;
    const index_t B = pr.B, n = pr.n, H = pr.H, D = pr.D, N = pr.N();
    const std::size_t full = static_cast<std::size_t>(B * N * H * D), local = static_cast<std::size_t>(B * n * H * D);
    const auto q = random_tensor<T>(full, 21, 2.0), k = random_tensor<T>(full, 22, 2.0), v = random_tensor<T>(full, 23, 1.0),
               g = random_tensor<T>(full, 24, 1.0);
    // single-process reference on the full sequence
    auto whole = [&](const std::vector<T>& x) { return longnet::make_bnhd(x.data(), B, N, H, D); };
    std::vector<T> out_ref(full), dq_ref(full), dk_ref(full), dv_ref(full);
    std::vector<A> lse_ref(static_cast<std::size_t>(B * N * H));
    longnet::dilated_attention(whole(q), whole(k), whole(v), longnet::make_bnhd(out_ref.data(), B, N, H, D), opt,
                               longnet::make_lse_bnh(lse_ref.data(), B, N, H));
    longnet::dilated_attention_backward(whole(q), whole(k), whole(v), whole(out_ref),
                                        longnet::make_lse_bnh(static_cast<const A*>(lse_ref.data()), B, N, H), whole(g),
                                        longnet::make_bnhd(dq_ref.data(), B, N, H, D),
                                        longnet::make_bnhd(dk_ref.data(), B, N, H, D),
                                        longnet::make_bnhd(dv_ref.data(), B, N, H, D), opt, mode);

    const index_t off = g_rank * n * H * D;
    auto chunk = [&](const std::vector<T>& x) {
        return longnet::tensor_view<const T>(x.data() + off, {B, n, H, D}, {N * H * D, H * D, D});
    };
    std::vector<T> out(local), dq(local), dk(local), dv(local);
    std::vector<A> lse(static_cast<std::size_t>(B * n * H));
    longnet::distributed::dilated_attention(chunk(q), chunk(k), chunk(v), longnet::make_bnhd(out.data(), B, n, H, D), opt,
                                            MPI_COMM_WORLD, longnet::make_lse_bnh(lse.data(), B, n, H));
    longnet::distributed::comm_stats st;
    longnet::distributed::dilated_attention_backward(
        chunk(q), chunk(k), chunk(v), longnet::make_bnhd(static_cast<const T*>(out.data()), B, n, H, D),
        longnet::make_lse_bnh(static_cast<const A*>(lse.data()), B, n, H), chunk(g),
        longnet::make_bnhd(dq.data(), B, n, H, D), longnet::make_bnhd(dk.data(), B, n, H, D),
        longnet::make_bnhd(dv.data(), B, n, H, D), opt, MPI_COMM_WORLD, mode, &st);
    // full index of local element i
    auto full_index = [&](std::size_t i) {
        return static_cast<std::size_t>(off) + (i / static_cast<std::size_t>(n * H * D)) * static_cast<std::size_t>((N - n) * H * D) + i;
    };
    auto differing = [&](const std::vector<T>& got, const std::vector<T>& ref) {
        std::size_t bad = 0;
        for (std::size_t i = 0; i < got.size(); ++i) bad += same_bits(got[i], ref[full_index(i)]) ? 0 : 1;
        return bad;
    };
    const std::string what = std::string("backward ") + type_name + " " + longnet::to_string(mode) + " " + describe(opt);
    const std::size_t bq = differing(dq, dq_ref), bk = differing(dk, dk_ref), bv = differing(dv, dv_ref);
    check(bq == 0 && bk == 0 && bv == 0, what + ": values differing from the single-process backward: dq " +
                                             std::to_string(bq) + ", dk " + std::to_string(bk) + ", dv " + std::to_string(bv));
    if (oracle_tolerance >= 0) {
        auto widen = [](const std::vector<T>& x) {
            std::vector<double> y(x.size());
            for (std::size_t i = 0; i < x.size(); ++i) y[i] = as_double(x[i]);
            return y;
        };
        std::vector<double> rdq, rdk, rdv;
        oracle_backward(pr, opt, widen(q), widen(k), widen(v), widen(g), rdq, rdk, rdv);
        auto rel_error = [&](const std::vector<T>& got, const std::vector<double>& ref) {
            double err = 0, scale = 0;
            for (std::size_t i = 0; i < got.size(); ++i) {
                const double r = ref[full_index(i)];
                err = std::max(err, std::fabs(as_double(got[i]) - r));
                scale = std::max(scale, std::fabs(r));
            }
            return err / std::max(scale, 1e-300);
        };
        const double eq = rel_error(dq, rdq), ek = rel_error(dk, rdk), ev = rel_error(dv, rdv);
        check(eq <= oracle_tolerance && ek <= oracle_tolerance && ev <= oracle_tolerance,
              what + ": relative error vs the double oracle: dq " + std::to_string(eq) + ", dk " + std::to_string(ek) +
                  ", dv " + std::to_string(ev));
    }
    // K/V and Q/dO rows (storage type) plus L and Δ (one accumulator value per row) of each long branch
    const std::uint64_t rows_bytes = expected_forward_bytes(pr, opt, sizeof(T));
    const std::uint64_t expect = 2 * rows_bytes + rows_bytes / static_cast<std::uint64_t>(pr.D * static_cast<index_t>(sizeof(T))) * sizeof(A);
    check(st.bytes_sent == expect && st.bytes_received == expect,
          what + ": traffic " + std::to_string(st.bytes_sent) + " bytes, expected " + std::to_string(expect));
}

void test_bad_preconditions() {
    using T = float;
    const index_t B = 1, n = 32, H = 2, D = 4;
    const int last = g_size - 1;
    std::vector<T> buf(static_cast<std::size_t>(B * (n + 8) * H * D), 0.5f), out(buf.size());
    auto run = [&](index_t my_n, index_t out_n, const longnet::dilated_options& o) {
        longnet::distributed::dilated_attention(longnet::make_bnhd(static_cast<const T*>(buf.data()), B, my_n, H, D),
                                                longnet::make_bnhd(static_cast<const T*>(buf.data()), B, my_n, H, D),
                                                longnet::make_bnhd(static_cast<const T*>(buf.data()), B, my_n, H, D),
                                                longnet::make_bnhd(out.data(), B, out_n, H, D), o, MPI_COMM_WORLD);
    };
    const auto good = longnet::dilated_options::from_lists({16, 64}, {1, 2});
    // one rank's out has a wrong shape (a local check), the others are fine
    expect_agreed_error("bad out shape on the last rank", [&] { run(n, g_rank == last ? n + 8 : n, good); },
                        "out has shape");
    // one rank's local length differs (ranks must agree)
    if (g_size > 1)
        expect_agreed_error("different n on the last rank", [&] { run(g_rank == last ? n + 8 : n, g_rank == last ? n + 8 : n, good); },
                            "disagree on the local sequence length n");
    // one rank's options differ
    auto causal_on_last = good;
    causal_on_last.causal = g_rank == last;
    if (g_size > 1) expect_agreed_error("causal only on the last rank", [&] { run(n, n, causal_on_last); }, "disagree on the causal flag");
    // invalid options on one rank only (dilation 0)
    auto invalid = good;
    if (g_rank == last) invalid.branches[0].dilation = 0;
    expect_agreed_error("dilation 0 on the last rank", [&] { run(n, n, invalid); }, "dilation must be >= 1");
    // n not a multiple of a local w
    expect_agreed_error("n % local w", [&] { run(n, n, longnet::dilated_options::from_lists({24}, {1})); },
                        "n is not a multiple of w");
    if (g_size > 1) {
        // long w not a multiple of n; n not a multiple of a long r
        expect_agreed_error("long w % n", [&] { run(n, n, longnet::dilated_options::from_lists({16, 48}, {1, 1})); },
                            "w is not a multiple of n");
        expect_agreed_error("n % long r", [&] { run(n, n, longnet::dilated_options::from_lists({16, 64}, {1, 3})); },
                            "not a multiple of r");
    }
    // after all that, a good call still runs on every rank (nobody is stuck in a collective)
    expect_good_call("a good call after the error cases", [&] { run(n, n, good); });
}

}  // namespace

int main(int argc, char** argv) {
    start(argc, argv);
    if (g_rank == 0) std::printf("test_distributed: %d rank(s)\n", g_size);

    using longnet::dilated_options;
    using longnet::offset_policy;
    using longnet::tail_mode;
    // n = 32 per rank. Branch sets: all local; local + long (w = 64, 128: 2 and 4 ranks); a long branch
    // in the middle whose last segment is shorter (w = 96 with N = 128); one branch longer than N.
    const std::vector<dilated_options> sets = {
        dilated_options::from_lists({8, 16, 32}, {1, 2, 4}),
        dilated_options::from_lists({8, 64, 128}, {1, 2, 4}),
        dilated_options::from_lists({16, 96, 32}, {1, 4, 2}),
        dilated_options::from_lists({4096}, {8}),
    };
    problem pr;
    for (const auto& base : sets)
        for (int causal = 0; causal < 2; ++causal)
            for (auto offsets : {offset_policy::paper, offset_policy::torchscale})
                for (auto tail : {tail_mode::exact, tail_mode::zero_pad}) {
                    auto o = base;
                    o.causal = causal != 0;
                    o.offsets = offsets;
                    o.tail = tail;
                    test_forward<float>(pr, o, "float");
                    test_forward<double>(pr, o, "double");
                    test_backward<double>(pr, o, "double", longnet::grad_mode::exact, 1e-9);
                    test_backward<float>(pr, o, "float", longnet::grad_mode::stop_grad_weights, -1);
                    if (tail == tail_mode::exact) {
                        test_forward<longnet::bfloat16>(pr, o, "bfloat16");
                        test_forward<longnet::half>(pr, o, "half");
                        test_backward<float>(pr, o, "float", longnet::grad_mode::exact, 2e-5);
                        test_backward<longnet::bfloat16>(pr, o, "bfloat16", longnet::grad_mode::exact, -1);
                    }
                }
    // head dim a multiple of the SIMD width, one head, several queries blocks per rank
    {
        problem big;
        big.B = 1;
        big.n = 256;
        big.H = 1;
        big.D = 16;
        for (int causal = 0; causal < 2; ++causal) {
            auto o = dilated_options::from_lists({128, 512, 1024}, {1, 2, 4}, causal != 0);
            test_forward<float>(big, o, "float (n=256, D=16)");
            test_backward<double>(big, o, "double (n=256, D=16)", longnet::grad_mode::exact, 1e-9);
            test_backward<float>(big, o, "float (n=256, D=16)", longnet::grad_mode::exact, 2e-5);
            test_backward<float>(big, o, "float (n=256, D=16)", longnet::grad_mode::stop_grad_weights, -1);
        }
    }
    test_bad_preconditions();
    test_kept_communicators();
    return finish("test_distributed");
}
