// SPDX-License-Identifier: Apache-2.0
// longnet::distributed::dilated_attention_varlen (and its backward) under mpirun (CTest: 1, 2, 4 ranks).
//
// Every rank builds the same packed batch from a shared seed (lengths 0, 1, primes, one longer than
// every segment spanning several ranks; sequence boundaries exactly at chunk edges and inside chunks;
// equal and unequal chunk lengths, one rank with an empty chunk), runs the single-process
// longnet::dilated_attention_varlen (and backward) on the whole packed tensors itself, runs the
// distributed op on its chunk and compares its rows BITWISE: out, lse, dq, dk, dv (double, float,
// bfloat16; half forward), causal and not, both grad modes. The traffic is checked exactly against a
// brute-force count of the (row, head) pairs of other ranks that this rank's rows read (K, V in the
// forward; Q, K, V, O, dO and L in the exact backward; every row for stop_grad_weights).
// Bad input (cu_seqlens differing between ranks, a bad total, a bad shape on one rank): every rank
// throws the same std::invalid_argument, then a good call still works. Harness: mpi_check.hpp.

#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/distributed.hpp"
#include "longnet/varlen.hpp"

#include "mpi_check.hpp"

using longnet::index_t;

namespace {

using namespace mpi_check;

template <class T>
bool same_bits(const std::vector<T>& a, std::size_t a0, const std::vector<T>& b, std::size_t count) {
    return count == 0 || std::memcmp(a.data() + a0, b.data(), count * sizeof(T)) == 0;
}

// A packed batch split over the ranks: global cu_seqlens and chunk offsets (size + 1 entries).
struct layout {
    std::string name;
    std::vector<std::int64_t> cu;
    std::vector<index_t> chunk;
    index_t total() const { return chunk.back(); }
    index_t begin() const { return chunk[static_cast<std::size_t>(g_rank)]; }
    index_t rows() const { return chunk[static_cast<std::size_t>(g_rank) + 1] - begin(); }
};

// lengths, clipped/extended so they sum to the total of `chunk_lengths`.
layout make_layout(const std::string& name, std::vector<index_t> lengths, const std::vector<index_t>& chunk_lengths) {
    layout l;
    l.name = name;
    l.chunk = {0};
    for (index_t c : chunk_lengths) l.chunk.push_back(l.chunk.back() + c);
    l.cu = {0};
    for (index_t len : lengths) {
        const index_t room = l.total() - l.cu.back();
        l.cu.push_back(l.cu.back() + std::min(len, room));
    }
    if (l.cu.back() < l.total()) l.cu.push_back(l.total());
    return l;
}

// The (row, head) pairs of other ranks this rank receives for its spanning sequences, by brute force
// from the definition: row j of head h is read iff some branch puts j and one of this rank's rows i in
// the same segment, both selected by head h (all = every row, the stop_grad_weights backward).
std::uint64_t expected_pairs(const layout& l, const longnet::dilated_options& opt, index_t H, bool all) {
    std::uint64_t count = 0;
    const index_t c0 = l.begin(), c1 = c0 + l.rows();
    for (std::size_t b = 0; b + 1 < l.cu.size(); ++b) {
        const index_t s = l.cu[b], e = l.cu[b + 1], L = e - s;
        const index_t a = std::max(s, c0), z = std::min(e, c1);
        if (a >= z || z - a == L) continue;  // not here, or local
        for (index_t j = s; j < e; ++j) {
            if (j >= a && j < z) continue;
            for (index_t h = 0; h < H; ++h) {
                bool read = all;
                for (const auto& br : opt.branches) {
                    const index_t w = std::min(br.segment_length, L), r = br.dilation;
                    const index_t o = longnet::head_offset(opt.offsets, h, H, r);
                    auto selected = [&](index_t x) { return (x - s) % w >= o && ((x - s) % w - o) % r == 0; };
                    for (index_t i = a; i < z && !read; ++i)
                        read = (i - s) / w == (j - s) / w && selected(i) && selected(j);
                }
                count += read ? 1 : 0;
            }
        }
    }
    return count;
}

// Every byte sent is received: the sums over the ranks agree.
bool balanced(const longnet::distributed::comm_stats& st) {
    const unsigned long long mine[2] = {st.bytes_sent, st.bytes_received};
    unsigned long long sum[2] = {0, 0};
    MPI_Allreduce(mine, sum, 2, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    return sum[0] == sum[1];
}

template <class T>
void test_case(const layout& l, const longnet::dilated_options& opt, const char* type_name, bool backward) {
    using A = longnet::accum_t<T>;
    const index_t H = 3, D = 4, N = l.total(), n = l.rows(), r0 = l.begin();
    const std::size_t full = static_cast<std::size_t>(N * H * D), row = static_cast<std::size_t>(H * D);
    const auto q = random_tensor<T>(full, 21, 2.0), k = random_tensor<T>(full, 22, 2.0);
    const auto v = random_tensor<T>(full, 23, 1.0), dout = random_tensor<T>(full, 24, 1.0);
    auto packed = [&](const std::vector<T>& x) { return longnet::make_bnhd(x.data(), 1, N, H, D); };
    std::vector<T> out_ref(full);
    std::vector<A> lse_ref(static_cast<std::size_t>(N * H));
    longnet::dilated_attention_varlen(packed(q), packed(k), packed(v), l.cu, longnet::make_bnhd(out_ref.data(), 1, N, H, D),
                                      opt, longnet::make_lse_bnh(lse_ref.data(), 1, N, H));
    auto chunk = [&](const std::vector<T>& x) { return longnet::make_bnhd(x.data() + r0 * H * D, 1, n, H, D); };
    const std::string what = std::string(type_name) + " " + l.name + (opt.causal ? " causal" : "");
    std::vector<T> out(static_cast<std::size_t>(n) * row);
    std::vector<A> lse(static_cast<std::size_t>(n * H));
    longnet::distributed::comm_stats st;
    longnet::distributed::dilated_attention_varlen(chunk(q), chunk(k), chunk(v), l.cu, longnet::make_bnhd(out.data(), 1, n, H, D),
                                                   opt, MPI_COMM_WORLD, longnet::make_lse_bnh(lse.data(), 1, n, H), &st);
    check(same_bits(out_ref, static_cast<std::size_t>(r0) * row, out, out.size()), what + ": forward out differs from the single process");
    check(same_bits(lse_ref, static_cast<std::size_t>(r0 * H), lse, lse.size()), what + ": forward lse differs from the single process");
    const std::uint64_t fwd = expected_pairs(l, opt, H, false) * 2 * D * sizeof(T);
    check(st.bytes_received == fwd && balanced(st),
          what + ": forward received " + std::to_string(st.bytes_received) + " bytes, expected " + std::to_string(fwd));
    if (!backward) return;

    std::vector<T> dq_ref(full), dk_ref(full), dv_ref(full);
    longnet::dilated_attention_varlen_backward(packed(q), packed(k), packed(v), packed(out_ref),
                                               longnet::make_lse_bnh(lse_ref.data(), 1, N, H), packed(dout),
                                               longnet::make_bnhd(dq_ref.data(), 1, N, H, D),
                                               longnet::make_bnhd(dk_ref.data(), 1, N, H, D),
                                               longnet::make_bnhd(dv_ref.data(), 1, N, H, D), l.cu, opt);
    for (auto mode : {longnet::grad_mode::exact, longnet::grad_mode::stop_grad_weights}) {
        const bool exact = mode == longnet::grad_mode::exact;
        if (!exact) {
            longnet::dilated_attention_varlen_backward(packed(q), packed(k), packed(v), packed(out_ref),
                                                       longnet::make_lse_bnh(lse_ref.data(), 1, N, H), packed(dout),
                                                       longnet::make_bnhd(dq_ref.data(), 1, N, H, D),
                                                       longnet::make_bnhd(dk_ref.data(), 1, N, H, D),
                                                       longnet::make_bnhd(dv_ref.data(), 1, N, H, D), l.cu, opt, mode);
        }
        std::vector<T> dq(out.size(), T(7)), dk(out.size(), T(7)), dv(out.size(), T(7));
        longnet::distributed::dilated_attention_varlen_backward(
            chunk(q), chunk(k), chunk(v), chunk(out_ref), longnet::make_lse_bnh(lse_ref.data() + r0 * H, 1, n, H),
            chunk(dout), longnet::make_bnhd(dq.data(), 1, n, H, D), longnet::make_bnhd(dk.data(), 1, n, H, D),
            longnet::make_bnhd(dv.data(), 1, n, H, D), l.cu, opt, MPI_COMM_WORLD, mode, &st);
        const std::string how = what + (exact ? " backward" : " backward (stop_grad_weights)");
        const std::size_t at = static_cast<std::size_t>(r0) * row;
        check(same_bits(dq_ref, at, dq, dq.size()), how + ": dq differs from the single process");
        check(same_bits(dk_ref, at, dk, dk.size()), how + ": dk differs from the single process");
        check(same_bits(dv_ref, at, dv, dv.size()), how + ": dv differs from the single process");
        const std::uint64_t bwd = expected_pairs(l, opt, H, !exact) * (5 * D * sizeof(T) + sizeof(A));
        check(st.bytes_received == bwd && balanced(st),
              how + ": received " + std::to_string(st.bytes_received) + " bytes, expected " + std::to_string(bwd));
    }
}

void test_bad_input() {
    using T = float;
    const index_t n = 12, H = 2, D = 4, N = n * g_size;
    const int last = g_size - 1;
    const auto x = random_tensor<T>(static_cast<std::size_t>((n + 4) * H * D), 31, 1.0);
    std::vector<T> out(x.size());
    auto run = [&](const std::vector<std::int32_t>& cu, index_t out_n) {
        const auto in = longnet::make_bnhd(x.data(), 1, n, H, D);
        longnet::distributed::dilated_attention_varlen(in, in, in, cu, longnet::make_bnhd(out.data(), 1, out_n, H, D),
                                                       longnet::dilated_options::from_lists({4, 8}, {1, 2}), MPI_COMM_WORLD);
    };
    const std::vector<std::int32_t> good = {0, 5, static_cast<std::int32_t>(N)};
    if (g_size > 1) {
        auto moved = good;
        if (g_rank == last) moved[1] = 6;
        expect_agreed_error("cu_seqlens differ on the last rank", [&] { run(moved, n); }, "disagree on the cu_seqlens");
        std::vector<std::int32_t> longer = good;
        if (g_rank == last) longer.insert(longer.begin() + 1, 3);
        expect_agreed_error("one more sequence on the last rank", [&] { run(longer, n); },
                            "disagree on the number of cu_seqlens entries");
    }
    expect_agreed_error("last offset is not the total", [&] { run({0, 5, static_cast<std::int32_t>(N + 1)}, n); },
                        "is past the total token count");
    expect_agreed_error("decreasing offsets", [&] { run({0, 5, 4, static_cast<std::int32_t>(N)}, n); }, "non-decreasing");
    expect_agreed_error("bad out shape on the last rank", [&] { run(good, g_rank == last ? n + 4 : n); }, "out has shape");
    expect_good_call("a good call after the error cases", [&] { run(good, n); });
}

}  // namespace

int main(int argc, char** argv) {
    start(argc, argv);
    if (g_rank == 0) std::printf("test_distributed_varlen: %d rank(s)\n", g_size);
    const index_t P = g_size, n = 24;
    std::vector<layout> layouts;
    const std::vector<index_t> equal(static_cast<std::size_t>(P), n);
    // 0, 1, a prime, a boundary at the first chunk edge (24), one sequence over several ranks, short tail
    layouts.push_back(make_layout("equal chunks", {0, 1, 7, 16, 0, 70, 13, 2, 0, 5, 3}, equal));
    // one sequence over everything
    layouts.push_back(make_layout("one sequence", {P * n}, equal));
    // unequal chunks (the middle rank's empty with 4 ranks), random lengths from a shared seed
    {
        std::vector<index_t> unequal;
        for (index_t p = 0; p < P; ++p) unequal.push_back(P == 4 && p == 2 ? 0 : 17 + 9 * p);
        std::mt19937_64 gen(5);
        const index_t choices[] = {0, 1, 2, 3, 5, 11, 13, 29, 41};
        std::vector<index_t> lengths;
        for (int i = 0; i < 40; ++i) lengths.push_back(choices[gen() % 9]);
        layouts.push_back(make_layout("unequal chunks", lengths, unequal));
    }
    using longnet::dilated_options;
    for (const auto& l : layouts)
        for (int causal = 0; causal < 2; ++causal) {
            auto o = dilated_options::from_lists({4, 8, 32}, {1, 2, 4}, causal != 0);
            test_case<double>(l, o, "double", true);
            test_case<float>(l, o, "float", true);
            test_case<longnet::bfloat16>(l, o, "bfloat16", causal != 0);
            test_case<longnet::half>(l, o, "half", false);
            o.offsets = longnet::offset_policy::torchscale;
            o.tail = longnet::tail_mode::zero_pad;
            test_case<float>(l, o, "float (torchscale offsets, zero_pad)", true);
        }
    test_bad_input();
    return finish("test_distributed_varlen");
}
