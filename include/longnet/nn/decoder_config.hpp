// SPDX-License-Identifier: Apache-2.0
#pragma once
// LongNet decoder configuration, read from a JSON object with torchscale's DecoderConfig field names.
//
// Read: decoder_embed_dim, decoder_attention_heads, decoder_ffn_embed_dim, decoder_layers, vocab_size,
// segment_length, dilated_ratio (JSON lists, a single integer, or a string such as "[16,32]" — torchscale
// command lines pass them that way), layernorm_eps, xpos_scale_base, and the switches checked below.
// Unknown fields (dropouts, moe_*, fsdp, flash_attention, ...) are ignored. A value this library does not
// implement is refused with std::invalid_argument naming the field:
//   subln false, deepnorm true, xpos_rel_pos false, decoder_normalize_before false, layernorm_embedding
//   true, share_decoder_input_output_embed true, no_output_layer true, multiway true, rel_pos_buckets
//   or max_rel_pos > 0, moe_freq/moe_expert_count > 0, activation_fn other than "gelu", an odd head dim.
// no_scale_embedding false is supported (embedding scaled by sqrt(D), as torchscale does).

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "longnet/tensor.hpp"

namespace longnet::nn {

struct decoder_config {
    index_t embed_dim = 768;
    index_t heads = 12;
    index_t ffn_dim = 3072;
    index_t layers = 12;
    index_t vocab_size = 32000;
    std::vector<index_t> segment_length{2048, 4096, 8192, 16384, 32768};
    std::vector<index_t> dilated_ratio{1, 2, 4, 6, 12};
    double layernorm_eps = 1e-5;
    double xpos_scale_base = 512;
    bool no_scale_embedding = true;

    index_t head_dim() const noexcept { return heads > 0 ? embed_dim / heads : 0; }
    double embed_scale() const noexcept { return no_scale_embedding ? 1.0 : std::sqrt(static_cast<double>(embed_dim)); }

    // The paper's base model: 12 layers, hidden 768, 12 heads, FFN 3072, w = 2048..32768, r = 1..12.
    static decoder_config base(index_t vocab = 32000) {
        decoder_config c;
        c.vocab_size = vocab;
        return c;
    }

    // Throws std::invalid_argument naming the field.
    void validate() const {
        auto positive = [](index_t v, const char* field) {
            if (v < 1) throw std::invalid_argument(std::string("decoder config: ") + field + " must be >= 1, got " + std::to_string(v));
        };
        positive(embed_dim, "decoder_embed_dim");
        positive(heads, "decoder_attention_heads");
        positive(ffn_dim, "decoder_ffn_embed_dim");
        positive(layers, "decoder_layers");
        positive(vocab_size, "vocab_size");
        if (embed_dim % heads != 0)
            throw std::invalid_argument("decoder config: decoder_embed_dim " + std::to_string(embed_dim) +
                                        " is not a multiple of decoder_attention_heads " + std::to_string(heads));
        if (head_dim() % 2 != 0)
            throw std::invalid_argument("decoder config: head dim decoder_embed_dim / decoder_attention_heads = " +
                                        std::to_string(head_dim()) + " is odd; XPos needs it even");
        if (segment_length.empty() || segment_length.size() != dilated_ratio.size())
            throw std::invalid_argument("decoder config: segment_length has " + std::to_string(segment_length.size()) +
                                        " entries and dilated_ratio " + std::to_string(dilated_ratio.size()) +
                                        "; they must be equally long and non-empty");
        for (index_t w : segment_length) positive(w, "segment_length entries");
        for (index_t r : dilated_ratio) positive(r, "dilated_ratio entries");
        if (!(layernorm_eps > 0) || !std::isfinite(layernorm_eps))
            throw std::invalid_argument("decoder config: layernorm_eps must be a positive number");
        if (!(xpos_scale_base > 0) || !std::isfinite(xpos_scale_base))
            throw std::invalid_argument("decoder config: xpos_scale_base must be a positive number");
    }

