// SPDX-License-Identifier: Apache-2.0
#pragma once
// Load a LongNet decoder (load_decoder) or encoder (load_encoder) from a torchscale state_dict saved as
// .safetensors.
//
// Expected names (l = 0 .. layers−1; Linear weights [out, in]):
//   embed_tokens.weight [V, D]   output_projection.weight [V, D]   layer_norm.{weight,bias} [D]
//   layers.l.self_attn_layer_norm.{weight,bias} [D]     layers.l.final_layer_norm.{weight,bias} [D]
//   layers.l.self_attn.{q,k,v,out}_proj.{weight [D, D], bias [D]}
//   layers.l.self_attn.inner_attn_ln.{weight,bias} [D]
//   layers.l.self_attn.xpos.scale [hd/2]               (XPos buffer; optional, computed when absent)
//   layers.l.ffn.fc1.{weight [F, D], bias [F]}  layers.l.ffn.fc2.{weight [D, F], bias [D]}
//   layers.l.ffn.ffn_layernorm.{weight,bias} [F]
// A missing tensor, an unexpected extra tensor or a wrong shape throws io::safetensors_error naming the
// tensor (expected vs got). Any stored dtype (F32, F64, BF16, F16) converts to the model's types: T for
// biases/gains, W for the big matrices (BF16 → W = Eigen::bfloat16 is bit-exact).
// Before allocating the model, every weight matrix's shape is checked against the file (in the order
// above): a config that describes a larger model than the checkpoint holds fails with the name of the
// first missing or mis-shaped tensor, never with a huge allocation.

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "longnet/io/safetensors.hpp"
#include "longnet/nn/decoder.hpp"
#include "longnet/nn/encoder.hpp"

namespace longnet::nn {

namespace detail {

class checkpoint_reader {
public:
    explicit checkpoint_reader(const io::safetensors_file& file) : file_(file) {}

