// SPDX-License-Identifier: Apache-2.0
// examples/longnet_demo.cpp's argument parser for the CLI fuzz target: parse_arguments of
// examples/longnet_demo_args.hpp (the tool's command line, kept apart from its run).

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cli_common.hpp"
#include "longnet_demo_args.hpp"

#include "fuzz_check.hpp"
#include "fuzz_cli.hpp"

using namespace demo_cli;  // the tool's arguments and parser

int fuzz_cli::demo(int argc, char** argv) {
    arguments a;
    try {
        a = parse_arguments(argc, argv);
    } catch (const cli::usage_error&) {
        return 2;
    } catch (const std::invalid_argument&) {
        return 2;
    }
    FUZZ_CHECK(a.tokens >= 1 && a.tokens <= (std::int64_t(1) << 40), "--tokens " + std::to_string(a.tokens));
    FUZZ_CHECK(a.heads >= 1 && a.heads <= (1 << 16), "--heads " + std::to_string(a.heads));
    FUZZ_CHECK(a.dim >= 1 && a.dim <= (1 << 16), "--dim " + std::to_string(a.dim));
    return 0;
}