    static decoder_config from_json(const nlohmann::json& j) {
        if (!j.is_object()) throw std::invalid_argument("decoder config: expected a JSON object");
        decoder_config c;
        auto integer = [&](const char* field, index_t& out) {
            auto it = j.find(field);
            if (it == j.end()) return;
            if (!it->is_number_integer())
                throw std::invalid_argument(std::string("decoder config: ") + field + " must be an integer, got " + it->dump());
            out = it->get<index_t>();
        };
        auto number = [&](const char* field, double& out) {
            auto it = j.find(field);
            if (it == j.end()) return;
            if (!it->is_number()) throw std::invalid_argument(std::string("decoder config: ") + field + " must be a number, got " + it->dump());
            out = it->get<double>();
        };
        auto flag = [&](const char* field, bool fallback) {
            auto it = j.find(field);
            if (it == j.end() || it->is_null()) return fallback;
            if (!it->is_boolean()) throw std::invalid_argument(std::string("decoder config: ") + field + " must be true or false, got " + it->dump());
            return it->get<bool>();
        };
        auto require = [&](const char* field, bool fallback, bool supported, const char* why) {
            if (flag(field, fallback) != supported)
                throw std::invalid_argument(std::string("decoder config: ") + field + " = " + (supported ? "false" : "true") +
                                            " is not supported: " + why);
        };
        auto list = [&](const char* field, std::vector<index_t>& out) {
            auto it = j.find(field);
            if (it == j.end()) return;
            nlohmann::json v = *it;
            if (v.is_string()) {  // "[16,32]" or "16"
                try {
                    v = nlohmann::json::parse(v.get<std::string>());
                } catch (const nlohmann::json::exception&) {
                    throw std::invalid_argument(std::string("decoder config: ") + field + " string " + it->dump() +
                                                " is not a list of integers");
                }
            }
            if (v.is_number_integer()) v = nlohmann::json::array({v});
            if (!v.is_array()) throw std::invalid_argument(std::string("decoder config: ") + field + " must be a list of integers, got " + it->dump());
            out.clear();
            for (const auto& e : v) {
                if (!e.is_number_integer())
                    throw std::invalid_argument(std::string("decoder config: ") + field + " must be a list of integers, got " + it->dump());
                out.push_back(e.get<index_t>());
            }
        };
        auto zero = [&](const char* field) {
            auto it = j.find(field);
            if (it == j.end() || it->is_null()) return;
            if (!it->is_number_integer() || it->get<index_t>() != 0)
                throw std::invalid_argument(std::string("decoder config: ") + field + " = " + it->dump() +
                                            " is not supported (only 0)");
        };

        integer("decoder_embed_dim", c.embed_dim);
        integer("decoder_attention_heads", c.heads);
        integer("decoder_ffn_embed_dim", c.ffn_dim);
        integer("decoder_layers", c.layers);
        integer("vocab_size", c.vocab_size);
        list("segment_length", c.segment_length);
        list("dilated_ratio", c.dilated_ratio);
        number("layernorm_eps", c.layernorm_eps);
        number("xpos_scale_base", c.xpos_scale_base);
        c.no_scale_embedding = flag("no_scale_embedding", true);

        require("subln", true, true, "LongNet is MAGNETO with Sub-LayerNorm");
        require("deepnorm", false, false, "DeepNorm residual scaling is not implemented");
        require("xpos_rel_pos", true, true, "XPos is the only relative position encoding implemented");
        require("decoder_normalize_before", true, true, "only the pre-LayerNorm decoder is implemented");
        require("layernorm_embedding", false, false, "an embedding LayerNorm is not implemented");
        require("share_decoder_input_output_embed", false, false, "tied input/output embeddings are not implemented");
        require("no_output_layer", false, false, "the decoder always has an output projection here");
        require("multiway", false, false, "multiway (BEiT-3) layers are not implemented");
        zero("rel_pos_buckets");
        zero("max_rel_pos");
        zero("moe_freq");
        zero("moe_expert_count");
        if (auto it = j.find("activation_fn"); it != j.end() && !(it->is_string() && it->get<std::string>() == "gelu"))
            throw std::invalid_argument("decoder config: activation_fn = " + it->dump() + " is not supported (only \"gelu\")");
        c.validate();
        return c;
    }

    static decoder_config from_file(const std::string& path) {
        std::ifstream in(path);
        if (!in) throw std::invalid_argument("decoder config: cannot open " + path);
        nlohmann::json j;
        try {
            in >> j;
        } catch (const nlohmann::json::exception& e) {
            throw std::invalid_argument("decoder config: " + path + " is not valid JSON: " + e.what());
        }
        try {
            return from_json(j);
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(path + ": " + e.what());
        }
    }

    // torchscale DecoderConfig field names (the supported subset, with the fixed switches spelled out).
    nlohmann::json to_json() const {
        return {{"decoder_embed_dim", embed_dim},
                {"decoder_attention_heads", heads},
                {"decoder_ffn_embed_dim", ffn_dim},
                {"decoder_layers", layers},
                {"vocab_size", vocab_size},
                {"segment_length", segment_length},
                {"dilated_ratio", dilated_ratio},
                {"layernorm_eps", layernorm_eps},
                {"xpos_scale_base", xpos_scale_base},
                {"xpos_rel_pos", true},
                {"subln", true},
                {"deepnorm", false},
                {"decoder_normalize_before", true},
                {"no_scale_embedding", no_scale_embedding},
                {"share_decoder_input_output_embed", false},
                {"activation_fn", "gelu"}};
    }
};

}  // namespace longnet::nn
