// SPDX-License-Identifier: Apache-2.0
#pragma once
// LayerNorm over the last dim (PyTorch nn.LayerNorm): y = (x − mean) / sqrt(var + eps) · weight + bias,
// biased variance (divide by the feature count), two-pass in T. In place allowed (y may alias x). Each row's
// sums are Eigen's vectorized reductions (a tree over SIMD lanes, not a left-to-right sum).
// Training: forward_train also saves each row's mean and rstd = 1/sqrt(var + eps); backward (llm.c's):
//   x̂ = (x − mean)·rstd, g = dy ∘ weight,  dx += rstd·(g − mean(g) − x̂·mean(g ∘ x̂)),
//   dweight += Σ_rows dy ∘ x̂,  dbias += Σ_rows dy.

#include <cmath>
#include <stdexcept>
#include <string>

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
        const T inv_n = T(1) / static_cast<T>(n);
        const row_map w(weight.data(), n);
        LONGNET_NN_PARALLEL_FOR
        for (index_t i = 0; i < rows; ++i) {
            const row_map xi(x.data() + i * x.outerStride(), n), gi(dy.data() + i * dy.outerStride(), n);
            mutable_row_map di(dx.data() + i * dx.outerStride(), n);
            const T mu = mean[i], rs = rstd[i];
            const auto g = gi * w;               // dy∘w
            const auto xhat = (xi - mu) * rs;    // x̂
            const T mean_g = g.sum() * inv_n;                // mean(dy∘w)
            const T mean_gx = (g * xhat).sum() * inv_n;      // mean(dy∘w∘x̂)
            di += rs * (g - mean_g - xhat * mean_gx);
        }
        // parameter gradients: serial over rows (fixed summation order, any thread count)
        T* dw = grad.weight.data();
        T* db = grad.bias.data();
        for (index_t i = 0; i < rows; ++i) {
            const T* xi = x.data() + i * x.outerStride();
            const T* gi = dy.data() + i * dy.outerStride();
            const T mu = mean[i], rs = rstd[i];
            for (index_t j = 0; j < n; ++j) {
                dw[j] += gi[j] * ((xi[j] - mu) * rs);
                db[j] += gi[j];
            }
        }
    }

    void forward_inplace(matrix_ref<T> x) const { forward(x, x); }
    matrix<T> operator()(const_matrix_ref<T> x) const {
        matrix<T> y(x.rows(), x.cols());
        forward(x, y);
        return y;
    }

private:
    // One row as an Eigen array: the sums and elementwise expressions vectorize at the build's ISA.
    using row_map = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
    using mutable_row_map = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;

    void run(const_matrix_ref<T> x, matrix_ref<T> y, T* mean_out, T* rstd_out) const {
        if (x.cols() != features() || y.rows() != x.rows() || y.cols() != x.cols())
            throw std::invalid_argument("longnet::nn::layer_norm: input [" + std::to_string(x.rows()) + ", " +
                                        std::to_string(x.cols()) + "] / output [" + std::to_string(y.rows()) + ", " +
                                        std::to_string(y.cols()) + "] do not fit " + std::to_string(features()) +
                                        " features");
        const index_t rows = x.rows(), n = x.cols();
        const T inv_n = T(1) / static_cast<T>(n);
        const T epsilon = static_cast<T>(eps);
        const row_map w(weight.data(), n), b(bias.data(), n);
        LONGNET_NN_PARALLEL_FOR
        for (index_t i = 0; i < rows; ++i) {
            const row_map xi(x.data() + i * x.outerStride(), n);
            mutable_row_map yi(y.data() + i * y.outerStride(), n);
            const T mean = xi.sum() * inv_n;
            const T inv_std = T(1) / std::sqrt((xi - mean).square().sum() * inv_n + epsilon);  // biased variance
            if (mean_out) {
                mean_out[i] = mean;
                rstd_out[i] = inv_std;
            }
            yi = (xi - mean) * inv_std * w + b;
        }
    }
};

}  // namespace longnet::nn
