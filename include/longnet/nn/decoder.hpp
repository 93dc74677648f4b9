// SPDX-License-Identifier: Apache-2.0
#pragma once
// The LongNet decoder (torchscale LongNetDecoder): token embedding, decoder layers, final LayerNorm,
// output projection without bias.
//   x_0 = embed_scale · embed_tokens[tokens]          (no positional embedding: XPos lives in attention)
//   x_l = decoder_layer_l(x_{l−1})                      (inner_states = x_0 .. x_L)
//   hidden = layer_norm(x_L);   logits = hidden · output_projectionᵀ
// Batch 1: one token sequence per call. For long sequences ask for the logits of the rows you need
// (project(hidden.bottomRows(1)) for the next-token distribution) instead of the full [T, vocab].
//
// Training (llm.c's shape): forward_backward(inputs, targets, grad) runs the forward saving activations,
// the loss = mean over positions of the cross-entropy of logits[t] against targets[t] (a target of
// ignore_target, −1, is not scored nor counted), and the backward of every layer, accumulating (+=) into
// grad: one buffer per parameter, torchscale names (training/parameters.hpp lists them); zero it with
// grad.set_zero(). The logits exist only loss_row_block rows at a time (output projection, softmax
// cross-entropy and its backward fused per block). checkpoint_activations keeps only each layer's input
// and recomputes the layer in the backward: bitwise the same gradients, memory ≈ layers·T·D plus one
// layer's attention activations (the FFN's are recomputed per row block; docs/training.md, "Memory
// model"). With dilated attention the training pass uses XPos's anchored form, whole sequence
// or slice (no length limit; see multihead_attention.hpp); dense attention the centred form.
// forward_backward_sum is the same pass on rows that may be one slice of a longer sequence (sequence
// parallelism, training/distributed_trainer.hpp): an attention backend (attention_backend.hpp) computes
// the rows' attention over the whole sequence, and the caller supplies the sequence's scored count.
// Packed documents (longnet_train --pack-documents; docs/training.md): forward_backward(inputs, targets,
// documents, ...) trains on documents laid end to end in one sequence, documents = their boundaries
// (cu_seqlens over the inputs: 0, ..., inputs.size()). Attention never crosses a boundary and the XPos
// positions restart at 0 at each document (document_attention, attention_backend.hpp): each document's
// rows get exactly what that document alone would. Which targets are scored is the caller's choice
// (training::pack_documents ignores the one that would predict the next document's first token); the
// loss is the mean over all scored targets of the sequence. forward_hidden(tokens, documents) is the
// inference forward of the same packing (each document's rows through the stack alone).

#include <algorithm>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/backward.hpp"
#include "longnet/nn/attention_backend.hpp"
#include "longnet/nn/common.hpp"
#include "longnet/nn/cross_entropy.hpp"
#include "longnet/nn/embedding.hpp"
#include "longnet/nn/decoder_config.hpp"
#include "longnet/nn/decoder_layer.hpp"
#include "longnet/nn/layer_norm.hpp"
#include "longnet/nn/linear.hpp"
#include "longnet/options.hpp"
#include "longnet/varlen.hpp"

