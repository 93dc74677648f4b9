// SPDX-License-Identifier: Apache-2.0
#pragma once
// LongNet / MAGNETO decoder layer (torchscale DecoderLayer, decoder_normalize_before=True, subln=True,
// no DeepNorm, residual scale 1):
//   x = x + self_attn( self_attn_layer_norm(x) )
//   x = x + ffn( final_layer_norm(x) )          (final_layer_norm is the FFN's pre-LN, torchscale's name)
// normalize_before = false is torchscale's post-LN layer (EncoderLayer with encoder_normalize_before =
// False; torchscale allows it only without Sub-LN), used by the encoder:
//   x = self_attn_layer_norm( x + self_attn(x) );   x = final_layer_norm( x + ffn(x) )
// Time goes to the forward_profile: LNs to norms, the residual adds to other, the rest via the sublayers.
// Training: forward_train saves the layer input, both pre-LN outputs and statistics, the residual stream
// between the sublayers and the sublayers' own activations; backward takes the gradient of the layer's
// output and turns it, in place, into the gradient of its input (the residuals pass it through and the
// sublayers add theirs). Activation checkpointing: forward_checkpointed is forward_train's output
// keeping nothing; recompute is forward_train without the output and without the FFN's [T, F]
// activations (the backward recomputes them per row block); backward_releasing frees each buffer after
// its last use. All take the attention backend of the pass (attention_backend.hpp; local by default).

#include <type_traits>
#include <utility>

#include "longnet/nn/attention_backend.hpp"
#include "longnet/nn/common.hpp"
#include "longnet/nn/feed_forward.hpp"
#include "longnet/nn/layer_norm.hpp"
#include "longnet/nn/multihead_attention.hpp"

namespace longnet::nn {

// Gradient buffers of one decoder layer (torchscale names under layers.<l>.).
template <class T>
struct decoder_layer_grad {
    layer_norm_grad<T> self_attn_layer_norm;
    attention_grad<T> self_attn;
    layer_norm_grad<T> final_layer_norm;
    feed_forward_grad<T> ffn;
    void set_zero() {
        self_attn_layer_norm.set_zero();
        self_attn.set_zero();
        final_layer_norm.set_zero();
        ffn.set_zero();
    }
};

// What decoder_layer::forward_train saves for backward.
template <class T>
struct decoder_layer_activations {
    matrix<T> input;                 // [T, D] layer input
    vector<T> ln1_mean, ln1_rstd;    // self_attn_layer_norm statistics
    matrix<T> ln1_out;               // attention input (post-LN: LN1's output, the FFN input)
    attention_activations<T> attn;
    matrix<T> mid;                   // residual stream after the attention block (post-LN: LN1's input)
    vector<T> ln2_mean, ln2_rstd;    // final_layer_norm statistics
    matrix<T> ln2_out;               // FFN input (post-LN: LN2's input)
    feed_forward_activations<T> ffn;
};

template <class T, class W = T>
class decoder_layer {
public:
    layer_norm<T> self_attn_layer_norm;
    multihead_attention<T, W> self_attn;
    layer_norm<T> final_layer_norm;
    feed_forward<T, W> ffn;
    bool normalize_before = true;  // false: post-LN (see the top of this file)

    decoder_layer() = default;
    decoder_layer(const attention_config& attn, index_t ffn_dim)
        : self_attn_layer_norm(attn.embed_dim, attn.layernorm_eps),
          self_attn(attn),
          final_layer_norm(attn.embed_dim, attn.layernorm_eps),
          ffn(attn.embed_dim, ffn_dim, attn.layernorm_eps) {}

    index_t embed_dim() const noexcept { return self_attn.embed_dim(); }

