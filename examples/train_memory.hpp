// SPDX-License-Identifier: Apache-2.0
#pragma once
// longnet_train's memory model: the peak resident memory of one training process, predicted from the
// model's shape and the sequence length before anything large is allocated (docs/training.md, "Memory
// model", derives each term and compares it with the peak RSS the trainer logs: within 15 %).
//
// Per token of the longest sequence of a batch (the trainer runs a batch's sequences one after another
// and reuses one workspace), in scalars of the compute type (4 bytes float, 8 double), with D the hidden
// size, F the FFN size, H heads, L layers. Where the peak is depends on checkpointing:
// - with activation checkpointing, in the last layer's attention backward (nn/decoder.hpp,
//   decoder_layer::backward_releasing, multihead_attention::backward_releasing): the residual stream's
//   gradient, the L layer inputs and the final LayerNorm's output ((L + 2) D), the layer's LN1 output,
//   q, k, v and attention output (5 D), the layer backward's dh and the attention backward's d(attention),
//   dq, dk, dv (5 D), the per-head anchored backward's copies of one head's q, k and its dq, dk, dv
//   (5 D / H), the log-sum-exp (H) and LayerNorm statistics (8). The FFN's [T, F] activations never
//   exist (recomputed per row block in its backward); the other phases are lower per token (the first
//   forward (L + 12) D, the FFN backward and the recompute (L + 11) D), but the FFN backward also holds
//   5 × [4096, F] of block scratch, so for short sequences (D + 5 D/H per token less than that) it is
//   the peak: the prediction is the larger of the two;
// - without it, in the first layer's attention backward: the residual stream's gradient and the final
//   LayerNorm's input and output (3 D), all L layers' activations, and the attention backward's buffers:
//   dh, d(Sub-LN), d(attention), dq, dk, dv, the anchored XPos path's copies of q, k, dq, dk, dv (11 D)
//   and its rotation and coefficient tables (2 D / H).
// - XPos segments longer than the anchor's limit (a branch with min(w, T) > rotary_embedding::
//   segment_limit(): float, s 512, hd 64: 66.8K) run as blocks (nn/multihead_attention.hpp), whose
//   backward holds the segment's decayed keys and their dk, dv and one piece's decayed queries, dq, dk, dv
//   (7 D) instead of the per-head copies (5 D / H) with checkpointing, and instead of the groups' copies
//   (5 D) without.
// A layer's activations (without checkpointing): input, LN1 output, q, k, v, attention output, Sub-LN
// output, residual, LN2 output (9 D), FC1 output and the FFN's Sub-LN output (2 F), the log-sum-exp (H)
// and eight LayerNorm statistics. Token ids (inputs, targets and the batch's copy, int64): 32 bytes.
// Plus a part that does not grow with the sequence: parameters, gradients and AdamW's two moments
// (4 × parameters) and the runtime's libraries and small buffers (20 MiB, measured with 512 tokens).

#include <algorithm>
#include <cstdint>
#include <optional>

#include <longnet/nn/decoder_config.hpp>
#include <longnet/nn/xpos.hpp>

#include "cli_common.hpp"

namespace train_memory {

struct prediction {
    std::uint64_t per_token_bytes = 0;  // the part that grows with the sequence, per token
    std::uint64_t fixed_bytes = 0;      // parameters, optimizer state, blocks, runtime
    std::uint64_t total_bytes = 0;      // fixed + per token × tokens
};

// Whether some branch runs its segments as XPos blocks at this length (see above).
inline bool long_segments(const longnet::nn::decoder_config& c, std::int64_t tokens, std::uint64_t scalar_bytes) {
    if (c.embed_dim < 2 || c.heads < 1 || c.head_dim() % 2 != 0) return false;
    longnet::nn::rotary_options opt;
    opt.scale_base = c.xpos_scale_base;
    const longnet::index_t limit = scalar_bytes == 4 ? longnet::nn::rotary_embedding<float>(c.head_dim(), opt).segment_limit()
                                                     : longnet::nn::rotary_embedding<double>(c.head_dim(), opt).segment_limit();
    for (longnet::index_t w : c.segment_length)
        if (std::min<std::int64_t>(w, tokens) > limit) return true;
    return false;
}

// nullopt when the total overflows 64 bits.
inline std::optional<prediction> predict(const longnet::nn::decoder_config& c, std::int64_t tokens, std::int64_t parameters,
                                         bool checkpoint, std::uint64_t scalar_bytes) {
    const auto u = [](std::int64_t v) { return static_cast<std::uint64_t>(v < 0 ? 0 : v); };
    const std::uint64_t D = u(c.embed_dim), F = u(c.ffn_dim), H = u(std::max<std::int64_t>(c.heads, 1)), L = u(c.layers);
    const std::uint64_t layer = 9 * D + 2 * F + H + 8;
    const bool blocks = long_segments(c, tokens, scalar_bytes);
    const std::uint64_t scalars = checkpoint ? (L + 12) * D + (blocks ? 7 * D : 5 * (D / H)) + H + 8
                                              : 3 * D + L * layer + (blocks ? 13 : 11) * D + 2 * (D / H);
    prediction p;
    p.per_token_bytes = scalars * scalar_bytes + 32;
    const std::uint64_t runtime = 20ull << 20;
    p.fixed_bytes = scalar_bytes * 4 * u(parameters) + runtime;
    const auto grown = cli::mul(p.per_token_bytes, u(tokens));
    auto total = grown ? cli::add(*grown, p.fixed_bytes) : std::nullopt;
    if (!total) return std::nullopt;
    if (checkpoint) {  // short sequences: the FFN backward, (L + 11) D + H + 8 and its 5 × [4096, F] scratch
        const std::uint64_t scratch = 5 * std::min<std::uint64_t>(u(tokens), 4096) * F * scalar_bytes;
        const auto ffn = cli::mul(((L + 11) * D + H + 8) * scalar_bytes + 32, u(tokens));
        const auto ffn_total = ffn ? cli::add(*ffn, p.fixed_bytes + scratch) : std::nullopt;
        if (!ffn_total) return std::nullopt;
        total = std::max(*total, *ffn_total);
    }
    p.total_bytes = *total;
    return p;
}

}  // namespace train_memory
