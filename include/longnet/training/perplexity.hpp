// SPDX-License-Identifier: Apache-2.0
#pragma once
// Perplexity of a decoder over a token stream, llama.cpp's way (its `perplexity` tool,
// tools/perplexity/perplexity.cpp), with its standard error, and the KL divergence against reference
// logits (llama.cpp's --kl-divergence).
//
// Windows and scored tokens (n tokens in the stream, ctx tokens per window, logits row j of a window
// starting at s is the model's prediction of token s + j + 1 from tokens s .. s + j):
//   stride = 0 (llama.cpp's perplexity()): windows [i·ctx, (i+1)·ctx) for i < n / ctx (the tail that
//       does not fill a window is dropped; at least 2·ctx tokens are required, as llama.cpp requires);
//       rows j in [ctx/2, ctx − 1) are scored: ctx − 1 − ctx/2 tokens per window, each with at least
//       ctx/2 tokens of context. The last row (it would predict the next window's first token) is not.
//   stride = S in [1, ctx) (llama.cpp's perplexity_v2, --ppl-stride): windows [i·S, i·S + ctx) for
//       i < ceil((n − ctx) / S); rows j in [ctx − S − 1, ctx − 1) are scored: S tokens per window.
// Differences from llama.cpp: no BOS token replaces a window's first token (longnet's byte-level and
// shard vocabularies have none; a stream that needs one carries it), and everything is in double.
//
//   nll_t     = log Σ_v exp(z_tv) − z_t,target (natural log; z a scored row of logits)
//   PPL       = exp(mean nll)
//   stderr    = PPL · sqrt((mean nll² − (mean nll)²) / (count − 1))   (llama.cpp's "+/-": the delta
//               method on the standard error of the mean nll)
//   KL        = mean over scored rows of Σ_v p_base,v (log p_base,v − log p_v), with the standard error of
//               that mean (sqrt((mean KL² − (mean KL)²) / (count − 1))); the reference logits are the
//               scored rows in order ([count, vocab], e.g. from a float model's run with
//               perplexity_options::scored_logits, compared with a bf16-weights model).
//
//   tr::perplexity_result r = tr::perplexity(model, tokens, {ctx, stride});
//   r.ppl(), r.ppl_stderr(), r.scored, r.windows
//
// Model: a longnet::nn::decoder<T, W> (forward_hidden, project, vocab_size). Memory: the window's
// hidden states and at most `row_block` rows of logits at a time.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/io/token_shards.hpp"
#include "longnet/nn/cross_entropy.hpp"

namespace longnet::training {

// Tokens [start, start + count) of a stream into out.
using token_reader = std::function<void(std::uint64_t start, std::uint64_t count, std::int64_t* out)>;

struct perplexity_result {
    std::size_t ctx = 0, stride = 0;
    std::uint64_t windows = 0, scored = 0;
    double nll_sum = 0, nll2_sum = 0;        // Σ nll, Σ nll²
    double kl_sum = 0, kl2_sum = 0;          // Σ KL, Σ KL² (when a KL reference was given)
    bool has_kl = false;
    double seconds = 0;                      // wall time of the forwards

