// SPDX-License-Identifier: Apache-2.0
// Dense and dilated attention forward benchmarks, and the FMA peak they are measured against.
//
// Names: BM_<Op>/<storage>/<causal|noncausal>/H:<heads>/N:<sequence length>; B = 1, D = 64.
// BM_Varlen/float/<layout>/N:<total>: packed variable-length attention (varlen.hpp) on the same N tokens
// cut three ways (issue 22: its cost is the sum over sequences, never B × the longest): `one` sequence
// of N, `1k` = N / 1024 sequences of 1024, `long_and_ones` = one of N − 1000 and 1000 of one token;
// branches (256,1), (512,2), (1024,4), H = 4, non-causal. Counter ns_per_token (real time ÷ N).
// Every attention benchmark reports gflops (SPEC §3 flop count ÷ real time), tokens_per_s (B·N ÷
// real time) and efficiency (gflops ÷ the FMA peak measured at startup, also in the peak_gflops column).

#include <algorithm>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "fma_peak.hpp"
#include "suite.hpp"

namespace longnet_bench {
namespace {

// Peak benchmarks: `round` (fma_peak_round, bf16_dot_peak_round, amx_peak_round) on every thread, counter
// peak_gflops.
void bm_peak(benchmark::State& state, double (*round)(std::int64_t, volatile float*), const char* label) {
    const std::int64_t steps = std::int64_t(1) << 20;
    volatile float sink = 0;
    double flops = 0;
    const loop_timer timer;
    for (auto _ : state) flops += round(steps, &sink);
    state.counters["peak_gflops"] = flops / timer.seconds() * 1e-9;
    state.counters["threads"] = bench_threads();
    state.SetLabel(label);
}

template <class T>
void bm_dense(benchmark::State& state, bool causal, index_t heads, index_t head_dim) {
    const index_t seq = state.range(0);
    attention_inputs<T>& in = cached_inputs<T>(1, seq, heads, head_dim);
    longnet::attention_options options;
    options.causal = causal;
    const loop_timer timer;
    for (auto _ : state) {
        longnet::dense_attention(in.q_view(), in.k_view(), in.v_view(), in.out_view(), options, in.lse_view());
        benchmark::DoNotOptimize(in.out.data());
        benchmark::ClobberMemory();
    }
    const double seconds = timer.seconds();
    set_attention_counters(state, seconds, longnet::dense_attention_flops(1, seq, heads, head_dim, causal),
                           static_cast<double>(seq));
    state.SetComplexityN(seq);
}

template <class T>
void bm_dilated(benchmark::State& state, bool causal, index_t heads, index_t head_dim) {
    const index_t seq = state.range(0);
    attention_inputs<T>& in = cached_inputs<T>(1, seq, heads, head_dim);
    const longnet::dilated_options options = longnet::dilated_options::paper(causal);
    const loop_timer timer;
    for (auto _ : state) {
        longnet::dilated_attention(in.q_view(), in.k_view(), in.v_view(), in.out_view(), options, in.lse_view());
        benchmark::DoNotOptimize(in.out.data());
        benchmark::ClobberMemory();
    }
    const double seconds = timer.seconds();
    set_attention_counters(state, seconds, longnet::dilated_attention_flops(1, seq, heads, head_dim, options),
                           static_cast<double>(seq));
    state.SetComplexityN(seq);
}

// Sequence lengths of a BM_Varlen layout of `total` tokens (see the header comment).
std::vector<std::int64_t> varlen_lengths(int layout, index_t total) {
    if (layout == 0) return {total};
    if (layout == 1) return std::vector<std::int64_t>(static_cast<std::size_t>(total / 1024), 1024);
    std::vector<std::int64_t> lengths(1001, 1);
    lengths[0] = total - 1000;
    return lengths;
}

void bm_varlen(benchmark::State& state, int layout) {
    const index_t total = state.range(0), heads = 4, head_dim = 64;
    attention_inputs<float>& in = cached_inputs<float>(1, total, heads, head_dim);
    std::vector<std::int64_t> cu{0};
    for (std::int64_t n : varlen_lengths(layout, total)) cu.push_back(cu.back() + n);
    longnet::dilated_options options;
    options.branches = {{256, 1}, {512, 2}, {1024, 4}};
    double flops = 0;
    for (std::size_t b = 0; b + 1 < cu.size(); ++b)
        flops += longnet::dilated_attention_flops(1, cu[b + 1] - cu[b], heads, head_dim, options);
    const loop_timer timer;
    for (auto _ : state) {
        longnet::dilated_attention_varlen(in.q_view(), in.k_view(), in.v_view(), cu, in.out_view(), options,
                                          in.lse_view());
        benchmark::DoNotOptimize(in.out.data());
        benchmark::ClobberMemory();
    }
    const double seconds = timer.seconds();
    set_attention_counters(state, seconds, flops, static_cast<double>(total));
    state.counters["ns_per_token"] = seconds / static_cast<double>(state.iterations()) / static_cast<double>(total) * 1e9;
    state.counters["sequences"] = static_cast<double>(cu.size() - 1);
}

std::string family_name(const char* op, const char* type, bool causal, index_t heads) {
    return std::string("BM_") + op + "/" + type + "/" + (causal ? "causal" : "noncausal") + "/H:" +
           std::to_string(heads);
}

// Sizes first, first·multiplier, ... up to min(last, max_seq).
std::vector<index_t> sizes(index_t first, index_t last, int multiplier, index_t max_seq) {
    std::vector<index_t> result;
    for (index_t n = first; n <= std::min(last, max_seq); n *= multiplier) result.push_back(n);
    return result;
}

template <class T>
void register_type(const suite_config& config) {
    const index_t d = config.head_dim;
    for (bool causal : {false, true}) {
        // Dense attention: N = 1K..16K, H = 4. Cheap enough for medians of 3 repetitions.
        const index_t dense_heads = 4;
        const std::vector<index_t> dense_sizes =
            config.smoke ? sizes(128, 512, 2, config.max_seq) : sizes(1024, 16384, 2, config.max_seq);
        if (!dense_sizes.empty()) {
            auto* b = benchmark::RegisterBenchmark(
                family_name("DenseAttention", type_name<T>(), causal, dense_heads).c_str(),
                [=](benchmark::State& s) { bm_dense<T>(s, causal, dense_heads, d); });
            b->ArgName("N")->UseRealTime()->Unit(benchmark::kMillisecond)->Complexity(benchmark::oNSquared);
            for (index_t n : dense_sizes) b->Arg(n);
            if (!config.smoke) b->Repetitions(3)->ReportAggregatesOnly(true);
        }
        // Dilated attention, paper configuration: H = 4 up to N = 1M (4M would need 16 GiB of float
        // q, k, v, out), H = 1 up to 4M (the scaling and memory targets). One repetition by default
        // (each is seconds to a minute); --benchmark_repetitions=3 gives medians.
        for (index_t heads : {index_t(4), index_t(1)}) {
            const std::vector<index_t> dilated_sizes =
                config.smoke ? sizes(256, 1024, 4, config.max_seq)
                             : sizes(16384, heads == 4 ? 1048576 : 4194304, 4, config.max_seq);
            if (dilated_sizes.empty()) continue;
            auto* b = benchmark::RegisterBenchmark(
                family_name("DilatedAttention", type_name<T>(), causal, heads).c_str(),
                [=](benchmark::State& s) { bm_dilated<T>(s, causal, heads, d); });
            b->ArgName("N")->UseRealTime()->Unit(benchmark::kMillisecond)->Complexity(benchmark::oN);
            for (index_t n : dilated_sizes) b->Arg(n);
        }
    }
}

}  // namespace

void register_peak_benchmark() {
    benchmark::RegisterBenchmark("BM_FmaPeak", bm_peak, fma_peak_round, fma_isa)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    if (has_bf16_dot_peak)
        benchmark::RegisterBenchmark("BM_Bf16DotPeak", bm_peak, bf16_dot_peak_round, "avx512bf16")
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
    if (has_amx_peak())
        benchmark::RegisterBenchmark("BM_AmxBf16Peak", bm_peak, amx_peak_round, "amx-bf16")
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
}

void register_attention_benchmarks(const suite_config& config) {
    register_type<float>(config);
    register_type<longnet::bfloat16>(config);
    const index_t varlen_total = std::min<index_t>(config.smoke ? 4096 : 1048576, config.max_seq) / 1024 * 1024;
    if (varlen_total > 2048) {
        const char* layouts[] = {"one", "1k", "long_and_ones"};
        for (int layout = 0; layout < 3; ++layout)
            benchmark::RegisterBenchmark((std::string("BM_Varlen/float/") + layouts[layout]).c_str(),
                                         [=](benchmark::State& s) { bm_varlen(s, layout); })
                ->ArgName("N")
                ->Arg(varlen_total)
                ->UseRealTime()
                ->Unit(benchmark::kMillisecond);
    }
}

}  // namespace longnet_bench
