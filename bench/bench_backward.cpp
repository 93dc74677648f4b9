// SPDX-License-Identifier: Apache-2.0
// Backward of dilated attention (paper configuration) next to its forward, in longnet_bench.
//
// Names: BM_DilatedBackward/<storage: float or bf16>/<causal|noncausal>/H:<heads>/N:<sequence length>; B = 1, D = 64.
// Each iteration runs the forward (out, lse) and then the exact backward on the same inputs; the
// reported time is the backward's (manual time). Counters:
//   forward_seconds, backward_seconds  medians over the iterations
//   ratio                              backward_seconds ÷ forward_seconds (target ≤ 2.5)
//   gflops                             backward GFLOP/s, counting 2.5 × the forward's SPEC §3 flops
//                                      (QKᵀ, dO·Vᵀ, dV, dK, dQ: five products against the forward's
//                                      two, FlashAttention's convention; the recomputation of P is
//                                      counted as one of the five)
//   forward_gflops                     the forward's SPEC §3 flops ÷ forward_seconds
//   efficiency, forward_efficiency     ÷ the FMA peak measured by longnet_bench at startup
//
// Registered at static initialisation (longnet_bench's main needs no change). The sizes follow
// longnet_bench's --longnet_smoke and --longnet_max_seq=N, read from /proc/self/cmdline (Linux);
// elsewhere the full sizes run. Full: H = 1 at N = 1M (8 float tensors of 256 MiB), H = 4 at 256K.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "longnet/backward.hpp"

namespace longnet_bench {
namespace {

struct backward_flags {
    bool smoke = false;
    index_t max_seq = index_t(1) << 62;
};

// longnet_bench's own flags, seen before main() parses (and removes) them.
backward_flags read_backward_flags() {
    backward_flags flags;
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::size_t start = 0;
    while (start < all.size()) {
        std::size_t end = all.find('\0', start);
        if (end == std::string::npos) end = all.size();
        const std::string arg = all.substr(start, end - start);
        if (arg == "--longnet_smoke") flags.smoke = true;
        if (arg.rfind("--longnet_max_seq=", 0) == 0) {
            const long long v = std::atoll(arg.c_str() + 18);
            if (v > 0) flags.max_seq = static_cast<index_t>(v);
        }
        start = end + 1;
    }
    return flags;
}

double median(std::vector<double> x) {
    std::sort(x.begin(), x.end());
    return x.empty() ? 0 : x[x.size() / 2];
}

template <class T>
void bm_dilated_backward(benchmark::State& state, bool causal, index_t heads, index_t dim) {
    const index_t seq = state.range(0);
    attention_inputs<T>& in = cached_inputs<T>(1, seq, heads, dim);
    const auto count = static_cast<std::size_t>(seq * heads * dim);
    std::vector<T> dout(count), dq(count), dk(count), dv(count);
    fill_normal(dout.data(), static_cast<std::int64_t>(count), 4);
    const auto view = [&](std::vector<T>& x) { return longnet::make_bnhd(x.data(), 1, seq, heads, dim); };
    const auto cview = [&](std::vector<T>& x) { return longnet::make_bnhd<const T>(x.data(), 1, seq, heads, dim); };
    const longnet::dilated_options options = longnet::dilated_options::paper(causal);
    std::vector<double> forward_times, backward_times;
    for (auto _ : state) {
        const loop_timer forward_timer;
        longnet::dilated_attention(in.q_view(), in.k_view(), in.v_view(), in.out_view(), options, in.lse_view());
        benchmark::ClobberMemory();
        const double forward_seconds = forward_timer.seconds();
        const loop_timer backward_timer;
        longnet::dilated_attention_backward(in.q_view(), in.k_view(), in.v_view(),
                                            longnet::tensor_view<const T>(in.out_view()),
                                            longnet::lse_view<const float>(in.lse_view()), cview(dout), view(dq),
                                            view(dk), view(dv), options);
        benchmark::DoNotOptimize(dq.data());
        benchmark::ClobberMemory();
        const double backward_seconds = backward_timer.seconds();
        state.SetIterationTime(backward_seconds);
        forward_times.push_back(forward_seconds);
        backward_times.push_back(backward_seconds);
    }
    const double fwd = median(forward_times), bwd = median(backward_times);
    const double forward_flops = longnet::dilated_attention_flops(1, seq, heads, dim, options);
    const double peak = measured_peak_gflops();
    state.counters["forward_seconds"] = fwd;
    state.counters["backward_seconds"] = bwd;
    state.counters["ratio"] = bwd / fwd;
    state.counters["gflops"] = 2.5 * forward_flops / bwd * 1e-9;
    state.counters["forward_gflops"] = forward_flops / fwd * 1e-9;
    state.counters["tokens_per_s"] = static_cast<double>(seq) / bwd;
    state.counters["peak_gflops"] = peak;
    if (peak > 0) {
        state.counters["efficiency"] = 2.5 * forward_flops / bwd * 1e-9 / peak;
        state.counters["forward_efficiency"] = forward_flops / fwd * 1e-9 / peak;
    }
}

const bool registered = [] {
    const backward_flags flags = read_backward_flags();
    const index_t dim = 64;
    const auto add = [&](const char* storage, bool causal, index_t heads, auto run) {
        const index_t n = flags.smoke ? 1024 : (heads == 1 ? 1048576 : 262144);
        if (n > flags.max_seq) return;
        const std::string name = std::string("BM_DilatedBackward/") + storage + "/" +
                                 (causal ? "causal" : "noncausal") + "/H:" + std::to_string(heads);
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) { run(s, causal, heads, dim); })
            ->ArgName("N")
            ->Arg(n)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond)
            ->Iterations(flags.smoke ? 1 : 3);
    };
    for (bool causal : {false, true})
        for (index_t heads : {index_t(1), index_t(4)}) {
            add("float", causal, heads, bm_dilated_backward<float>);
            // bfloat16 storage: the bf16 dot-product backward where it runs (longnet_bf16_dot in the
            // context; LONGNET_BF16_DOT=1/0 forces it), else the float products on widened rows
            add("bf16", causal, heads, bm_dilated_backward<longnet::bfloat16>);
        }
    return true;
}();

}  // namespace
}  // namespace longnet_bench