    double mean_nll() const noexcept { return scored ? nll_sum / static_cast<double>(scored) : 0.0; }
    double ppl() const noexcept { return std::exp(mean_nll()); }
    double ppl_stderr() const noexcept {
        if (scored < 2) return 0.0;
        const double m = mean_nll(), var = nll2_sum / static_cast<double>(scored) - m * m;
        return var > 0 ? ppl() * std::sqrt(var / static_cast<double>(scored - 1)) : 0.0;
    }
    double kl_mean() const noexcept { return scored ? kl_sum / static_cast<double>(scored) : 0.0; }
    double kl_stderr() const noexcept {
        if (scored < 2) return 0.0;
        const double m = kl_mean(), var = kl2_sum / static_cast<double>(scored) - m * m;
        return var > 0 ? std::sqrt(var / static_cast<double>(scored - 1)) : 0.0;
    }
    double tokens_per_second() const noexcept {
        return seconds > 0 ? static_cast<double>(windows * ctx) / seconds : 0.0;
    }
};

struct perplexity_options {
    std::size_t ctx = 512;    // tokens per window
    std::size_t stride = 0;   // 0: llama.cpp's chunks (second half scored); S: windows every S tokens, S scored
    std::size_t row_block = 1024;  // logits rows computed at once
    std::size_t max_windows = 0;   // 0: all
    // Reference logits of the scored rows ([scored, vocab] row-major, floats): KL divergence computed.
    const float* kl_base = nullptr;
    std::uint64_t kl_base_rows = 0;
    // When set: receives the scored rows' logits (row-major [scored, vocab]), a KL reference for later runs.
    std::vector<float>* scored_logits = nullptr;
    // Called after each window with the running result.
    std::function<void(const perplexity_result&)> progress;
};

// The window starts and the first scored row for a stream of n tokens (the rules above). Throws
// std::invalid_argument naming the problem (ctx < 2, stride >= ctx, too few tokens).
struct perplexity_plan {
    std::vector<std::uint64_t> starts;
    std::size_t first_row = 0;  // rows [first_row, ctx - 1) are scored
};
inline perplexity_plan plan_perplexity(std::uint64_t n, std::size_t ctx, std::size_t stride) {
    if (ctx < 2) throw std::invalid_argument("perplexity: context " + std::to_string(ctx) + " must be at least 2 tokens");
    perplexity_plan p;
    if (stride == 0) {
        if (n < 2 * static_cast<std::uint64_t>(ctx))
            throw std::invalid_argument("perplexity: " + std::to_string(n) + " tokens are too few for context " + std::to_string(ctx) +
                                        " (need at least 2 x ctx = " + std::to_string(2 * static_cast<std::uint64_t>(ctx)) + ")");
        for (std::uint64_t i = 0; i < n / ctx; ++i) p.starts.push_back(i * ctx);
        p.first_row = ctx / 2;
    } else {
        if (stride >= ctx)
            throw std::invalid_argument("perplexity: stride " + std::to_string(stride) + " must be below the context " + std::to_string(ctx));
        if (n <= ctx)
            throw std::invalid_argument("perplexity: " + std::to_string(n) + " tokens are too few for context " + std::to_string(ctx) +
                                        " with a stride (need more than ctx)");
        const std::uint64_t windows = (n - ctx + stride - 1) / stride;
        for (std::uint64_t i = 0; i < windows; ++i) p.starts.push_back(i * stride);
        p.first_row = ctx - stride - 1;
    }
    return p;
}

template <class Model>
perplexity_result perplexity(const Model& model, const token_reader& read, std::uint64_t n, const perplexity_options& opt) {
    const perplexity_plan plan = plan_perplexity(n, opt.ctx, opt.stride);
    const std::size_t ctx = opt.ctx, first = plan.first_row, per_window = ctx - 1 - first;
    const longnet::index_t vocab = model.vocab_size();
    std::uint64_t windows = plan.starts.size();
    if (opt.max_windows) windows = std::min<std::uint64_t>(windows, opt.max_windows);
    perplexity_result r;
    r.ctx = ctx;
    r.stride = opt.stride;
    r.has_kl = opt.kl_base != nullptr;
    if (r.has_kl && opt.kl_base_rows != windows * per_window)
        throw std::invalid_argument("perplexity: the KL reference has " + std::to_string(opt.kl_base_rows) +
                                    " rows of logits, this run scores " + std::to_string(windows * per_window) +
                                    " tokens (the same tokens, ctx and stride are needed)");
    if (opt.scored_logits) opt.scored_logits->clear();
    const std::size_t block = std::max<std::size_t>(1, opt.row_block);
    std::vector<std::int64_t> tokens(ctx);
    const auto t0 = std::chrono::steady_clock::now();
    for (std::uint64_t w = 0; w < windows; ++w) {
        read(plan.starts[w], ctx, tokens.data());
        const std::vector<std::int64_t> inputs(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(ctx));
        const auto hidden = model.forward_hidden(inputs);
        for (std::size_t r0 = first; r0 < ctx - 1; r0 += block) {
            const std::size_t rows = std::min(block, ctx - 1 - r0);
            const auto logits = model.project(hidden.middleRows(static_cast<longnet::index_t>(r0), static_cast<longnet::index_t>(rows)));
            for (std::size_t i = 0; i < rows; ++i) {
                const std::size_t j = r0 + i;
                const std::int64_t target = inputs[j + 1];
                std::vector<double> z(static_cast<std::size_t>(vocab));
                for (longnet::index_t v = 0; v < vocab; ++v) z[static_cast<std::size_t>(v)] = static_cast<double>(logits(static_cast<longnet::index_t>(i), v));
                double m;
                const double lse = nn::detail::row_log_sum_exp(z.data(), vocab, m, longnet::detail::isa_path::native);  // double rows: scalar
                const double nll = lse - z[static_cast<std::size_t>(target)];
                r.nll_sum += nll;
                r.nll2_sum += nll * nll;
                const std::uint64_t row = r.scored;
                if (opt.scored_logits)
                    for (double x : z) opt.scored_logits->push_back(static_cast<float>(x));
                if (r.has_kl) {
                    const float* b = opt.kl_base + row * static_cast<std::uint64_t>(vocab);
                    std::vector<double> zb(b, b + vocab);
                    double mb;
                    const double lse_b = nn::detail::row_log_sum_exp(zb.data(), vocab, mb, longnet::detail::isa_path::native);
                    double kl = 0;
                    for (longnet::index_t v = 0; v < vocab; ++v) {
                        const double lp_b = zb[static_cast<std::size_t>(v)] - lse_b, lp = z[static_cast<std::size_t>(v)] - lse;
                        kl += std::exp(lp_b) * (lp_b - lp);
                    }
                    r.kl_sum += kl;
                    r.kl2_sum += kl * kl;
                }
                ++r.scored;
            }
        }
        ++r.windows;
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (opt.progress) opt.progress(r);
    }
    return r;
}

// The same over tokens in memory, and over a shard stream.
template <class Model>
perplexity_result perplexity(const Model& model, const std::vector<std::int64_t>& tokens, const perplexity_options& opt) {
    return perplexity(
        model, [&](std::uint64_t s, std::uint64_t c, std::int64_t* out) { std::copy_n(tokens.begin() + static_cast<std::ptrdiff_t>(s), c, out); },
        tokens.size(), opt);
}
template <class Model>
perplexity_result perplexity(const Model& model, const io::token_shard_stream& stream, const perplexity_options& opt) {
    return perplexity(model, [&](std::uint64_t s, std::uint64_t c, std::int64_t* out) { stream.read(s, c, out); }, stream.size(), opt);
}

}  // namespace longnet::training
