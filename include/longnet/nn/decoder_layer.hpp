// SPDX-License-Identifier: Apache-2.0
#pragma once
// LongNet / MAGNETO decoder layer (torchscale DecoderLayer, decoder_normalize_before=True, subln=True,
// no DeepNorm, residual scale 1):
//   x = x + self_attn( self_attn_layer_norm(x) )
//   x = x + ffn( final_layer_norm(x) )          (final_layer_norm is the FFN's pre-LN, torchscale's name)
// Time goes to the forward_profile: LNs to norms, the residual adds to other, the rest via the sublayers.

#include "longnet/nn/common.hpp"
#include "longnet/nn/feed_forward.hpp"
#include "longnet/nn/layer_norm.hpp"
#include "longnet/nn/multihead_attention.hpp"

namespace longnet::nn {

template <class T, class W = T>
class decoder_layer {
public:
    layer_norm<T> self_attn_layer_norm;
    multihead_attention<T, W> self_attn;
    layer_norm<T> final_layer_norm;
    feed_forward<T, W> ffn;

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
};

}  // namespace longnet::nn
