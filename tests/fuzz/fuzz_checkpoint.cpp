// SPDX-License-Identifier: Apache-2.0
// Fuzz target: opening a downloaded checkpoint, config.json + model.safetensors together
// (decoder_config::from_json_text, safetensors_file::from_bytes, nn::load_decoder<float> and
// load_decoder<float, Eigen::bfloat16>), as longnet_lm does.
//
// Input: a 4-byte little-endian length n, n bytes of config.json, then the .safetensors image.
// Every input must either throw (std::invalid_argument for the config, safetensors_error for the weights
// and their shapes) or give a model whose every weight matrix and vector holds the file's values; the
// model is never allocated before its weight shapes are checked against the file (a config asking for
// more than the file holds fails by name, well below libFuzzer's 2 GiB allocation limit).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <longnet/io/safetensors.hpp>
#include <longnet/nn/decoder_config.hpp>
#include <longnet/nn/load_safetensors.hpp>

#include "fuzz_check.hpp"

namespace {

namespace nn = longnet::nn;
using longnet::io::safetensors_file;

bool same(float want, float got) { return (std::isnan(want) && std::isnan(got)) || want == got; }

template <class M>
void check_tensor(const safetensors_file& f, const std::string& name, const M& m) {
    const std::vector<float> want = f.read<float>(name);
    FUZZ_CHECK(want.size() == static_cast<std::size_t>(m.size()), name + ": element count");
    // Eigen matrices here are row-major [out, in] like the file (load_decoder copies flat).
    for (std::size_t i = 0; i < want.size(); ++i) {
        const float got = static_cast<float>(m.data()[i]);
        const float expect = std::is_same_v<typename M::Scalar, Eigen::bfloat16> ? static_cast<float>(Eigen::bfloat16(want[i])) : want[i];
        FUZZ_CHECK(same(expect, got), name + ": element " + std::to_string(i));
    }
}

template <class W>
void check_model(const safetensors_file& f, const nn::decoder<float, W>& model) {
    check_tensor(f, "embed_tokens.weight", model.embed_tokens);
    for (std::size_t l = 0; l < model.layers.size(); ++l) {
        const std::string p = "layers." + std::to_string(l) + ".";
        const auto& layer = model.layers[l];
        check_tensor(f, p + "self_attn.q_proj.weight", layer.self_attn.q_proj.weight);
        check_tensor(f, p + "self_attn.out_proj.bias", layer.self_attn.out_proj.bias);
        check_tensor(f, p + "ffn.fc2.weight", layer.ffn.fc2.weight);
        check_tensor(f, p + "final_layer_norm.weight", layer.final_layer_norm.weight);
    }
    check_tensor(f, "output_projection.weight", model.output_projection.weight);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    const std::size_t n = data[0] | (data[1] << 8) | (std::size_t(data[2]) << 16) | (std::size_t(data[3]) << 24);
    if (n > size - 4) return 0;
    nn::decoder_config cfg;
    try {
        cfg = nn::decoder_config::from_json_text(std::string_view(reinterpret_cast<const char*>(data + 4), n), "config.json");
    } catch (const std::invalid_argument&) {
        return 0;
    }
    safetensors_file f;
    try {
        f = safetensors_file::from_bytes(data + 4 + n, size - 4 - n, "model.safetensors");
    } catch (const longnet::io::safetensors_error&) {
        return 0;
    }
    try {
        check_model(f, nn::load_decoder<float>(f, cfg));
    } catch (const longnet::io::safetensors_error& e) {
        FUZZ_CHECK(e.file() == "model.safetensors", std::string("message does not name the file: ") + e.what());
        return 0;  // a refusal: the bf16 load must refuse it as well
    }
    try {
        check_model(f, nn::load_decoder<float, Eigen::bfloat16>(f, cfg));
    } catch (const longnet::io::safetensors_error& e) {
        FUZZ_CHECK(false, std::string("the float load accepted what the bf16 load refuses: ") + e.what());
    }
    return 0;
}
