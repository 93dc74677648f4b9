// SPDX-License-Identifier: Apache-2.0
#pragma once
// Every trainable tensor of a decoder (and every gradient buffer) as a flat list of named views, in one
// fixed order, with torchscale's state_dict names: one loop serves the optimizer, gradient clipping,
// checkpoints and tests (llm.c's "all parameters in one list").
//
//   embed_tokens.weight, layers.<l>.self_attn.{q,k,v,out}_proj.{weight,bias},
//   layers.<l>.self_attn.inner_attn_ln.{weight,bias}, layers.<l>.self_attn_layer_norm.{weight,bias},
//   layers.<l>.ffn.{fc1,fc2}.{weight,bias}, layers.<l>.ffn.ffn_layernorm.{weight,bias},
//   layers.<l>.final_layer_norm.{weight,bias}, layer_norm.{weight,bias}, output_projection.weight
// The XPos `scale` buffers are not parameters (deterministic, never trained).

#include <cstdint>
#include <string>
#include <vector>

#include "longnet/nn/decoder.hpp"

namespace longnet::training {

template <class T>
struct named_tensor {
    std::string name;
    T* data = nullptr;
    std::vector<std::int64_t> shape;  // [rows, cols] for matrices, [n] for vectors
    bool is_matrix() const noexcept { return shape.size() == 2; }  // AdamW decays these only
    std::int64_t size() const noexcept {
        std::int64_t n = 1;
        for (auto e : shape) n *= e;
        return n;
    }
};

namespace detail {
template <class T, class M>
void add_matrix(std::vector<named_tensor<T>>& out, std::string name, M& m) {
    out.push_back({std::move(name), m.data(), {static_cast<std::int64_t>(m.rows()), static_cast<std::int64_t>(m.cols())}});
}
template <class T, class V>
void add_vector(std::vector<named_tensor<T>>& out, std::string name, V& v) {
    out.push_back({std::move(name), v.data(), {static_cast<std::int64_t>(v.size())}});
}
template <class T, class Linear>
void add_linear(std::vector<named_tensor<T>>& out, const std::string& prefix, Linear& l) {
    add_matrix<T>(out, prefix + ".weight", l.weight);
    if (l.bias.size() != 0) add_vector<T>(out, prefix + ".bias", l.bias);
}
template <class T, class Norm>
void add_norm(std::vector<named_tensor<T>>& out, const std::string& prefix, Norm& n) {
    add_vector<T>(out, prefix + ".weight", n.weight);
    add_vector<T>(out, prefix + ".bias", n.bias);
}
// Works on a decoder_layer and a decoder_layer_grad alike (same member names).
template <class T, class Layer>
void add_layer(std::vector<named_tensor<T>>& out, const std::string& p, Layer& layer) {
    add_linear<T>(out, p + "self_attn.q_proj", layer.self_attn.q_proj);
    add_linear<T>(out, p + "self_attn.k_proj", layer.self_attn.k_proj);
    add_linear<T>(out, p + "self_attn.v_proj", layer.self_attn.v_proj);
    add_linear<T>(out, p + "self_attn.out_proj", layer.self_attn.out_proj);
    add_norm<T>(out, p + "self_attn.inner_attn_ln", layer.self_attn.inner_attn_ln);
    add_norm<T>(out, p + "self_attn_layer_norm", layer.self_attn_layer_norm);
    add_linear<T>(out, p + "ffn.fc1", layer.ffn.fc1);
    add_linear<T>(out, p + "ffn.fc2", layer.ffn.fc2);
    add_norm<T>(out, p + "ffn.ffn_layernorm", layer.ffn.ffn_layernorm);
    add_norm<T>(out, p + "final_layer_norm", layer.final_layer_norm);
}
}  // namespace detail

// The parameters of a decoder whose weights are stored as T (training needs W = T).
template <class T>
std::vector<named_tensor<T>> named_parameters(nn::decoder<T, T>& model) {
    std::vector<named_tensor<T>> out;
    detail::add_matrix<T>(out, "embed_tokens.weight", model.embed_tokens);
    for (std::size_t l = 0; l < model.layers.size(); ++l)
        detail::add_layer<T>(out, "layers." + std::to_string(l) + ".", model.layers[l]);
    detail::add_norm<T>(out, "layer_norm", model.final_norm);
    detail::add_linear<T>(out, "output_projection", model.output_projection);
    return out;
}

// The gradient buffers, in the same order and with the same names as named_parameters.
template <class T>
std::vector<named_tensor<T>> named_gradients(nn::decoder_grad<T>& grad) {
    std::vector<named_tensor<T>> out;
    detail::add_matrix<T>(out, "embed_tokens.weight", grad.embed_tokens);
    for (std::size_t l = 0; l < grad.layers.size(); ++l)
        detail::add_layer<T>(out, "layers." + std::to_string(l) + ".", grad.layers[l]);
    detail::add_norm<T>(out, "layer_norm", grad.layer_norm);
    detail::add_linear<T>(out, "output_projection", grad.output_projection);
    return out;
}

}  // namespace longnet::training
