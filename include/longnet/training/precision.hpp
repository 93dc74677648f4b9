// SPDX-License-Identifier: Apache-2.0
#pragma once
// The precision of a training run's matrix products (mixed precision, as llm.c and PyTorch AMP do):
//   float32  every product in the compute type (the default)
//   bf16     every Linear's three GEMMs (q/k/v/out projections, FFN fc1/fc2, the output projection; forward,
//            input gradient, weight gradient) take bf16 operands with float accumulation and float results
//            (nn/linear.hpp, nn/gemm.hpp), and the training pass's attention runs on bf16 q/k/v
//            (nn/bf16_attention.hpp; not for packed documents or under MPI, whose attention stays float).
//            The master weights, gradients, AdamW and its moments, LayerNorm, GELU, the softmax statistics,
//            the loss and the residual stream stay float. The bf16 weight copies are made from the float
//            weights when the trainer starts, after every AdamW step and after a checkpoint is loaded.
//            Float models only (--dtype float).
// set_bf16_products(model, on) makes (on) or drops (off) the bf16 copies of every Linear of a decoder.

#include <stdexcept>
#include <string>

#include "longnet/nn/decoder.hpp"

namespace longnet::training {

enum class precision { float32, bf16 };

inline const char* to_string(precision p) noexcept { return p == precision::bf16 ? "bf16" : "float32"; }

// "float32" or "bf16"; throws std::invalid_argument naming anything else.
inline precision parse_precision(const std::string& s) {
    if (s == "float32") return precision::float32;
    if (s == "bf16") return precision::bf16;
    throw std::invalid_argument("precision must be float32 or bf16, got '" + s + "'");
}

// Calls f(linear) for every Linear of the decoder: each layer's q/k/v/out projections and fc1/fc2, then the
// output projection.
template <class Model, class F>
void for_each_linear(Model& model, F&& f) {
    for (auto& layer : model.layers) {
        f(layer.self_attn.q_proj);
        f(layer.self_attn.k_proj);
        f(layer.self_attn.v_proj);
        f(layer.self_attn.out_proj);
        f(layer.ffn.fc1);
        f(layer.ffn.fc2);
    }
    f(model.output_projection);
}

// on: every Linear's GEMMs run on a bf16 copy of its weight made now (again after each change of the
// weights); off: float products again.
inline void set_bf16_products(nn::decoder<float, float>& model, bool on) {
    for_each_linear(model, [on](auto& lin) {
        if (on)
            lin.set_bf16_weight();
        else
            lin.clear_bf16_weight();
    });
}

}  // namespace longnet::training
