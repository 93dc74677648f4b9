// SPDX-License-Identifier: Apache-2.0
// examples/longnet_distributed.cpp's argument parser for the CLI fuzz target: parse and make_options of
// examples/longnet_distributed_args.hpp (the tool's command line, kept apart from its MPI code).
//
// The check is an independent reading of the same argument vector (`reference` below, written from the
// tool's documented grammar): the tool accepts exactly when the reference does, and then every field
// and every branch equals the reference's. On top: accepted options pass longnet::validate, and the
// sizes the tool multiplies (B·N·H·D elements, the sampled-row index) cannot overflow 64 bits.
//
// The grammar: flags exactly as listed, each value the next argument (non-empty, not starting with
// "--": cli::arg_reader reads that as a missing value); a later flag
// overrides an earlier one. Sizes are decimal digits with an optional K, M or G (powers of 1024, either
// case), at most 2^40; --tokens, --heads, --dim, --batch >= 1; one tensor B·N·H·D at most 2^50
// elements; --check-rows at most 2^20. --branches: "w:r,w:r,..." (w, r >= 1 sizes; no empty item);
// otherwise --config paper (the paper's 5 branches) or paper-extended (those and w = 65536, 131072, ...
// up to --max-segment, default --tokens, with r = w / 2048). --offsets paper|torchscale, --type
// bf16|float. -h/--help is a usage error (the tool prints the usage and exits 2).

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "fuzz_cli.hpp"
#include "longnet_distributed_args.hpp"

namespace {

using longnet::index_t;
constexpr index_t size_limit = index_t(1) << 40;

// [0-9]+ with an optional K/M/G suffix, value at most 2^40; nullopt otherwise.
std::optional<index_t> reference_size(const std::string& t) {
    std::size_t digits = 0;
    while (digits < t.size() && t[digits] >= '0' && t[digits] <= '9') ++digits;
    if (digits == 0) return std::nullopt;
    index_t mult = 1;
    if (digits < t.size()) {
        if (digits + 1 != t.size()) return std::nullopt;
        const char s = t[digits];
        if (s == 'K' || s == 'k') mult = index_t(1) << 10;
        else if (s == 'M' || s == 'm') mult = index_t(1) << 20;
        else if (s == 'G' || s == 'g') mult = index_t(1) << 30;
        else return std::nullopt;
    }
    index_t v = 0;
    for (std::size_t i = 0; i < digits; ++i) {
        v = v * 10 + (t[i] - '0');
        if (v > size_limit) return std::nullopt;  // stops long before int64 overflow
    }
    if (v > size_limit / mult) return std::nullopt;
    return v * mult;
}

struct reference {
    bool accepted = false;
    std::string why;  // when refused
    distributed_cli::config c;
    std::vector<longnet::branch> branches;
};

reference read(int argc, char** argv) {
    reference r;
    auto refuse = [&](const std::string& why) {
        r.why = why;
        return r;
    };
    distributed_cli::config& c = r.c;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool is_switch = a == "--causal" || a == "--backward";
        if (a == "-h" || a == "--help") return refuse("help");
        const char* const value_flags[] = {"--tokens", "--heads",  "--dim",      "--batch",   "--check-rows", "--max-segment",
                                           "--seed",   "--config", "--branches", "--offsets", "--type"};
        bool takes_value = false;
        for (const char* f : value_flags) takes_value = takes_value || a == f;
        if (!is_switch && !takes_value) return refuse("unknown argument " + a);
        if (a == "--causal") c.causal = true;
        if (a == "--backward") c.backward = true;
        if (!takes_value) continue;
        if (i + 1 >= argc) return refuse(a + " without a value");
        const std::string v = argv[++i];
        if (v.empty()) return refuse(a + " with an empty value");
        if (v.compare(0, 2, "--") == 0) return refuse(a + " followed by a flag, not a value");
        if (a == "--config") c.config_name = v;
        else if (a == "--branches") c.branches_text = v;
        else if (a == "--offsets") c.offsets = v;
        else if (a == "--type") {
            if (v != "bf16" && v != "float") return refuse("--type " + v);
            c.bf16 = v == "bf16";
        } else {
            const std::optional<index_t> s = reference_size(v);
            if (!s) return refuse(a + " " + v + " is not a size");
            if (a == "--tokens") c.tokens = *s;
            else if (a == "--heads") c.heads = *s;
            else if (a == "--dim") c.dim = *s;
            else if (a == "--batch") c.batch = *s;
            else if (a == "--check-rows") c.check_rows = *s;
            else if (a == "--max-segment") c.max_segment = *s;
            else c.seed = static_cast<std::uint64_t>(*s);
        }
    }
    if (c.tokens < 1 || c.heads < 1 || c.dim < 1 || c.batch < 1) return refuse("a zero extent");
    // B·N·H·D <= 2^50, computed in long double (each factor <= 2^40: exact enough to compare)
    const long double elements = static_cast<long double>(c.batch) * static_cast<long double>(c.tokens) *
                                 static_cast<long double>(c.heads) * static_cast<long double>(c.dim);
    if (elements > static_cast<long double>(index_t(1) << 50)) return refuse("B*N*H*D above 2^50");
    if (c.check_rows > (index_t(1) << 20)) return refuse("--check-rows above 2^20");
    if (c.config_name != "paper" && c.config_name != "paper-extended") return refuse("--config " + c.config_name);
    if (c.offsets != "paper" && c.offsets != "torchscale") return refuse("--offsets " + c.offsets);
    if (!c.branches_text.empty()) {
        std::size_t start = 0;
        for (;;) {
            const std::size_t comma = c.branches_text.find(',', start);
            const std::string item = c.branches_text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
            const std::size_t colon = item.find(':');
            if (colon == std::string::npos) return refuse("branch '" + item + "' without ':'");
            const auto w = reference_size(item.substr(0, colon)), d = reference_size(item.substr(colon + 1));
            if (!w || !d || *w < 1 || *d < 1) return refuse("branch '" + item + "'");
            r.branches.push_back({*w, *d});
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
    } else {
        r.branches = longnet::dilated_options::paper().branches;
        if (c.config_name == "paper-extended") {
            const index_t top = c.max_segment > 0 ? c.max_segment : c.tokens;
            for (index_t w = 65536; w <= top; w *= 2) r.branches.push_back({w, w / 2048});
        }
    }
    r.accepted = true;
    return r;
}

std::string joined(int argc, char** argv) {
    std::string s;
    for (int i = 1; i < argc; ++i) s += std::string(i > 1 ? " '" : "'") + argv[i] + "'";
    return s;
}

}  // namespace

