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
// "tokenizer" (longnet's own field, not torchscale's): the tokenizer the model was trained with
// (text/tokenizer_record.hpp); absent means byte level, so every older config still reads. Present, it
// must be {"type": "byte"} or {"type": "sentencepiece", "path": string, "fnv1a64": 16 lowercase hex
// digits, "vocab_size": integer in [1, vocab_size]}; to_json writes it only for SentencePiece.
//
// Reading a file (from_file) or text (from_json_text) is strict: at most max_config_bytes (1 MiB), one
// JSON object and nothing after it, no duplicate keys, nesting at most 64 deep (longnet/io/strict_json.hpp).
// Limits of the values (validate(); above them std::invalid_argument naming the field and value):
//   decoder_embed_dim, decoder_ffn_embed_dim <= 2^24   decoder_attention_heads <= decoder_embed_dim
//   decoder_layers <= 2^16   vocab_size <= 2^31   segment_length, dilated_ratio entries <= 2^40
//   at most 64 branches      integers outside int64 are refused, not wrapped
// A config alone allocates nothing: load_decoder checks every weight matrix's shape against the
// checkpoint before it allocates the model, so a config describing a model larger than the file fails
// with the name of the first missing or mis-shaped tensor.

#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "longnet/io/strict_json.hpp"
#include "longnet/nn/config_json.hpp"
#include "longnet/tensor.hpp"
#include "longnet/text/tokenizer_record.hpp"

namespace longnet::nn {

struct decoder_config {
    // Limits, see the top of this file.
    static constexpr std::size_t max_config_bytes = std::size_t(1) << 20;
    static constexpr index_t max_width = index_t(1) << 24;           // embed_dim, ffn_dim
    static constexpr index_t max_layers = index_t(1) << 16;
    static constexpr index_t max_vocab_size = index_t(1) << 31;
    static constexpr index_t max_segment = index_t(1) << 40;         // segment_length, dilated_ratio entries
    static constexpr std::size_t max_branches = 64;

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
    text::tokenizer_record tokenizer;  // byte level unless the config records a SentencePiece model

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
        auto positive = [](index_t v, const char* field, index_t limit) {
            if (v < 1) throw std::invalid_argument(std::string("decoder config: ") + field + " must be >= 1, got " + std::to_string(v));
            if (v > limit)
                throw std::invalid_argument(std::string("decoder config: ") + field + " = " + std::to_string(v) +
                                            " is above the limit " + std::to_string(limit));
        };
        positive(embed_dim, "decoder_embed_dim", max_width);
        positive(heads, "decoder_attention_heads", max_width);
        positive(ffn_dim, "decoder_ffn_embed_dim", max_width);
        positive(layers, "decoder_layers", max_layers);
        positive(vocab_size, "vocab_size", max_vocab_size);
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
        if (segment_length.size() > max_branches)
            throw std::invalid_argument("decoder config: " + std::to_string(segment_length.size()) +
                                        " branches (segment_length entries) is above the limit " +
                                        std::to_string(max_branches));
        for (index_t w : segment_length) positive(w, "segment_length entries", max_segment);
        for (index_t r : dilated_ratio) positive(r, "dilated_ratio entries", max_segment);
        if (!(layernorm_eps > 0) || !std::isfinite(layernorm_eps))
            throw std::invalid_argument("decoder config: layernorm_eps must be a positive number");
        if (!(xpos_scale_base > 0) || !std::isfinite(xpos_scale_base))
            throw std::invalid_argument("decoder config: xpos_scale_base must be a positive number");
        if (!tokenizer.byte_level() && (tokenizer.vocab_size < 1 || tokenizer.vocab_size > vocab_size))
            throw std::invalid_argument("decoder config: the tokenizer's vocab_size " + std::to_string(tokenizer.vocab_size) +
                                        " is outside [1, vocab_size = " + std::to_string(vocab_size) + "]");
    }

