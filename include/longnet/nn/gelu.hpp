// SPDX-License-Identifier: Apache-2.0
#pragma once
// Exact (erf) GELU: gelu(x) = 0.5·x·(1 + erf(x / √2)), elementwise, in place.
// evaluate_in_float = true reproduces torchscale, which computes it on x.float() and casts back
// (matters only for a double build).

#include <cmath>

#include "longnet/nn/common.hpp"

namespace longnet::nn {

template <class A>
inline A gelu(A x) noexcept {
    return A(0.5) * x * (A(1) + std::erf(x * A(0.70710678118654752440)));
}

template <class T>
void gelu_inplace(matrix_ref<T> x, bool evaluate_in_float = false) {
    const index_t rows = x.rows(), cols = x.cols();
    LONGNET_NN_PARALLEL_FOR
    for (index_t i = 0; i < rows; ++i) {
        T* r = x.data() + i * x.outerStride();
        if (evaluate_in_float && !std::is_same_v<T, float>)
            for (index_t j = 0; j < cols; ++j) r[j] = static_cast<T>(gelu(static_cast<float>(r[j])));
        else
            for (index_t j = 0; j < cols; ++j) r[j] = gelu(r[j]);
    }
}

}  // namespace longnet::nn
