// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the command-line parsing of the tools (examples/cli_common.hpp and each tool's parser).
//
// Input: a selector byte, then the bytes of the command line. Selector % 7:
//   0, 1, 2   argv for longnet_attend, longnet_demo, longnet_lm: the rest split at NUL bytes (argv[0]
//             is the tool's name); the tool's parser accepts (and its result is checked, see cli_*.cpp)
//             or refuses with a usage error.
//   3         cli_common's number parsers: the next byte picks parse_int, parse_uint64, parse_double or
//             parse_int_list, 16 bytes give the range [lo, hi], the rest is the text. An accepted number
//             lies in the range and is the text's value (integers: the text is the number's decimal
//             digits, up to a '+' and leading zeros; doubles: what strtod reads).
//   4, 5      argv for longnet_train and longnet_distributed, as 0-2 (cli_train.cpp, cli_distributed.cpp).
//   6         argv for longnet_encode, as 0-2 (cli_encode.cpp).
// Selectors 0-5 mean what they meant when the scheme was % 6 (the seeds in corpus/cli/ start with the
// bytes 0-6, the regressions in regressions/cli/ with 4 and 5). LONGNET_FUZZ_CLI_TOOL=K (0-6) in the
// environment sends every input to selector K (its first byte is still read as the selector byte and
// ignored): a run on one tool's parser alone.

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "cli_common.hpp"
#include "fuzz_check.hpp"
#include "fuzz_cli.hpp"

namespace {

// The decimal text of a whole number without '+' and leading zeros ("-0" is "0"); empty when `text` is
// not [+-]digits.
std::string canonical_integer(std::string_view text) {
    bool negative = false;
    if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
        negative = text[0] == '-';
        text.remove_prefix(1);
    }
    if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) return {};
    while (text.size() > 1 && text[0] == '0') text.remove_prefix(1);
    if (text == "0") return "0";
    return (negative ? "-" : "") + std::string(text);
}

void numbers(const std::uint8_t* data, std::size_t size) {
    if (size < 17) return;
    const int which = data[0] % 4;
    std::int64_t lo, hi;
    std::memcpy(&lo, data + 1, 8);
    std::memcpy(&hi, data + 9, 8);
    if (lo > hi) std::swap(lo, hi);
    const std::string text(reinterpret_cast<const char*>(data + 17), size - 17);
    try {
        if (which == 0) {
            const std::int64_t v = cli::parse_int("--n", text, lo, hi);
            FUZZ_CHECK(v >= lo && v <= hi, "parse_int out of range");
            const std::string plain = text.size() > 1 && text[0] == '+' && text[1] == '-' ? std::string() : canonical_integer(text);
            FUZZ_CHECK(plain == std::to_string(v), "parse_int('" + text + "') = " + std::to_string(v));
        } else if (which == 1) {
            const std::uint64_t v = cli::parse_uint64("--seed", text);
            FUZZ_CHECK(canonical_integer(text) == std::to_string(v) && text[0] != '+' && text[0] != '-',
                       "parse_uint64('" + text + "') = " + std::to_string(v));
        } else if (which == 2) {
            const double v = cli::parse_double("--scale", text);
            FUZZ_CHECK(std::isfinite(v), "parse_double gave a non-finite value");
            char* end = nullptr;
            const double again = std::strtod(text.c_str(), &end);
            FUZZ_CHECK(again == v && end == text.c_str() + text.size() && text.find('\0') == std::string::npos,
                       "parse_double('" + text + "')");
        } else {
            const std::vector<std::int64_t> list = cli::parse_int_list("--segments", text, lo, hi);
            FUZZ_CHECK(list.size() == static_cast<std::size_t>(std::count(text.begin(), text.end(), ',')) + 1,
                       "parse_int_list('" + text + "') item count");
            for (std::int64_t v : list) FUZZ_CHECK(v >= lo && v <= hi, "parse_int_list item out of range");
        }
    } catch (const cli::usage_error& e) {
        FUZZ_CHECK(std::strlen(e.what()) > 0, "empty message");
    }
}

}  // namespace

namespace {
int forced_tool() {
    const char* env = std::getenv("LONGNET_FUZZ_CLI_TOOL");
    if (env == nullptr || env[0] < '0' || env[0] > '6' || env[1] != '\0') return -1;
    return env[0] - '0';
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    static const int forced = forced_tool();
    const int tool = forced >= 0 ? forced : data[0] % 7;
    if (tool == 3) {
        numbers(data + 1, size - 1);
        return 0;
    }
    static const char* const names[] = {"longnet_attend", "longnet_demo", "longnet_lm", nullptr, "longnet_train",
                                        "longnet_distributed", "longnet_encode"};
    std::vector<std::string> args{names[tool]};
    if (size > 1) {
        std::string current;
        for (std::size_t i = 1; i < size; ++i) {
            if (data[i] == 0) {
                args.push_back(current);
                current.clear();
            } else {
                current.push_back(static_cast<char>(data[i]));
            }
        }
        args.push_back(current);
    }
    if (tool == 2 || tool == 4 || tool == 6)  // --help exits the process in longnet_lm, longnet_train, longnet_encode
        for (const std::string& a : args)
            if (a == "-h" || a.rfind("--help", 0) == 0) return 0;
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int argc = static_cast<int>(args.size());
    if (tool == 0) fuzz_cli::attend(argc, argv.data());
    else if (tool == 1) fuzz_cli::demo(argc, argv.data());
    else if (tool == 2) fuzz_cli::lm(argc, argv.data());
    else if (tool == 4) fuzz_cli::train(argc, argv.data());
    else if (tool == 5) fuzz_cli::distributed(argc, argv.data());
    else fuzz_cli::encode(argc, argv.data());
    return 0;
}