    static decoder_config from_json(const nlohmann::json& j) {
        const detail::config_reader r(j, "decoder config");
        decoder_config c;
        r.integer("decoder_embed_dim", c.embed_dim);
        r.integer("decoder_attention_heads", c.heads);
        r.integer("decoder_ffn_embed_dim", c.ffn_dim);
        r.integer("decoder_layers", c.layers);
        r.integer("vocab_size", c.vocab_size);
        r.list("segment_length", c.segment_length, max_branches);
        r.list("dilated_ratio", c.dilated_ratio, max_branches);
        r.number("layernorm_eps", c.layernorm_eps);
        r.number("xpos_scale_base", c.xpos_scale_base);
        c.no_scale_embedding = r.flag("no_scale_embedding", true);

        r.require("subln", true, true, "LongNet is MAGNETO with Sub-LayerNorm");
        r.require("deepnorm", false, false, "DeepNorm residual scaling is not implemented");
        r.require("xpos_rel_pos", true, true, "XPos is the only relative position encoding implemented");
        r.require("decoder_normalize_before", true, true, "only the pre-LayerNorm decoder is implemented");
        r.require("layernorm_embedding", false, false, "an embedding LayerNorm is not implemented");
        r.require("share_decoder_input_output_embed", false, false, "tied input/output embeddings are not implemented");
        r.require("no_output_layer", false, false, "the decoder always has an output projection here");
        r.require("multiway", false, false, "multiway (BEiT-3) layers are not implemented");
        r.zero("rel_pos_buckets");
        r.zero("max_rel_pos");
        r.zero("moe_freq");
        r.zero("moe_expert_count");
        r.gelu_only();
        if (auto it = j.find("tokenizer"); it != j.end()) c.tokenizer = tokenizer_from_json(*it);
        c.validate();
        return c;
    }

    // The "tokenizer" object (see the top of this file). Throws std::invalid_argument naming the field.
    static text::tokenizer_record tokenizer_from_json(const nlohmann::json& v) {
        auto bad = [&](const std::string& what) {
            return std::invalid_argument("decoder config: tokenizer " + what + ", got " + io::describe_json(v));
        };
        if (!v.is_object()) throw bad("must be an object {\"type\": \"byte\" | \"sentencepiece\", ...}");
        const auto type = v.find("type");
        if (type == v.end() || !type->is_string()) throw bad("needs a string \"type\"");
        text::tokenizer_record r;
        if (*type == "byte") return r;
        if (*type != "sentencepiece") throw bad("type must be \"byte\" or \"sentencepiece\"");
        r.kind = text::tokenizer_kind::sentencepiece;
        const auto path = v.find("path"), hash = v.find("fnv1a64"), vocab = v.find("vocab_size");
        if (path == v.end() || !path->is_string()) throw bad("needs a string \"path\"");
        r.path = path->get<std::string>();
        if (hash == v.end() || !hash->is_string()) throw bad("needs \"fnv1a64\" as 16 lowercase hex digits");
        const std::string& h = hash->get_ref<const std::string&>();
        if (h.size() != 16 || h.find_first_not_of("0123456789abcdef") != std::string::npos)
            throw bad("needs \"fnv1a64\" as 16 lowercase hex digits");
        r.fnv1a64 = std::stoull(h, nullptr, 16);
        if (vocab == v.end()) throw bad("needs an integer \"vocab_size\"");
        r.vocab_size = integer_value(*vocab, "tokenizer vocab_size");
        return r;
    }

    // The text of a config.json; `name` stands for the file in messages. Throws std::invalid_argument.
    static decoder_config from_json_text(std::string_view text, const std::string& name = "<memory>") {
        return detail::config_from_json_text<decoder_config>(text, name, "decoder config", max_config_bytes);
    }

    static decoder_config from_file(const std::string& path) {
        return detail::config_from_file<decoder_config>(path, "decoder config", max_config_bytes);
    }

    // An integer JSON value as index_t; a float, a non-number or a value outside int64 throws.
    static index_t integer_value(const nlohmann::json& v, const char* field) {
        return detail::config_reader::integer_value(v, "decoder config", field);
    }

    // torchscale DecoderConfig field names (the supported subset, with the fixed switches spelled out).
    nlohmann::json to_json() const {
        nlohmann::json j = {{"decoder_embed_dim", embed_dim},
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
        if (!tokenizer.byte_level())
            j["tokenizer"] = {{"type", "sentencepiece"},
                              {"path", tokenizer.path},
                              {"fnv1a64", text::hex64(tokenizer.fnv1a64)},
                              {"vocab_size", tokenizer.vocab_size}};
        return j;
    }
};

}  // namespace longnet::nn
