// SPDX-License-Identifier: Apache-2.0
// examples/longnet_lm.cpp's argument parsers for the CLI fuzz target: those of
// examples/longnet_lm_args.hpp (the tool's command line, kept apart from its model code). Its --help
// prints and calls std::exit(0) inside the parser, which a fuzz target cannot survive: fuzz_cli.cpp
// does not send argument vectors holding -h or --help here. `perplexity ...` and `passkey ...` go to their own parsers.

#include <cstdint>
#include <stdexcept>
#include <string>

#include <longnet/training/passkey.hpp>

#include "cli_common.hpp"
#include "longnet_lm_args.hpp"

#include "fuzz_check.hpp"
#include "fuzz_cli.hpp"

using namespace lm_cli;  // the arguments and parsers of each mode

// `longnet_lm perplexity ...`: its parser's promises.
static int lm_perplexity(int argc, char** argv) {
    perplexity_arguments a;
    try {
        a = parse_perplexity(argc, argv);
    } catch (const cli::usage_error&) {
        return 2;
    } catch (const std::invalid_argument&) {
        return 2;
    }
    FUZZ_CHECK(!a.weights.empty() && !a.config.empty(), "perplexity without --weights or --config");
    FUZZ_CHECK(!a.tokens.empty() + !a.data.empty() + !a.text.empty() == 1, "perplexity: not exactly one token source");
    FUZZ_CHECK(!a.ctx.empty(), "perplexity: no context length");
    for (std::int64_t c : a.ctx) {
        FUZZ_CHECK(c >= 2 && c <= (std::int64_t(1) << 40), "perplexity: --ctx " + std::to_string(c));
        FUZZ_CHECK(a.stride == 0 || a.stride < c, "perplexity: --stride " + std::to_string(a.stride) + " >= ctx " + std::to_string(c));
    }
    FUZZ_CHECK(a.stride >= 0 && a.max_windows >= 0, "perplexity: negative stride or window count");
    FUZZ_CHECK((a.kl_base.empty() && a.save_logits.empty()) || a.ctx.size() == 1, "perplexity: --kl-base/--save-logits with several contexts");
    FUZZ_CHECK(a.dtype == "float" || a.dtype == "double", "perplexity: --dtype " + a.dtype);
    FUZZ_CHECK(a.weights_dtype == "float" || (a.weights_dtype == "bf16" && a.dtype == "float"), "perplexity: --weights-dtype " + a.weights_dtype);
    return 0;
}

// `longnet_lm passkey ...`: its parser's promises.
static int lm_passkey(int argc, char** argv) {
    passkey_arguments a;
    try {
        a = parse_passkey(argc, argv);
    } catch (const cli::usage_error&) {
        return 2;
    } catch (const std::invalid_argument&) {
        return 2;
    }
    FUZZ_CHECK(!a.weights.empty() && !a.config.empty(), "passkey without --weights or --config");
    FUZZ_CHECK(!a.lengths.empty() && a.trials >= 1 && a.max_key >= 1, "passkey: no length, trials or keys");
    for (std::int64_t l : a.lengths)  // every document holds at least one filler
        FUZZ_CHECK(longnet::training::passkey_fillers(static_cast<std::size_t>(l) + 1, static_cast<std::uint64_t>(a.max_key)) >= 1,
                   "passkey: --length " + std::to_string(l));
    FUZZ_CHECK(!a.depths.empty(), "passkey: no depth");
    for (double d : a.depths) FUZZ_CHECK(d >= 0 && d <= 1, "passkey: depth " + std::to_string(d));
    FUZZ_CHECK(a.dtype == "float" || a.dtype == "double", "passkey: --dtype " + a.dtype);
    FUZZ_CHECK(a.weights_dtype == "float" || (a.weights_dtype == "bf16" && a.dtype == "float"), "passkey: --weights-dtype " + a.weights_dtype);
    return 0;
}

int fuzz_cli::lm(int argc, char** argv) {
    if (argc >= 2 && std::string(argv[1]) == "perplexity") return lm_perplexity(argc - 1, argv + 1);
    if (argc >= 2 && std::string(argv[1]) == "passkey") return lm_passkey(argc - 1, argv + 1);
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
