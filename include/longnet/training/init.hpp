// SPDX-License-Identifier: Apache-2.0
#pragma once
// Fresh parameters as torchscale initialises a LongNet decoder (Decoder + DecoderLayer with subln=True,
// MultiheadAttention.reset_parameters, FeedForwardNetwork.reset_parameters, build_output_projection),
// with the token embedding as fairseq's Embedding (the one torchscale's LongNet examples pass in):
//   q/k/v_proj.weight  xavier_uniform, gain 1/√2:  U(±√(6/(D+D))/√2)
//   out_proj.weight    xavier_uniform, gain 1;      out_proj.bias 0
//   q/k/v_proj.bias, fc1, fc2 (weight and bias)   PyTorch nn.Linear default: U(±1/√fan_in)
//   LayerNorms         weight 1, bias 0
//   embed_tokens       N(0, D^-1/2)                 output_projection  N(0, D^-1/2)
//   then Sub-LN's scaling: every fc1, fc2, out_proj and v_proj tensor (weights and biases) × √(log(2L)).
// Reproducible from the seed alone (the library's own splitmix64 streams, one per tensor row), not
// bitwise equal to torch's generator.

#include <cmath>
#include <cstdint>

#include "longnet/nn/random_init.hpp"

namespace longnet::training {

template <class T>
void torchscale_init(nn::decoder<T, T>& model, std::uint64_t seed) {
    namespace d = nn::detail;
    std::uint64_t id = 1000;
    const double dim = static_cast<double>(model.embed_dim());
    auto uniform = [&](auto& m, double bound) {
        d::fill_rows(m, seed, ++id, [bound](std::uint64_t& s) { return bound * (2 * d::uniform01(s) - 1); });
    };
    auto normal = [&](auto& m, double sd) { d::fill_rows(m, seed, ++id, [sd](std::uint64_t& s) { return sd * d::normal(s); }); };
    auto torch_default = [&](nn::linear<T, T>& l) {
        const double bound = 1.0 / std::sqrt(static_cast<double>(l.in_features()));
        uniform(l.weight, bound);
        if (l.has_bias()) uniform(l.bias, bound);
    };
    auto xavier = [&](nn::linear<T, T>& l, double gain) {
        uniform(l.weight, gain * std::sqrt(6.0 / static_cast<double>(l.in_features() + l.out_features())));
    };
    auto unit_norm = [](nn::layer_norm<T>& n) {
        n.weight.setOnes();
        n.bias.setZero();
    };
    normal(model.embed_tokens, 1.0 / std::sqrt(dim));
    const double subln = std::sqrt(std::log(2.0 * static_cast<double>(model.layers.size())));
    for (auto& layer : model.layers) {
        auto& a = layer.self_attn;
        torch_default(a.q_proj);
        torch_default(a.k_proj);
        torch_default(a.v_proj);
        torch_default(a.out_proj);
        xavier(a.q_proj, 1 / std::sqrt(2.0));
        xavier(a.k_proj, 1 / std::sqrt(2.0));
        xavier(a.v_proj, 1 / std::sqrt(2.0));
        xavier(a.out_proj, 1.0);
        a.out_proj.bias.setZero();
        unit_norm(a.inner_attn_ln);
        unit_norm(layer.self_attn_layer_norm);
        unit_norm(layer.final_layer_norm);
        torch_default(layer.ffn.fc1);
        torch_default(layer.ffn.fc2);
        unit_norm(layer.ffn.ffn_layernorm);
        for (auto* l : {&layer.ffn.fc1, &layer.ffn.fc2, &a.out_proj, &a.v_proj}) {
            l->weight *= static_cast<T>(subln);
            l->bias *= static_cast<T>(subln);
        }
    }
    unit_norm(model.final_norm);
    normal(model.output_projection.weight, 1.0 / std::sqrt(dim));
}

}  // namespace longnet::training
