// SPDX-License-Identifier: Apache-2.0
#pragma once
// LayerNorm over the last dim (PyTorch nn.LayerNorm): y = (x − mean) / sqrt(var + eps) · weight + bias,
// biased variance (divide by the feature count), two-pass in T. In place allowed (y may alias x).

#include <cmath>
#include <stdexcept>
#include <string>

#include "longnet/nn/common.hpp"

namespace longnet::nn {

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

    void forward(const_matrix_ref<T> x, matrix_ref<T> y) const {
        if (x.cols() != features() || y.rows() != x.rows() || y.cols() != x.cols())
            throw std::invalid_argument("longnet::nn::layer_norm: input [" + std::to_string(x.rows()) + ", " +
                                        std::to_string(x.cols()) + "] / output [" + std::to_string(y.rows()) + ", " +
                                        std::to_string(y.cols()) + "] do not fit " + std::to_string(features()) +
                                        " features");
        const index_t rows = x.rows(), n = x.cols();
        const T inv_n = T(1) / static_cast<T>(n);
        const T epsilon = static_cast<T>(eps);
        const T* w = weight.data();
        const T* b = bias.data();
        LONGNET_NN_PARALLEL_FOR
        for (index_t i = 0; i < rows; ++i) {
            const T* xi = x.data() + i * x.outerStride();
            T* yi = y.data() + i * y.outerStride();
            T sum = 0;
            for (index_t j = 0; j < n; ++j) sum += xi[j];
            const T mean = sum * inv_n;
            T sq = 0;
            for (index_t j = 0; j < n; ++j) sq += (xi[j] - mean) * (xi[j] - mean);
            const T inv_std = T(1) / std::sqrt(sq * inv_n + epsilon);  // biased variance
            for (index_t j = 0; j < n; ++j) yi[j] = (xi[j] - mean) * inv_std * w[j] + b[j];
        }
    }
    void forward_inplace(matrix_ref<T> x) const { forward(x, x); }
    matrix<T> operator()(const_matrix_ref<T> x) const {
        matrix<T> y(x.rows(), x.cols());
        forward(x, y);
        return y;
    }
};

}  // namespace longnet::nn
