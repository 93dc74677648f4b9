// SPDX-License-Identifier: Apache-2.0
#pragma once
// The LongNet encoder (torchscale LongNetEncoder with token_embeddings, features_only): the slide-encoder
// use, a sequence of D-wide embeddings in, as many encoded D-wide rows out.
//   x_0 = embed_scale · embeddings                      (embed_scale = sqrt(D) unless no_scale_embedding)
//   x_0 = layernorm_embedding(x_0)                       (only when layernorm_embedding)
//   x_l = layers[l](x_{l−1})                             non-causal dilated attention, no positions
//   out = layer_norm(x_L)                                (pre-LN with normalize_output; else out = x_L)
// Each layer is the decoder's layer (decoder_layer.hpp: pre-LN with Sub-LN attention and FFN by default;
// post-LN without Sub-LN when the config says subln = false, encoder_normalize_before = false; residual
// scale 1) with torchscale's EncoderLayer parameter names, built with causal = false. Defaults follow
// torchscale: head offsets h / ceil(H / r) and tail_mode::zero_pad (torchscale pads a non-causal
// sequence with zero keys to a multiple of each segment length; exact drops those keys).
//
// Padded batches: embeddings [B·N, D] (row b·N + n is token n of batch row b) with a key_padding_mask
// [B, N] (true = pad, torchscale's encoder_padding_mask; any pattern: right, left, holes) or per-row
// lengths (right padding). Semantics: the real tokens of each batch row, in order, are encoded as one
// sequence alone (segments start at its first real token, its own tails; no token sees a pad), so a
// real row's output does not depend on the padding or on the other batch rows. Pad rows of the output
// (and of states) are 0. torchscale differs here: its flash path drops key_padding_mask, so pads (zeroed
// embeddings, then whatever the layers make of them) act as keys; its real rows equal ours only without
// padding (see tests/data/README.md, encoder fixtures). Every layer is row-wise except the attention,
// so each batch row runs through the stack on its gathered real rows (longnet/padding.hpp's plan).
// Bad input (a width != D, rows not B·N, a mask or lengths that do not fit) throws std::invalid_argument
// naming the value, before anything is computed.
// Training (one sequence): forward_train saves the embedding LayerNorm's and final LayerNorm's inputs and
// statistics and each layer's activations (decoder_layer::forward_train); backward takes ∂loss/∂out and
// returns ∂loss/∂embeddings, adding the parameter gradients (the decoder layer's backward, reused).
// Padded batches (mask): forward_train / backward run each batch row's real tokens so; pad rows of the
// output and of ∂loss/∂embeddings are 0 and the pad rows of d_out are not read.

#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/nn/attention_backend.hpp"
#include "longnet/nn/common.hpp"
#include "longnet/nn/decoder_layer.hpp"
#include "longnet/nn/encoder_config.hpp"
#include "longnet/nn/layer_norm.hpp"
#include "longnet/nn/multihead_attention.hpp"
#include "longnet/options.hpp"
#include "longnet/padding.hpp"

