// SPDX-License-Identifier: Apache-2.0
// Training speed of the paper's base model (issue 11 item 7): 12 layers, hidden 768, 12 heads, FFN 3072,
// vocabulary 32000, segments 2048..32768, dilations 1, 2, 4, 6, 12, float, torchscale initialisation
// (seed 1), one sequence of T tokens per step, every position scored, grad_mode exact. The FMA peak is
// measured by this binary at startup (bench/fma_peak.hpp), as in longnet_bench.
//
//   BM_train_step/T/C/W   one optimizer step: zero grads, forward + backward (training/trainer.hpp),
//                         global-norm clipping, AdamW. C = 1: activation checkpointing. W = 1: a forward
//                         is timed, then a first step (allocating the workspace) runs before the timed
//                         loop; W = 0 (32K, 64K: minutes per step): the one timed step includes them.
//                         Counters: tokens_per_s, model_gflops and mfu (model FLOPs per step ÷ seconds,
//                         ÷ the FMA peak), forward_s (one forward of the same sequence timed before the
//                         step: the logits and loss of all T positions, no activations kept),
//                         step_over_forward (step seconds ÷ forward_s; W = 1 only), step_cpu_s and
//                         step_over_forward_cpu (the same in CPU seconds of the whole process: robust
//                         on a shared machine; with OMP_NUM_THREADS=1 free of spin-waiting), peak_rss_bytes (getrusage
//                         high-water mark of the whole process so far: run one benchmark per process to
//                         read it for that size).
//   BM_train_step_bf16/T/R the step in float and in mixed precision (trainer_options::precision = bf16: every
//                         Linear's GEMMs on bf16 operands and the attention on bf16 q/k/v, float master weights
//                         and AdamW; training/precision.hpp),
//                         R rounds alternating the two, each a fresh trainer with one untimed warm-up step;
//                         counters: medians over the rounds of float_s / bf16_s (wall) and float_cpu_s /
//                         bf16_cpu_s (CPU seconds of the process), speedup and speedup_cpu (float ÷ bf16),
//                         loss_rel_diff (|bf16 − float| ÷ float: the loss of one forward of the sequence with
//                         the same weights after the rounds, the Linears' products in float and in bf16; that
//                         forward's attention is float). The kernel of
//                         the bf16 products is the context longnet_bf16_gemm.
//   BM_train_long/T       the tiny model at 64K-1M tokens (issue 21 §2): see BM_train_long below.
//   BM_train_profile/T/B  where a step's time goes (B = 1: the Linears' GEMMs and the attention in bf16; seconds of the second of two steps; the first grows
//                         the heap): the forward and backward of the
//                         attention blocks, the FFN blocks, the LayerNorms and residuals, the loss head
//                         (output projection + softmax cross-entropy, both directions), clipping + AdamW.
//
// Model FLOPs (the usual MFU convention: 3 × the forward's matmul flops, recomputation not counted):
//   forward = T·L·(8·D² + 4·D·F) + 2·T·V·D + L·dilated_attention_flops(T) (causal, longnet/options.hpp)
//
// The nn GEMMs are oneDNN's where the build links longnet::onednn (context longnet_nn_gemm), and the
// binary keeps freed memory for reuse (longnet/allocator.hpp; LONGNET_KEEP_FREED_MEMORY=0: glibc's default).
//
//   bench_training --benchmark_filter='BM_train_step/8192/0/1'     # 8K without checkpointing
//   bench_training --benchmark_filter='BM_train_step/65536/1/0'    # peak RSS at 64K, alone in its process

#include <sys/resource.h>
#include <time.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_common.hpp"
#include "fma_peak.hpp"
#include "longnet/allocator.hpp"
#include "longnet/isa.hpp"
#include "longnet/nn/nn.hpp"
#include "longnet/training/training.hpp"
#include "longnet/version.hpp"