    template <class S>
    void matrix_into(const std::string& name, matrix<S>& m) {
        const auto& t = file_.expect(name, {m.rows(), m.cols()});
        used_.insert(name);
        read(t, m.data(), m.size());
    }
    template <class S>
    void vector_into(const std::string& name, vector<S>& v) {
        const auto& t = file_.expect(name, {v.size()});
        used_.insert(name);
        read(t, v.data(), v.size());
    }
    bool optional_floats(const std::string& name, std::vector<float>& out) {
        if (!file_.contains(name)) return false;
        const auto& t = file_.expect(name, {static_cast<std::int64_t>(out.size())});
        used_.insert(name);
        read(t, out.data(), static_cast<std::int64_t>(out.size()));
        return true;
    }
    template <class T, class W>
    void linear_into(const std::string& prefix, linear<T, W>& l) {
        matrix_into(prefix + ".weight", l.weight);
        if (l.has_bias()) vector_into(prefix + ".bias", l.bias);
    }
    template <class T>
    void layer_norm_into(const std::string& prefix, layer_norm<T>& n) {
        vector_into(prefix + ".weight", n.weight);
        vector_into(prefix + ".bias", n.bias);
    }
    // Every tensor in the file must have been consumed.
    void check_no_extra() const {
        for (const auto& kv : file_.tensors())
            if (!used_.count(kv.first))
                throw io::safetensors_error(file_.path(), kv.first,
                                            "unexpected tensor (shape " + kv.second.shape_string() +
                                                ") that the configured model does not have");
    }

private:
    template <class S>
    void read(const io::safetensors_tensor& t, S* out, std::int64_t n) {
        if constexpr (std::is_same_v<S, Eigen::bfloat16>) {
            if (t.dtype == io::safetensors_dtype::bf16) {  // bit copy
                for (std::int64_t i = 0; i < n; ++i) {
                    std::uint16_t b;
                    std::memcpy(&b, t.data + 2 * i, 2);
                    out[i] = Eigen::numext::bit_cast<Eigen::bfloat16>(b);
                }
                return;
            }
        }
        file_.read_into(t.name, out, n);
    }
    const io::safetensors_file& file_;
    std::set<std::string> used_;
};

// Throws io::safetensors_error unless every weight matrix of the model `cfg` describes is in `file` with
// its shape. Runs before the model is allocated: the matrices hold all but O(layers·(D + F)) of its
// parameters, so a model that passes is at most about as large as the file.
inline void check_layer_weight_shapes(const io::safetensors_file& file, index_t layers, index_t D, index_t F) {
    for (index_t l = 0; l < layers; ++l) {
        const std::string p = "layers." + std::to_string(l) + ".";
        for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"})
            file.expect(p + "self_attn." + proj + ".weight", {D, D});
        file.expect(p + "ffn.fc1.weight", {F, D});
        file.expect(p + "ffn.fc2.weight", {D, F});
    }
}
inline void check_weight_shapes(const io::safetensors_file& file, const decoder_config& cfg) {
    const index_t D = cfg.embed_dim, F = cfg.ffn_dim, V = cfg.vocab_size;
    file.expect("embed_tokens.weight", {V, D});
    check_layer_weight_shapes(file, cfg.layers, D, F);
    file.expect("output_projection.weight", {V, D});
}

// One layer's parameters under prefix p ("layers.<l>."; decoder and encoder layers share the names).
template <class T, class W>
void layer_into(checkpoint_reader& r, const std::string& p, decoder_layer<T, W>& layer) {
    r.layer_norm_into(p + "self_attn_layer_norm", layer.self_attn_layer_norm);
    r.linear_into(p + "self_attn.q_proj", layer.self_attn.q_proj);
    r.linear_into(p + "self_attn.k_proj", layer.self_attn.k_proj);
    r.linear_into(p + "self_attn.v_proj", layer.self_attn.v_proj);
    r.linear_into(p + "self_attn.out_proj", layer.self_attn.out_proj);
    if (layer.self_attn.config.subln) r.layer_norm_into(p + "self_attn.inner_attn_ln", layer.self_attn.inner_attn_ln);
    r.layer_norm_into(p + "final_layer_norm", layer.final_layer_norm);
    r.linear_into(p + "ffn.fc1", layer.ffn.fc1);
    r.linear_into(p + "ffn.fc2", layer.ffn.fc2);
    if (layer.ffn.subln) r.layer_norm_into(p + "ffn.ffn_layernorm", layer.ffn.ffn_layernorm);
}

}  // namespace detail

template <class T, class W = T>
decoder<T, W> load_decoder(const io::safetensors_file& file, const decoder_config& cfg, const model_options& opt = {}) {
    cfg.validate();
    detail::check_weight_shapes(file, cfg);
    decoder<T, W> model(cfg, opt);
    detail::checkpoint_reader r(file);
    r.matrix_into("embed_tokens.weight", model.embed_tokens);
    for (std::size_t l = 0; l < model.layers.size(); ++l) {
        auto& layer = model.layers[l];
        const std::string p = "layers." + std::to_string(l) + ".";
        detail::layer_into(r, p, layer);
        std::vector<float> zeta(static_cast<std::size_t>(cfg.head_dim() / 2));
        if (r.optional_floats(p + "self_attn.xpos.scale", zeta) && opt.positions == position_encoding::xpos)
            layer.self_attn.rotary.zeta = zeta;
    }
    r.layer_norm_into("layer_norm", model.final_norm);
    r.linear_into("output_projection", model.output_projection);
    r.check_no_extra();
    return model;
}

template <class T, class W = T>
decoder<T, W> load_decoder(const std::string& weights_path, const decoder_config& cfg, const model_options& opt = {}) {
    const io::safetensors_file file(weights_path);
    return load_decoder<T, W>(file, cfg, opt);
}

// A LongNet encoder (torchscale LongNetEncoder state_dict): the layers as above (no XPos buffers), plus
// layernorm_embedding.{weight,bias} [D] when config.layernorm_embedding and layer_norm.{weight,bias} [D]
// when config.has_layer_norm(); without Sub-LN (subln false) no inner_attn_ln / ffn_layernorm. Errors as
// load_decoder.
template <class T, class W = T>
encoder<T, W> load_encoder(const io::safetensors_file& file, const encoder_config& cfg, const encoder_options& opt = {}) {
    cfg.validate();
    detail::check_layer_weight_shapes(file, cfg.layers, cfg.embed_dim, cfg.ffn_dim);
    encoder<T, W> model(cfg, opt);
    detail::checkpoint_reader r(file);
    if (cfg.layernorm_embedding) r.layer_norm_into("layernorm_embedding", model.layernorm_embedding);
    for (std::size_t l = 0; l < model.layers.size(); ++l)
        detail::layer_into(r, "layers." + std::to_string(l) + ".", model.layers[l]);
    if (cfg.has_layer_norm()) r.layer_norm_into("layer_norm", model.final_norm);
    r.check_no_extra();
    return model;
}

template <class T, class W = T>
encoder<T, W> load_encoder(const std::string& weights_path, const encoder_config& cfg, const encoder_options& opt = {}) {
    const io::safetensors_file file(weights_path);
    return load_encoder<T, W>(file, cfg, opt);
}

}  // namespace longnet::nn
