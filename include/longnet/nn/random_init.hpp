// SPDX-License-Identifier: Apache-2.0
#pragma once
// Seeded random parameters for a decoder or an encoder (benchmarks, smoke runs), reproducible across
// platforms and thread counts (own splitmix64 + Box–Muller; no std:: distributions, whose output is
// library-specific). The scheme of the test fixtures: Linear weights N(0, 1/fan_in), Linear biases
// N(0, 0.1²), LayerNorm gains U(0.5, 1.5), LayerNorm biases N(0, 0.2²), token embedding N(0, 1).

#include <cmath>
#include <cstdint>

#include "longnet/nn/decoder.hpp"
#include "longnet/nn/encoder.hpp"

namespace longnet::nn {

namespace detail {
inline std::uint64_t splitmix64(std::uint64_t& state) noexcept {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
inline double uniform01(std::uint64_t& state) noexcept {  // (0, 1)
    return (static_cast<double>(splitmix64(state) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
inline double normal(std::uint64_t& state) noexcept {
    const double u = uniform01(state), v = uniform01(state);
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586476925 * v);
}

// Fill a matrix: row r draws from its own stream (seed, tensor id, r), so rows can fill in parallel.
template <class M, class Draw>
void fill_rows(M& m, std::uint64_t seed, std::uint64_t tensor_id, Draw draw) {
    using S = typename M::Scalar;
    const index_t rows = m.rows(), cols = m.cols();
    LONGNET_NN_PARALLEL_FOR
    for (index_t r = 0; r < rows; ++r) {
        std::uint64_t state = seed ^ (tensor_id * 0xd1b54a32d192ed03ull) ^ (static_cast<std::uint64_t>(r) * 0x8cb92ba72f3d8dd7ull);
        splitmix64(state);
        for (index_t c = 0; c < cols; ++c) m(r, c) = S(static_cast<float>(draw(state)));
    }
}

// Draws the parameters in a fixed order, one stream per tensor (tensor ids count up from 1).
template <class T, class W>
class parameter_filler {
public:
    explicit parameter_filler(std::uint64_t seed) : seed_(seed) {}
    void linear_layer(linear<T, W>& l) {
        const double sd = 1.0 / std::sqrt(static_cast<double>(l.in_features()));
        fill_rows(l.weight, seed_, ++id_, [sd](std::uint64_t& s) { return sd * normal(s); });
        if (l.has_bias()) fill_rows(l.bias, seed_, ++id_, [](std::uint64_t& s) { return 0.1 * normal(s); });
    }
    void norm(layer_norm<T>& n) {
        fill_rows(n.weight, seed_, ++id_, [](std::uint64_t& s) { return 0.5 + uniform01(s); });
        fill_rows(n.bias, seed_, ++id_, [](std::uint64_t& s) { return 0.2 * normal(s); });
    }
    template <class M>
    void embedding(M& m) {
        fill_rows(m, seed_, ++id_, [](std::uint64_t& s) { return normal(s); });
    }
    // Every parameter of a layer (the unused Sub-LNs of a post-LN layer too: they are never read).
    void layer(decoder_layer<T, W>& layer) {
        norm(layer.self_attn_layer_norm);
        linear_layer(layer.self_attn.q_proj);
        linear_layer(layer.self_attn.k_proj);
        linear_layer(layer.self_attn.v_proj);
        linear_layer(layer.self_attn.out_proj);
        norm(layer.self_attn.inner_attn_ln);
        norm(layer.final_layer_norm);
        linear_layer(layer.ffn.fc1);
        norm(layer.ffn.ffn_layernorm);
        linear_layer(layer.ffn.fc2);
    }

private:
    std::uint64_t seed_, id_ = 0;
};
}  // namespace detail

template <class T, class W>
void randomize(decoder<T, W>& model, std::uint64_t seed) {
    detail::parameter_filler<T, W> fill(seed);
    fill.embedding(model.embed_tokens);
    for (auto& layer : model.layers) fill.layer(layer);
    fill.norm(model.final_norm);
    fill.linear_layer(model.output_projection);
}

// An encoder's parameters: layernorm_embedding, the layers, layer_norm (each drawn, used or not).
template <class T, class W>
void randomize(encoder<T, W>& model, std::uint64_t seed) {
    detail::parameter_filler<T, W> fill(seed);
    fill.norm(model.layernorm_embedding);
    for (auto& layer : model.layers) fill.layer(layer);
    fill.norm(model.final_norm);
}

template <class T, class W = T>
decoder<T, W> random_decoder(const decoder_config& cfg, std::uint64_t seed, const model_options& opt = {}) {
    decoder<T, W> model(cfg, opt);
    randomize(model, seed);
    return model;
}

template <class T, class W = T>
encoder<T, W> random_encoder(const encoder_config& cfg, std::uint64_t seed, const encoder_options& opt = {}) {
    encoder<T, W> model(cfg, opt);
    randomize(model, seed);
    return model;
}

}  // namespace longnet::nn