namespace longnet::nn {

// How to run an encoder (what the checkpoint does not say).
struct encoder_options {
    attention_kind attention = attention_kind::dilated;  // dense: the drop-in baseline, same weights
    offset_policy offsets = offset_policy::torchscale;   // torchscale-trained checkpoints need torchscale
    tail_mode tail = tail_mode::zero_pad;                // torchscale's non-causal tails; exact: no padding keys
    bool gelu_in_float = false;                          // torchscale parity for a double build
    index_t ffn_row_block = 4096;                        // rows per FFN block
};

inline attention_config make_attention_config(const encoder_config& cfg, const encoder_options& opt) {
    attention_config a;
    a.embed_dim = cfg.embed_dim;
    a.heads = cfg.heads;
    a.kind = opt.attention;
    a.dilated = dilated_options::from_lists(cfg.segment_length, cfg.dilated_ratio, /*causal=*/false);
    a.dilated.offsets = opt.offsets;
    a.dilated.tail = opt.tail;
    a.rotary.kind = position_encoding::none;
    a.layernorm_eps = cfg.layernorm_eps;
    a.subln = cfg.subln;
    return a;
}

// Gradient buffers of an encoder (torchscale names: layernorm_embedding, layers.<l>., layer_norm); the
// unused LayerNorms' buffers (without layernorm_embedding, a final layer_norm or Sub-LN) stay zero.
template <class T>
struct encoder_grad {
    layer_norm_grad<T> layernorm_embedding;
    std::vector<decoder_layer_grad<T>> layers;
    layer_norm_grad<T> layer_norm;
    void set_zero() {
        layernorm_embedding.set_zero();
        for (auto& l : layers) l.set_zero();
        layer_norm.set_zero();
    }
};

// What encoder::forward_train saves for backward (one sequence; reusable across calls).
template <class T>
struct encoder_activations {
    matrix<T> scaled;                                  // embed_scale · embeddings (embedding LayerNorm input)
    vector<T> embed_mean, embed_rstd;                  // its statistics (layernorm_embedding only)
    std::vector<decoder_layer_activations<T>> layers;  // one per layer
    matrix<T> final_input;                             // x_L (final LayerNorm input)
    vector<T> final_mean, final_rstd;
};

// What the padded-batch forward_train saves: where the real tokens are and one sequence's activations
// per batch row.
template <class T>
struct encoder_batch_activations {
    longnet::detail::padding_plan plan;
    std::vector<encoder_activations<T>> rows;
};

template <class T, class W = T>
class encoder {
public:
    encoder_config config;
    encoder_options options;
    layer_norm<T> layernorm_embedding;  // used when config.layernorm_embedding
    std::vector<decoder_layer<T, W>> layers;
    layer_norm<T> final_norm;           // torchscale name: layer_norm; used when config.has_layer_norm()

    encoder() = default;
    // Parameters zero, LayerNorms identity: fill them from a checkpoint (load_encoder) or randomly.
    encoder(const encoder_config& cfg, const encoder_options& opt = {}) : config(cfg), options(opt) {
        cfg.validate();
        const attention_config attn = make_attention_config(cfg, opt);
        attn.validate();
        layers.reserve(static_cast<std::size_t>(cfg.layers));
        for (index_t l = 0; l < cfg.layers; ++l) {
            layers.emplace_back(attn, cfg.ffn_dim);
            layers.back().ffn.gelu_in_float = opt.gelu_in_float;
            layers.back().ffn.row_block = opt.ffn_row_block;
            layers.back().ffn.subln = cfg.subln;
            layers.back().normalize_before = cfg.normalize_before;
        }
        layernorm_embedding = layer_norm<T>(cfg.embed_dim, cfg.layernorm_eps);
        final_norm = layer_norm<T>(cfg.embed_dim, cfg.layernorm_eps);
    }

    index_t embed_dim() const noexcept { return config.embed_dim; }

