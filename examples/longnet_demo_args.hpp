// SPDX-License-Identifier: Apache-2.0
#pragma once
// longnet_demo's command line (examples/longnet_demo.cpp): the defaults, the usage text, the arguments
// and the parser (parse_arguments). Kept apart from the demo's run so that the CLI fuzz target
// (tests/fuzz/cli_demo.cpp) compiles the parser without the kernels.

#include <cstdint>
#include <string>

#include "cli_common.hpp"

namespace demo_cli {

// Defaults: the paper's branches and head dim; 2 heads keep the default run well under a minute on a
// 2-core machine and need 2 GiB of memory for q, k, v and out at 1M tokens (4 GiB at 4 heads).
inline constexpr std::int64_t default_tokens = 1 << 20;
inline constexpr std::int64_t default_heads = 2;
inline constexpr std::int64_t default_dim = 64;

inline const char* const usage_text =
    "usage: longnet_demo [--tokens N] [--heads H] [--dim D] [--causal] [--seed S]\n"
    "\n"
    "LongNet dilated attention (arXiv 2307.02486) over one sequence of N tokens (default 1048576),\n"
    "H heads (default 2) of dimension D (default 64), float32, random standard-normal inputs, in the\n"
    "paper's configuration: segment lengths 2048, 4096, 8192, 16384, 32768 with dilations 1, 2, 4, 6, 12.\n"
    "Prints progress on stderr, then the time, tokens/s, GFLOP/s and a check of sampled output rows\n"
    "against a float64 brute-force computation (exit code 1 if the error exceeds 1e-3).\n"
    "Threads: OMP_NUM_THREADS (default: all cores).\n"
    "\n"
    "  --tokens N   sequence length (default 1048576)\n"
    "  --heads H    number of heads (default 2)\n"
    "  --dim D      head dimension (default 64)\n"
    "  --causal     causal attention (each token attends to earlier ones only)\n"
    "  --seed S     random seed (default 0)\n"
    "  --help       this text\n";

struct arguments {
    std::int64_t tokens = default_tokens, heads = default_heads, dim = default_dim;
    bool causal = false, help = false;
    std::uint64_t seed = 0;
};

inline arguments parse_arguments(int argc, char** argv) {
    arguments a;
    cli::arg_reader r(argc, argv);
    while (!r.done()) {
        const std::string flag = r.next_flag();
        if (flag == "--help") {
            r.no_value(flag);
            a.help = true;
        } else if (flag == "--tokens") {
            a.tokens = cli::parse_int(flag, r.value(flag), 1, std::int64_t(1) << 40);
        } else if (flag == "--heads") {
            a.heads = cli::parse_int(flag, r.value(flag), 1, 1 << 16);
        } else if (flag == "--dim") {
            a.dim = cli::parse_int(flag, r.value(flag), 1, 1 << 16);
        } else if (flag == "--causal") {
            r.no_value(flag);
            a.causal = true;
        } else if (flag == "--seed") {
            a.seed = cli::parse_uint64(flag, r.value(flag));
        } else {
            throw cli::usage_error("unknown flag " + flag);
        }
    }
    return a;
}

}  // namespace demo_cli
