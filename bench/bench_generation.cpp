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
//   BM_decode_step_bf16/<P>  BM_decode_step with bf16 weights (nn::decoder<float, Eigen::bfloat16>: the
//                          same random model rounded to bf16, float compute): half the weight bytes.
//   BM_decode_batch/<B>    B sequences (prompts of 1024 .. 1024 + B − 1 tokens) stepping together: one
//                          step call per token of each; tokens_per_second counts all B. B = 1 runs first;
//                          B = 8 reports vs_batch1 (its tokens/s over the median of B = 1's repetitions in
//                          this run) and stream_bound_vs_batch1, that ratio if both streamed every byte at
//                          the read bandwidth: B·(W + C)/(W + B·C), W the weight bytes, C one sequence's
//                          cached keys and values (each sequence reads its own cache every step).
//   BM_prefill/<N>, BM_forward/<N>  N prompt tokens: prefill (the full forward that also fills the
//                          cache) vs the plain full forward with the last row's logits (longnet_lm's
//                          --random-config path); tokens_per_second.
//
// Decoding one token reads every weight matrix once (the embedding: one row), so a step is bound by memory
// bandwidth: BM_decode_step also reports weight_bytes and over_weight_stream = step seconds ÷ (weight_bytes
// ÷ the read bandwidth this binary measures at startup, every thread reading its share of a 1 GiB buffer,
// best of 5; printed first and in the context as longnet_read_gb_per_s). A step also reads its cached keys
// and values (cache_read_bytes: 151 MB at P = 1K + k·32K in float, more than a quarter of the float
// weights), so over_weight_stream cannot go below (weights + cache) / weights; over_weight_and_cache_stream
// divides by the time to stream both.
//
//   bench_generation --benchmark_filter='BM_decode_step/'   # the four positions only

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>
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
// The same model with bf16 weights (Eigen::bfloat16 storage, float compute): half the bytes to stream.
const nn::decoder<float, Eigen::bfloat16>& base_model_bf16() {
    static const nn::decoder<float, Eigen::bfloat16> model =
        nn::random_decoder<float, Eigen::bfloat16>(nn::decoder_config::base(32000), 1);
    return model;
}
template <class W>
const nn::decoder<float, W>& model_of() {
    if constexpr (std::is_same_v<W, float>) return base_model();
    else return base_model_bf16();
}

// Bytes a decoding step streams: every Linear weight of every layer and the output projection.
template <class W>
double weight_bytes(const nn::decoder<float, W>& m) {
    double n = static_cast<double>(m.output_projection.weight.size());
    for (const auto& l : m.layers)
        for (const auto* lin : {&l.self_attn.q_proj, &l.self_attn.k_proj, &l.self_attn.v_proj, &l.self_attn.out_proj,
                                &l.ffn.fc1, &l.ffn.fc2})
            n += static_cast<double>(lin->weight.size());
    return n * sizeof(W);
}
// Bytes of cached keys and values a step reads (the rows in use of every layer, branch and head).
double cache_read_bytes(const dec::decoding_state<float>& s) {
    double rows = 0;
    for (index_t l = 0; l < s.layers(); ++l)
        for (index_t b = 0; b < s.branch_count(); ++b)
            for (index_t h = 0; h < s.heads(); ++h) rows += static_cast<double>(s.rows(l, b, h));
    return 2 * rows * static_cast<double>(s.head_dim()) * sizeof(float);
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

template <class W>
void decode_at(benchmark::State& st, index_t position, index_t phase) {
    const auto& model = model_of<W>();
    const dec::incremental_decoder<float, W> gen(model);
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
    st.counters["cache_read_bytes"] = cache_read_bytes(state);
    if (read_bandwidth() > 0) {
        st.counters["over_weight_stream"] =
            benchmark::Counter(static_cast<double>(st.iterations()) * weight_bytes(model) / read_bandwidth(),
                               benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
        st.counters["over_weight_and_cache_stream"] = benchmark::Counter(
            static_cast<double>(st.iterations()) * (weight_bytes(model) + cache_read_bytes(state)) / read_bandwidth(),
            benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    }
}

void BM_decode_step(benchmark::State& st) { decode_at<float>(st, st.range(0), 1024); }
void BM_decode_step_bf16(benchmark::State& st) { decode_at<Eigen::bfloat16>(st, st.range(0), 1024); }
void BM_decode_step_full(benchmark::State& st) { decode_at<float>(st, st.range(0), 32640); }

// tokens/s of BM_decode_batch/1's repetitions in this run; their median is B = 8's reference
std::vector<double>& batch1_runs() {
    static std::vector<double> runs;
    return runs;
}
double batch1_tokens_per_second() {
    std::vector<double> r = batch1_runs();
    if (r.empty()) return 0;
    std::sort(r.begin(), r.end());
    return r[r.size() / 2];
}

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
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : st) {
        const nn::matrix<float> logits = gen.step(states, next);
        benchmark::DoNotOptimize(logits.data());
        for (auto& t : next) t = (t * 7919 + 13) % 32000;
    }
    std::size_t bytes = 0;
    double read = 0;
    for (const auto& s : states) {
        bytes += s.bytes();
        read += cache_read_bytes(s);
    }
    st.counters["cache_bytes"] = static_cast<double>(bytes);
    st.counters["cache_read_bytes"] = read;
    // tokens/s, and against B = 1 of this run (BM_decode_batch/1 runs first)
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tps = static_cast<double>(st.iterations()) * static_cast<double>(batch) / seconds;
    st.counters["tokens_per_second"] = tps;
    if (batch == 1) batch1_runs().push_back(tps);
    else if (batch1_tokens_per_second() > 0) st.counters["vs_batch1"] = tps / batch1_tokens_per_second();
    // the bound if every byte streamed at the read bandwidth: weights once, each sequence's cache once
    const double w = weight_bytes(model);
    st.counters["stream_bound_vs_batch1"] =
        static_cast<double>(batch) * (w + read / static_cast<double>(batch)) / (w + read);
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
BENCHMARK(BM_decode_step_bf16)->Arg(K)->Unit(benchmark::kMillisecond)->Iterations(64)->UseRealTime();
BENCHMARK(BM_decode_batch)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond)->Iterations(32)->UseRealTime();
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
