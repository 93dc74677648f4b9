// SPDX-License-Identifier: Apache-2.0
#pragma once
// The LongNet decoder (torchscale LongNetDecoder): token embedding, decoder layers, final LayerNorm,
// output projection without bias.
//   x_0 = embed_scale · embed_tokens[tokens]          (no positional embedding: XPos lives in attention)
//   x_l = decoder_layer_l(x_{l−1})                      (inner_states = x_0 .. x_L)
//   hidden = layer_norm(x_L);   logits = hidden · output_projectionᵀ
// Batch 1: one token sequence per call. For long sequences ask for the logits of the rows you need
// (project(hidden.bottomRows(1)) for the next-token distribution) instead of the full [T, vocab].

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/nn/common.hpp"
#include "longnet/nn/decoder_config.hpp"
#include "longnet/nn/decoder_layer.hpp"
#include "longnet/nn/layer_norm.hpp"
#include "longnet/nn/linear.hpp"
#include "longnet/options.hpp"

namespace longnet::nn {

// How to run a decoder (what the checkpoint does not say).
struct model_options {
    attention_kind attention = attention_kind::dilated;     // dense: the drop-in baseline, same weights
    offset_policy offsets = offset_policy::torchscale;      // torchscale-trained checkpoints need torchscale
    tail_mode tail = tail_mode::exact;                      // causal: zero_pad gives the same result
    position_encoding positions = position_encoding::xpos;  // rope: plain rotary instead of XPos
    angle_precision angles = angle_precision::torchscale;   // float64: angles in double
    bool gelu_in_float = false;                             // torchscale parity for a double build
    index_t ffn_row_block = 4096;                           // rows per FFN block
};

inline attention_config make_attention_config(const decoder_config& cfg, const model_options& opt) {
    attention_config a;
    a.embed_dim = cfg.embed_dim;
    a.heads = cfg.heads;
    a.kind = opt.attention;
    a.dilated = dilated_options::from_lists(cfg.segment_length, cfg.dilated_ratio, /*causal=*/true);
    a.dilated.offsets = opt.offsets;
    a.dilated.tail = opt.tail;
    a.rotary.kind = opt.positions;
    a.rotary.angles = opt.angles;
    a.rotary.scale_base = cfg.xpos_scale_base;
    a.layernorm_eps = cfg.layernorm_eps;
    return a;
}

template <class T, class W = T>
class decoder {
public:
    using progress_callback = std::function<void(index_t layers_done, index_t layers_total)>;

    decoder_config config;
    model_options options;
    matrix<W> embed_tokens;                     // [vocab, D]
    std::vector<decoder_layer<T, W>> layers;
    layer_norm<T> final_norm;                   // torchscale name: layer_norm
    linear<T, W> output_projection;             // [vocab, D], no bias

    decoder() = default;
    // Parameters zero, LayerNorms identity: fill them from a checkpoint (load_decoder) or randomly.
    decoder(const decoder_config& cfg, const model_options& opt = {}) : config(cfg), options(opt) {
        cfg.validate();
        const attention_config attn = make_attention_config(cfg, opt);
        attn.validate();
        embed_tokens = matrix<W>::Zero(cfg.vocab_size, cfg.embed_dim);
        layers.reserve(static_cast<std::size_t>(cfg.layers));
        for (index_t l = 0; l < cfg.layers; ++l) {
            layers.emplace_back(attn, cfg.ffn_dim);
            layers.back().ffn.gelu_in_float = opt.gelu_in_float;
            layers.back().ffn.row_block = opt.ffn_row_block;
        }
        final_norm = layer_norm<T>(cfg.embed_dim, cfg.layernorm_eps);
        output_projection = linear<T, W>(cfg.embed_dim, cfg.vocab_size, /*with_bias=*/false);
    }

    index_t embed_dim() const noexcept { return config.embed_dim; }
    index_t vocab_size() const noexcept { return config.vocab_size; }

    // x_0 [T, D]. Throws std::out_of_range for a token outside [0, vocab).
    matrix<T> embed(const std::vector<std::int64_t>& tokens) const {
        const index_t seq = static_cast<index_t>(tokens.size()), dim = embed_dim();
        for (index_t i = 0; i < seq; ++i)
            if (tokens[static_cast<std::size_t>(i)] < 0 || tokens[static_cast<std::size_t>(i)] >= vocab_size())
                throw std::out_of_range("longnet::nn::decoder: token " + std::to_string(tokens[static_cast<std::size_t>(i)]) +
                                        " at position " + std::to_string(i) + " is outside the vocabulary [0, " +
                                        std::to_string(vocab_size()) + ")");
        matrix<T> x(seq, dim);
        const T scale = static_cast<T>(config.embed_scale());
        LONGNET_NN_PARALLEL_FOR
        for (index_t i = 0; i < seq; ++i)
            x.row(i) = embed_tokens.row(static_cast<index_t>(tokens[static_cast<std::size_t>(i)])).template cast<T>() * scale;
        return x;
    }

    // hidden = layer_norm(x_L) [T, D]. inner_states (optional) receives x_0 .. x_L.
    matrix<T> forward_hidden(const std::vector<std::int64_t>& tokens, std::vector<matrix<T>>* inner_states = nullptr,
                             forward_profile* profile = nullptr, const progress_callback& progress = {}) const {
        matrix<T> x;
        {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::other));
            x = embed(tokens);
        }
        if (inner_states) {
            inner_states->clear();
            inner_states->push_back(x);
        }
        matrix<T> h, y;
        const index_t total = static_cast<index_t>(layers.size());
        for (index_t l = 0; l < total; ++l) {
            layers[static_cast<std::size_t>(l)].forward(x, h, y, profile);
            if (inner_states) inner_states->push_back(x);
            if (progress) progress(l + 1, total);
        }
        detail::scoped_timer t(detail::slot(profile, &forward_profile::norms));
        final_norm.forward(x, x);
        return x;
    }

    // logits [rows, vocab] of some rows of hidden (e.g. hidden.bottomRows(1)).
    matrix<T> project(const_matrix_ref<T> hidden, forward_profile* profile = nullptr) const {
        detail::scoped_timer t(detail::slot(profile, &forward_profile::dense));
        return output_projection(hidden);
    }

    // Full logits [T, vocab].
    matrix<T> forward(const std::vector<std::int64_t>& tokens, forward_profile* profile = nullptr) const {
        const matrix<T> hidden = forward_hidden(tokens, nullptr, profile);
        return project(hidden, profile);
    }

    // Parameter count (weights, biases, gains; not the XPos buffers).
    index_t parameter_count() const noexcept {
        const index_t d = config.embed_dim, f = config.ffn_dim, v = config.vocab_size;
        const index_t per_layer = 4 * (d * d + d) + 2 * d /*inner ln*/ + 4 * d /*two pre-LNs*/ + (f * d + f) + (d * f + d) + 2 * f;
        return 2 * v * d + config.layers * per_layer + 2 * d;
    }
};

}  // namespace longnet::nn
