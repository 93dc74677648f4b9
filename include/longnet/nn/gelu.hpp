// SPDX-License-Identifier: Apache-2.0
#pragma once
// Exact (erf) GELU: gelu(x) = 0.5·x·(1 + erf(x / √2)), elementwise, in place.
// evaluate_in_float = true reproduces torchscale, which computes it on x.float() and casts back
// (matters only for a double build).
// Backward: gelu'(x) = Φ(x) + x·φ(x) = 0.5·(1 + erf(x/√2)) + x·exp(−x²/2)/√(2π), always in T.
// float rows run on the runtime ISA dispatch (detail/nn_loops.hpp: xsimd's erf and exp method and
// coefficients written as scalar code the compiler vectorizes for each path, as accurate as std::erf in
// float, within an ulp or two), so a build without -march runs them with AVX-512 or AVX2 where the CPU
// has it; double is scalar (std::erf, std::exp).

#include <cmath>

#include "longnet/detail/nn_loops.hpp"
#include "longnet/nn/common.hpp"

namespace longnet::nn {

// A: float or double (the scalar reference; float rows take detail/nn_loops.hpp's copy).
template <class A>
inline A gelu(A x) noexcept {
    using std::erf;
    return A(0.5) * x * (A(1) + erf(x * A(0.70710678118654752440)));
}

template <class T>
void gelu_inplace(matrix_ref<T> x, bool evaluate_in_float = false) {
    const index_t rows = x.rows(), cols = x.cols();
    const auto path = longnet::detail::nn_loops::nn_loop_path();
    LONGNET_NN_PARALLEL_FOR
    for (index_t i = 0; i < rows; ++i) {
        T* r = x.data() + i * x.outerStride();
        if constexpr (std::is_same_v<T, float>)
            longnet::detail::nn_loops::gelu(path, r, cols);
        else if (evaluate_in_float)
            for (index_t j = 0; j < cols; ++j) r[j] = static_cast<T>(gelu(static_cast<float>(r[j])));
        else
            for (index_t j = 0; j < cols; ++j) r[j] = gelu(r[j]);
    }
}

template <class A>
inline A gelu_derivative(A x) noexcept {
    using std::erf;
    using std::exp;
    return A(0.5) * (A(1) + erf(x * A(0.70710678118654752440))) +
           x * exp(A(-0.5) * x * x) * A(0.39894228040143267794);  // 1/√(2π)
}

// Backward of gelu_inplace: given the pre-activation x and dy, dx += dy ∘ gelu'(x) (dx may not alias dy;
// gelu_backward_inplace overwrites instead).
template <class T>
void gelu_backward(const_matrix_ref<T> x, const_matrix_ref<T> dy, matrix_ref<T> dx) {
    const index_t rows = x.rows(), cols = x.cols();
    const auto path = longnet::detail::nn_loops::nn_loop_path();
    LONGNET_NN_PARALLEL_FOR
    for (index_t i = 0; i < rows; ++i) {
        const T* xi = x.data() + i * x.outerStride();
        const T* gi = dy.data() + i * dy.outerStride();
        T* di = dx.data() + i * dx.outerStride();
        if constexpr (std::is_same_v<T, float>)
            longnet::detail::nn_loops::gelu_backward(path, xi, gi, di, cols);
        else
            for (index_t j = 0; j < cols; ++j) di[j] += gi[j] * gelu_derivative(xi[j]);
    }
}
// d ← d ∘ gelu'(x) (the gradient through GELU, overwriting the upstream gradient).
template <class T>
void gelu_backward_inplace(const_matrix_ref<T> x, matrix_ref<T> d) {
    const index_t rows = x.rows(), cols = x.cols();
    const auto path = longnet::detail::nn_loops::nn_loop_path();
    LONGNET_NN_PARALLEL_FOR
    for (index_t i = 0; i < rows; ++i) {
        const T* xi = x.data() + i * x.outerStride();
        T* di = d.data() + i * d.outerStride();
        if constexpr (std::is_same_v<T, float>)
            longnet::detail::nn_loops::gelu_backward_inplace(path, xi, di, cols);
        else
            for (index_t j = 0; j < cols; ++j) di[j] *= gelu_derivative(xi[j]);
    }
}

}  // namespace longnet::nn