namespace longnet::nn {

// How to run a decoder (what the checkpoint does not say).
struct model_options {
    attention_kind attention = attention_kind::dilated;     // dense: the drop-in baseline, same weights
    offset_policy offsets = offset_policy::torchscale;      // torchscale-trained checkpoints need torchscale
    tail_mode tail = tail_mode::exact;                      // causal: zero_pad gives the same result
    position_encoding positions = position_encoding::xpos;  // rope: plain rotary instead of XPos
    angle_precision angles = angle_precision::torchscale;   // float64: angles in double
    bool gelu_in_float = false;                             // torchscale parity for a double build
    index_t ffn_row_block = 4096;                           // rows per FFN block
};

inline attention_config make_attention_config(const decoder_config& cfg, const model_options& opt) {
    attention_config a;
    a.embed_dim = cfg.embed_dim;
    a.heads = cfg.heads;
    a.kind = opt.attention;
    a.dilated = dilated_options::from_lists(cfg.segment_length, cfg.dilated_ratio, /*causal=*/true);
    a.dilated.offsets = opt.offsets;
    a.dilated.tail = opt.tail;
    a.rotary.kind = opt.positions;
    a.rotary.angles = opt.angles;
    a.rotary.scale_base = cfg.xpos_scale_base;
    a.layernorm_eps = cfg.layernorm_eps;
    return a;
}

// How a training pass runs.
struct train_options {
    grad_mode mode = grad_mode::exact;    // stop_grad_weights: torchscale's autograd (merge weights constant)
    bool checkpoint_activations = false;  // keep only layer inputs; recompute each layer in the backward
    index_t loss_row_block = 1024;        // logit rows materialised at once in the loss
    // Optional: told which gradient buffers are final (data-parallel all-reduce overlapped with the
    // backward: training/distributed_trainer.hpp, distributed_options::bucket_bytes). forward_backward_sum
    // calls it on the calling thread, between the pieces of the backward, in this order:
    //   head_gradients       after the final LayerNorm's backward: grad.output_projection and grad.layer_norm
    //   l = L−1, …, 0        after layer l's backward: grad.layers[l]
    //   embedding_gradients  after the embedding's backward (the last call): grad.embed_tokens
    // "Final": this pass adds nothing more to those buffers (nor reads them); the callee may read them
    // (and, once read, overwrite them with values the caller wants there after the pass). The pass does
    // not wait for it beyond the call. Empty (the default): no call, no cost.
    static constexpr index_t head_gradients = -1, embedding_gradients = -2;
    std::function<void(index_t)> gradients_ready;
};

// Gradient buffers of a whole decoder, one per parameter (torchscale names: see for_each_parameter in
// longnet/training/parameters.hpp).
template <class T>
struct decoder_grad {
    matrix<T> embed_tokens;
    std::vector<decoder_layer_grad<T>> layers;
    layer_norm_grad<T> layer_norm;
    linear_grad<T> output_projection;
    void set_zero() {
        embed_tokens.setZero();
        for (auto& l : layers) l.set_zero();
        layer_norm.set_zero();
        output_projection.set_zero();
    }
};

// Saved activations of a training pass (reusable across steps to keep allocations; with activation
// checkpointing the pass frees each layer's buffers as it goes, and only hidden remains).
template <class T>
struct decoder_activations {
    std::vector<decoder_layer_activations<T>> layers;  // one per layer, or one scratch with checkpointing
    std::vector<matrix<T>> layer_inputs;               // checkpointing: each layer's input
    matrix<T> final_input;                             // input of the final LayerNorm (checkpointing frees it)
    vector<T> final_mean, final_rstd;
    matrix<T> hidden;                                  // final LayerNorm output
};

template <class T, class W = T>
class decoder {
public:
    using progress_callback = std::function<void(index_t layers_done, index_t layers_total)>;

    decoder_config config;
    model_options options;
    matrix<W> embed_tokens;                     // [vocab, D]
    std::vector<decoder_layer<T, W>> layers;
    layer_norm<T> final_norm;                   // torchscale name: layer_norm
    linear<T, W> output_projection;             // [vocab, D], no bias

    decoder() = default;
    // Parameters zero, LayerNorms identity: fill them from a checkpoint (load_decoder) or randomly.
    decoder(const decoder_config& cfg, const model_options& opt = {}) : config(cfg), options(opt) {
        cfg.validate();
        const attention_config attn = make_attention_config(cfg, opt);
        attn.validate();
        embed_tokens = matrix<W>::Zero(cfg.vocab_size, cfg.embed_dim);
        layers.reserve(static_cast<std::size_t>(cfg.layers));
        for (index_t l = 0; l < cfg.layers; ++l) {
            layers.emplace_back(attn, cfg.ffn_dim);
            layers.back().ffn.gelu_in_float = opt.gelu_in_float;
            layers.back().ffn.row_block = opt.ffn_row_block;
        }
        final_norm = layer_norm<T>(cfg.embed_dim, cfg.layernorm_eps);
        output_projection = linear<T, W>(cfg.embed_dim, cfg.vocab_size, /*with_bias=*/false);
    }

    index_t embed_dim() const noexcept { return config.embed_dim; }
    index_t vocab_size() const noexcept { return config.vocab_size; }