    // One sequence: embeddings [T, D] -> encoder_out [T, D]. states (optional) receives x_0 .. x_L
    // (torchscale's encoder_states with return_all_hiddens).
    matrix<T> forward(const_matrix_ref<T> embeddings, std::vector<matrix<T>>* states = nullptr,
                      forward_profile* profile = nullptr) const {
        check_width(embeddings);
        matrix<T> x = embed(embeddings, profile);
        if (states) {
            states->clear();
            states->push_back(x);
        }
        matrix<T> h, y;
        for (const auto& layer : layers) {
            layer.forward(x, h, y, profile);
            if (states) states->push_back(x);
        }
        if (config.has_layer_norm()) {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::norms));
            final_norm.forward(x, x);
        }
        return x;
    }

    // Padded batch: embeddings [B·N, D], mask [B, N] true = pad. Returns [B·N, D], pad rows 0; states
    // (optional) x_0 .. x_L as [B·N, D] each, pad rows 0. See the header comment.
    matrix<T> forward(const_matrix_ref<T> embeddings, index_t batch, const key_padding_mask& mask,
                      std::vector<matrix<T>>* states = nullptr) const {
        const index_t seq = check_batch(embeddings, batch);
        return forward_plan(embeddings, longnet::detail::make_padding_plan(mask, batch, seq, "nn::encoder::forward"), states);
    }
    // Padded batch with per-row lengths (right padding): row b's real tokens are n < lengths[b].
    matrix<T> forward(const_matrix_ref<T> embeddings, index_t batch, const padding_lengths& lengths,
                      std::vector<matrix<T>>* states = nullptr) const {
        const index_t seq = check_batch(embeddings, batch);
        return forward_plan(embeddings, longnet::detail::make_padding_plan(lengths, batch, seq, "nn::encoder::forward"),
                            states);
    }

    encoder_grad<T> make_grad() const {
        encoder_grad<T> g;
        g.layernorm_embedding = layernorm_embedding.make_grad();
        for (const auto& l : layers) g.layers.push_back(l.make_grad());
        g.layer_norm = final_norm.make_grad();
        return g;
    }

    // Training forward of one sequence: forward(embeddings) (the same result), saving what backward needs.
    matrix<T> forward_train(const_matrix_ref<T> embeddings, encoder_activations<T>& act,
                            attention_backend<T>& attention = local_attention<T>()) const {
        check_width(embeddings);
        act.scaled = embeddings * static_cast<T>(config.embed_scale());
        matrix<T> x = act.scaled;
        if (config.layernorm_embedding) layernorm_embedding.forward_train(act.scaled, x, act.embed_mean, act.embed_rstd);
        act.layers.resize(layers.size());
        for (std::size_t l = 0; l < layers.size(); ++l) layers[l].forward_train(x, act.layers[l], attention);
        if (!config.has_layer_norm()) return x;
        act.final_input = x;
        final_norm.forward_train(act.final_input, x, act.final_mean, act.final_rstd);
        return x;
    }

    // Backward of forward_train: d_out = ∂loss/∂out [T, D]; returns ∂loss/∂embeddings and adds the
    // parameter gradients to grad (make_grad()). mode: exact or stop_grad_weights (torchscale's autograd).
    matrix<T> backward(const_matrix_ref<T> d_out, const encoder_activations<T>& act, encoder_grad<T>& grad,
                       grad_mode mode = grad_mode::exact, attention_backend<T>& attention = local_attention<T>()) const {
        const index_t rows = act.scaled.rows(), dim = embed_dim();
        if (d_out.rows() != rows || d_out.cols() != dim || act.layers.size() != layers.size())
            throw std::invalid_argument("longnet::nn::encoder::backward: d_out [" + std::to_string(d_out.rows()) + ", " +
                                        std::to_string(d_out.cols()) + "] does not fit the saved activations [" +
                                        std::to_string(rows) + ", " + std::to_string(dim) + "]");
        if (grad.layers.size() != layers.size())
            throw std::invalid_argument("longnet::nn::encoder::backward: the gradient buffers do not fit the model "
                                        "(make them with make_grad())");
        matrix<T> dx;
        if (config.has_layer_norm()) {
            dx = matrix<T>::Zero(rows, dim);
            final_norm.backward(act.final_input, d_out, act.final_mean, act.final_rstd, dx, grad.layer_norm);
        } else {
            dx = d_out;
        }
        for (std::size_t l = layers.size(); l-- > 0;) layers[l].backward(dx, act.layers[l], grad.layers[l], mode, attention);
        if (config.layernorm_embedding) {
            matrix<T> d_scaled = matrix<T>::Zero(rows, dim);
            layernorm_embedding.backward(act.scaled, dx, act.embed_mean, act.embed_rstd, d_scaled, grad.layernorm_embedding);
            dx.swap(d_scaled);
        }
        dx *= static_cast<T>(config.embed_scale());
        return dx;
    }

    // Padded-batch training (as forward(embeddings, batch, mask)): out [B·N, D], pad rows 0.
    matrix<T> forward_train(const_matrix_ref<T> embeddings, index_t batch, const key_padding_mask& mask,
                            encoder_batch_activations<T>& act) const {
        const index_t seq = check_batch(embeddings, batch);
        act.plan = longnet::detail::make_padding_plan(mask, batch, seq, "nn::encoder::forward_train");
        act.rows.resize(static_cast<std::size_t>(batch));
        matrix<T> out = matrix<T>::Zero(embeddings.rows(), embed_dim());
        for (index_t b = 0; b < batch; ++b) {
            const index_t n = act.plan.count(b);
            if (n == 0) continue;
            const matrix<T> y = forward_train(gather(embeddings, act.plan, b), act.rows[static_cast<std::size_t>(b)]);
            scatter(y, act.plan, b, out);
        }
        return out;
    }
    // Its backward: d_out [B·N, D] (pad rows not read); returns ∂loss/∂embeddings [B·N, D], pad rows 0.
    matrix<T> backward(const_matrix_ref<T> d_out, const encoder_batch_activations<T>& act, encoder_grad<T>& grad,
                       grad_mode mode = grad_mode::exact) const {
        const auto& p = act.plan;
        if (d_out.rows() != p.batch * p.seq || d_out.cols() != embed_dim() ||
            act.rows.size() != static_cast<std::size_t>(p.batch))
            throw std::invalid_argument("longnet::nn::encoder::backward: d_out [" + std::to_string(d_out.rows()) + ", " +
                                        std::to_string(d_out.cols()) + "] does not fit the saved batch of " +
                                        std::to_string(p.batch) + " x " + std::to_string(p.seq) + " rows");
        matrix<T> dx = matrix<T>::Zero(d_out.rows(), embed_dim());
        for (index_t b = 0; b < p.batch; ++b) {
            if (p.count(b) == 0) continue;
            const matrix<T> d = backward(gather(d_out, p, b), act.rows[static_cast<std::size_t>(b)], grad, mode);
            scatter(d, p, b, dx);
        }
        return dx;
    }

    // Parameter count (weights, biases, gains).
    index_t parameter_count() const noexcept {
        const index_t d = config.embed_dim, f = config.ffn_dim;
        const index_t sub = config.subln ? 2 * d /*inner ln*/ + 2 * f /*ffn ln*/ : 0;
        const index_t per_layer = 4 * (d * d + d) + 4 * d /*two layer LNs*/ + (f * d + f) + (d * f + d) + sub;
        return config.layers * per_layer + (config.layernorm_embedding ? 2 * d : 0) + (config.has_layer_norm() ? 2 * d : 0);
    }

