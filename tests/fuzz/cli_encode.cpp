// SPDX-License-Identifier: Apache-2.0
// examples/longnet_encode.cpp's argument parser for the CLI fuzz target: parse of
// examples/longnet_encode_args.hpp (the tool's command line, kept apart from its encoder code). Its
// --help prints and calls std::exit(0) inside the parser: fuzz_cli.cpp does not send -h or --help here.

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cli_common.hpp"
#include "longnet_encode_args.hpp"

#include "fuzz_check.hpp"
#include "fuzz_cli.hpp"

using namespace encode_cli;  // the tool's arguments and parser

int fuzz_cli::encode(int argc, char** argv) {
    arguments a;
    try {
        a = parse(argc, argv);
    } catch (const cli::usage_error&) {
        return 2;
    } catch (const std::invalid_argument&) {
        return 2;
    }
    FUZZ_CHECK(argc > 1, "no arguments accepted");
    FUZZ_CHECK(a.dtype == "float" || a.dtype == "double", "--dtype " + a.dtype);
    FUZZ_CHECK(a.layers == -1 || (a.layers >= 1 && a.layers <= 1000), "--layers " + std::to_string(a.layers));
    if (a.random_tokens > 0) {
        FUZZ_CHECK(a.random_tokens <= (std::int64_t(1) << 40), "--random-tokens " + std::to_string(a.random_tokens));
        FUZZ_CHECK((a.random_config == "gigapath") != !a.config.empty(), "random mode: not exactly one model");
        FUZZ_CHECK(a.weights.empty() && a.embeddings.empty() && a.lengths.empty() && a.mask.empty() && a.cls_out.empty(),
                   "random mode with file inputs");
    } else {
        FUZZ_CHECK(a.random_config.empty(), "--random-config without --random-tokens");
        FUZZ_CHECK(!a.weights.empty() && !a.config.empty() && !a.embeddings.empty() && !a.out.empty(), "file mode without files");
        FUZZ_CHECK(a.lengths.empty() || a.mask.empty(), "--lengths and --mask together");
        FUZZ_CHECK(a.layers == -1 && !a.seed_given, "file mode with --layers or --seed");
        FUZZ_CHECK(a.cls_out != a.out, "--cls-out = --out");
    }
    return 0;
}
