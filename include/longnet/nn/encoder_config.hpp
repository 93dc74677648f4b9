// SPDX-License-Identifier: Apache-2.0
#pragma once
// LongNet encoder configuration, read from a JSON object with torchscale's EncoderConfig field names.
//
// Read: encoder_embed_dim, encoder_attention_heads, encoder_ffn_embed_dim, encoder_layers,
// segment_length, dilated_ratio (a JSON list, a single integer or a string such as "[1024,2048]"),
// layernorm_eps, normalize_output, layernorm_embedding, no_scale_embedding, encoder_normalize_before.
// Defaults are EncoderConfig's (dim 768, 12 heads, FFN 3072, 12 layers, pre-LN, Sub-LN, final LayerNorm,
// no embedding LayerNorm, embed scale 1, no XPos); segment_length and dilated_ratio have no default in
// torchscale and are required here. torchscale's postprocessing is applied: subln (default true) forces
// encoder_normalize_before = true, so a config saying encoder_normalize_before = false with Sub-LN is
// the pre-LN encoder, as in torchscale; the post-LN encoder is subln = false with
// encoder_normalize_before = false (no Sub-LNs, no final layer_norm: torchscale builds it only for
// pre-LN). Unknown fields (dropouts, drop_path_rate, flash_attention, img_size, checkpoint_activations,
// ...) are ignored. Refused with std::invalid_argument naming the field: deepnorm true, xpos_rel_pos true, multiway true, rel_pos_buckets or max_rel_pos > 0, moe_freq/moe_expert_count > 0,
//   activation_fn other than "gelu", vocab_size > 0 without no_output_layer (the output projection;
//   this encoder returns features, torchscale's features_only).
// Limits as decoder_config (widths <= 2^24, layers <= 2^16, at most 64 branches, entries <= 2^40).

#include <cmath>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "longnet/nn/config_json.hpp"
#include "longnet/nn/decoder_config.hpp"
#include "longnet/tensor.hpp"

namespace longnet::nn {

struct encoder_config {
    static constexpr std::size_t max_config_bytes = decoder_config::max_config_bytes;

    index_t embed_dim = 768;
    index_t heads = 12;
    index_t ffn_dim = 3072;
    index_t layers = 12;
    std::vector<index_t> segment_length;
    std::vector<index_t> dilated_ratio;
    double layernorm_eps = 1e-5;
    bool subln = true;                 // Sub-LayerNorms inner_attn_ln, ffn_layernorm (forces normalize_before)
    bool normalize_before = true;      // pre-LN layers; false: post-LN (needs subln false)
    bool normalize_output = true;      // final LayerNorm `layer_norm` (pre-LN encoders only)
    bool layernorm_embedding = false;  // LayerNorm `layernorm_embedding` after the embedding scale
    bool no_scale_embedding = true;    // false: embeddings scaled by sqrt(D)

    // torchscale builds the final layer_norm only for pre-LN encoders with normalize_output.
    bool has_layer_norm() const noexcept { return normalize_before && normalize_output; }
    index_t head_dim() const noexcept { return heads > 0 ? embed_dim / heads : 0; }
    double embed_scale() const noexcept { return no_scale_embedding ? 1.0 : std::sqrt(static_cast<double>(embed_dim)); }

    // Throws std::invalid_argument naming the field. The shared limits are decoder_config's.
    void validate() const {
        auto positive = [](index_t v, const char* field, index_t limit) {
            if (v < 1) throw std::invalid_argument(std::string("encoder config: ") + field + " must be >= 1, got " + std::to_string(v));
            if (v > limit)
                throw std::invalid_argument(std::string("encoder config: ") + field + " = " + std::to_string(v) +
                                            " is above the limit " + std::to_string(limit));
        };
        positive(embed_dim, "encoder_embed_dim", decoder_config::max_width);
        positive(heads, "encoder_attention_heads", embed_dim);
        positive(ffn_dim, "encoder_ffn_embed_dim", decoder_config::max_width);
        positive(layers, "encoder_layers", decoder_config::max_layers);
        if (embed_dim % heads != 0)
            throw std::invalid_argument("encoder config: encoder_embed_dim " + std::to_string(embed_dim) +
                                        " is not a multiple of encoder_attention_heads " + std::to_string(heads));
        if (segment_length.empty() || segment_length.size() != dilated_ratio.size())
            throw std::invalid_argument("encoder config: segment_length has " + std::to_string(segment_length.size()) +
                                        " entries and dilated_ratio " + std::to_string(dilated_ratio.size()) +
                                        "; they must be equally long and non-empty");
        if (segment_length.size() > decoder_config::max_branches)
            throw std::invalid_argument("encoder config: " + std::to_string(segment_length.size()) +
                                        " branches is above the limit " + std::to_string(decoder_config::max_branches));
        for (index_t w : segment_length) positive(w, "segment_length entries", decoder_config::max_segment);
        for (index_t r : dilated_ratio) positive(r, "dilated_ratio entries", decoder_config::max_segment);
        if (!(layernorm_eps > 0) || !std::isfinite(layernorm_eps))
            throw std::invalid_argument("encoder config: layernorm_eps must be a positive number");
        if (subln && !normalize_before)
            throw std::invalid_argument("encoder config: encoder_normalize_before false needs subln false "
                                        "(torchscale makes Sub-LN layers pre-LN)");
    }