private:
    void check_width(const const_matrix_ref<T>& embeddings) const {
        if (embeddings.cols() != embed_dim())
            throw std::invalid_argument("longnet::nn::encoder: embeddings are " + std::to_string(embeddings.cols()) +
                                        " wide but encoder_embed_dim is " + std::to_string(embed_dim()));
    }
    // N = rows / B; throws unless B >= 1 divides the rows.
    index_t check_batch(const const_matrix_ref<T>& embeddings, index_t batch) const {
        check_width(embeddings);
        if (batch < 1 || embeddings.rows() % batch != 0)
            throw std::invalid_argument("longnet::nn::encoder: " + std::to_string(embeddings.rows()) +
                                        " embedding rows cannot be a batch of " + std::to_string(batch) +
                                        " equally long rows (need batch >= 1 dividing the row count)");
        return embeddings.rows() / batch;
    }

    matrix<T> embed(const const_matrix_ref<T>& embeddings, forward_profile* profile) const {
        matrix<T> x = embeddings * static_cast<T>(config.embed_scale());
        if (config.layernorm_embedding) {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::norms));
            layernorm_embedding.forward(x, x);
        }
        return x;
    }

    // Batch row b's real rows of a [B·N, D] matrix, in order; and back.
    static matrix<T> gather(const const_matrix_ref<T>& m, const longnet::detail::padding_plan& p, index_t b) {
        const index_t n = p.count(b);
        const index_t* pos = p.positions(b);
        matrix<T> x(n, m.cols());
        for (index_t i = 0; i < n; ++i) x.row(i) = m.row(b * p.seq + pos[i]);
        return x;
    }
    static void scatter(const matrix<T>& x, const longnet::detail::padding_plan& p, index_t b, matrix<T>& m) {
        const index_t* pos = p.positions(b);
        for (index_t i = 0; i < x.rows(); ++i) m.row(b * p.seq + pos[i]) = x.row(i);
    }

    matrix<T> forward_plan(const const_matrix_ref<T>& embeddings, const longnet::detail::padding_plan& plan,
                           std::vector<matrix<T>>* states) const {
        const index_t dim = embed_dim();
        matrix<T> out = matrix<T>::Zero(embeddings.rows(), dim);
        if (states) states->assign(layers.size() + 1, matrix<T>::Zero(embeddings.rows(), dim));
        std::vector<matrix<T>> row_states;
        for (index_t b = 0; b < plan.batch; ++b) {
            if (plan.count(b) == 0) continue;
            scatter(forward(gather(embeddings, plan, b), states ? &row_states : nullptr), plan, b, out);
            if (states)
                for (std::size_t s = 0; s < row_states.size(); ++s) scatter(row_states[s], plan, b, (*states)[s]);
        }
        return out;
    }
};

}  // namespace longnet::nn
