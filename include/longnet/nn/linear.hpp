// SPDX-License-Identifier: Apache-2.0
#pragma once
// Linear layer y = x·Wᵀ + b (PyTorch nn.Linear): W [out, in], b [out] (optional), x [T, in], y [T, out].
// One GEMM (nn/gemm.hpp: oneDNN's runtime-dispatched sgemm with longnet::onednn, else Eigen's; multithreaded
// under OpenMP); bf16/narrow weights are widened to T first.
// Backward (training): dx += dy·W, dW += dyᵀ·x, db += Σ_rows dy — two GEMMs and a reduction that
// accumulate, so a tensor read by several layers sums its gradients for free.
// Mixed precision (float layers only): after set_bf16_weight(), the three GEMMs take bf16 operands — the
// bf16 copy of W made then, and x or dy rounded to bf16 per call — with float outputs and accumulation
// (nn/gemm.hpp); the bias, the float master weight and the float gradients are unchanged.
// clear_bf16_weight() returns to float products. The copy is not refreshed by itself: whoever changes
// weight calls set_bf16_weight() again (training::trainer does, after each AdamW step).

#include <stdexcept>
#include <string>

#include "longnet/nn/common.hpp"
#include "longnet/nn/gemm.hpp"

namespace longnet::nn {

// Gradient buffers of one linear layer (torchscale names: <prefix>.weight, <prefix>.bias), always in T.
template <class T>
struct linear_grad {
    matrix<T> weight;  // [out, in]
    vector<T> bias;    // [out], empty for no bias
    void set_zero() {
        weight.setZero();
        bias.setZero();
    }
};

template <class T, class W = T>
class linear {
    static_assert(is_compute_type<T>::value, "longnet::nn::linear: T must be float or double");
    static_assert(is_weight_type<W>::value, "longnet::nn::linear: W must be float, double or Eigen::bfloat16");

public:
    matrix<W> weight;  // [out, in]
    vector<T> bias;    // [out], or empty for no bias

    linear() = default;
    linear(index_t in_features, index_t out_features, bool with_bias = true)
        : weight(matrix<W>::Zero(out_features, in_features)),
          bias(with_bias ? vector<T>::Zero(out_features) : vector<T>()) {}

    index_t in_features() const noexcept { return weight.cols(); }
    index_t out_features() const noexcept { return weight.rows(); }
    bool has_bias() const noexcept { return bias.size() != 0; }

    // Mixed precision: the GEMMs run on a bf16 copy of weight made now (see the file comment).
    void set_bf16_weight() {
        static_assert(std::is_same_v<T, float> && std::is_same_v<W, float>,
                      "longnet::nn::linear: bf16 products are for float layers with float weights");
        if constexpr (std::is_same_v<T, float> && std::is_same_v<W, float>) detail::round_to_bf16(weight, bf16_weight_);
    }
    void clear_bf16_weight() { bf16_weight_ = bf16_matrix(); }
    bool bf16_products() const noexcept { return bf16_weight_.size() != 0; }

    // y = x·Wᵀ + b. y must already have x.rows() rows and out_features() columns (it may be a row block).
    void forward(const_matrix_ref<T> x, matrix_ref<T> y) const {
        if (x.cols() != in_features() || y.rows() != x.rows() || y.cols() != out_features())
            throw std::invalid_argument("longnet::nn::linear: input [" + std::to_string(x.rows()) + ", " +
                                        std::to_string(x.cols()) + "] and output [" + std::to_string(y.rows()) + ", " +
                                        std::to_string(y.cols()) + "] do not fit weight [" +
                                        std::to_string(out_features()) + ", " + std::to_string(in_features()) + "]");
        if constexpr (std::is_same_v<W, T>) {
            if constexpr (std::is_same_v<T, float>) {
                if (bf16_products()) {
                    bf16_matrix xb;
                    detail::round_to_bf16(x, xb);
                    detail::gemm_x_wt_bf16(xb, bf16_weight_, y);
                    if (has_bias()) y.rowwise() += bias.transpose();
                    return;
                }
            }
            detail::gemm_x_wt<T>(x, weight, y);
        } else {
            const matrix<T> widened = weight.template cast<T>();  // [out, in]: small next to the GEMM
            detail::gemm_x_wt<T>(x, widened, y);
        }
        if (has_bias()) y.rowwise() += bias.transpose();
    }
    matrix<T> operator()(const_matrix_ref<T> x) const {
        matrix<T> y(x.rows(), out_features());
        forward(x, y);
        return y;
    }
    // Zeroed gradient buffers shaped like the parameters.
    linear_grad<T> make_grad() const {
        return {matrix<T>::Zero(out_features(), in_features()), has_bias() ? vector<T>::Zero(out_features()) : vector<T>()};
    }

