// SPDX-License-Identifier: Apache-2.0
#pragma once
// LayerNorm over the last dim (PyTorch nn.LayerNorm): y = (x − mean) / sqrt(var + eps) · weight + bias,
// biased variance (divide by the feature count), two-pass in T. In place allowed (y may alias x). The rows
// and the parameter sums run on the runtime ISA dispatch (detail/nn_loops.hpp); each row's sums are over
// fixed SIMD lanes folded pairwise (not a left-to-right sum).
// Training: forward_train also saves each row's mean and rstd = 1/sqrt(var + eps); backward (llm.c's):
//   x̂ = (x − mean)·rstd, g = dy ∘ weight,  dx += rstd·(g − mean(g) − x̂·mean(g ∘ x̂)),
//   dweight += Σ_rows dy ∘ x̂,  dbias += Σ_rows dy.

#include <cmath>
#include <stdexcept>
#include <string>

#include "longnet/detail/nn_loops.hpp"
#include "longnet/nn/common.hpp"

namespace longnet::nn {

// Gradient buffers of one LayerNorm (torchscale names: <prefix>.weight, <prefix>.bias).
template <class T>
struct layer_norm_grad {
    vector<T> weight;
    vector<T> bias;
    void set_zero() {
        weight.setZero();
        bias.setZero();
    }
};

template <class T>
class layer_norm {
    static_assert(is_compute_type<T>::value, "longnet::nn::layer_norm: T must be float or double");

public:
    vector<T> weight;  // [features] gain
    vector<T> bias;    // [features]
    double eps = 1e-5;

    layer_norm() = default;
    explicit layer_norm(index_t features, double epsilon = 1e-5)
        : weight(vector<T>::Ones(features)), bias(vector<T>::Zero(features)), eps(epsilon) {}

    index_t features() const noexcept { return weight.size(); }

    void forward(const_matrix_ref<T> x, matrix_ref<T> y) const { run(x, y, nullptr, nullptr); }

    // forward, also saving mean [rows] and rstd [rows] for backward (resized here). y may alias x.
    void forward_train(const_matrix_ref<T> x, matrix_ref<T> y, vector<T>& mean, vector<T>& rstd) const {
        mean.resize(x.rows());
        rstd.resize(x.rows());
        run(x, y, mean.data(), rstd.data());
    }

    layer_norm_grad<T> make_grad() const { return {vector<T>::Zero(features()), vector<T>::Zero(features())}; }

    // Backward of forward_train(x, ...): dx += ∂/∂x, grad += ∂/∂(weight, bias). dx may not alias dy.
    void backward(const_matrix_ref<T> x, const_matrix_ref<T> dy, const vector<T>& mean, const vector<T>& rstd,
                  matrix_ref<T> dx, layer_norm_grad<T>& grad) const {
        const index_t rows = x.rows(), n = x.cols();
        if (n != features() || dy.rows() != rows || dy.cols() != n || dx.rows() != rows || dx.cols() != n ||
            mean.size() != rows || rstd.size() != rows || grad.weight.size() != n || grad.bias.size() != n)
            throw std::invalid_argument("longnet::nn::layer_norm::backward: x [" + std::to_string(rows) + ", " +
                                        std::to_string(n) + "], dy, dx, saved statistics or gradient buffers do not fit " +
                                        std::to_string(features()) + " features");
        namespace loops = longnet::detail::nn_loops;
        const auto path = loops::nn_loop_path();
        const T* w = weight.data();
        LONGNET_NN_PARALLEL_FOR
        for (index_t i = 0; i < rows; ++i)
            loops::layer_norm_backward(path, x.data() + i * x.outerStride(), dy.data() + i * dy.outerStride(), w, mean[i],
                                       rstd[i], dx.data() + i * dx.outerStride(), n);
        // parameter gradients: serial over rows (fixed summation order, any thread count)
        for (index_t i = 0; i < rows; ++i)
            loops::layer_norm_params(path, x.data() + i * x.outerStride(), dy.data() + i * dy.outerStride(), mean[i],
                                     rstd[i], grad.weight.data(), grad.bias.data(), n);
    }

    void forward_inplace(matrix_ref<T> x) const { forward(x, x); }
    matrix<T> operator()(const_matrix_ref<T> x) const {
        matrix<T> y(x.rows(), x.cols());
        forward(x, y);
        return y;
    }

private:
    void run(const_matrix_ref<T> x, matrix_ref<T> y, T* mean_out, T* rstd_out) const {
        if (x.cols() != features() || y.rows() != x.rows() || y.cols() != x.cols())
            throw std::invalid_argument("longnet::nn::layer_norm: input [" + std::to_string(x.rows()) + ", " +
                                        std::to_string(x.cols()) + "] / output [" + std::to_string(y.rows()) + ", " +
                                        std::to_string(y.cols()) + "] do not fit " + std::to_string(features()) +
                                        " features");
        const index_t rows = x.rows(), n = x.cols();
        const T epsilon = static_cast<T>(eps);
        namespace loops = longnet::detail::nn_loops;
        const auto path = loops::nn_loop_path();
        const T *w = weight.data(), *b = bias.data();
        LONGNET_NN_PARALLEL_FOR
        for (index_t i = 0; i < rows; ++i) {
            T mean = 0, inv_std = 0;
            loops::layer_norm(path, x.data() + i * x.outerStride(), y.data() + i * y.outerStride(), w, b, n, epsilon,
                              mean, inv_std);
            if (mean_out) {
                mean_out[i] = mean;
                rstd_out[i] = inv_std;
            }
        }
    }
};

}  // namespace longnet::nn