    // The residual stream x [T, D] is updated in place. scratch: two [T, D] buffers reused across layers.
    void forward(matrix<T>& x, matrix<T>& h, matrix<T>& y, forward_profile* profile = nullptr) const {
        h.resize(x.rows(), x.cols());
        y.resize(x.rows(), x.cols());
        if (!normalize_before) {
            self_attn.forward(x, y, profile);
            residual_add(x, y, profile);
            {
                detail::scoped_timer t(detail::slot(profile, &forward_profile::norms));
                self_attn_layer_norm.forward(x, x);
            }
            ffn.forward(x, y, profile);
            residual_add(x, y, profile);
            detail::scoped_timer t(detail::slot(profile, &forward_profile::norms));
            final_layer_norm.forward(x, x);
            return;
        }
        {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::norms));
            self_attn_layer_norm.forward(x, h);
        }
        self_attn.forward(h, y, profile);
        residual_add(x, y, profile);
        {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::norms));
            final_layer_norm.forward(x, h);
        }
        ffn.forward(h, y, profile);
        residual_add(x, y, profile);
    }
    // x += y, counted as "other" time.
    static void residual_add(matrix<T>& x, const matrix<T>& y, forward_profile* profile) {
        detail::scoped_timer t(detail::slot(profile, &forward_profile::other));
        const index_t rows = x.rows();
        LONGNET_NN_PARALLEL_FOR
        for (index_t i = 0; i < rows; ++i) x.row(i) += y.row(i);
    }
    void forward(matrix<T>& x, forward_profile* profile = nullptr) const {
        matrix<T> h, y;
        forward(x, h, y, profile);
    }

    decoder_layer_grad<T> make_grad() const {
        return {self_attn_layer_norm.make_grad(), self_attn.make_grad(), final_layer_norm.make_grad(), ffn.make_grad()};
    }

    // The residual stream x [T, D] is updated in place; act receives what backward needs.
    void forward_train(matrix<T>& x, decoder_layer_activations<T>& act,
                       attention_backend<T>& attention = local_attention<T>()) const {
        act.input = x;
        if (!normalize_before) {
            matrix<T> y(x.rows(), x.cols());
            self_attn.forward_train(act.input, y, act.attn, attention);
            act.mid = act.input + y;
            act.ln1_out.resize(x.rows(), x.cols());
            self_attn_layer_norm.forward_train(act.mid, act.ln1_out, act.ln1_mean, act.ln1_rstd);
            ffn.forward_train(act.ln1_out, y, act.ffn);
            act.ln2_out = act.ln1_out + y;
            final_layer_norm.forward_train(act.ln2_out, x, act.ln2_mean, act.ln2_rstd);
            return;
        }
        act.ln1_out.resize(x.rows(), x.cols());
        self_attn_layer_norm.forward_train(x, act.ln1_out, act.ln1_mean, act.ln1_rstd);
        matrix<T> y(x.rows(), x.cols());
        self_attn.forward_train(act.ln1_out, y, act.attn, attention);
        x += y;
        act.mid = x;
        act.ln2_out.resize(x.rows(), x.cols());
        final_layer_norm.forward_train(x, act.ln2_out, act.ln2_mean, act.ln2_rstd);
        ffn.forward_train(act.ln2_out, y, act.ffn);
        x += y;
    }

    // Activation checkpointing's first forward: x becomes the layer's output, forward_train's bits, and
    // nothing is kept (each buffer is freed once used; the FFN runs in row blocks).
    void forward_checkpointed(matrix<T>& x, attention_backend<T>& attention = local_attention<T>()) const {
        if (!normalize_before) {
            decoder_layer_activations<T> act;
            forward_train(x, act, attention);
            return;
        }
        matrix<T> h(x.rows(), x.cols()), y(x.rows(), x.cols());
        {
            vector<T> mean, rstd;
            self_attn_layer_norm.forward_train(x, h, mean, rstd);
            attention_activations<T> attn;
            self_attn.forward_train(h, y, attn, attention);
        }
        x += y;
        vector<T> mean, rstd;
        final_layer_norm.forward_train(x, h, mean, rstd);
        ffn.forward_checkpointed(h, y);
        x += y;
    }

    // Activation checkpointing's recompute: act receives what forward_train(input) saves (the same bits),
    // taking over the input's buffer, except the FFN's [T, F] activations (act.ffn is left empty: the
    // backward recomputes them one row block at a time), and without computing the layer's output (the
    // FFN's fc2 and the last residual add are skipped: the backward does not need them).
    void recompute(matrix<T>&& input, decoder_layer_activations<T>& act,
                   attention_backend<T>& attention = local_attention<T>()) const {
        if (!normalize_before) {
            forward_train(input, act, attention);
            return;
        }
        act.input = std::move(input);
        const matrix<T>& x = act.input;
        act.ln1_out.resize(x.rows(), x.cols());
        self_attn_layer_norm.forward_train(x, act.ln1_out, act.ln1_mean, act.ln1_rstd);
        act.mid.resize(x.rows(), x.cols());
        self_attn.forward_train(act.ln1_out, act.mid, act.attn, attention);
        const index_t rows = x.rows();
        LONGNET_NN_PARALLEL_FOR
        for (index_t i = 0; i < rows; ++i) act.mid.row(i) += x.row(i);  // x + y, as forward_train's x += y
        act.ln2_out.resize(x.rows(), x.cols());
        final_layer_norm.forward_train(act.mid, act.ln2_out, act.ln2_mean, act.ln2_rstd);
        act.ffn = feed_forward_activations<T>{};
    }

    // dx: on entry ∂loss/∂(layer output), on return ∂loss/∂(layer input). grad += parameter gradients.
    void backward(matrix<T>& dx, const decoder_layer_activations<T>& act, decoder_layer_grad<T>& grad,
                  grad_mode mode = grad_mode::exact, attention_backend<T>& attention = local_attention<T>()) const {
        backward_impl(dx, act, grad, mode, attention);
    }

    // backward, freeing each saved activation once its last use has passed (the FFN's activations and the
    // residual before the attention block's backward, which is the training pass's peak; inside it the
    // attention's own, multihead_attention::backward_releasing): the same bits, less memory at the peak.
    // act is left empty (forward_train or recompute refills it). Both backwards take act.ffn empty (from
    // recompute) and then recompute the FFN's activations per row block.
    void backward_releasing(matrix<T>& dx, decoder_layer_activations<T>& act, decoder_layer_grad<T>& grad,
                            grad_mode mode = grad_mode::exact, attention_backend<T>& attention = local_attention<T>()) const {
        backward_impl(dx, act, grad, mode, attention);
    }

