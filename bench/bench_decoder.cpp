// SPDX-License-Identifier: Apache-2.0
// One LongNet decoder layer of the paper's base model (hidden 768, 12 heads, FFN 3072, segments
// 2048..32768, dilations 1, 2, 4, 6, 12, causal, torchscale offsets, XPos) over N tokens, float.
//
// Counters per forward (seconds): attention_s (the dilated attention op), dense_s (q/k/v/out
// projections and the FFN GEMMs, bias included), norms_s (pre-LN, Sub-LNs), other_s (XPos, GELU).
// dense_GFLOPs = 2·N·(4·D² + 2·D·F) / dense_s. plain_gemm_GFLOPs: a bare Eigen GEMM of the projection
// shape [N, 768] x [768, 768]ᵀ in the same binary and process; gemm_efficiency = dense_GFLOPs ÷
// plain_gemm_GFLOPs (target ≥ 0.70). BM_plain_gemm shows the bare GEMM on its own too.
//
//   bench_decoder                                  # N = 8192 and 65536
//   bench_decoder --benchmark_filter='/8192'       # the small size only

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

#include <benchmark/benchmark.h>

#include <longnet/nn/decoder_layer.hpp>

namespace {

namespace nn = longnet::nn;
using longnet::index_t;

constexpr index_t embed_dim = 768, heads = 12, ffn_dim = 3072;

nn::matrix<float> random_matrix(index_t rows, index_t cols, std::uint32_t seed, float scale) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal(0.0f, scale);
    nn::matrix<float> m(rows, cols);
    for (index_t i = 0; i < m.size(); ++i) m.data()[i] = normal(gen);
    return m;
}

void randomize(nn::linear<float>& l, std::uint32_t seed) {
    l.weight = random_matrix(l.out_features(), l.in_features(), seed, 1.0f / std::sqrt(static_cast<float>(l.in_features())));
    l.bias = random_matrix(l.out_features(), 1, seed + 1, 0.1f);
}

nn::decoder_layer<float> base_layer() {
    nn::attention_config cfg;
    cfg.embed_dim = embed_dim;
    cfg.heads = heads;
    cfg.dilated = longnet::dilated_options::paper(/*causal=*/true);
    cfg.dilated.offsets = longnet::offset_policy::torchscale;
    nn::decoder_layer<float> layer(cfg, ffn_dim);
    randomize(layer.self_attn.q_proj, 1);
    randomize(layer.self_attn.k_proj, 3);
    randomize(layer.self_attn.v_proj, 5);
    randomize(layer.self_attn.out_proj, 7);
    randomize(layer.ffn.fc1, 9);
    randomize(layer.ffn.fc2, 11);
    return layer;
}

double dense_flops(index_t n) {
    return 2.0 * static_cast<double>(n) *
           (4.0 * embed_dim * embed_dim + 2.0 * static_cast<double>(embed_dim) * static_cast<double>(ffn_dim));
}

// Best of `reps` bare GEMMs y = x·Wᵀ of the projection shape, in GFLOP/s.
double plain_gemm_gflops(index_t n, int reps) {
    const nn::matrix<float> x = random_matrix(n, embed_dim, 21, 1.0f);
    const nn::matrix<float> w = random_matrix(embed_dim, embed_dim, 22, 0.03f);
    nn::matrix<float> y(n, embed_dim);
    double best = 1e300;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        y.noalias() = x * w.transpose();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        benchmark::DoNotOptimize(y.data());
    }
    return 2.0 * static_cast<double>(n) * embed_dim * embed_dim / best / 1e9;
}

void BM_decoder_layer(benchmark::State& state) {
    const index_t n = state.range(0);
    const nn::decoder_layer<float> layer = base_layer();
    const nn::matrix<float> input = random_matrix(n, embed_dim, 31, 1.0f);
    nn::matrix<float> x, h, y;
    nn::forward_profile profile;
    for (auto _ : state) {
        state.PauseTiming();
        x = input;
        state.ResumeTiming();
        layer.forward(x, h, y, &profile);
        benchmark::DoNotOptimize(x.data());
    }
    const double iters = static_cast<double>(state.iterations());
    const double gemm = plain_gemm_gflops(n, 3);
    const double dense = dense_flops(n) / (profile.dense / iters) / 1e9;
    state.counters["attention_s"] = profile.attention / iters;
    state.counters["dense_s"] = profile.dense / iters;
    state.counters["norms_s"] = profile.norms / iters;
    state.counters["other_s"] = profile.other / iters;
    state.counters["dense_GFLOPs"] = dense;
    state.counters["plain_gemm_GFLOPs"] = gemm;
    state.counters["gemm_efficiency"] = dense / gemm;
    state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(n) * iters, benchmark::Counter::kIsRate);
    state.SetLabel("hidden 768, 12 heads, FFN 3072, paper branches, causal, float");
}

void BM_plain_gemm(benchmark::State& state) {
    const index_t n = state.range(0);
    const nn::matrix<float> x = random_matrix(n, embed_dim, 21, 1.0f);
    const nn::matrix<float> w = random_matrix(embed_dim, embed_dim, 22, 0.03f);
    nn::matrix<float> y(n, embed_dim);
    for (auto _ : state) {
        y.noalias() = x * w.transpose();
        benchmark::DoNotOptimize(y.data());
    }
    // (flops per iteration / 1e9) × iterations / seconds
    state.counters["GFLOPs"] = benchmark::Counter(2.0 * static_cast<double>(n) * embed_dim * embed_dim / 1e9,
                                                  benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel("[N, 768] x [768, 768]^T, Eigen");
}

}  // namespace

BENCHMARK(BM_decoder_layer)->Arg(8192)->Iterations(2)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_decoder_layer)->Arg(65536)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_plain_gemm)->Arg(8192)->Arg(65536)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
