// SPDX-License-Identifier: Apache-2.0
#pragma once
// MAGNETO feed-forward (torchscale FeedForwardNetwork with subln=True):
//   y = fc2( LN_sub( GELU( fc1(x) ) ) ),   fc1 [F, D], Sub-LayerNorm over F, fc2 [D, F]
//   (subln = false: no LN_sub, torchscale's FeedForwardNetwork with subln=False).
// Runs over blocks of `row_block` rows so the [rows, F] intermediate stays small for long sequences.
// Training: forward_train saves the fc1 output (GELU input) and the Sub-LN statistics and output
// (2 × [T, F]; save_activations: only these, without the output); backward recomputes GELU, runs in
// blocks of row_block rows (its scratch is 3 × [row_block, F]) and accumulates the parameter gradients
// across blocks. Activation checkpointing keeps no [T, F] buffer: forward_checkpointed computes the
// output block by block, and backward_recomputing recomputes each block's fc1 output, GELU and Sub-LN
// inside the backward (scratch 5 × [row_block, F]). All three produce forward_train's bits: every
// pass runs fc1 and fc2 on the same blocks of row_block rows, and GELU and the Sub-LN through the same
// 64-row routine (activate).

#include <algorithm>
#include <stdexcept>
#include <string>

#include "longnet/nn/common.hpp"
#include "longnet/nn/gelu.hpp"
#include "longnet/nn/layer_norm.hpp"
#include "longnet/nn/linear.hpp"