namespace {

namespace nn = longnet::nn;
namespace tr = longnet::training;
using longnet::index_t;
using clock_type = std::chrono::steady_clock;

nn::decoder<float>& base_model() {
    static nn::decoder<float> model = [] {
        nn::decoder<float> m(nn::decoder_config::base(32000));
        tr::torchscale_init(m, 1);
        return m;
    }();
    return model;
}

tr::sequence random_sequence(std::size_t n, std::uint64_t seed) {
    tr::sequence s;
    s.inputs.resize(n);
    s.targets.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        s.inputs[i] = static_cast<std::int64_t>((seed >> 33) % 32000);
    }
    for (std::size_t i = 0; i + 1 < n; ++i) s.targets[i] = s.inputs[i + 1];
    s.targets[n - 1] = 7;
    return s;
}

// Forward flops of the model on T tokens (matmuls and attention; see the header comment).
double forward_flops(const nn::decoder<float>& model, index_t seq) {
    const auto& c = model.config;
    const double t = static_cast<double>(seq), d = static_cast<double>(c.embed_dim), f = static_cast<double>(c.ffn_dim),
                 v = static_cast<double>(c.vocab_size), layers = static_cast<double>(c.layers);
    const longnet::dilated_options opt = longnet::dilated_options::from_lists(c.segment_length, c.dilated_ratio, true);
    const double attention = longnet::dilated_attention_flops(1, seq, c.heads, c.head_dim(), opt);
    return t * layers * (8 * d * d + 4 * d * f) + 2 * t * v * d + layers * attention;
}

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// CPU seconds of the whole process (all threads): robust against other processes on a shared machine.
double process_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

long long peak_rss_bytes() {
    rusage usage{};
    if (getrusage(RUSAGE_SELF, &usage) != 0) return -1;
    return static_cast<long long>(usage.ru_maxrss) * 1024;  // Linux: KiB
}

tr::trainer_options step_options(bool checkpoint) {
    tr::trainer_options opt;
    opt.adamw.weight_decay = 0.01;
    opt.schedule.kind = tr::schedule_kind::constant;
    opt.schedule.lr = 1e-4;
    opt.clip_norm = 1.0;
    opt.pass.checkpoint_activations = checkpoint;
    return opt;
}

void BM_train_step(benchmark::State& state) {
    const index_t seq = state.range(0);
    const bool checkpoint = state.range(1) != 0;
    nn::decoder<float>& model = base_model();
    const std::vector<tr::sequence> batch{random_sequence(static_cast<std::size_t>(seq), 3)};

    const bool warm = state.range(2) != 0;
    auto t0 = clock_type::now();
    double forward_seconds = 0, forward_cpu = 0;
    if (warm) {
        const double c0 = process_cpu_seconds();
        const double loss = model.loss(batch[0].inputs, batch[0].targets);
        forward_seconds = seconds_since(t0);
        forward_cpu = process_cpu_seconds() - c0;
        benchmark::DoNotOptimize(loss);
    }
    tr::trainer<float> trainer(model, step_options(checkpoint));
    if (warm) trainer.step(batch);  // warm-up: allocates the activations and gradient workspace

    double seconds = 0, cpu = 0;
    for (auto _ : state) {
        t0 = clock_type::now();
        const double c0 = process_cpu_seconds();
        const tr::step_stats st = trainer.step(batch);
        seconds += seconds_since(t0);
        cpu += process_cpu_seconds() - c0;
        benchmark::DoNotOptimize(st.loss);
    }
    const double per_step = seconds / static_cast<double>(state.iterations());
    const double per_step_cpu = cpu / static_cast<double>(state.iterations());
    const double model_flops = 3 * forward_flops(model, seq);
    const double peak = longnet_bench::measured_peak_gflops();
    state.counters["tokens_per_s"] = static_cast<double>(seq) / per_step;
    state.counters["model_gflops"] = model_flops / per_step * 1e-9;
    state.counters["peak_gflops"] = peak;
    if (peak > 0) state.counters["mfu"] = model_flops / per_step * 1e-9 / peak;
    if (warm) {
        state.counters["forward_s"] = forward_seconds;
        state.counters["step_over_forward"] = per_step / forward_seconds;
        state.counters["forward_cpu_s"] = forward_cpu;
        state.counters["step_over_forward_cpu"] = per_step_cpu / forward_cpu;
    }
    state.counters["step_cpu_s"] = per_step_cpu;
    state.counters["peak_rss_bytes"] = static_cast<double>(peak_rss_bytes());
    state.counters["model_tflop_per_step"] = model_flops * 1e-12;
}