private:
    // The pre-LN FFN's backward from the saved activations, or recomputing them (recompute left act.ffn empty).
    template <class Act>
    void ffn_backward(Act& act, const matrix<T>& dy, matrix<T>& dx, feed_forward_grad<T>& grad) const {
        if (act.ffn.pre_gelu.size() == 0 && act.ln2_out.rows() > 0)
            ffn.backward_recomputing(act.ln2_out, dy, dx, grad);
        else
            ffn.backward(act.ln2_out, dy, act.ffn, dx, grad);
    }

    // Act: decoder_layer_activations<T>, const (kept) or not (released as the pass goes).
    template <class Act>
    void backward_impl(matrix<T>& dx, Act& act, decoder_layer_grad<T>& grad, grad_mode mode,
                       attention_backend<T>& attention) const {
        constexpr bool release = !std::is_const_v<Act>;
        const auto free_ffn = [&act] {
            if constexpr (release) act.ffn = feed_forward_activations<T>{};
            else (void)act;  // kept: the capture is unused (clang's -Wunused-lambda-capture)
        };
        const auto free_matrix = [](auto& m) {
            if constexpr (release) m = std::decay_t<decltype(m)>{};
        };
        const index_t rows = dx.rows(), dim = dx.cols();
        if (!normalize_before) {
            matrix<T> d_pre2 = matrix<T>::Zero(rows, dim);                                        // out = LN2(pre2)
            final_layer_norm.backward(act.ln2_out, dx, act.ln2_mean, act.ln2_rstd, d_pre2, grad.final_layer_norm);
            free_matrix(act.ln2_out);
            matrix<T> d_h1 = d_pre2;                                                               // pre2 = h1 + FFN(h1)
            ffn.backward(act.ln1_out, d_pre2, act.ffn, d_h1, grad.ffn);  // (post-LN: recompute keeps the FFN's)
            free_ffn();
            d_pre2 = matrix<T>{};
            matrix<T> d_mid = matrix<T>::Zero(rows, dim);                                          // h1 = LN1(mid)
            self_attn_layer_norm.backward(act.mid, d_h1, act.ln1_mean, act.ln1_rstd, d_mid, grad.self_attn_layer_norm);
            free_matrix(act.mid);
            free_matrix(act.ln1_out);
            d_h1 = matrix<T>{};
            dx = d_mid;                                                                            // mid = in + Attn(in)
            self_attn.backward(act.input, d_mid, act.attn, dx, grad.self_attn, mode, attention);
            return;
        }
        matrix<T> dh = matrix<T>::Zero(rows, dim);
        ffn_backward(act, dx, dh, grad.ffn);                                                     // x_out = mid + FFN(LN2(mid))
        free_ffn();
        free_matrix(act.ln2_out);
        final_layer_norm.backward(act.mid, dh, act.ln2_mean, act.ln2_rstd, dx, grad.final_layer_norm);
        free_matrix(act.mid);
        dh.setZero();
        if constexpr (release)                                                                   // mid = in + Attn(LN1(in))
            self_attn.backward_releasing(act.ln1_out, dx, act.attn, dh, grad.self_attn, mode, attention);
        else
            self_attn.backward(act.ln1_out, dx, act.attn, dh, grad.self_attn, mode, attention);
        self_attn_layer_norm.backward(act.input, dh, act.ln1_mean, act.ln1_rstd, dx, grad.self_attn_layer_norm);
    }
};

}  // namespace longnet::nn
