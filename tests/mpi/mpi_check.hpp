// SPDX-License-Identifier: Apache-2.0
#pragma once
// The harness of the MPI tests (tests/mpi/test_*.cpp), which run under mpiexec with their own main
// (Catch2's reporters are not MPI-aware): this rank and the world size, check() counting failures per
// rank, agreement helpers over MPI_COMM_WORLD, random_tensor() (the same inputs on every rank),
// expect_agreed_error() for a bad call and expect_good_call(), and start()/finish() around a test's
// body (finish sums the failures of every rank, prints the summary on rank 0 and gives the exit code:
// 1 on any failure on any rank).

#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace mpi_check {

inline int g_rank = 0, g_size = 1, g_failures = 0, g_checks = 0;

// Counts a check; a failure is printed at once with this rank's number.
inline void check(bool ok, const std::string& what) {
    ++g_checks;
    if (!ok) {
        ++g_failures;
        std::fprintf(stderr, "[rank %d] FAIL: %s\n", g_rank, what.c_str());
    }
}

// True on every rank iff true on all ranks.
inline bool all_ranks(bool ok) {
    int mine = ok ? 1 : 0, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all == 1;
}

// True on every rank iff every rank has the same `text` (compared by hash).
inline bool same_on_all_ranks(const std::string& text) {
    const long long h = static_cast<long long>(std::hash<std::string>{}(text) >> 1);
    long long lo = 0, hi = 0;
    MPI_Allreduce(&h, &lo, 1, MPI_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hi, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}

// One bad call: every rank must throw std::invalid_argument with the same message containing `expect`.
inline void expect_agreed_error(const std::string& name, const std::function<void()>& call, const std::string& expect) {
    std::string message;
    bool threw = false;
    try {
        call();
    } catch (const std::invalid_argument& e) {
        threw = true;
        message = e.what();
    }
    check(threw, name + ": no std::invalid_argument on this rank");
    check(message.find(expect) != std::string::npos, name + ": message '" + message + "' lacks '" + expect + "'");
    check(same_on_all_ranks(message), name + ": ranks got different messages (this rank: '" + message + "')");
    if (g_rank == 0 && threw) std::printf("  %s -> %s\n", name.c_str(), message.c_str());
}

// A good call (e.g. after error cases: nobody was left inside a collective) must run on every rank.
inline void expect_good_call(const std::string& name, const std::function<void()>& call) {
    bool ok = true;
    try {
        call();
    } catch (const std::exception& e) {
        ok = false;
        std::fprintf(stderr, "[rank %d] %s threw: %s\n", g_rank, name.c_str(), e.what());
    }
    check(all_ranks(ok), name);
}

// count values uniform in [-amplitude, amplitude) from `seed`: the same inputs on every rank.
template <class T>
std::vector<T> random_tensor(std::size_t count, std::uint64_t seed, double amplitude) {
    std::mt19937_64 gen(seed);
    std::uniform_real_distribution<double> dist(-amplitude, amplitude);
    std::vector<T> x(count);
    for (auto& e : x) e = T(static_cast<float>(dist(gen)));
    if constexpr (std::is_same_v<T, double>) {
        std::mt19937_64 gen2(seed);
        for (auto& e : x) e = dist(gen2);
    }
    return x;
}

// MPI_Init, then this rank and the world size.
inline void start(int& argc, char**& argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
}

// The failures and checks of all ranks summed; rank 0 prints "<name>: W rank(s), C checks, F failures:
// PASSED|FAILED"; MPI_Finalize. The test's exit code.
inline int finish(const char* name) {
    int failures = 0, checks = 0;
    MPI_Allreduce(&g_failures, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&g_checks, &checks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (g_rank == 0)
        std::printf("%s: %d rank(s), %d checks, %d failures: %s\n", name, g_size, checks, failures,
                    failures == 0 ? "PASSED" : "FAILED");
    MPI_Finalize();
    return failures == 0 ? 0 : 1;
}

}  // namespace mpi_check
