// SPDX-License-Identifier: Apache-2.0
// examples/longnet_lm.cpp's argument parser for the CLI fuzz target (its main renamed). Its --help
// prints and calls std::exit(0) inside the parser, which a fuzz target cannot survive: fuzz_cli.cpp
// does not send argument vectors holding -h or --help here.

#include <cstdint>
#include <stdexcept>
#include <string>

#include <longnet/io/npy.hpp>
#include <longnet/io/safetensors.hpp>
#include <longnet/nn/nn.hpp>

#include "cli_common.hpp"

#define main longnet_lm_main
#include "longnet_lm.cpp"
#undef main

#include "fuzz_check.hpp"
#include "fuzz_cli.hpp"

int fuzz_cli::lm(int argc, char** argv) {
    arguments a;
    try {
        a = parse(argc, argv);
    } catch (const cli::usage_error&) {
        return 2;
    } catch (const std::invalid_argument&) {
        return 2;
    }
    FUZZ_CHECK(argc > 1, "no arguments accepted");
    const bool random_mode = !a.random_config.empty() || a.random_tokens > 0;
    if (random_mode) {
        FUZZ_CHECK(a.random_config == "base" && a.random_tokens >= 1 && a.random_tokens <= (std::int64_t(1) << 40),
                   "random mode: config '" + a.random_config + "', tokens " + std::to_string(a.random_tokens));
        FUZZ_CHECK(a.weights.empty() && a.config.empty() && a.tokens.empty() && a.hidden.empty(), "random mode with files");
    } else {
        FUZZ_CHECK(!a.weights.empty() && !a.config.empty() && !a.tokens.empty() && !a.logits.empty(), "file mode without files");
        FUZZ_CHECK(a.layers == -1 && a.seed == 0, "file mode with --layers or --seed");
    }
    FUZZ_CHECK(a.layers >= -1 && a.layers <= 1000, "--layers " + std::to_string(a.layers));
    FUZZ_CHECK(a.vocab >= 1 && a.vocab <= (std::int64_t(1) << 31), "--vocab " + std::to_string(a.vocab));
    FUZZ_CHECK(a.dtype == "float" || a.dtype == "double", "--dtype " + a.dtype);
    FUZZ_CHECK(a.weights_dtype == "float" || a.weights_dtype == "bf16", "--weights-dtype " + a.weights_dtype);
    return 0;
}