// One step written out with timers around its parts (the same calls as decoder::forward_backward
// and trainer::step, without checkpointing).
void BM_train_profile(benchmark::State& state) {
    const index_t seq = state.range(0);
    const bool bf16 = state.range(1) != 0;  // the Linears' GEMMs and the attention in bf16 (as a bf16 trainer runs them)
    nn::decoder<float>& model = base_model();
    tr::set_bf16_products(model, bf16);
    nn::bf16_attention bf16_attention;  // what a bf16 trainer's pass uses
    nn::attention_backend<float>& attention = bf16 ? bf16_attention : nn::local_attention<float>();
    const tr::sequence s = random_sequence(static_cast<std::size_t>(seq), 5);
    nn::decoder_grad<float> grad = model.make_grad();
    auto params = tr::named_parameters(model);
    auto grads = tr::named_gradients(grad);
    tr::adamw<float> optimizer(params, tr::adamw_options{});
    std::vector<nn::decoder_layer_activations<float>> acts(model.layers.size());
    struct parts {
        double attention_fwd = 0, attention_bwd = 0, ffn_fwd = 0, ffn_bwd = 0, norms_residuals = 0, head = 0, optimizer = 0;
    } p;
    bool warm = false;
    for (auto _ : state) {
        grad.set_zero();
        nn::matrix<float> x;
        auto t0 = clock_type::now();
        nn::embedding_forward(model.embed_tokens, s.inputs, model.config.embed_scale(), x);
        p.norms_residuals += seconds_since(t0);
        for (std::size_t l = 0; l < model.layers.size(); ++l) {
            const auto& layer = model.layers[l];
            auto& act = acts[l];
            t0 = clock_type::now();
            act.input = x;
            act.ln1_out.resize(x.rows(), x.cols());
            layer.self_attn_layer_norm.forward_train(x, act.ln1_out, act.ln1_mean, act.ln1_rstd);
            nn::matrix<float> y(x.rows(), x.cols());
            p.norms_residuals += seconds_since(t0);
            t0 = clock_type::now();
            layer.self_attn.forward_train(act.ln1_out, y, act.attn, attention);
            p.attention_fwd += seconds_since(t0);
            t0 = clock_type::now();
            x += y;
            act.mid = x;
            act.ln2_out.resize(x.rows(), x.cols());
            layer.final_layer_norm.forward_train(x, act.ln2_out, act.ln2_mean, act.ln2_rstd);
            p.norms_residuals += seconds_since(t0);
            t0 = clock_type::now();
            layer.ffn.forward_train(act.ln2_out, y, act.ffn);
            p.ffn_fwd += seconds_since(t0);
            t0 = clock_type::now();
            x += y;
            p.norms_residuals += seconds_since(t0);
        }
        t0 = clock_type::now();
        nn::matrix<float> final_input = x, hidden(seq, model.embed_dim());
        nn::vector<float> mean, rstd;
        model.final_norm.forward_train(final_input, hidden, mean, rstd);
        p.norms_residuals += seconds_since(t0);
        t0 = clock_type::now();
        nn::matrix<float> d_hidden = nn::matrix<float>::Zero(seq, model.embed_dim());
        const index_t block = 1024;
        nn::matrix<float> logits(std::min(seq, block), model.vocab_size());
        double total = 0;
        for (index_t r0 = 0; r0 < seq; r0 += block) {
            const index_t n = std::min(block, seq - r0);
            auto z = logits.topRows(n);
            model.output_projection.forward(hidden.middleRows(r0, n), z);
            total += nn::cross_entropy_backward<float>(z, s.targets.data() + r0, 1.0 / static_cast<double>(seq));
            model.output_projection.backward(hidden.middleRows(r0, n), z, d_hidden.middleRows(r0, n), grad.output_projection);
        }
        benchmark::DoNotOptimize(total);
        p.head += seconds_since(t0);
        t0 = clock_type::now();
        x.setZero();
        model.final_norm.backward(final_input, d_hidden, mean, rstd, x, grad.layer_norm);
        p.norms_residuals += seconds_since(t0);
        for (std::size_t l = model.layers.size(); l-- > 0;) {
            const auto& layer = model.layers[l];
            const auto& act = acts[l];
            auto& g = grad.layers[l];
            t0 = clock_type::now();
            nn::matrix<float> dh = nn::matrix<float>::Zero(seq, model.embed_dim());
            p.norms_residuals += seconds_since(t0);
            t0 = clock_type::now();
            layer.ffn.backward(act.ln2_out, x, act.ffn, dh, g.ffn);
            p.ffn_bwd += seconds_since(t0);
            t0 = clock_type::now();
            layer.final_layer_norm.backward(act.mid, dh, act.ln2_mean, act.ln2_rstd, x, g.final_layer_norm);
            dh.setZero();
            p.norms_residuals += seconds_since(t0);
            t0 = clock_type::now();
            layer.self_attn.backward(act.ln1_out, x, act.attn, dh, g.self_attn, longnet::grad_mode::exact, attention);
            p.attention_bwd += seconds_since(t0);
            t0 = clock_type::now();
            layer.self_attn_layer_norm.backward(act.input, dh, act.ln1_mean, act.ln1_rstd, x, g.self_attn_layer_norm);
            p.norms_residuals += seconds_since(t0);
        }
        t0 = clock_type::now();
        nn::embedding_backward<float>(s.inputs, model.config.embed_scale(), x, grad.embed_tokens);
        p.norms_residuals += seconds_since(t0);
        t0 = clock_type::now();
        tr::clip_grad_norm(grads, 1.0);
        optimizer.step(params, grads, 1e-4);
        if (bf16) tr::set_bf16_products(model, true);  // the trainer's refresh of the bf16 copies
        p.optimizer += seconds_since(t0);
        if (!warm) {  // the first step grows the heap (first touch of every buffer): not counted
            p = parts{};
            warm = true;
        }
    }
    tr::set_bf16_products(model, false);
    const double n = static_cast<double>(state.iterations() - 1);
    state.counters["attention_fwd_s"] = p.attention_fwd / n;
    state.counters["attention_bwd_s"] = p.attention_bwd / n;
    state.counters["ffn_fwd_s"] = p.ffn_fwd / n;
    state.counters["ffn_bwd_s"] = p.ffn_bwd / n;
    state.counters["norms_residuals_s"] = p.norms_residuals / n;
    state.counters["head_s"] = p.head / n;
    state.counters["optimizer_s"] = p.optimizer / n;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void BM_train_step_bf16(benchmark::State& state) {
    const index_t seq = state.range(0);
    const int rounds = static_cast<int>(state.range(1));
    nn::decoder<float>& model = base_model();
    const std::vector<tr::sequence> batch{random_sequence(static_cast<std::size_t>(seq), 3)};
    std::vector<double> wall[2], cpu[2];
    for (auto _ : state) {
        for (int r = 0; r < rounds; ++r)
            for (int p = 0; p < 2; ++p) {
                tr::trainer_options opt = step_options(false);
                opt.precision = p == 1 ? tr::precision::bf16 : tr::precision::float32;
                tr::trainer<float> trainer(model, opt);  // bf16: makes the copies; its destructor drops them
                trainer.step(batch);                     // warm-up: allocates the workspace
                const auto t0 = clock_type::now();
                const double c0 = process_cpu_seconds();
                const tr::step_stats st = trainer.step(batch);
                wall[p].push_back(seconds_since(t0));
                cpu[p].push_back(process_cpu_seconds() - c0);
                benchmark::DoNotOptimize(st.loss);
            }
    }
    const double loss_float = model.loss(batch[0].inputs, batch[0].targets);
    tr::set_bf16_products(model, true);
    const double loss_bf16 = model.loss(batch[0].inputs, batch[0].targets);
    tr::set_bf16_products(model, false);
    const double f = median(wall[0]), b = median(wall[1]), fc = median(cpu[0]), bc = median(cpu[1]);
    state.counters["float_s"] = f;
    state.counters["bf16_s"] = b;
    state.counters["speedup"] = f / b;
    state.counters["float_cpu_s"] = fc;
    state.counters["bf16_cpu_s"] = bc;
    state.counters["speedup_cpu"] = fc / bc;
    state.counters["loss_rel_diff"] = std::fabs(loss_bf16 - loss_float) / loss_float;
    const double model_flops = 3 * forward_flops(model, seq), peak = longnet_bench::measured_peak_gflops();
    if (peak > 0) {
        state.counters["mfu_float"] = model_flops / f * 1e-9 / peak;
        state.counters["mfu_bf16"] = model_flops / b * 1e-9 / peak;  // of the float FMA peak
    }
}

constexpr std::int64_t K = 1024;

// {T, checkpointing, warm-up}: the long ones take minutes per step, so they time their first step
// (workspace allocation included) and skip the forward.
BENCHMARK(BM_train_step)->Args({8 * K, 0, 1})->Iterations(2)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_train_step)->Args({8 * K, 1, 1})->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_train_step)->Args({32 * K, 1, 0})->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_train_step)->Args({64 * K, 1, 0})->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_train_profile)->Args({8 * K, 0})->Iterations(2)->Unit(benchmark::kSecond)->UseRealTime();
// Short ones for alternating two builds on a shared machine (the profile times its second iteration).
BENCHMARK(BM_train_step)->Args({2 * K, 0, 1})->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_train_profile)->Args({2 * K, 0})->Iterations(2)->Unit(benchmark::kSecond)->UseRealTime();
// Mixed precision (issue 23): float and bf16 steps alternating, and the bf16 step's split.
BENCHMARK(BM_train_step_bf16)->Args({2 * K, 3})->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_train_step_bf16)->Args({8 * K, 1})->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_train_profile)->Args({2 * K, 1})->Iterations(2)->Unit(benchmark::kSecond)->UseRealTime();

