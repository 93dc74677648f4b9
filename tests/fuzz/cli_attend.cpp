// SPDX-License-Identifier: Apache-2.0
// examples/longnet_attend.cpp's argument parser for the CLI fuzz target: parse_arguments and make_options
// of examples/longnet_attend_args.hpp (the tool's command line, kept apart from its attention calls).

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <longnet/options.hpp>

#include "cli_common.hpp"
#include "longnet_attend_args.hpp"

#include "fuzz_check.hpp"
#include "fuzz_cli.hpp"

using namespace attend_cli;  // the tool's arguments and parser

int fuzz_cli::attend(int argc, char** argv) {
    arguments a;
    try {
        a = parse_arguments(argc, argv);
    } catch (const cli::usage_error&) {
        return 2;
    } catch (const std::invalid_argument&) {
        return 2;
    }
    if (a.help) return 0;
    constexpr std::int64_t max = std::int64_t(1) << 40;
    FUZZ_CHECK(a.random.has_value() != !a.q.empty(), "exactly one of --random and --q");
    if (a.random) {
        FUZZ_CHECK(a.random->size() == 4, "--random has 4 numbers");
        for (std::int64_t x : *a.random) FUZZ_CHECK(x >= 1 && x <= max, "--random value " + std::to_string(x));
        FUZZ_CHECK(a.k.empty() && a.v.empty() && a.dout.empty() && a.dq.empty(), "--random with file inputs");
    } else {
        FUZZ_CHECK(!a.k.empty() && !a.v.empty() && !a.out.empty(), "file mode without --k, --v or --out");
        FUZZ_CHECK(!a.seed && !a.repeat && !a.dtype && !a.backward, "file mode with --random's options");
    }
    if (!a.dense) FUZZ_CHECK(a.segments && a.dilations, "dilated attention without branches");
    FUZZ_CHECK(a.segments.has_value() == a.dilations.has_value(), "--segments without --dilations");
    if (a.repeat) FUZZ_CHECK(*a.repeat >= 1 && *a.repeat <= 1000000, "--repeat " + std::to_string(*a.repeat));
    if (!a.out.empty()) FUZZ_CHECK(a.out != a.lse, "--out and --lse the same file");
    const longnet::dilated_options opt = make_options(a);
    if (a.segments) {
        FUZZ_CHECK(a.segments->size() == a.dilations->size() && opt.branches.size() == a.segments->size(), "branch count");
        for (const longnet::branch& b : opt.branches)
            FUZZ_CHECK(b.segment_length >= 1 && b.segment_length <= max && b.dilation >= 1 && b.dilation <= max, "branch range");
        try {
            longnet::validate(opt);  // what the tool's run does next: accepted options must be valid
        } catch (const std::invalid_argument& e) {
            FUZZ_CHECK(false, std::string("accepted options do not validate: ") + e.what());
        }
    }
    if (a.scale) FUZZ_CHECK(std::isfinite(*a.scale), "--scale not finite");
    return 0;
}