int fuzz_cli::distributed(int argc, char** argv) {
    const reference want = read(argc, argv);
    distributed_cli::config c;
    longnet::dilated_options opt;
    try {
        c = distributed_cli::parse(argc, argv);
        opt = distributed_cli::make_options(c);  // what the tool's run does first
    } catch (const distributed_cli::usage_error& e) {
        FUZZ_CHECK(!want.accepted, "refused what the grammar accepts: " + joined(argc, argv) + ": " + e.what());
        return 2;
    } catch (const std::invalid_argument& e) {
        FUZZ_CHECK(!want.accepted, "refused what the grammar accepts: " + joined(argc, argv) + ": " + e.what());
        return 2;
    }
    const std::string args = joined(argc, argv);
    FUZZ_CHECK(want.accepted, "accepted what the grammar refuses (" + want.why + "): " + args);
    const distributed_cli::config& w = want.c;
    FUZZ_CHECK(c.tokens == w.tokens && c.heads == w.heads && c.dim == w.dim && c.batch == w.batch, "extents of " + args);
    FUZZ_CHECK(c.check_rows == w.check_rows && c.max_segment == w.max_segment && c.seed == w.seed, "sizes of " + args);
    FUZZ_CHECK(c.causal == w.causal && c.backward == w.backward && c.bf16 == w.bf16, "switches of " + args);
    FUZZ_CHECK(opt.causal == c.causal, "options' causal flag of " + args);
    FUZZ_CHECK(opt.offsets == longnet::parse_offset_policy(w.offsets), "offsets of " + args);
    FUZZ_CHECK(opt.branches.size() == want.branches.size(), "branch count of " + args);
    for (std::size_t i = 0; i < opt.branches.size(); ++i)
        FUZZ_CHECK(opt.branches[i].segment_length == want.branches[i].segment_length &&
                       opt.branches[i].dilation == want.branches[i].dilation,
                   "branch " + std::to_string(i) + " of " + args);
    try {
        longnet::validate(opt);  // the tool runs these options: accepted options must be valid
    } catch (const std::invalid_argument& e) {
        FUZZ_CHECK(false, "accepted options do not validate: " + args + ": " + e.what());
    }
    // What the tool multiplies must fit in 64 bits: one tensor's elements (its index arithmetic, per
    // rank and over the whole sequence) and the sampled rows' index s * 7919 * 104729.
    const long double elements = static_cast<long double>(c.batch) * static_cast<long double>(c.tokens) *
                                 static_cast<long double>(c.heads) * static_cast<long double>(c.dim);
    FUZZ_CHECK(elements * 8 < 9.2e18L, "B*N*H*D overflows: " + args);
    FUZZ_CHECK(static_cast<long double>(c.check_rows) * 7919.0L * 104729.0L < 9.2e18L, "--check-rows overflows: " + args);
    return 0;
}