    // x_0 [T, D]. Throws std::out_of_range for a token outside [0, vocab).
    matrix<T> embed(const std::vector<std::int64_t>& tokens) const {
        const index_t seq = static_cast<index_t>(tokens.size()), dim = embed_dim();
        for (index_t i = 0; i < seq; ++i)
            if (tokens[static_cast<std::size_t>(i)] < 0 || tokens[static_cast<std::size_t>(i)] >= vocab_size())
                throw std::out_of_range("longnet::nn::decoder: token " + std::to_string(tokens[static_cast<std::size_t>(i)]) +
                                        " at position " + std::to_string(i) + " is outside the vocabulary [0, " +
                                        std::to_string(vocab_size()) + ")");
        matrix<T> x(seq, dim);
        const T scale = static_cast<T>(config.embed_scale());
        LONGNET_NN_PARALLEL_FOR
        for (index_t i = 0; i < seq; ++i)
            x.row(i) = embed_tokens.row(static_cast<index_t>(tokens[static_cast<std::size_t>(i)])).template cast<T>() * scale;
        return x;
    }

    // hidden = layer_norm(x_L) [T, D]. inner_states (optional) receives x_0 .. x_L.
    matrix<T> forward_hidden(const std::vector<std::int64_t>& tokens, std::vector<matrix<T>>* inner_states = nullptr,
                             forward_profile* profile = nullptr, const progress_callback& progress = {}) const {
        matrix<T> x;
        {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::other));
            x = embed(tokens);
        }
        if (inner_states) {
            inner_states->clear();
            inner_states->push_back(x);
        }
        matrix<T> h, y;
        const index_t total = static_cast<index_t>(layers.size());
        for (index_t l = 0; l < total; ++l) {
            layers[static_cast<std::size_t>(l)].forward(x, h, y, profile);
            if (inner_states) inner_states->push_back(x);
            if (progress) progress(l + 1, total);
        }
        detail::scoped_timer t(detail::slot(profile, &forward_profile::norms));
        final_norm.forward(x, x);
        return x;
    }

    // hidden of packed documents: each document's tokens (rows [documents[b], documents[b + 1])) through the
    // stack alone, in place. documents: cu_seqlens over the tokens, checked (std::invalid_argument).
    matrix<T> forward_hidden(const std::vector<std::int64_t>& tokens, const std::vector<std::int64_t>& documents) const {
        const std::vector<index_t> cu = check_cu_seqlens(documents, static_cast<index_t>(tokens.size()));
        matrix<T> hidden(static_cast<index_t>(tokens.size()), embed_dim());
        for (std::size_t b = 0; b + 1 < cu.size(); ++b) {
            if (cu[b + 1] == cu[b]) continue;
            const auto first = tokens.begin() + cu[b], last = tokens.begin() + cu[b + 1];
            hidden.middleRows(cu[b], cu[b + 1] - cu[b]) = forward_hidden(std::vector<std::int64_t>(first, last));
        }
        return hidden;
    }

    // logits [rows, vocab] of some rows of hidden (e.g. hidden.bottomRows(1)).
    matrix<T> project(const_matrix_ref<T> hidden, forward_profile* profile = nullptr) const {
        detail::scoped_timer t(detail::slot(profile, &forward_profile::dense));
        return output_projection(hidden);
    }

    // Full logits [T, vocab].
    matrix<T> forward(const std::vector<std::int64_t>& tokens, forward_profile* profile = nullptr) const {
        const matrix<T> hidden = forward_hidden(tokens, nullptr, profile);
        return project(hidden, profile);
    }

    decoder_grad<T> make_grad() const {
        decoder_grad<T> g;
        g.embed_tokens = matrix<T>::Zero(embed_tokens.rows(), embed_tokens.cols());
        for (const auto& l : layers) g.layers.push_back(l.make_grad());
        g.layer_norm = final_norm.make_grad();
        g.output_projection = output_projection.make_grad();
        return g;
    }

    // Mean over positions of the cross-entropy of the logits of `inputs` against `targets` (equally long),
    // forward only (no activations kept; logits loss_row_block rows at a time).
    double loss(const std::vector<std::int64_t>& inputs, const std::vector<std::int64_t>& targets,
                index_t loss_row_block = 1024) const {
        check_targets(inputs, targets);
        const matrix<T> hidden = forward_hidden(inputs);
        const index_t seq = hidden.rows(), block = std::max<index_t>(1, loss_row_block);
        matrix<T> logits(std::min(seq, block), vocab_size());
        double total = 0;
        for (index_t r0 = 0; r0 < seq; r0 += block) {
            const index_t n = std::min(block, seq - r0);
            output_projection.forward(hidden.middleRows(r0, n), logits.topRows(n));
            total += cross_entropy_forward<T>(logits.topRows(n), targets.data() + r0);
        }
        return total / static_cast<double>(scored_targets(targets.data(), seq));
    }

    // One training pass on one sequence: returns the loss (mean over positions) and adds
    // loss_weight · ∂loss/∂parameter to grad (loss_weight = 1/B to average a batch of B sequences).
    double forward_backward(const std::vector<std::int64_t>& inputs, const std::vector<std::int64_t>& targets,
                            decoder_grad<T>& grad, const train_options& opt = {}, double loss_weight = 1.0,
                            decoder_activations<T>* workspace = nullptr) const {
        check_targets(inputs, targets);
        const index_t scored = scored_targets(targets.data(), static_cast<index_t>(targets.size()));
        return forward_backward_sum(inputs, targets, scored, grad, opt, loss_weight, workspace) / static_cast<double>(scored);
    }

    // forward_backward on packed documents (see the top of this file): documents = cu_seqlens over the
    // inputs (B + 1 offsets from 0 to inputs.size(), non-decreasing; std::invalid_argument naming a bad one).
    double forward_backward(const std::vector<std::int64_t>& inputs, const std::vector<std::int64_t>& targets,
                            const std::vector<std::int64_t>& documents, decoder_grad<T>& grad, const train_options& opt = {},
                            double loss_weight = 1.0, decoder_activations<T>* workspace = nullptr) const {
        check_targets(inputs, targets);
        document_attention<T> packed(documents, static_cast<index_t>(inputs.size()));
        const index_t scored = scored_targets(targets.data(), static_cast<index_t>(targets.size()));
        return forward_backward_sum(inputs, targets, scored, grad, opt, loss_weight, workspace, packed) /
               static_cast<double>(scored);
    }

    // forward_backward on rows [first, first + n) of a sequence (attention.slice(n); the whole sequence
    // with the default backend). scored: the whole sequence's count of scored targets (every slice's).
    // Returns the sum of these rows' cross-entropies (the sequence's loss is the sum over its slices ÷
    // scored) and adds loss_weight / scored · ∂(that sum)/∂parameter to grad.
    double forward_backward_sum(const std::vector<std::int64_t>& inputs, const std::vector<std::int64_t>& targets,
                                index_t scored, decoder_grad<T>& grad, const train_options& opt = {},
                                double loss_weight = 1.0, decoder_activations<T>* workspace = nullptr,
                                attention_backend<T>& attention = local_attention<T>()) const {
        if (inputs.empty() || inputs.size() != targets.size() || scored < 1)
            throw std::invalid_argument("longnet::nn::decoder::forward_backward: " + std::to_string(inputs.size()) +
                                        " input tokens, " + std::to_string(targets.size()) + " targets, " +
                                        std::to_string(scored) + " scored in the sequence; they must be equally many "
                                        "and none of the three zero");
        if (grad.layers.size() != layers.size() || grad.embed_tokens.rows() != embed_tokens.rows() ||
            grad.embed_tokens.cols() != embed_tokens.cols())
            throw std::invalid_argument("longnet::nn::decoder::forward_backward: the gradient buffers do not fit the "
                                        "model (make them with make_grad())");
        decoder_activations<T> local;
        decoder_activations<T>& ws = workspace ? *workspace : local;
        const std::size_t count = layers.size();
        const index_t seq = static_cast<index_t>(inputs.size());
        // The two [seq, D] buffers kept after the pass first, at the bottom of the heap: a step allocates and
        // frees everything else, and the next step finds the same contiguous free space (less fragmentation).
        ws.final_input.resize(seq, embed_dim());
        ws.hidden.resize(seq, embed_dim());
        matrix<T> x;
        embedding_forward(embed_tokens, inputs, config.embed_scale(), x);
        if (opt.checkpoint_activations) {
            ws.layers.resize(1);
            ws.layer_inputs.resize(count);
            ws.layers[0] = decoder_layer_activations<T>{};  // recomputed layer by layer in the backward
            for (std::size_t l = 0; l < count; ++l) {
                ws.layer_inputs[l] = x;
                layers[l].forward_checkpointed(x, attention);  // forward_train's bits, nothing kept
            }
        } else {
            ws.layers.resize(count);
            ws.layer_inputs.clear();
            for (std::size_t l = 0; l < count; ++l) layers[l].forward_train(x, ws.layers[l], attention);
        }
        ws.final_input = x;
        final_norm.forward_train(ws.final_input, ws.hidden, ws.final_mean, ws.final_rstd);

        // head: logits, loss and its gradient, output projection backward, one block of rows at a time
        matrix<T> d_hidden = matrix<T>::Zero(seq, embed_dim());
        const index_t block = std::max<index_t>(1, opt.loss_row_block);
        matrix<T> logits(std::min(seq, block), vocab_size());
        const double scale = loss_weight / static_cast<double>(scored);
        double total = 0;
        for (index_t r0 = 0; r0 < seq; r0 += block) {
            const index_t n = std::min(block, seq - r0);
            auto z = logits.topRows(n);
            output_projection.forward(ws.hidden.middleRows(r0, n), z);
            total += cross_entropy_backward<T>(z, targets.data() + r0, scale);
            output_projection.backward(ws.hidden.middleRows(r0, n), z, d_hidden.middleRows(r0, n), grad.output_projection);
        }
        x.setZero();  // now ∂loss/∂(residual stream)
        final_norm.backward(ws.final_input, d_hidden, ws.final_mean, ws.final_rstd, x, grad.layer_norm);
        d_hidden.resize(0, 0);
        const auto ready = [&opt](index_t which) {
            if (opt.gradients_ready) opt.gradients_ready(which);
        };
        ready(train_options::head_gradients);
        if (opt.checkpoint_activations) {
            ws.final_input = matrix<T>{};  // used for the last time (the next pass allocates it first again)
            // Checkpointing trades time for memory: each layer input and activation is freed as its last use
            // passes (docs/training.md, "Memory model": the peak is in a layer's attention backward); the next
            // pass allocates them again. Without checkpointing the workspace keeps its buffers from step to
            // step instead. (ws.hidden stays: callers read the pass's hidden states.)
            for (std::size_t l = count; l-- > 0;) {
                layers[l].recompute(std::move(ws.layer_inputs[l]), ws.layers[0], attention);  // forward_train's bits
                layers[l].backward_releasing(x, ws.layers[0], grad.layers[l], opt.mode, attention);
                ready(static_cast<index_t>(l));
            }
        } else {
            for (std::size_t l = count; l-- > 0;) {
                layers[l].backward(x, ws.layers[l], grad.layers[l], opt.mode, attention);
                ready(static_cast<index_t>(l));
            }
        }
        embedding_backward<T>(inputs, config.embed_scale(), x, grad.embed_tokens);
        ready(train_options::embedding_gradients);
        return total;
    }

    // Parameter count (weights, biases, gains; not the XPos buffers).
    index_t parameter_count() const noexcept {
        const index_t d = config.embed_dim, f = config.ffn_dim, v = config.vocab_size;
        const index_t per_layer = 4 * (d * d + d) + 2 * d /*inner ln*/ + 4 * d /*two pre-LNs*/ + (f * d + f) + (d * f + d) + 2 * f;
        return 2 * v * d + config.layers * per_layer + 2 * d;
    }

    // Throws unless inputs and targets are equally many, in the vocabulary, and at least one is scored.
    void check_targets(const std::vector<std::int64_t>& inputs, const std::vector<std::int64_t>& targets) const {
        if (inputs.empty() || inputs.size() != targets.size())
            throw std::invalid_argument("longnet::nn::decoder: " + std::to_string(inputs.size()) + " input tokens and " +
                                        std::to_string(targets.size()) + " targets; they must be equally many and not none");
        detail::check_targets(targets.data(), static_cast<index_t>(targets.size()), vocab_size());
        if (scored_targets(targets.data(), static_cast<index_t>(targets.size())) == 0)
            throw std::invalid_argument("longnet::nn::decoder: every target is ignore_target (-1); nothing to score");
    }
};

}  // namespace longnet::nn
