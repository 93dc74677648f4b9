// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the decoder config reader (longnet/nn/decoder_config.hpp, from_json_text: what
// from_file does with a config.json's bytes).
//
// Every input must either throw std::invalid_argument or give a config that validates, stays inside the
// stated limits (embed_dim, ffn_dim <= 2^24, layers <= 2^16, vocab <= 2^31, at most 64 branches,
// entries <= 2^40, an even head dimension), equals what the JSON says for the fields it read, and
// survives to_json -> from_json unchanged.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <longnet/nn/decoder_config.hpp>

#include "fuzz_check.hpp"

namespace {

using longnet::nn::decoder_config;

bool same(const decoder_config& a, const decoder_config& b) {
    return a.embed_dim == b.embed_dim && a.heads == b.heads && a.ffn_dim == b.ffn_dim && a.layers == b.layers &&
           a.vocab_size == b.vocab_size && a.segment_length == b.segment_length && a.dilated_ratio == b.dilated_ratio &&
           a.layernorm_eps == b.layernorm_eps && a.xpos_scale_base == b.xpos_scale_base &&
           a.no_scale_embedding == b.no_scale_embedding && a.tokenizer.kind == b.tokenizer.kind &&
           a.tokenizer.path == b.tokenizer.path && a.tokenizer.fnv1a64 == b.tokenizer.fnv1a64 &&
           a.tokenizer.vocab_size == b.tokenizer.vocab_size;
}

void check_accepted(std::string_view text, const decoder_config& c) {
    try {
        c.validate();
    } catch (const std::invalid_argument& e) {
        FUZZ_CHECK(false, std::string("accepted config does not validate: ") + e.what());
    }
    FUZZ_CHECK(c.embed_dim >= 1 && c.embed_dim <= decoder_config::max_width, "embed_dim " + std::to_string(c.embed_dim));
    FUZZ_CHECK(c.ffn_dim >= 1 && c.ffn_dim <= decoder_config::max_width, "ffn_dim " + std::to_string(c.ffn_dim));
    FUZZ_CHECK(c.layers >= 1 && c.layers <= decoder_config::max_layers, "layers " + std::to_string(c.layers));
    FUZZ_CHECK(c.vocab_size >= 1 && c.vocab_size <= decoder_config::max_vocab_size, "vocab " + std::to_string(c.vocab_size));
    FUZZ_CHECK(c.heads >= 1 && c.embed_dim % c.heads == 0 && c.head_dim() % 2 == 0, "heads " + std::to_string(c.heads));
    FUZZ_CHECK(!c.segment_length.empty() && c.segment_length.size() == c.dilated_ratio.size() &&
                   c.segment_length.size() <= decoder_config::max_branches,
               "branch count");
    for (std::size_t i = 0; i < c.segment_length.size(); ++i)
        FUZZ_CHECK(c.segment_length[i] >= 1 && c.segment_length[i] <= decoder_config::max_segment &&
                       c.dilated_ratio[i] >= 1 && c.dilated_ratio[i] <= decoder_config::max_segment,
                   "branch " + std::to_string(i));
    FUZZ_CHECK(std::isfinite(c.layernorm_eps) && c.layernorm_eps > 0, "layernorm_eps");
    FUZZ_CHECK(std::isfinite(c.xpos_scale_base) && c.xpos_scale_base > 0, "xpos_scale_base");

    // The integer fields are what the JSON says (plain parser: the accepted text is valid JSON).
    const nlohmann::json j = nlohmann::json::parse(text.begin(), text.end());
    const auto field_is = [&](const char* name, longnet::index_t value) {
        if (j.contains(name)) FUZZ_CHECK(j.at(name).get<std::int64_t>() == value, std::string("field ") + name);
    };
    field_is("decoder_embed_dim", c.embed_dim);
    field_is("decoder_attention_heads", c.heads);
    field_is("decoder_ffn_embed_dim", c.ffn_dim);
    field_is("decoder_layers", c.layers);
    field_is("vocab_size", c.vocab_size);

    decoder_config back;
    try {
        back = decoder_config::from_json(c.to_json());
    } catch (const std::invalid_argument& e) {
        FUZZ_CHECK(false, std::string("to_json of an accepted config is refused: ") + e.what());
    }
    FUZZ_CHECK(same(c, back), "to_json -> from_json changed the config");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    decoder_config c;
    try {
        c = decoder_config::from_json_text(text, "<fuzz>");
    } catch (const std::invalid_argument& e) {
        FUZZ_CHECK(std::string(e.what()).find("<fuzz>") != std::string::npos,
                   std::string("message does not name the file: ") + e.what());
        return 0;
    }
    check_accepted(text, c);
    return 0;
}
