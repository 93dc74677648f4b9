// SPDX-License-Identifier: Apache-2.0
#pragma once
// longnet_train's memory model: the peak resident memory of one training process, predicted from the
// model's shape and the sequence length before anything large is allocated (docs/training.md, "Memory
// model", derives each term and compares it with the peak RSS the trainer logs).
//
// Per token of the longest sequence of a batch (the trainer runs a batch's sequences one after another
// and reuses one workspace), in scalars of the compute type (4 bytes float, 8 double), with D the hidden
// size, F the FFN size, H heads, L layers:
//   residual stream, final LayerNorm input and output          3 D
//   + with activation checkpointing: each layer's input, and
//     the copy recomputed from                                 (L + 1) D
//   kept activations of one layer (all L without checkpointing): input, LN1 output, q, k, v, attention
//     output, Sub-LN output, residual, LN2 output (9 D), FC1 output and FFN Sub-LN output (2 F), the
//     log-sum-exp (H) and eight LayerNorm statistics             9 D + 2 F + H + 8
//   the attention block's backward: dh, d(Sub-LN), d(attention), dq, dk, dv and the anchored XPos
//     path's q, k, dq, dk, dv copies (11 D), its rotation and coefficient tables (2 D / H)
//   token ids (inputs and targets, int64, and the batch's copy)  32 bytes
// plus a part that does not grow with the sequence: parameters, gradients and AdamW's two moments
// (4 × parameters) and the runtime's libraries and small buffers (20 MiB, measured with 512 tokens). The
// peak is in the first layer's attention backward: the loss head's block of logits and the FFN backward's
// row blocks are freed by then.

#include <algorithm>
#include <cstdint>
#include <optional>

#include <longnet/nn/decoder_config.hpp>

#include "cli_common.hpp"

namespace train_memory {

struct prediction {
    std::uint64_t per_token_bytes = 0;  // the part that grows with the sequence, per token
    std::uint64_t fixed_bytes = 0;      // parameters, optimizer state, blocks, runtime
    std::uint64_t total_bytes = 0;      // fixed + per token × tokens
};

// nullopt when the total overflows 64 bits.
inline std::optional<prediction> predict(const longnet::nn::decoder_config& c, std::int64_t tokens, std::int64_t parameters,
                                         bool checkpoint, std::uint64_t scalar_bytes) {
    const auto u = [](std::int64_t v) { return static_cast<std::uint64_t>(v < 0 ? 0 : v); };
    const std::uint64_t D = u(c.embed_dim), F = u(c.ffn_dim), H = u(std::max<std::int64_t>(c.heads, 1)), L = u(c.layers);
    const std::uint64_t layer = 9 * D + 2 * F + H + 8;
    const std::uint64_t scalars = 3 * D + (checkpoint ? (L + 1) * D + layer : L * layer) + 11 * D + 2 * (D / H);
    prediction p;
    p.per_token_bytes = scalars * scalar_bytes + 32;
    const std::uint64_t runtime = 20ull << 20;
    p.fixed_bytes = scalar_bytes * 4 * u(parameters) + runtime;
    const auto grown = cli::mul(p.per_token_bytes, u(tokens));
    const auto total = grown ? cli::add(*grown, p.fixed_bytes) : std::nullopt;
    if (!total) return std::nullopt;
    p.total_bytes = *total;
    return p;
}

}  // namespace train_memory
