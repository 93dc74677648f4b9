// SPDX-License-Identifier: Apache-2.0
// longnet_bench: measures the FMA peak once, then runs the attention benchmarks against it.
//
//   longnet_bench [--longnet_smoke] [--longnet_max_seq=N] [Google Benchmark flags]
//
//   --longnet_smoke       tiny sizes only: checks that every benchmark runs (seconds)
//   --longnet_max_seq=N   skip every size above N (e.g. 65536 for a quick run)
// All --benchmark_* flags work as usual (--benchmark_filter, --benchmark_out, --benchmark_repetitions).

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "fma_peak.hpp"
#include "longnet/isa.hpp"
#include "longnet/version.hpp"
#include "suite.hpp"

namespace {

// Removes the --longnet_* flags from argv (Google Benchmark rejects flags it does not know).
longnet_bench::suite_config parse_longnet_flags(int& argc, char** argv) {
    longnet_bench::suite_config config;
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
        const char* arg = argv[i];
        if (std::strcmp(arg, "--longnet_smoke") == 0) {
            config.smoke = true;
        } else if (std::strncmp(arg, "--longnet_max_seq=", 18) == 0) {
            char* end = nullptr;
            const long long value = std::strtoll(arg + 18, &end, 10);
            if (end == arg + 18 || *end != '\0' || value < 1) {
                std::fprintf(stderr, "longnet_bench: --longnet_max_seq needs a positive integer, got '%s'\n", arg + 18);
                std::exit(2);
            }
            config.max_seq = static_cast<longnet::index_t>(value);
        } else if (std::strncmp(arg, "--longnet_", 10) == 0) {
            std::fprintf(stderr, "longnet_bench: unknown flag '%s' (known: --longnet_smoke, --longnet_max_seq=N)\n",
                         arg);
            std::exit(2);
        } else {
            argv[kept++] = argv[i];
        }
    }
    argc = kept;
    argv[argc] = nullptr;
    return config;
}

}  // namespace

int main(int argc, char** argv) {
    const longnet_bench::suite_config config = parse_longnet_flags(argc, argv);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    // The kernels' instruction-set path first: an unusable LONGNET_ISA is an error, not an abort later.
    const char* kernel_isa = nullptr;
    try {
        kernel_isa = longnet::simd_isa();
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "longnet_bench: error: %s\n", e.what());
        return 2;
    }

    // The efficiency denominator: best of 5 rounds of independent FMA chains on every thread.
    const double peak = longnet_bench::measure_fma_peak_gflops();
    longnet_bench::measured_peak_gflops() = peak;
    std::fprintf(stderr, "longnet_bench: FMA peak %.1f GFLOP/s (%s, %d threads)\n", peak, longnet_bench::fma_isa,
                 longnet_bench::bench_threads());
    // The bf16 dot-product peak (vdpbf16ps) where the target has AVX512-BF16, else 0.
    const double bf16_peak = longnet_bench::measure_bf16_dot_peak_gflops();
    if (bf16_peak > 0)
        std::fprintf(stderr, "longnet_bench: bf16 dot peak %.1f GFLOP/s (avx512bf16, %.2fx the FMA peak)\n", bf16_peak,
                     bf16_peak / peak);
    // The AMX bf16 peak (TDPBF16PS) where the target has AMX and Linux grants the tile state, else 0.
    const double amx_peak = longnet_bench::measure_amx_peak_gflops();
    if (amx_peak > 0)
        std::fprintf(stderr, "longnet_bench: AMX bf16 peak %.1f GFLOP/s (amx-bf16, %.2fx the FMA peak)\n", amx_peak,
                     amx_peak / peak);
    std::fprintf(stderr, "longnet_bench: kernels use %s; bf16 dot products %s; AMX tiles %s\n", kernel_isa,
                 longnet::bf16_dot_products() ? "on" : "off", longnet::bf16_amx_tiles() ? "on" : "off");

    benchmark::AddCustomContext("longnet_version", LONGNET_VERSION_STRING);
    benchmark::AddCustomContext("longnet_peak_gflops", std::to_string(peak));
    benchmark::AddCustomContext("longnet_fma_isa", longnet_bench::fma_isa);
    benchmark::AddCustomContext("longnet_bf16_dot_peak_gflops", std::to_string(bf16_peak));
    benchmark::AddCustomContext("longnet_simd_isa", kernel_isa);
    benchmark::AddCustomContext("longnet_bf16_dot", longnet::bf16_dot_products() ? "on" : "off");
    benchmark::AddCustomContext("longnet_amx_peak_gflops", std::to_string(amx_peak));
    benchmark::AddCustomContext("longnet_bf16_amx", longnet::bf16_amx_tiles() ? "on" : "off");
    benchmark::AddCustomContext("longnet_threads", std::to_string(longnet_bench::bench_threads()));
    benchmark::AddCustomContext("longnet_head_dim", std::to_string(config.head_dim));
    benchmark::AddCustomContext("longnet_onednn", LONGNET_BENCH_HAS_ONEDNN ? "yes" : "no");

    longnet_bench::register_peak_benchmark();
    longnet_bench::register_attention_benchmarks(config);
#if LONGNET_BENCH_HAS_ONEDNN
    longnet_bench::register_onednn_benchmarks(config);
#endif
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    longnet_bench::release_cached_inputs();
    return 0;
}
