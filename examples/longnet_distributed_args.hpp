// SPDX-License-Identifier: Apache-2.0
#pragma once
// longnet_distributed's command line (examples/longnet_distributed.cpp): the flags, their sizes and the
// dilated options they select. Kept apart from the tool so that it needs no MPI: the CLI fuzz target
// (tests/fuzz/cli_distributed.cpp) calls parse and make_options without running the tool. Read with
// cli::arg_reader (cli_common.hpp) in this tool's grammar: a repeated flag overrides, no "--name=value".

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <longnet/options.hpp>
#include <longnet/tensor.hpp>

#include "cli_common.hpp"

namespace distributed_cli {

using longnet::index_t;

using cli::usage_error;

constexpr index_t max_size = index_t(1) << 40;          // any size flag
constexpr index_t max_elements = index_t(1) << 50;      // B·N·H·D: one tensor over the whole sequence
constexpr index_t max_check_rows = index_t(1) << 20;    // --check-rows (each row is a brute force)

// A size: decimal digits with an optional K, M or G (powers of 1024, either case), at most 2^40. Nothing
// else: no sign, no spaces.
inline index_t parse_size(const std::string& flag, const std::string& text) {
    if (text.empty()) throw usage_error(flag + ": empty value");
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
    const char s = digits < text.size() ? static_cast<char>(std::toupper(static_cast<unsigned char>(text[digits]))) : '\0';
    if (digits == 0 || digits + (s != '\0') != text.size() || (s != '\0' && s != 'K' && s != 'M' && s != 'G'))
        throw usage_error(flag + ": '" + text + "' is not a size (digits with an optional K, M or G)");
    const index_t mult = s == 'K' ? index_t(1) << 10 : s == 'M' ? index_t(1) << 20 : s == 'G' ? index_t(1) << 30 : 1;
    index_t value = 0;
    for (std::size_t i = 0; i < digits; ++i) {
        value = value * 10 + (text[i] - '0');
        if (value > max_size / mult) throw usage_error(flag + ": '" + text + "' is out of range (at most 2^40)");
    }
    return value * mult;
}

struct config {
    index_t tokens = 1 << 20, heads = 1, dim = 64, batch = 1, check_rows = 4, max_segment = 0;
    bool causal = false, backward = false, bf16 = true;
    std::string config_name = "paper-extended", branches_text, offsets = "paper";
    std::uint64_t seed = 1;
};

// The flags (a later one overrides an earlier one); throws usage_error. The sizes it accepts keep every
// product the tool forms (B·N·H·D, the sampled-row index) inside 64 bits.
inline config parse(int argc, char** argv) {
    config c;
    cli::arg_grammar grammar;
    grammar.repeats = true;
    grammar.inline_values = false;
    cli::arg_reader r(argc, argv, grammar);
    while (!r.done()) {
        const std::string a = r.next_flag();  // "-h" comes back as "--help"
        if (a == "--tokens") c.tokens = parse_size(a, r.value(a));
        else if (a == "--heads") c.heads = parse_size(a, r.value(a));
        else if (a == "--dim") c.dim = parse_size(a, r.value(a));
        else if (a == "--batch") c.batch = parse_size(a, r.value(a));
        else if (a == "--check-rows") c.check_rows = parse_size(a, r.value(a));
        else if (a == "--max-segment") c.max_segment = parse_size(a, r.value(a));
        else if (a == "--seed") c.seed = static_cast<std::uint64_t>(parse_size(a, r.value(a)));
        else if (a == "--causal") c.causal = true;
        else if (a == "--backward") c.backward = true;
        else if (a == "--config") c.config_name = r.value(a);
        else if (a == "--branches") c.branches_text = r.value(a);
        else if (a == "--offsets") c.offsets = r.value(a);
        else if (a == "--type") {
            const std::string t = r.value(a);
            if (t != "bf16" && t != "float") throw usage_error("--type: expected bf16 or float, got '" + t + "'");
            c.bf16 = t == "bf16";
        } else if (a == "--help") {
            throw usage_error("usage: mpirun -np P longnet_distributed [--tokens N] [--heads H] [--dim D] [--batch B] "
                              "[--causal] [--config paper|paper-extended] [--branches w:r,...] [--max-segment W] "
                              "[--type bf16|float] [--offsets paper|torchscale] [--check-rows K] [--backward] [--seed S]");
        } else throw usage_error("unknown argument '" + a + "' (try --help)");
    }
    if (c.tokens < 1 || c.heads < 1 || c.dim < 1 || c.batch < 1) throw usage_error("--tokens, --heads, --dim, --batch must be >= 1");
    // each factor <= 2^40: B·N <= 2^80 does not fit, so divide instead of multiplying
    if (c.batch > max_elements / c.tokens || c.batch * c.tokens > max_elements / c.heads ||
        c.batch * c.tokens * c.heads > max_elements / c.dim)
        throw usage_error("--batch x --tokens x --heads x --dim = " + std::to_string(c.batch) + " x " + std::to_string(c.tokens) +
                          " x " + std::to_string(c.heads) + " x " + std::to_string(c.dim) +
                          " elements per tensor is above the limit 2^50");
    if (c.check_rows > max_check_rows)
        throw usage_error("--check-rows: " + std::to_string(c.check_rows) + " is above the limit 2^20");
    if (c.config_name != "paper" && c.config_name != "paper-extended")
        throw usage_error("--config: expected paper or paper-extended, got '" + c.config_name + "'");
    return c;
}

// The dilated options of the parsed flags: --branches "w:r,..." (every item w:r with w, r >= 1; no empty
// item), else the --config; checked by longnet::validate. Throws usage_error.
inline longnet::dilated_options make_options(const config& c) {
    longnet::dilated_options o;
    if (!c.branches_text.empty()) {
        std::size_t pos = 0;
        for (;;) {
            const std::size_t comma = std::min(c.branches_text.find(',', pos), c.branches_text.size());
            const std::string item = c.branches_text.substr(pos, comma - pos);
            const std::size_t colon = item.find(':');
            if (colon == std::string::npos) throw usage_error("--branches: '" + item + "' is not w:r");
            o.branches.push_back({parse_size("--branches", item.substr(0, colon)), parse_size("--branches", item.substr(colon + 1))});
            if (comma == c.branches_text.size()) break;
            pos = comma + 1;
        }
    } else if (c.config_name == "paper" || c.config_name == "paper-extended") {
        o = longnet::dilated_options::paper();
        if (c.config_name == "paper-extended") {
            const index_t top = c.max_segment > 0 ? c.max_segment : c.tokens;
            for (index_t w = 65536; w <= top; w *= 2) o.branches.push_back({w, w / 2048});
        }
    } else {
        throw usage_error("--config: expected paper or paper-extended, got '" + c.config_name + "'");
    }
    o.causal = c.causal;
    try {
        o.offsets = longnet::parse_offset_policy(c.offsets);
    } catch (const std::invalid_argument& e) {
        throw usage_error(e.what());
    }
    try {
        longnet::validate(o);  // w, r >= 1: refused here, before the tool allocates and generates its inputs
    } catch (const std::invalid_argument& e) {
        throw usage_error(std::string("--branches: ") + e.what());
    }
    return o;
}

}  // namespace distributed_cli
