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
//   bench_generation --benchmark_filter='BM_decode_step/'   # the four positions only

#include <cstdint>
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

BENCHMARK_MAIN();