    static encoder_config from_json(const nlohmann::json& j) {
        const detail::config_reader r(j, "encoder config");
        encoder_config c;
        r.integer("encoder_embed_dim", c.embed_dim);
        r.integer("encoder_attention_heads", c.heads);
        r.integer("encoder_ffn_embed_dim", c.ffn_dim);
        r.integer("encoder_layers", c.layers);
        r.list("segment_length", c.segment_length, decoder_config::max_branches);
        r.list("dilated_ratio", c.dilated_ratio, decoder_config::max_branches);
        r.number("layernorm_eps", c.layernorm_eps);
        c.normalize_output = r.flag("normalize_output", true);
        c.layernorm_embedding = r.flag("layernorm_embedding", false);
        c.no_scale_embedding = r.flag("no_scale_embedding", true);
        c.subln = r.flag("subln", true);
        c.normalize_before = c.subln || r.flag("encoder_normalize_before", true);  // torchscale's postprocessing

        r.require("deepnorm", false, false, "DeepNorm residual scaling is not implemented");
        r.require("xpos_rel_pos", false, false, "XPos in the encoder is not implemented");
        r.require("multiway", false, false, "multiway (BEiT-3) layers are not implemented");
        r.zero("rel_pos_buckets");
        r.zero("max_rel_pos");
        r.zero("moe_freq");
        r.zero("moe_expert_count");
        r.gelu_only();
        index_t vocab = -1;
        r.integer("vocab_size", vocab);
        if (vocab > 0 && !r.flag("no_output_layer", false))
            throw std::invalid_argument("encoder config: vocab_size = " + std::to_string(vocab) +
                                        " asks for an output projection, which is not implemented (set no_output_layer "
                                        "true or vocab_size -1: the encoder returns features)");
        if (j.find("segment_length") == j.end() || j.find("dilated_ratio") == j.end())
            throw std::invalid_argument("encoder config: segment_length and dilated_ratio are required");
        c.validate();
        return c;
    }

    // The text of a config.json; `name` stands for the file in messages. Throws std::invalid_argument.
    static encoder_config from_json_text(std::string_view text, const std::string& name = "<memory>") {
        return detail::config_from_json_text<encoder_config>(text, name, "encoder config", max_config_bytes);
    }
    static encoder_config from_file(const std::string& path) {
        return detail::config_from_file<encoder_config>(path, "encoder config", max_config_bytes);
    }

    // torchscale EncoderConfig field names (the supported subset, with the fixed switches spelled out).
    nlohmann::json to_json() const {
        return {{"encoder_embed_dim", embed_dim},
                {"encoder_attention_heads", heads},
                {"encoder_ffn_embed_dim", ffn_dim},
                {"encoder_layers", layers},
                {"segment_length", segment_length},
                {"dilated_ratio", dilated_ratio},
                {"layernorm_eps", layernorm_eps},
                {"normalize_output", normalize_output},
                {"layernorm_embedding", layernorm_embedding},
                {"no_scale_embedding", no_scale_embedding},
                {"encoder_normalize_before", normalize_before},
                {"subln", subln},
                {"deepnorm", false},
                {"xpos_rel_pos", false},
                {"vocab_size", -1},
                {"activation_fn", "gelu"}};
    }
};

}  // namespace longnet::nn
