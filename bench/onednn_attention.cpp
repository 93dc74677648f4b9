// SPDX-License-Identifier: Apache-2.0
// Baseline: dense (non-causal) softmax attention built from oneDNN primitives, float32.
//
// For each (batch, head) and each block of 256 query rows:
//   S = τ · Q_blk · Kᵀ     oneDNN matmul (output scale τ), S is [256, N] float
//   P = softmax_rows(S)    oneDNN softmax primitive, in place, axis 1
//   O_blk = P · V          oneDNN matmul, written straight into out's strided [256, D] rows
// Q, K, V, O stay in longnet's [B, N, H, D] layout: each head is a strided matrix (row stride H·D)
// and Kᵀ is the same memory with swapped strides, so nothing is copied.
//
// Two ways to use the machine's threads, both registered so the faster one is the baseline:
//   library  blocks run one after another; every primitive is parallelised by oneDNN (OpenMP runtime)
//   blocks   an OpenMP loop over (batch, head, block); primitives run single-threaded inside it, each
//            thread with its own S buffer and scratchpad (scratchpad_mode::user)
// Flops: the same SPEC §3 count as longnet's dense benchmark (4·D·N² per head), so the gflops columns
// compare directly.

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "bench_common.hpp"
#include "fma_peak.hpp"
#include "suite.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace longnet_bench {
namespace {

constexpr index_t query_block = 256;

// The three primitives of one query block of `rows` rows.
struct block_plan {
    index_t rows = 0;
    dnnl::matmul scores, values;
    dnnl::softmax_forward softmax;
    dnnl::memory::desc q_md, kt_md, s_md, v_md, o_md;
    dnnl::memory::desc scores_scratch_md, softmax_scratch_md, values_scratch_md;

    block_plan(const dnnl::engine& engine, index_t block_rows, index_t seq, index_t heads, index_t dim,
               float scale, bool user_scratchpad)
        : rows(block_rows) {
        using dt = dnnl::memory::data_type;
        using dims = dnnl::memory::dims;
        const index_t row_stride = heads * dim;  // [B, N, H, D]: next row of the same head
        q_md = dnnl::memory::desc(dims{rows, dim}, dt::f32, dims{row_stride, 1});
        kt_md = dnnl::memory::desc(dims{dim, seq}, dt::f32, dims{1, row_stride});  // Kᵀ: swapped strides
        s_md = dnnl::memory::desc(dims{rows, seq}, dt::f32, dims{seq, 1});
        v_md = dnnl::memory::desc(dims{seq, dim}, dt::f32, dims{row_stride, 1});
        o_md = dnnl::memory::desc(dims{rows, dim}, dt::f32, dims{row_stride, 1});

        dnnl::primitive_attr scaled, plain;
        scaled.set_output_scales(0, {scale});
        if (user_scratchpad) {
            scaled.set_scratchpad_mode(dnnl::scratchpad_mode::user);
            plain.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        }
        const dnnl::matmul::primitive_desc scores_pd(dnnl::matmul::desc(q_md, kt_md, s_md), scaled, engine);
        const dnnl::softmax_forward::primitive_desc softmax_pd(
            dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, s_md, 1), plain, engine);
        const dnnl::matmul::primitive_desc values_pd(dnnl::matmul::desc(s_md, v_md, o_md), plain, engine);
        scores = dnnl::matmul(scores_pd);
        softmax = dnnl::softmax_forward(softmax_pd);
        values = dnnl::matmul(values_pd);
        scores_scratch_md = scores_pd.scratchpad_desc();
        softmax_scratch_md = softmax_pd.scratchpad_desc();
        values_scratch_md = values_pd.scratchpad_desc();
    }

    std::size_t scratch_bytes() const {
        return std::max({scores_scratch_md.get_size(), softmax_scratch_md.get_size(), values_scratch_md.get_size()});
    }

    // One block: rows [first, first + rows) of head h of batch item b.
    void run(const dnnl::engine& engine, dnnl::stream& stream, attention_inputs<float>& in, index_t b, index_t h,
             index_t first, float* scores_buffer, void* scratch) const {
        const index_t base = in.q_view().offset(b, 0, h);
        const index_t block = in.q_view().offset(b, first, h);
        dnnl::memory q_mem(q_md, engine, const_cast<float*>(in.q.data()) + block);
        dnnl::memory kt_mem(kt_md, engine, const_cast<float*>(in.k.data()) + base);
        dnnl::memory v_mem(v_md, engine, const_cast<float*>(in.v.data()) + base);
        dnnl::memory s_mem(s_md, engine, scores_buffer);
        dnnl::memory o_mem(o_md, engine, in.out.data() + block);
        auto with_scratch = [&](std::unordered_map<int, dnnl::memory> args, const dnnl::memory::desc& md) {
            if (scratch != nullptr && md.get_size() > 0) args.insert({DNNL_ARG_SCRATCHPAD, dnnl::memory(md, engine, scratch)});
            return args;
        };
        scores.execute(stream, with_scratch({{DNNL_ARG_SRC, q_mem}, {DNNL_ARG_WEIGHTS, kt_mem}, {DNNL_ARG_DST, s_mem}},
                                            scores_scratch_md));
        softmax.execute(stream, with_scratch({{DNNL_ARG_SRC, s_mem}, {DNNL_ARG_DST, s_mem}}, softmax_scratch_md));
        values.execute(stream, with_scratch({{DNNL_ARG_SRC, s_mem}, {DNNL_ARG_WEIGHTS, v_mem}, {DNNL_ARG_DST, o_mem}},
                                            values_scratch_md));
        stream.wait();
    }
};

