// SPDX-License-Identifier: Apache-2.0
#pragma once
// The three matrix products of a Linear layer, the only GEMMs of longnet::nn, in one place:
//   gemm_x_wt   y  = x·Wᵀ        x [rows, in],  W [out, in]  → y [rows, out]   (forward)
//   gemm_dy_w   dx += dy·W       dy [rows, out]               → dx [rows, in]   (backward, input)
//   gemm_dyt_x  dW += dyᵀ·x                                   → dW [out, in]    (backward, weight)
// Operands are row-major with unit inner stride (nn::matrix and its row blocks).
//
// Two backends, chosen at compile time:
//   oneDNN (LONGNET_WITH_ONEDNN=1: link the CMake target longnet::onednn, which defines it and links
//     libdnnl): float products run dnnl_sgemm, whose kernels oneDNN picks at run time for the CPU
//     (AVX2, AVX-512, AMX), so a build without -march gets the same speed as a native one. Threads:
//     oneDNN's OpenMP runtime is the one longnet's kernels use (Debian's libdnnl is built with OpenMP).
//     double (the test and oracle type) keeps Eigen's product: oneDNN has no double GEMM.
//   Eigen (default, header-only, nothing to link): Eigen's GEMM at the build's flags (-march matters).
// Both sum every output element over the inner dimension in an order that depends neither on the thread
// count nor on which other rows are in the product for the shapes longnet uses; docs/benchmarks.md has
// the measured speed of each.
//
// The backend is part of the functions' names (an inline namespace), so two translation units built
// with different choices link without an ODR clash.

#include <stdexcept>
#include <string>

#include "longnet/nn/common.hpp"

#if defined(LONGNET_WITH_ONEDNN) && LONGNET_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#define LONGNET_NN_GEMM_ONEDNN 1
#else
#define LONGNET_NN_GEMM_ONEDNN 0
#endif

namespace longnet::nn {

// Which backend the nn GEMMs of this translation unit use: "onednn" or "eigen".
inline constexpr const char* gemm_backend = LONGNET_NN_GEMM_ONEDNN ? "onednn" : "eigen";

namespace detail {
#if LONGNET_NN_GEMM_ONEDNN
inline namespace gemm_onednn {
// C = alpha·op(A)·op(B) + beta·C, row-major, as dnnl_sgemm takes it ('N' or 'T').
inline void sgemm(char ta, char tb, index_t m, index_t n, index_t k, const float* a, index_t lda, const float* b,
                  index_t ldb, float beta, float* c, index_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {  // an empty sum: C = beta·C (oneDNN is not asked about empty products)
        for (index_t i = 0; i < m; ++i)
            for (index_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    const dnnl_status_t st = dnnl_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    if (st != dnnl_success)
        throw std::runtime_error("longnet::nn::gemm: dnnl_sgemm failed with status " + std::to_string(static_cast<int>(st)) +
                                 " for [" + std::to_string(m) + ", " + std::to_string(k) + "] x [" + std::to_string(k) +
                                 ", " + std::to_string(n) + "]");
}
#else
inline namespace gemm_eigen {
#endif

// y = x·Wᵀ (y is overwritten).
template <class T>
void gemm_x_wt(const_matrix_ref<T> x, const matrix<T>& w, matrix_ref<T> y) {
#if LONGNET_NN_GEMM_ONEDNN
    if constexpr (std::is_same_v<T, float>) {
        sgemm('N', 'T', x.rows(), w.rows(), x.cols(), x.data(), x.outerStride(), w.data(), w.outerStride(), 0.0f,
              y.data(), y.outerStride());
        return;
    }
#endif
    y.noalias() = x * w.transpose();
}

// dx += dy·W.
template <class T>
void gemm_dy_w(const_matrix_ref<T> dy, const matrix<T>& w, matrix_ref<T> dx) {
#if LONGNET_NN_GEMM_ONEDNN
    if constexpr (std::is_same_v<T, float>) {
        sgemm('N', 'N', dy.rows(), w.cols(), dy.cols(), dy.data(), dy.outerStride(), w.data(), w.outerStride(), 1.0f,
              dx.data(), dx.outerStride());
        return;
    }
#endif
    dx.noalias() += dy * w;
}

// dW += dyᵀ·x.
template <class T>
void gemm_dyt_x(const_matrix_ref<T> dy, const_matrix_ref<T> x, matrix<T>& dw) {
#if LONGNET_NN_GEMM_ONEDNN
    if constexpr (std::is_same_v<T, float>) {
        sgemm('T', 'N', dy.cols(), x.cols(), dy.rows(), dy.data(), dy.outerStride(), x.data(), x.outerStride(), 1.0f,
              dw.data(), dw.outerStride());
        return;
    }
#endif
    dw.noalias() += dy.transpose() * x;
}

}  // namespace gemm_onednn / gemm_eigen
}  // namespace detail

}  // namespace longnet::nn
