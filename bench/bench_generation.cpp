// SPDX-License-Identifier: Apache-2.0
// Incremental decoding (longnet/decoding/) of the paper's base model: 12 layers, hidden 768, 12 heads,
// FFN 3072, vocab 32000, segments 2048..32768, dilations 1, 2, 4, 6, 12, float, random weights (seed 1),
// torchscale offsets, XPos.
//
//   BM_decode_step/<P>     time of one step (one new token, logits included) at positions P, P+1, ...
//                          The state is reached cheaply and exactly: P0 = P − 1024 is a multiple of every
//                          segment length, so prefill(1024 tokens, first_position = P0) gives the state
//                          of ANY sequence of P tokens whose last 1024 are those (nothing before P0 is
//                          visible to later tokens). P = 1K, 64K+1K, 1M+1K, 16M+1K: the same place in
//                          every branch's segment, so the same amount of cached rows; only the position
//                          differs. Counters: position, cache_bytes (allocated), cache_bound_bytes.
//   BM_decode_step_full/<P>  the same near the end of a 32768-token segment (every branch's cache nearly
//                          full: the slowest steps), P = 32640 and 16M + 32640 (prefill of 32640 tokens
//                          first; 100 steps, positions P .. P + 99, all inside the segment).
//   BM_decode_batch/<B>    B sequences (prompts of 1024 .. 1024 + B − 1 tokens) stepping together: one
//                          step call per token of each; tokens_per_second counts all B.
//   BM_prefill/<N>, BM_forward/<N>  N prompt tokens: prefill (the full forward that also fills the
//                          cache) vs the plain full forward with the last row's logits (longnet_lm's
//                          --random-config path); tokens_per_second.
//
// Decoding one token reads every weight matrix once (the embedding: one row), so a step is bound by memory
// bandwidth: BM_decode_step also reports weight_bytes and over_weight_stream = step seconds ÷ (weight_bytes
// ÷ the read bandwidth this binary measures at startup, every thread reading its share of a 1 GiB buffer,
// best of 5; printed first and in the context as longnet_read_gb_per_s).
//
//   bench_generation --benchmark_filter='BM_decode_step/'   # the four positions only

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include <longnet/decoding/decoding.hpp>
#include <longnet/nn/nn.hpp>

namespace {

namespace nn = longnet::nn;
namespace dec = longnet::decoding;
using longnet::index_t;

const nn::decoder<float>& base_model() {
    static const nn::decoder<float> model = nn::random_decoder<float>(nn::decoder_config::base(32000), 1);
    return model;
}

// Bytes a decoding step streams: every Linear weight of every layer and the output projection.
double weight_bytes(const nn::decoder<float>& m) {
    double n = static_cast<double>(m.output_projection.weight.size());
    for (const auto& l : m.layers)
        for (const auto* lin : {&l.self_attn.q_proj, &l.self_attn.k_proj, &l.self_attn.v_proj, &l.self_attn.out_proj,
                                &l.ffn.fc1, &l.ffn.fc2})
            n += static_cast<double>(lin->weight.size());
    return n * sizeof(float);
}

// Read bandwidth in bytes/s: all threads sum their share of a 1 GiB float buffer, best of 5.
double measure_read_bandwidth() {
    const std::int64_t n = std::int64_t(1) << 28;
    std::vector<float> buf(static_cast<std::size_t>(n), 1.0f);
    double best = 0, sink = 0;
    for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        double total = 0;
#if LONGNET_HAS_OPENMP
#pragma omp parallel for reduction(+ : total) schedule(static)
#endif
        for (std::int64_t b = 0; b < n; b += 4096) {
            float acc[16] = {};
            for (std::int64_t i = b; i < b + 4096; i += 16)
                for (int j = 0; j < 16; ++j) acc[j] += buf[static_cast<std::size_t>(i + j)];
            for (float a : acc) total += a;
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        sink += total;
        best = std::max(best, static_cast<double>(n) * sizeof(float) / s);
    }
    benchmark::DoNotOptimize(sink);
    return best;
}
double& read_bandwidth() {
    static double bw = 0;
    return bw;
}

std::vector<std::int64_t> tokens(std::size_t n, std::uint64_t seed) {
    std::vector<std::int64_t> t(n);
    for (auto& x : t) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x = static_cast<std::int64_t>((seed >> 33) % 32000);
    }
    return t;
}

