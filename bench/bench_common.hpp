// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared pieces of the longnet benchmarks: the peak measured at startup, random inputs allocated once
// (outside the timed loop), and the counters every attention benchmark reports.

#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "longnet/longnet.hpp"

namespace longnet_bench {

using longnet::index_t;

// Single-precision FMA peak of all threads in GFLOP/s, measured once in main() before any benchmark.
inline double& measured_peak_gflops() noexcept {
    static double peak = 0;
    return peak;
}

template <class T>
const char* type_name() noexcept {
    if constexpr (std::is_same_v<T, float>) return "float";
    else if constexpr (std::is_same_v<T, double>) return "double";
    else if constexpr (std::is_same_v<T, longnet::bfloat16>) return "bf16";
    else return "half";
}

// Counter-based generator (splitmix64): value i depends only on (seed, i), so filling in parallel
// chunks gives the same tensor for any thread count.
inline std::uint64_t splitmix64(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Standard normal numbers (Box-Muller on two counter-based uniforms), written straight into storage
// type T: no temporary float buffer, so a fill does not raise peak memory.
template <class T>
void fill_normal(T* data, std::int64_t count, std::uint64_t seed) {
    const std::int64_t pairs = (count + 1) / 2;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (std::int64_t p = 0; p < pairs; ++p) {
        const std::uint64_t r1 = splitmix64(seed * 0x100000001b3ull + 2 * static_cast<std::uint64_t>(p));
        const std::uint64_t r2 = splitmix64(seed * 0x100000001b3ull + 2 * static_cast<std::uint64_t>(p) + 1);
        const double u1 = (static_cast<double>(r1 >> 11) + 0.5) * 0x1.0p-53;  // (0, 1): log is finite
        const double u2 = static_cast<double>(r2 >> 11) * 0x1.0p-53;
        const double radius = std::sqrt(-2.0 * std::log(u1));
        const double angle = 6.283185307179586 * u2;
        data[2 * p] = T(static_cast<float>(radius * std::cos(angle)));
        if (2 * p + 1 < count) data[2 * p + 1] = T(static_cast<float>(radius * std::sin(angle)));
    }
}

// q, k, v (random normal), out and lse of one [B, N, H, D] problem, contiguous [B, N, H, D] / [B, N, H].
template <class T>
struct attention_inputs {
    index_t batch, seq, heads, dim;
    std::vector<T> q, k, v, out;
    std::vector<longnet::accum_t<T>> lse;

    attention_inputs(index_t b, index_t n, index_t h, index_t d)
        : batch(b), seq(n), heads(h), dim(d) {
        const auto count = static_cast<std::size_t>(b * n * h * d);
        q.resize(count);
        k.resize(count);
        v.resize(count);
        out.resize(count);
        lse.resize(static_cast<std::size_t>(b * n * h));
        fill_normal(q.data(), static_cast<std::int64_t>(count), 1);
        fill_normal(k.data(), static_cast<std::int64_t>(count), 2);
        fill_normal(v.data(), static_cast<std::int64_t>(count), 3);
    }
    longnet::tensor_view<const T> q_view() const { return longnet::make_bnhd(q.data(), batch, seq, heads, dim); }
    longnet::tensor_view<const T> k_view() const { return longnet::make_bnhd(k.data(), batch, seq, heads, dim); }
    longnet::tensor_view<const T> v_view() const { return longnet::make_bnhd(v.data(), batch, seq, heads, dim); }
    longnet::tensor_view<T> out_view() { return longnet::make_bnhd(out.data(), batch, seq, heads, dim); }
    longnet::lse_view<longnet::accum_t<T>> lse_view() { return longnet::make_lse_bnh(lse.data(), batch, seq, heads); }
};

// Inputs of the most recent problem, kept between calls: Google Benchmark calls a benchmark function
// several times (iteration-count probing, repetitions), and generating 4M-row inputs takes seconds.
// One problem of one type is alive at a time (the old one is freed before the next is allocated), so
// memory stays that of the largest single benchmark.
struct input_cache_key {
    const void* type;  // address of a per-type tag
    index_t batch, seq, heads, dim;
    bool operator==(const input_cache_key& o) const noexcept {
        return type == o.type && batch == o.batch && seq == o.seq && heads == o.heads && dim == o.dim;
    }
};
inline std::shared_ptr<void>& input_cache_holder() noexcept {
    static std::shared_ptr<void> holder;
    return holder;
}
inline input_cache_key& input_cache_current() noexcept {
    static input_cache_key key{nullptr, 0, 0, 0, 0};
    return key;
}
template <class T>
const void* type_tag() noexcept {
    static const char tag = 0;
    return &tag;
}
template <class T>
attention_inputs<T>& cached_inputs(index_t b, index_t n, index_t h, index_t d) {
    const input_cache_key key{type_tag<T>(), b, n, h, d};
    if (!input_cache_holder() || !(input_cache_current() == key)) {
        input_cache_holder().reset();  // free the old problem first
        input_cache_holder() = std::make_shared<attention_inputs<T>>(b, n, h, d);
        input_cache_current() = key;
    }
    return *static_cast<attention_inputs<T>*>(input_cache_holder().get());
}
inline void release_cached_inputs() {
    input_cache_holder().reset();
    input_cache_current() = input_cache_key{nullptr, 0, 0, 0, 0};
}

// Wall-clock seconds of a benchmark's timed loop, measured around `for (auto _ : state)`. Every
// attention benchmark uses UseRealTime(), so this is the time Google Benchmark reports too.
class loop_timer {
public:
    loop_timer() noexcept : start_(std::chrono::steady_clock::now()) {}
    double seconds() const noexcept {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }

private:
    std::chrono::steady_clock::time_point start_;
};

// gflops = flops ÷ seconds, tokens_per_s = tokens ÷ seconds, efficiency = gflops ÷ the peak measured
// at startup (also reported as peak_gflops), all over the whole timed loop of state.iterations().
// Plain numbers (not kIsRate) so that efficiency is exactly gflops / peak_gflops.
inline void set_attention_counters(benchmark::State& state, double seconds, double flops_per_iteration,
                                   double tokens_per_iteration) {
    const double iterations = static_cast<double>(state.iterations());
    const double gflops = flops_per_iteration * iterations / seconds * 1e-9;
    const double peak = measured_peak_gflops();
    state.counters["gflops"] = gflops;
    state.counters["tokens_per_s"] = tokens_per_iteration * iterations / seconds;
    state.counters["peak_gflops"] = peak;
    if (peak > 0) state.counters["efficiency"] = gflops / peak;
}

}  // namespace longnet_bench