// Long sequences through the whole model (issue 21 §2): `longnet_train --random-config tiny --task passkey
// --passkey-loss all --checkpoint-activations` at T tokens: 2 layers, hidden 64, 4 heads, FFN 256,
// vocabulary 256, branches (64, 1) + (256, 4), float, torchscale initialisation (seed 1), one fresh passkey
// document per step, every byte scored. Two untimed steps first (the heap reaches its high-water mark over
// the first two; the heap is never trimmed here, as in longnet_train), then the timed steps.
//   BM_train_long/T   tokens_per_s, us_per_token (wall), cpu_us_per_token (CPU of all threads: robust on
//                     a shared machine; OMP_NUM_THREADS=1 for single-thread figures), minor_faults per
//                     step, peak_rss_bytes (run one T per process to read it for that T). The per-token
//                     cost from 64K to 1M is the paper's linear cost through the whole model (target ≤ 1.2×).
//   bench_training --benchmark_filter='BM_train_long/1048576'    # 1M: ~7 GiB, ~20-40 s per step
void BM_train_long(benchmark::State& state) {
#if defined(__GLIBC__)
    mallopt(M_TRIM_THRESHOLD, -1);  // never trim: a 2 GiB threshold re-faults GiBs per step at 1M tokens
#endif
    const index_t seq = state.range(0);
    nn::decoder_config c;
    c.embed_dim = 64, c.heads = 4, c.ffn_dim = 256, c.layers = 2, c.vocab_size = 256;
    c.segment_length = {64, 256}, c.dilated_ratio = {1, 4};
    nn::decoder<float> model(c);
    tr::torchscale_init(model, 1);
    tr::passkey_task task;
    task.seq_len = static_cast<std::size_t>(seq);
    task.answer_only = false;
    tr::rng_state rng{1};
    tr::trainer_options opt = step_options(true);
    tr::trainer<float> trainer(model, opt);
    for (int i = 0; i < 2; ++i) trainer.step({task.sample(rng)});
    double seconds = 0, cpu = 0, faults = 0;
    for (auto _ : state) {
        const std::vector<tr::sequence> batch{task.sample(rng)};
        rusage u0{};
        getrusage(RUSAGE_SELF, &u0);
        const auto t0 = clock_type::now();
        const double c0 = process_cpu_seconds();
        const tr::step_stats st = trainer.step(batch);
        seconds += seconds_since(t0);
        cpu += process_cpu_seconds() - c0;
        rusage u1{};
        getrusage(RUSAGE_SELF, &u1);
        faults += static_cast<double>(u1.ru_minflt - u0.ru_minflt);
        benchmark::DoNotOptimize(st.loss);
    }
    const double steps = static_cast<double>(state.iterations()), tokens = static_cast<double>(seq) * steps;
    state.counters["tokens_per_s"] = tokens / seconds;
    state.counters["us_per_token"] = 1e6 * seconds / tokens;
    state.counters["cpu_us_per_token"] = 1e6 * cpu / tokens;
    state.counters["minor_faults"] = faults / steps;
    state.counters["peak_rss_bytes"] = static_cast<double>(peak_rss_bytes());
}
BENCHMARK(BM_train_long)->Arg(64 * K)->Iterations(3)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_train_long)->Arg(256 * K)->Iterations(2)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_train_long)->Arg(1024 * K)->Iterations(2)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    // As longnet's tools do (longnet/allocator.hpp); LONGNET_KEEP_FREED_MEMORY=0 measures glibc's default.
    const char* keep_env = std::getenv("LONGNET_KEEP_FREED_MEMORY");
    const bool keep = !(keep_env && std::string(keep_env) == "0") && longnet::keep_freed_memory();
    const char* kernel_isa = nullptr;  // an unusable LONGNET_ISA is an error here, not an abort later
    try {
        kernel_isa = longnet::simd_isa();
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "bench_training: error: %s\n", e.what());
        return 2;
    }
    const double peak = longnet_bench::measure_fma_peak_gflops();
    longnet_bench::measured_peak_gflops() = peak;
    const std::string bf16_gemm = nn::bf16_gemm_kernel();
    std::fprintf(stderr, "bench_training: FMA peak %.1f GFLOP/s (%s, %d threads); kernels use %s; nn GEMMs: %s "
                 "(bf16 products: %s); freed memory kept: %s\n", peak, longnet_bench::fma_isa,
                 longnet_bench::bench_threads(), kernel_isa, nn::gemm_backend, bf16_gemm.c_str(), keep ? "yes" : "no");
    benchmark::AddCustomContext("longnet_version", LONGNET_VERSION_STRING);
    benchmark::AddCustomContext("longnet_peak_gflops", std::to_string(peak));
    benchmark::AddCustomContext("longnet_fma_isa", longnet_bench::fma_isa);
    benchmark::AddCustomContext("longnet_simd_isa", kernel_isa);
    benchmark::AddCustomContext("longnet_threads", std::to_string(longnet_bench::bench_threads()));
    benchmark::AddCustomContext("longnet_nn_gemm", nn::gemm_backend);
    benchmark::AddCustomContext("longnet_bf16_gemm", bf16_gemm);
    benchmark::AddCustomContext("longnet_keep_freed_memory", keep ? "yes" : "no");
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
