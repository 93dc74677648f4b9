// SPDX-License-Identifier: Apache-2.0
#pragma once
// Seeded random parameters for a decoder (benchmarks, smoke runs), reproducible across platforms and
// thread counts (own splitmix64 + Box–Muller; no std:: distributions, whose output is library-specific).
// The scheme of the test fixture: Linear weights N(0, 1/fan_in), Linear biases N(0, 0.1²),
// LayerNorm gains U(0.5, 1.5), LayerNorm biases N(0, 0.2²), token embedding N(0, 1).

#include <cmath>
#include <cstdint>

#include "longnet/nn/decoder.hpp"

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
}  // namespace detail

template <class T, class W>
void randomize(decoder<T, W>& model, std::uint64_t seed) {
    std::uint64_t id = 0;
    auto lin = [&](linear<T, W>& l) {
        const double sd = 1.0 / std::sqrt(static_cast<double>(l.in_features()));
        detail::fill_rows(l.weight, seed, ++id, [sd](std::uint64_t& s) { return sd * detail::normal(s); });
        if (l.has_bias()) detail::fill_rows(l.bias, seed, ++id, [](std::uint64_t& s) { return 0.1 * detail::normal(s); });
    };
    auto ln = [&](layer_norm<T>& n) {
        detail::fill_rows(n.weight, seed, ++id, [](std::uint64_t& s) { return 0.5 + detail::uniform01(s); });
        detail::fill_rows(n.bias, seed, ++id, [](std::uint64_t& s) { return 0.2 * detail::normal(s); });
    };
    detail::fill_rows(model.embed_tokens, seed, ++id, [](std::uint64_t& s) { return detail::normal(s); });
    for (auto& layer : model.layers) {
        ln(layer.self_attn_layer_norm);
        lin(layer.self_attn.q_proj);
        lin(layer.self_attn.k_proj);
        lin(layer.self_attn.v_proj);
        lin(layer.self_attn.out_proj);
        ln(layer.self_attn.inner_attn_ln);
        ln(layer.final_layer_norm);
        lin(layer.ffn.fc1);
        ln(layer.ffn.ffn_layernorm);
        lin(layer.ffn.fc2);
    }
    ln(model.final_norm);
    lin(model.output_projection);
}

template <class T, class W = T>
decoder<T, W> random_decoder(const decoder_config& cfg, std::uint64_t seed, const model_options& opt = {}) {
    decoder<T, W> model(cfg, opt);
    randomize(model, seed);
    return model;
}

}  // namespace longnet::nn