    // Backward of forward(x, y): dx += dy·W (dx [rows, in]); grad.weight += dyᵀ·x; grad.bias += Σ_rows dy.
    void backward(const_matrix_ref<T> x, const_matrix_ref<T> dy, matrix_ref<T> dx, linear_grad<T>& grad) const {
        if constexpr (std::is_same_v<T, float>) {
            if (bf16_products()) {  // dy rounded once for both products
                check_backward_input(dy, dx);
                check_backward_params(x, dy, grad);
                bf16_matrix dyb;
                detail::round_to_bf16(dy, dyb);
                detail::gemm_dy_w_bf16(dyb, bf16_weight_, dx);
                params_bf16(x, dy, dyb, grad);
                return;
            }
        }
        backward_input(dy, dx);
        backward_params(x, dy, grad);
    }
    // dx += dy·W only.
    void backward_input(const_matrix_ref<T> dy, matrix_ref<T> dx) const {
        check_backward_input(dy, dx);
        if constexpr (std::is_same_v<T, float>) {
            if (bf16_products()) {
                bf16_matrix dyb;
                detail::round_to_bf16(dy, dyb);
                detail::gemm_dy_w_bf16(dyb, bf16_weight_, dx);
                return;
            }
        }
        if constexpr (std::is_same_v<W, T>) {
            detail::gemm_dy_w<T>(dy, weight, dx);
        } else {
            const matrix<T> widened = weight.template cast<T>();
            detail::gemm_dy_w<T>(dy, widened, dx);
        }
    }
    // grad.weight += dyᵀ·x, grad.bias += Σ_rows dy only.
    void backward_params(const_matrix_ref<T> x, const_matrix_ref<T> dy, linear_grad<T>& grad) const {
        check_backward_params(x, dy, grad);
        if constexpr (std::is_same_v<T, float>) {
            if (bf16_products()) {
                bf16_matrix dyb;
                detail::round_to_bf16(dy, dyb);
                params_bf16(x, dy, dyb, grad);
                return;
            }
        }
        detail::gemm_dyt_x<T>(dy, x, grad.weight);
        if (has_bias()) grad.bias.noalias() += dy.colwise().sum().transpose();
    }

    // Multiply-add count ×2 of one forward over `rows` rows.
    double flops(index_t rows) const noexcept {
        return 2.0 * static_cast<double>(rows) * static_cast<double>(in_features()) * static_cast<double>(out_features());
    }

private:
    bf16_matrix bf16_weight_;  // the bf16 copy of weight (set_bf16_weight), empty: products in T

    void check_backward_input(const_matrix_ref<T> dy, matrix_ref<T> dx) const {
        if (dy.cols() != out_features() || dx.rows() != dy.rows() || dx.cols() != in_features())
            throw std::invalid_argument("longnet::nn::linear::backward: dy [" + std::to_string(dy.rows()) + ", " +
                                        std::to_string(dy.cols()) + "] / dx [" + std::to_string(dx.rows()) + ", " +
                                        std::to_string(dx.cols()) + "] do not fit weight [" +
                                        std::to_string(out_features()) + ", " + std::to_string(in_features()) + "]");
    }
    void check_backward_params(const_matrix_ref<T> x, const_matrix_ref<T> dy, const linear_grad<T>& grad) const {
        if (x.cols() != in_features() || dy.cols() != out_features() || x.rows() != dy.rows() ||
            grad.weight.rows() != out_features() || grad.weight.cols() != in_features() ||
            grad.bias.size() != bias.size())
            throw std::invalid_argument("longnet::nn::linear::backward: x [" + std::to_string(x.rows()) + ", " +
                                        std::to_string(x.cols()) + "], dy [" + std::to_string(dy.rows()) + ", " +
                                        std::to_string(dy.cols()) + "] or the gradient buffers do not fit weight [" +
                                        std::to_string(out_features()) + ", " + std::to_string(in_features()) + "]");
    }
    // grad.weight += dyᵀ·x in bf16 (dyb: dy rounded), grad.bias += Σ_rows dy in float.
    void params_bf16(const_matrix_ref<T> x, const_matrix_ref<T> dy, const bf16_matrix& dyb, linear_grad<T>& grad) const {
        if constexpr (std::is_same_v<T, float>) {
            bf16_matrix xb;
            detail::round_to_bf16(x, xb);
            detail::gemm_dyt_x_bf16(dyb, xb, grad.weight);
            if (has_bias()) grad.bias.noalias() += dy.colwise().sum().transpose();
        }
    }
};

}  // namespace longnet::nn
