// SPDX-License-Identifier: Apache-2.0
#pragma once
// Which benchmarks longnet_bench registers. main() reads the --longnet_* flags into a suite_config
// and calls the register_* functions; Google Benchmark's own flags (--benchmark_filter, ...) still
// select among what was registered.

#include "longnet/tensor.hpp"

// 1 when CMake found oneDNN and compiled onednn_attention.cpp into longnet_bench.
#ifndef LONGNET_BENCH_HAS_ONEDNN
#define LONGNET_BENCH_HAS_ONEDNN 0
#endif

namespace longnet_bench {

struct suite_config {
    bool smoke = false;                      // --longnet_smoke: tiny sizes only (checks the suite runs)
    longnet::index_t max_seq = 4194304;      // --longnet_max_seq=N: drop every size above N
    longnet::index_t head_dim = 64;          // D of every attention benchmark
};

void register_peak_benchmark();
void register_attention_benchmarks(const suite_config& config);
#if LONGNET_BENCH_HAS_ONEDNN
void register_onednn_benchmarks(const suite_config& config);
#endif

}  // namespace longnet_bench
