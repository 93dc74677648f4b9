// SPDX-License-Identifier: Apache-2.0
#pragma once
// longnet_attend's command line (examples/longnet_attend.cpp): the usage text, the arguments, the parser
// (parse_arguments: every flag, its range and the pairings of file, random and backward mode) and the
// dilated options they select (make_options). Kept apart from the attention calls so that the CLI fuzz
// target (tests/fuzz/cli_attend.cpp) compiles the parser without the kernels.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <longnet/options.hpp>

#include "cli_common.hpp"

namespace attend_cli {

inline const char* const usage_text =
    "usage: longnet_attend --q q.npy --k k.npy --v v.npy --segments W1,W2,... --dilations R1,R2,...\n"
    "                      [--causal] [--offsets paper|torchscale] [--tail exact|zero_pad] [--scale S]\n"
    "                      --out out.npy [--lse lse.npy] [--dense]\n"
    "                      [--dout dout.npy --dq dq.npy --dk dk.npy --dv dv.npy [--grad-mode MODE]]\n"
    "       longnet_attend --random B,N,H,D --segments ... --dilations ... [--seed S] [--repeat R]\n"
    "                      [--dtype float32|float64|bfloat16|float16] [--causal] [...] [--out out.npy] [--dense]\n"
    "                      [--backward [--grad-mode MODE]]\n"
    "\n"
    "LongNet dilated attention (arXiv 2307.02486) over q, k, v of shape [N, H, D] or [B, N, H, D].\n"
    "\n"
    "  --q, --k, --v FILE    inputs: .npy float32, float64 or float16, all the same shape and dtype\n"
    "  --segments LIST       segment length of each branch, e.g. 2048,4096,8192,16384,32768\n"
    "  --dilations LIST      dilation of each branch (as many as segments), e.g. 1,2,4,6,12\n"
    "  --causal              each row attends to keys at positions <= its own\n"
    "  --offsets POLICY      row offset of head h in a branch of dilation r: paper (h mod r, default)\n"
    "                        or torchscale (h / ceil(H / r))\n"
    "  --tail MODE           exact (default: rows past N do not exist) or zero_pad (torchscale parity)\n"
    "  --scale S             softmax scale (default 1/sqrt(D))\n"
    "  --out FILE            output .npy: same shape and dtype as the inputs (written atomically)\n"
    "  --lse FILE            log-sum-exp .npy, float32 [N, H] or [B, N, H] (-inf for rows no branch selects)\n"
    "  --dense               dense softmax attention instead (--segments/--dilations then optional, ignored)\n"
    "  --dout FILE           upstream gradient of out (same shape and dtype as q): also compute the\n"
    "                        gradients of sum(out * dout); needs --dq, --dk and --dv\n"
    "  --dq, --dk, --dv FILE gradient outputs, same shape and dtype as q (written atomically with --out)\n"
    "  --grad-mode MODE      exact (default: the true gradient of the merged output) or stop_grad_weights\n"
    "                        (torchscale parity: branch merge weights held constant)\n"
    "  --random B,N,H,D      standard-normal inputs made in memory; prints one JSON line with the median\n"
    "                        time (seconds), tokens_per_second, gflops and the configuration\n"
    "  --seed S              random seed (default 0)\n"
    "  --repeat R            timed runs (default 3)\n"
    "  --dtype T             element type for --random (default float32); bfloat16 output is written as\n"
    "                        float32 (numpy has no bfloat16)\n"
    "  --backward            with --random: also time the backward (random dout); the JSON line adds\n"
    "                        forward_seconds, backward_seconds (medians) and backward_gflops (2.5x the\n"
    "                        forward's flops, FlashAttention's convention)\n"
    "  --help                this text\n"
    "\n"
    "Exit codes: 0 success, 1 data error (files, shapes, dtypes, I/O), 2 usage error.\n";

struct arguments {
    std::string q, k, v, out, lse;
    std::string dout, dq, dk, dv;              // backward files
    std::optional<longnet::grad_mode> grad_mode;
    bool backward = false;                     // --random: time the backward too
    std::optional<std::vector<std::int64_t>> segments, dilations;
    bool causal = false, dense = false, help = false;
    longnet::offset_policy offsets = longnet::offset_policy::paper;
    longnet::tail_mode tail = longnet::tail_mode::exact;
    std::optional<double> scale;
    std::optional<std::vector<std::int64_t>> random;  // B, N, H, D
    std::optional<std::uint64_t> seed;
    std::optional<std::int64_t> repeat;
    std::optional<std::string> dtype;
};

inline constexpr std::int64_t max_extent = std::int64_t(1) << 40;

inline arguments parse_arguments(int argc, char** argv) {
    arguments a;
    cli::arg_reader r(argc, argv);
    while (!r.done()) {
        const std::string flag = r.next_flag();
        if (flag == "--help") {
            r.no_value(flag);
            a.help = true;
        } else if (flag == "--q") {
            a.q = r.value(flag);
        } else if (flag == "--k") {
            a.k = r.value(flag);
        } else if (flag == "--v") {
            a.v = r.value(flag);
        } else if (flag == "--out") {
            a.out = r.value(flag);
        } else if (flag == "--lse") {
            a.lse = r.value(flag);
        } else if (flag == "--dout") {
            a.dout = r.value(flag);
        } else if (flag == "--dq") {
            a.dq = r.value(flag);
        } else if (flag == "--dk") {
            a.dk = r.value(flag);
        } else if (flag == "--dv") {
            a.dv = r.value(flag);
        } else if (flag == "--grad-mode") {
            const std::string s = r.value(flag);
            if (s != "exact" && s != "stop_grad_weights")
                throw cli::usage_error("--grad-mode: unknown mode '" + s + "' (expected exact or stop_grad_weights)");
            a.grad_mode = longnet::parse_grad_mode(s);
        } else if (flag == "--backward") {
            r.no_value(flag);
            a.backward = true;
        } else if (flag == "--segments") {
            a.segments = cli::parse_int_list(flag, r.value(flag), 1, max_extent);
        } else if (flag == "--dilations") {
            a.dilations = cli::parse_int_list(flag, r.value(flag), 1, max_extent);
        } else if (flag == "--causal") {
            r.no_value(flag);
            a.causal = true;
        } else if (flag == "--dense") {
            r.no_value(flag);
            a.dense = true;
        } else if (flag == "--offsets") {
            const std::string s = r.value(flag);
            if (s != "paper" && s != "torchscale")
                throw cli::usage_error("--offsets: unknown policy '" + s + "' (expected paper or torchscale)");
            a.offsets = longnet::parse_offset_policy(s);
        } else if (flag == "--tail") {
            const std::string s = r.value(flag);
            if (s != "exact" && s != "zero_pad")
                throw cli::usage_error("--tail: unknown mode '" + s + "' (expected exact or zero_pad)");
            a.tail = longnet::parse_tail_mode(s);
        } else if (flag == "--scale") {
            a.scale = cli::parse_double(flag, r.value(flag));
        } else if (flag == "--random") {
            a.random = cli::parse_int_list(flag, r.value(flag), 1, max_extent);
            if (a.random->size() != 4)
                throw cli::usage_error("--random: expected 4 numbers B,N,H,D, got " + std::to_string(a.random->size()));
        } else if (flag == "--seed") {
            a.seed = cli::parse_uint64(flag, r.value(flag));
        } else if (flag == "--repeat") {
            a.repeat = cli::parse_int(flag, r.value(flag), 1, 1000000);
        } else if (flag == "--dtype") {
            const std::string s = r.value(flag);
            if (s != "float32" && s != "float64" && s != "bfloat16" && s != "float16")
                throw cli::usage_error("--dtype: unknown type '" + s + "' (expected float32, float64, bfloat16 or float16)");
            a.dtype = s;
        } else {
            throw cli::usage_error("unknown flag " + flag);
        }
    }
    if (a.help) return a;

    // Combinations: inputs first, then branches.
    if (!a.random && a.q.empty()) throw cli::usage_error("missing --q (or use --random B,N,H,D)");
    if (!a.dense) {
        if (!a.segments) throw cli::usage_error("missing --segments (e.g. --segments 2048,4096)");
        if (!a.dilations) throw cli::usage_error("missing --dilations (e.g. --dilations 1,2)");
    }
    if (a.segments.has_value() != a.dilations.has_value())
        throw cli::usage_error(a.segments ? "--segments given without --dilations" : "--dilations given without --segments");
    if (a.segments && a.segments->size() != a.dilations->size())
        throw cli::usage_error("--segments has " + std::to_string(a.segments->size()) + " values but --dilations has " +
                               std::to_string(a.dilations->size()) + "; the counts must be equal");
    if (a.random) {
        if (!a.q.empty() || !a.k.empty() || !a.v.empty())
            throw cli::usage_error("--random makes its own inputs: do not combine it with --q/--k/--v");
    } else {
        if (a.seed || a.repeat || a.dtype)
            throw cli::usage_error(std::string(a.seed ? "--seed" : a.repeat ? "--repeat" : "--dtype") +
                                   " is only for --random (file inputs keep their dtype)");
        if (a.q.empty()) throw cli::usage_error("missing --q (or use --random B,N,H,D)");
        if (a.k.empty()) throw cli::usage_error("missing --k");
        if (a.v.empty()) throw cli::usage_error("missing --v");
        if (a.out.empty()) throw cli::usage_error("missing --out");
    }
    if (!a.out.empty() && a.out == a.lse) throw cli::usage_error("--out and --lse name the same file: " + a.out);
    // Backward.
    const bool file_backward = !a.dout.empty() || !a.dq.empty() || !a.dk.empty() || !a.dv.empty();
    if (a.random && file_backward)
        throw cli::usage_error("--dout/--dq/--dk/--dv are for file inputs; with --random use --backward");
    if (a.backward && !a.random) throw cli::usage_error("--backward is only for --random (file inputs: --dout ...)");
    if (file_backward) {
        if (a.dout.empty()) throw cli::usage_error("missing --dout (the gradients need the upstream gradient)");
        if (a.dq.empty()) throw cli::usage_error("missing --dq");
        if (a.dk.empty()) throw cli::usage_error("missing --dk");
        if (a.dv.empty()) throw cli::usage_error("missing --dv");
        const std::vector<std::pair<const char*, std::string>> outputs = {
            {"--out", a.out}, {"--lse", a.lse}, {"--dq", a.dq}, {"--dk", a.dk}, {"--dv", a.dv}};
        for (std::size_t i = 0; i < outputs.size(); ++i)
            for (std::size_t j = i + 1; j < outputs.size(); ++j)
                if (!outputs[i].second.empty() && outputs[i].second == outputs[j].second)
                    throw cli::usage_error(std::string(outputs[i].first) + " and " + outputs[j].first +
                                           " name the same file: " + outputs[i].second);
    }
    if (a.grad_mode && !file_backward && !a.backward)
        throw cli::usage_error("--grad-mode needs a backward (--dout ... or --random ... --backward)");
    return a;
}

inline longnet::dilated_options make_options(const arguments& a) {
    longnet::dilated_options o;
    if (a.segments)
        for (std::size_t i = 0; i < a.segments->size(); ++i) o.branches.push_back({(*a.segments)[i], (*a.dilations)[i]});
    o.causal = a.causal;
    o.offsets = a.offsets;
    o.tail = a.tail;
    o.scale = a.scale;
    return o;
}

}  // namespace attend_cli
