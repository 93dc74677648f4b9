// SPDX-License-Identifier: Apache-2.0
#pragma once
// MAGNETO feed-forward (torchscale FeedForwardNetwork with subln=True):
//   y = fc2( LN_sub( GELU( fc1(x) ) ) ),   fc1 [F, D], Sub-LayerNorm over F, fc2 [D, F].
// Runs over blocks of `row_block` rows so the [rows, F] intermediate stays small for long sequences.

#include <algorithm>
#include <stdexcept>

#include "longnet/nn/common.hpp"
#include "longnet/nn/gelu.hpp"
#include "longnet/nn/layer_norm.hpp"
#include "longnet/nn/linear.hpp"

namespace longnet::nn {

template <class T, class W = T>
class feed_forward {
public:
    linear<T, W> fc1;               // [F, D]
    linear<T, W> fc2;               // [D, F]
    layer_norm<T> ffn_layernorm;    // Sub-LN over F
    bool gelu_in_float = false;     // torchscale parity for a double build (GELU on float32)
    index_t row_block = 4096;       // rows per block of the [rows, F] intermediate

    feed_forward() = default;
    feed_forward(index_t embed_dim, index_t ffn_dim, double eps = 1e-5)
        : fc1(embed_dim, ffn_dim), fc2(ffn_dim, embed_dim), ffn_layernorm(ffn_dim, eps) {}

    index_t embed_dim() const noexcept { return fc1.in_features(); }
    index_t ffn_dim() const noexcept { return fc1.out_features(); }

    // y = FFN(x); x and y [T, D] (may not alias).
    void forward(const_matrix_ref<T> x, matrix_ref<T> y, forward_profile* profile = nullptr) const {
        if (y.rows() != x.rows() || y.cols() != embed_dim() || x.cols() != embed_dim())
            throw std::invalid_argument("longnet::nn::feed_forward: input/output shapes do not fit embed dim " +
                                        std::to_string(embed_dim()));
        const index_t rows = x.rows();
        const index_t block = std::max<index_t>(1, row_block);
        matrix<T> h(std::min(rows, block), ffn_dim());
        for (index_t r0 = 0; r0 < rows; r0 += block) {
            const index_t n = std::min(block, rows - r0);
            auto hb = h.topRows(n);
            {
                detail::scoped_timer t(detail::slot(profile, &forward_profile::dense));
                fc1.forward(x.middleRows(r0, n), hb);
            }
            {
                detail::scoped_timer t(detail::slot(profile, &forward_profile::other));
                gelu_inplace<T>(hb, gelu_in_float);
            }
            {
                detail::scoped_timer t(detail::slot(profile, &forward_profile::norms));
                ffn_layernorm.forward(hb, hb);
            }
            {
                detail::scoped_timer t(detail::slot(profile, &forward_profile::dense));
                fc2.forward(hb, y.middleRows(r0, n));
            }
        }
    }
    matrix<T> operator()(const_matrix_ref<T> x) const {
        matrix<T> y(x.rows(), embed_dim());
        forward(x, y);
        return y;
    }
};

}  // namespace longnet::nn