namespace longnet::nn {

// Gradient buffers of one feed-forward block (torchscale names under <prefix>.ffn.).
template <class T>
struct feed_forward_grad {
    linear_grad<T> fc1, fc2;
    layer_norm_grad<T> ffn_layernorm;
    void set_zero() {
        fc1.set_zero();
        fc2.set_zero();
        ffn_layernorm.set_zero();
    }
};

// What feed_forward::forward_train saves for backward.
template <class T>
struct feed_forward_activations {
    matrix<T> pre_gelu;           // [T, F] fc1 output
    vector<T> ln_mean, ln_rstd;   // Sub-LN statistics
    matrix<T> ln_out;             // [T, F] Sub-LN output (fc2 input)
};

template <class T, class W = T>
class feed_forward {
public:
    linear<T, W> fc1;               // [F, D]
    linear<T, W> fc2;               // [D, F]
    layer_norm<T> ffn_layernorm;    // Sub-LN over F
    bool gelu_in_float = false;     // torchscale parity for a double build (GELU on float32)
    bool subln = true;              // Sub-LN ffn_layernorm (torchscale subln); false: fc2(GELU(fc1(x)))
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
            if (subln) {
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

    feed_forward_grad<T> make_grad() const { return {fc1.make_grad(), fc2.make_grad(), ffn_layernorm.make_grad()}; }

    // y = FFN(x), saving what backward needs. x, y [T, D], may not alias.
    void forward_train(const_matrix_ref<T> x, matrix_ref<T> y, feed_forward_activations<T>& act) const {
        if (y.rows() != x.rows() || y.cols() != embed_dim())
            throw std::invalid_argument("longnet::nn::feed_forward::forward_train: output [" + std::to_string(y.rows()) +
                                        ", " + std::to_string(y.cols()) + "] does not fit [" + std::to_string(x.rows()) +
                                        ", " + std::to_string(embed_dim()) + "]");
        save_activations(x, act);
        const index_t rows = x.rows(), block = std::max<index_t>(1, row_block);
        for (index_t r0 = 0; r0 < rows; r0 += block) {
            const index_t n = std::min(block, rows - r0);
            fc2.forward(act.ln_out.middleRows(r0, n), y.middleRows(r0, n));
        }
    }

    // forward_train without the output: only what backward needs. fc1 runs on blocks of row_block rows
    // (the GEMMs of forward_checkpointed and backward_recomputing: the same bits whatever the GEMM backend
    // does with a block's last rows); GELU and the Sub-LN, both row by row, on blocks of cache_rows rows
    // (activate) so each [T, F] buffer is streamed through memory once.
    void save_activations(const_matrix_ref<T> x, feed_forward_activations<T>& act) const {
        check_input(x, "forward_train");
        const index_t rows = x.rows();
        act.pre_gelu.resize(rows, ffn_dim());
        act.ln_out.resize(rows, ffn_dim());
        act.ln_mean.resize(subln ? rows : 0);
        act.ln_rstd.resize(subln ? rows : 0);
        const index_t block = std::max<index_t>(1, row_block);
        for (index_t r0 = 0; r0 < rows; r0 += block) {
            const index_t n = std::min(block, rows - r0);
            fc1.forward(x.middleRows(r0, n), act.pre_gelu.middleRows(r0, n));
        }
        activate(act.pre_gelu, act.ln_out, act.ln_mean, act.ln_rstd);
    }

    // y = FFN(x) with forward_train's bits, keeping nothing (activation checkpointing's first forward):
    // blocks of row_block rows, scratch 2 × [row_block, F]. x, y [T, D], may not alias.
    void forward_checkpointed(const_matrix_ref<T> x, matrix_ref<T> y) const {
        check_input(x, "forward_checkpointed");
        if (y.rows() != x.rows() || y.cols() != embed_dim())
            throw std::invalid_argument("longnet::nn::feed_forward::forward_checkpointed: output [" + std::to_string(y.rows()) +
                                        ", " + std::to_string(y.cols()) + "] does not fit [" + std::to_string(x.rows()) +
                                        ", " + std::to_string(embed_dim()) + "]");
        const index_t rows = x.rows(), block = std::max<index_t>(1, row_block);
        matrix<T> pre(std::min(rows, block), ffn_dim()), out(std::min(rows, block), ffn_dim());
        vector<T> mean, rstd;
        for (index_t r0 = 0; r0 < rows; r0 += block) {
            const index_t n = std::min(block, rows - r0);
            auto p = pre.topRows(n);
            auto o = out.topRows(n);
            fc1.forward(x.middleRows(r0, n), p);
            mean.resize(subln ? n : 0);
            rstd.resize(subln ? n : 0);
            activate(p, o, mean, rstd);
            fc2.forward(o, y.middleRows(r0, n));
        }
    }

    // Backward of forward_train(x, ...): dx += ∂/∂x, grad += parameter gradients.
    void backward(const_matrix_ref<T> x, const_matrix_ref<T> dy, const feed_forward_activations<T>& act,
                  matrix_ref<T> dx, feed_forward_grad<T>& grad) const {
        const index_t rows = x.rows();
        check_backward(x, dy, dx);
        if (act.pre_gelu.rows() != rows)
            throw std::invalid_argument("longnet::nn::feed_forward::backward: the saved activations have " +
                                        std::to_string(act.pre_gelu.rows()) + " rows, not " + std::to_string(rows));
        const index_t block = std::max<index_t>(1, row_block);
        block_scratch s(std::min(rows, block), ffn_dim());
        for (index_t r0 = 0; r0 < rows; r0 += block) {
            const index_t n = std::min(block, rows - r0);
            backward_block(x.middleRows(r0, n), dy.middleRows(r0, n), act.pre_gelu.middleRows(r0, n),
                           act.ln_out.middleRows(r0, n), act.ln_mean, act.ln_rstd, r0, dx.middleRows(r0, n), grad, s);
        }
    }

    // The same backward without saved activations (activation checkpointing): each block's fc1 output,
    // GELU and Sub-LN are recomputed from x (forward_train's bits), then the block's backward runs as in
    // backward(). The [T, F] buffers never exist; the extra cost is one fc1 GEMM.
    void backward_recomputing(const_matrix_ref<T> x, const_matrix_ref<T> dy, matrix_ref<T> dx,
                              feed_forward_grad<T>& grad) const {
        check_input(x, "backward_recomputing");
        check_backward(x, dy, dx);
        const index_t rows = x.rows(), block = std::max<index_t>(1, row_block);
        const index_t first_block = std::min(rows, block);
        block_scratch s(first_block, ffn_dim());
        matrix<T> pre(first_block, ffn_dim()), out(first_block, ffn_dim());
        vector<T> mean, rstd;
        for (index_t r0 = 0; r0 < rows; r0 += block) {
            const index_t n = std::min(block, rows - r0);
            auto p = pre.topRows(n);
            auto o = out.topRows(n);
            const auto xb = x.middleRows(r0, n);
            fc1.forward(xb, p);
            mean.resize(subln ? n : 0);
            rstd.resize(subln ? n : 0);
            activate(p, o, mean, rstd);
            backward_block(xb, dy.middleRows(r0, n), p, o, mean, rstd, 0, dx.middleRows(r0, n), grad, s);
        }
    }

private:
    // Scratch of one block's backward: d(Sub-LN output), the recomputed GELU output, d(GELU output).
    struct block_scratch {
        matrix<T> d_ln, gelu_out, d_gelu;
        block_scratch(index_t rows, index_t cols) : d_ln(rows, cols), gelu_out(rows, cols), d_gelu(rows, cols) {}
    };

    // op: the public member that was called (for the message)
    void check_input(const_matrix_ref<T> x, const char* op) const {
        if (x.cols() != embed_dim())
            throw std::invalid_argument(std::string("longnet::nn::feed_forward::") + op + ": input [" + std::to_string(x.rows()) +
                                        ", " + std::to_string(x.cols()) + "] does not fit embed dim " +
                                        std::to_string(embed_dim()));
    }
    void check_backward(const_matrix_ref<T> x, const_matrix_ref<T> dy, const_matrix_ref<T> dx) const {
        const index_t rows = x.rows();
        if (x.cols() != embed_dim() || dy.rows() != rows || dy.cols() != embed_dim() || dx.rows() != rows ||
            dx.cols() != embed_dim())
            throw std::invalid_argument("longnet::nn::feed_forward::backward: x, dy or dx do not fit [" +
                                        std::to_string(rows) + ", " + std::to_string(embed_dim()) + "]");
    }

    // out = Sub-LN(GELU(pre)) (out = GELU(pre) without Sub-LN), with the Sub-LN statistics in mean, rstd
    // (sized by the caller: pre's rows, or 0 without Sub-LN). Blocks of cache_rows rows in parallel, the
    // row loops inside on one thread: every caller gets the same bits.
    void activate(const_matrix_ref<T> pre, matrix_ref<T> out, vector<T>& mean, vector<T>& rstd) const {
        constexpr index_t cache_rows = 64;
        const index_t rows = pre.rows();
        const index_t blocks = (rows + cache_rows - 1) / cache_rows;
        LONGNET_NN_PARALLEL_FOR
        for (index_t b = 0; b < blocks; ++b) {  // (the row loops inside run on this thread)
            const index_t r0 = b * cache_rows, n = std::min(cache_rows, rows - r0);
            auto o = out.middleRows(r0, n);
            o = pre.middleRows(r0, n);
            gelu_inplace<T>(o, gelu_in_float);
            if (subln) {
                vector<T> m, r;
                ffn_layernorm.forward_train(o, o, m, r);
                mean.segment(r0, n) = m;
                rstd.segment(r0, n) = r;
            }
        }
    }

    // One block's backward from its input x, upstream dy, fc1 output pre, Sub-LN output ln_out and
    // statistics (the block's rows start at first in mean, rstd): dx += ∂/∂x, grad += the block's
    // parameter gradients.
    void backward_block(const_matrix_ref<T> x, const_matrix_ref<T> dy, const_matrix_ref<T> pre,
                        const_matrix_ref<T> ln_out, const vector<T>& mean, const vector<T>& rstd, index_t first,
                        matrix_ref<T> dx, feed_forward_grad<T>& grad, block_scratch& s) const {
        const index_t n = x.rows();
        auto dl = s.d_ln.topRows(n);
        auto g = s.gelu_out.topRows(n);
        auto dg = s.d_gelu.topRows(n);
        dl.setZero();
        fc2.backward(ln_out, dy, dl, grad.fc2);
        if (subln) {
            g = pre;
            gelu_inplace<T>(g, gelu_in_float);  // Sub-LN input, recomputed
            dg.setZero();
            const vector<T> m = mean.segment(first, n), r = rstd.segment(first, n);
            ffn_layernorm.backward(g, dl, m, r, dg, grad.ffn_layernorm);
        } else {
            dg = dl;
        }
        gelu_backward_inplace<T>(pre, dg);
        fc1.backward(x, dg, dx, grad.fc1);
    }
};

}  // namespace longnet::nn