void decode_at(benchmark::State& st, index_t position, index_t phase) {
    const auto& model = base_model();
    const dec::incremental_decoder<float> gen(model);
    auto state = gen.make_state();
    const index_t start = position - phase;  // a multiple of 32768: every branch's segment boundary
    nn::vector<float> logits = gen.prefill(state, tokens(static_cast<std::size_t>(phase), 7), start);
    std::int64_t next = 1;
    for (auto _ : st) {
        logits = gen.step(state, next);
        benchmark::DoNotOptimize(logits.data());
        next = (next * 7919 + 13) % 32000;
    }
    st.counters["position"] = static_cast<double>(position);
    st.counters["cache_bytes"] = static_cast<double>(state.bytes());
    st.counters["cache_bound_bytes"] = static_cast<double>(state.max_bytes());
    st.counters["tokens_per_second"] = benchmark::Counter(static_cast<double>(st.iterations()), benchmark::Counter::kIsRate);
    st.counters["weight_bytes"] = weight_bytes(model);
    st.counters["seconds_per_token"] = benchmark::Counter(static_cast<double>(st.iterations()),
                                                          benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    if (read_bandwidth() > 0)
        st.counters["over_weight_stream"] =
            benchmark::Counter(static_cast<double>(st.iterations()) * weight_bytes(model) / read_bandwidth(),
                               benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_decode_step(benchmark::State& st) { decode_at(st, st.range(0), 1024); }
void BM_decode_step_full(benchmark::State& st) { decode_at(st, st.range(0), 32640); }

// B sequences stepping together (one call per token of each), each at position 1K + its own offset.
void BM_decode_batch(benchmark::State& st) {
    const auto& model = base_model();
    const dec::incremental_decoder<float> gen(model);
    const auto batch = static_cast<std::size_t>(st.range(0));
    std::vector<dec::decoding_state<float>> states;
    std::vector<std::vector<std::int64_t>> prompts;
    for (std::size_t i = 0; i < batch; ++i) {
        states.push_back(gen.make_state());
        prompts.push_back(tokens(1024 + i, 11 + i));  // different lengths
    }
    (void)gen.prefill(states, prompts);
    std::vector<std::int64_t> next(batch, 1);
    for (auto _ : st) {
        const nn::matrix<float> logits = gen.step(states, next);
        benchmark::DoNotOptimize(logits.data());
        for (auto& t : next) t = (t * 7919 + 13) % 32000;
    }
    std::size_t bytes = 0;
    for (const auto& s : states) bytes += s.bytes();
    st.counters["cache_bytes"] = static_cast<double>(bytes);
    st.counters["tokens_per_second"] =
        benchmark::Counter(static_cast<double>(st.iterations() * st.range(0)), benchmark::Counter::kIsRate);
}

void BM_prefill(benchmark::State& st) {
    const auto& model = base_model();
    const dec::incremental_decoder<float> gen(model);
    const auto prompt = tokens(static_cast<std::size_t>(st.range(0)), 3);
    std::size_t bytes = 0;
    for (auto _ : st) {
        auto state = gen.make_state();
        const nn::vector<float> logits = gen.prefill(state, prompt);
        benchmark::DoNotOptimize(logits.data());
        bytes = state.bytes();
    }
    st.counters["cache_bytes"] = static_cast<double>(bytes);
    st.counters["tokens_per_second"] =
        benchmark::Counter(static_cast<double>(st.iterations() * st.range(0)), benchmark::Counter::kIsRate);
}

void BM_forward(benchmark::State& st) {
    const auto& model = base_model();
    const auto prompt = tokens(static_cast<std::size_t>(st.range(0)), 3);
    for (auto _ : st) {
        const nn::matrix<float> hidden = model.forward_hidden(prompt);
        const nn::matrix<float> last = model.project(hidden.bottomRows(1));
        benchmark::DoNotOptimize(last.data());
    }
    st.counters["tokens_per_second"] =
        benchmark::Counter(static_cast<double>(st.iterations() * st.range(0)), benchmark::Counter::kIsRate);
}

constexpr std::int64_t K = 1024, M = 1024 * 1024;

// fixed iteration counts: every step of a run sits at the same place of its segments as in the others
BENCHMARK(BM_decode_step)->Arg(K)->Arg(64 * K + K)->Arg(M + K)->Arg(16 * M + K)->Unit(benchmark::kMillisecond)
    ->Iterations(64)->UseRealTime();
BENCHMARK(BM_decode_step_full)->Arg(32640)->Arg(16 * M + 32640)->Unit(benchmark::kMillisecond)->Iterations(100)
    ->UseRealTime();
BENCHMARK(BM_decode_batch)->Arg(8)->Unit(benchmark::kMillisecond)->Iterations(32)->UseRealTime();
BENCHMARK(BM_prefill)->Arg(4096)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_forward)->Arg(4096)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    read_bandwidth() = measure_read_bandwidth();
    std::fprintf(stderr, "bench_generation: read bandwidth %.1f GB/s; nn GEMMs: %s\n", read_bandwidth() * 1e-9,
                 nn::gemm_backend);
    benchmark::AddCustomContext("longnet_read_gb_per_s", std::to_string(read_bandwidth() * 1e-9));
    benchmark::AddCustomContext("longnet_nn_gemm", nn::gemm_backend);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