enum class threading { library, blocks };

// Largest |out − reference| over a few rows of every head, the reference in double: a baseline that
// computes something else would make the ratio meaningless.
double max_error_on_sample_rows(const attention_inputs<float>& in, double scale) {
    const auto q = in.q_view(), k = in.k_view(), v = in.v_view();
    double worst = 0;
    const index_t rows[] = {0, 1, in.seq / 3, in.seq / 2, in.seq - 1};
    std::vector<double> logits(static_cast<std::size_t>(in.seq));
    for (index_t h = 0; h < in.heads; ++h) {
        for (index_t i : rows) {
            double max_logit = -1e300;
            for (index_t j = 0; j < in.seq; ++j) {
                double dot = 0;
                for (index_t d = 0; d < in.dim; ++d) dot += double(q(0, i, h, d)) * double(k(0, j, h, d));
                logits[static_cast<std::size_t>(j)] = scale * dot;
                max_logit = std::max(max_logit, scale * dot);
            }
            double sum = 0;
            for (double& l : logits) sum += (l = std::exp(l - max_logit));
            for (index_t d = 0; d < in.dim; ++d) {
                double o = 0;
                for (index_t j = 0; j < in.seq; ++j) o += logits[static_cast<std::size_t>(j)] * double(v(0, j, h, d));
                const double got = in.out[static_cast<std::size_t>(q.offset(0, i, h) + d)];
                worst = std::max(worst, std::abs(o / sum - got));
            }
        }
    }
    return worst;
}

void bm_onednn_dense(benchmark::State& state, threading mode, index_t heads, index_t dim) {
    const index_t seq = state.range(0);
    attention_inputs<float>& in = cached_inputs<float>(1, seq, heads, dim);
    const float scale = static_cast<float>(longnet::effective_scale({}, dim));
    const bool user_scratchpad = mode == threading::blocks;

    dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    const index_t full_blocks = seq / query_block;
    const index_t tail_rows = seq % query_block;
    const block_plan full(engine, std::min(query_block, seq), seq, heads, dim, scale, user_scratchpad);
    std::unique_ptr<block_plan> tail;
    if (tail_rows > 0 && full_blocks > 0)
        tail = std::make_unique<block_plan>(engine, tail_rows, seq, heads, dim, scale, user_scratchpad);
    const index_t blocks_per_head = full_blocks + (tail_rows > 0 ? 1 : 0);
    const index_t tasks = in.batch * heads * blocks_per_head;
    auto plan_of = [&](index_t blk) -> const block_plan& { return (blk < full_blocks || !tail) ? full : *tail; };

    const int threads = mode == threading::blocks ? bench_threads() : 1;
    const std::size_t scratch_floats = (std::max(full.scratch_bytes(), tail ? tail->scratch_bytes() : 0) + 3) / 4;
    std::vector<std::vector<float>> scores(static_cast<std::size_t>(threads)), scratch(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) {
        scores[static_cast<std::size_t>(t)].resize(static_cast<std::size_t>(full.rows * seq));
        scratch[static_cast<std::size_t>(t)].resize(user_scratchpad ? scratch_floats + 16 : 0);
    }

    auto run_task = [&](dnnl::stream& stream, int thread, index_t task) {
        const index_t blk = task % blocks_per_head;
        const index_t h = (task / blocks_per_head) % heads;
        const index_t b = task / (blocks_per_head * heads);
        void* scratch_ptr = user_scratchpad ? scratch[static_cast<std::size_t>(thread)].data() : nullptr;
        plan_of(blk).run(engine, stream, in, b, h, blk * query_block, scores[static_cast<std::size_t>(thread)].data(),
                         scratch_ptr);
    };

    const loop_timer timer;
    for (auto _ : state) {
        if (mode == threading::library) {
            dnnl::stream stream(engine);
            for (index_t task = 0; task < tasks; ++task) run_task(stream, 0, task);
        } else {
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
#endif
            {
                dnnl::stream stream(engine);
#if defined(_OPENMP)
                const int thread = omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
#else
                const int thread = 0;
#endif
                for (index_t task = 0; task < tasks; ++task) run_task(stream, thread, task);
            }
        }
        benchmark::DoNotOptimize(in.out.data());
        benchmark::ClobberMemory();
    }
    const double seconds = timer.seconds();
    const double error = max_error_on_sample_rows(in, scale);
    if (!(error < 1e-3)) state.SkipWithError(("oneDNN attention differs from the reference by " + std::to_string(error)).c_str());
    set_attention_counters(state, seconds, longnet::dense_attention_flops(in.batch, seq, heads, dim, false),
                           static_cast<double>(in.batch * seq));
    state.counters["max_abs_error"] = error;
}

}  // namespace

void register_onednn_benchmarks(const suite_config& config) {
    const index_t heads = 4;
    const index_t d = config.head_dim;
    const index_t seq = config.smoke ? 512 : 8192;
    if (seq > config.max_seq) return;
    for (threading mode : {threading::library, threading::blocks}) {
        const std::string name = std::string("BM_OneDNNDenseAttention/float/noncausal/H:") + std::to_string(heads) +
                                 (mode == threading::library ? "/mode:library" : "/mode:blocks");
        auto* b = benchmark::RegisterBenchmark(name.c_str(),
                                               [=](benchmark::State& s) { bm_onednn_dense(s, mode, heads, d); });
        b->ArgName("N")->Arg(seq)->UseRealTime()->Unit(benchmark::kMillisecond);
        if (!config.smoke) b->Repetitions(3)->ReportAggregatesOnly(true);
    }
}

}  // namespace longnet_bench
