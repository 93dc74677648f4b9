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
//
// bf16 products (mixed-precision training, linear::set_bf16_weight): the same three products with both
// operands rounded to bf16 (round to nearest even, bf16_matrix) and float outputs, float accumulation:
//   oneDNN: a matmul primitive (bf16 × bf16 → f32, the "+=" as a sum post-op). oneDNN picks its kernel
//     at run time (AVX512-BF16 or AMX brgemm; bf16_gemm_kernel() names it); where it has none for bf16,
//     the product runs as the Eigen backend's does.
//   Eigen: the operands are widened back to float and multiplied by Eigen's float GEMM: the same rounding
//     of the inputs and the same float accumulation, so the same numbers up to summation order, but no
//     faster than float (Eigen has no bf16 GEMM with float accumulation; its bfloat16 products would round
//     every partial sum to bf16). Correct everywhere, fast only with oneDNN.

#include <cstdint>
#include <stdexcept>
#include <string>

#include "longnet/nn/common.hpp"
#include "longnet/numeric.hpp"

#if defined(LONGNET_WITH_ONEDNN) && LONGNET_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#define LONGNET_NN_GEMM_ONEDNN 1
#else
#define LONGNET_NN_GEMM_ONEDNN 0
#endif

namespace longnet::nn {

// Which backend the nn GEMMs of this translation unit use: "onednn" or "eigen".
inline constexpr const char* gemm_backend = LONGNET_NN_GEMM_ONEDNN ? "onednn" : "eigen";

// bf16 values as their 16 bits (longnet::bfloat16's rounding), row-major: the operands of the bf16 products.
using bf16_matrix = Eigen::Matrix<std::uint16_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace detail {
// out = x rounded to bf16 (round to nearest even; NaN stays NaN), resized to x's shape. Rows in parallel.
inline void round_to_bf16(const_matrix_ref<float> x, bf16_matrix& out) {
    out.resize(x.rows(), x.cols());
    const index_t rows = x.rows(), cols = x.cols();
    LONGNET_NN_PARALLEL_FOR
    for (index_t i = 0; i < rows; ++i) {
        const float* src = x.data() + i * x.outerStride();
        std::uint16_t* dst = out.data() + i * cols;
        for (index_t j = 0; j < cols; ++j) dst[j] = longnet::bfloat16::from_float(src[j]);
    }
}

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

// The bf16 products: C = A·B (beta 0) or C += A·B (beta 1), A [m, k] and B [k, n] bf16 given by their
// row and column strides (a transposed operand is a stride swap), C float row-major.
struct bf16_operand {
    const std::uint16_t* data;
    index_t row_stride, col_stride;
};
// The Eigen backend's product, and the oneDNN backend's where oneDNN has no bf16 matmul: widen, float GEMM.
inline void gemm_bf16_widened(index_t m, index_t n, index_t k, bf16_operand a, bf16_operand b, bool accumulate,
                              float* c, index_t ldc) {
    matrix<float> wa(m, k), wb(k, n);
    for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < k; ++j) wa(i, j) = longnet::bfloat16::to_float(a.data[i * a.row_stride + j * a.col_stride]);
    for (index_t i = 0; i < k; ++i)
        for (index_t j = 0; j < n; ++j) wb(i, j) = longnet::bfloat16::to_float(b.data[i * b.row_stride + j * b.col_stride]);
    Eigen::Map<matrix<float>, 0, Eigen::OuterStride<>> cm(c, m, n, Eigen::OuterStride<>(ldc));
    if (accumulate)
        cm.noalias() += wa * wb;
    else
        cm.noalias() = wa * wb;
}

#if LONGNET_NN_GEMM_ONEDNN
// One oneDNN object, destroyed with its owner.
template <class H, dnnl_status_t (*Destroy)(H)>
struct dnnl_handle {
    H h = nullptr;
    dnnl_handle() = default;
    dnnl_handle(const dnnl_handle&) = delete;
    dnnl_handle& operator=(const dnnl_handle&) = delete;
    ~dnnl_handle() {
        if (h) Destroy(h);
    }
};
inline void dnnl_check(dnnl_status_t st, const char* what) {
    if (st != dnnl_success)
        throw std::runtime_error(std::string("longnet::nn::gemm (bf16): ") + what + " failed with oneDNN status " +
                                 std::to_string(static_cast<int>(st)));
}
// The CPU engine and a stream on it, one per thread (created on first use).
struct dnnl_context {
    dnnl_handle<dnnl_engine_t, dnnl_engine_destroy> engine;
    dnnl_handle<dnnl_stream_t, dnnl_stream_destroy> stream;
    dnnl_context() {
        dnnl_check(dnnl_engine_create(&engine.h, dnnl_cpu, 0), "dnnl_engine_create");
        dnnl_check(dnnl_stream_create(&stream.h, engine.h, dnnl_stream_default_flags), "dnnl_stream_create");
    }
    static dnnl_context& get() {
        thread_local dnnl_context c;
        return c;
    }
};
// The matmul primitive descriptor of one product, or null where oneDNN has no bf16 implementation.
struct bf16_matmul_desc {
    dnnl_handle<dnnl_primitive_desc_t, dnnl_primitive_desc_destroy> pd;
    dnnl_memory_desc_t a{}, b{}, c{};
    bf16_matmul_desc(index_t m, index_t n, index_t k, bf16_operand a_op, bf16_operand b_op, bool accumulate,
                     index_t ldc) {
        const dnnl_dims_t ad{m, k}, as{a_op.row_stride, a_op.col_stride}, bd{k, n}, bs{b_op.row_stride, b_op.col_stride},
            cd{m, n}, cs{ldc, 1};
        dnnl_check(dnnl_memory_desc_init_by_strides(&a, 2, ad, dnnl_bf16, as), "memory descriptor of A");
        dnnl_check(dnnl_memory_desc_init_by_strides(&b, 2, bd, dnnl_bf16, bs), "memory descriptor of B");
        dnnl_check(dnnl_memory_desc_init_by_strides(&c, 2, cd, dnnl_f32, cs), "memory descriptor of C");
        dnnl_matmul_desc_t md;
        dnnl_check(dnnl_matmul_desc_init(&md, &a, &b, nullptr, &c), "dnnl_matmul_desc_init");
        dnnl_handle<dnnl_primitive_attr_t, dnnl_primitive_attr_destroy> attr;
        dnnl_handle<dnnl_post_ops_t, dnnl_post_ops_destroy> ops;
        dnnl_check(dnnl_primitive_attr_create(&attr.h), "dnnl_primitive_attr_create");
        if (accumulate) {
            dnnl_check(dnnl_post_ops_create(&ops.h), "dnnl_post_ops_create");
            dnnl_check(dnnl_post_ops_append_sum(ops.h, 1.0f), "dnnl_post_ops_append_sum");
            dnnl_check(dnnl_primitive_attr_set_post_ops(attr.h, ops.h), "dnnl_primitive_attr_set_post_ops");
        }
        const dnnl_status_t st = dnnl_primitive_desc_create(&pd.h, &md, attr.h, dnnl_context::get().engine.h, nullptr);
        if (st == dnnl_unimplemented) pd.h = nullptr;
        else dnnl_check(st, "dnnl_primitive_desc_create (bf16 matmul)");
    }
    // oneDNN's name of the kernel it chose ("brg:avx512_core_bf16", ...), or null.
    const char* kernel() const {
        const char* name = nullptr;
        if (pd.h && dnnl_primitive_desc_query(pd.h, dnnl_query_impl_info_str, 0, &name) == dnnl_success) return name;
        return nullptr;
    }
};
#endif

inline void gemm_bf16(index_t m, index_t n, index_t k, bf16_operand a, bf16_operand b, bool accumulate, float* c,
                      index_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {  // an empty sum
        if (!accumulate)
            for (index_t i = 0; i < m; ++i)
                for (index_t j = 0; j < n; ++j) c[i * ldc + j] = 0.0f;
        return;
    }
#if LONGNET_NN_GEMM_ONEDNN
    // oneDNN's primitive cache makes a repeated shape cheap to create again.
    const bf16_matmul_desc d(m, n, k, a, b, accumulate, ldc);
    if (d.pd.h) {
        dnnl_context& ctx = dnnl_context::get();
        dnnl_handle<dnnl_primitive_t, dnnl_primitive_destroy> prim;
        dnnl_check(dnnl_primitive_create(&prim.h, d.pd.h), "dnnl_primitive_create (bf16 matmul)");
        dnnl_handle<dnnl_memory_t, dnnl_memory_destroy> am, bm, cm;
        dnnl_check(dnnl_memory_create(&am.h, &d.a, ctx.engine.h, const_cast<std::uint16_t*>(a.data)), "memory A");
        dnnl_check(dnnl_memory_create(&bm.h, &d.b, ctx.engine.h, const_cast<std::uint16_t*>(b.data)), "memory B");
        dnnl_check(dnnl_memory_create(&cm.h, &d.c, ctx.engine.h, c), "memory C");
        const dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, am.h}, {DNNL_ARG_WEIGHTS, bm.h}, {DNNL_ARG_DST, cm.h}};
        dnnl_check(dnnl_primitive_execute(prim.h, ctx.stream.h, 3, args), "dnnl_primitive_execute (bf16 matmul)");
        dnnl_check(dnnl_stream_wait(ctx.stream.h), "dnnl_stream_wait");
        return;
    }
#endif
    gemm_bf16_widened(m, n, k, a, b, accumulate, c, ldc);
}

// y = x·Wᵀ in bf16 (y overwritten). x [rows, in], w [out, in] rounded to bf16.
inline void gemm_x_wt_bf16(const bf16_matrix& x, const bf16_matrix& w, matrix_ref<float> y) {
    gemm_bf16(x.rows(), w.rows(), x.cols(), {x.data(), x.cols(), 1}, {w.data(), 1, w.cols()}, false, y.data(),
              y.outerStride());
}
// dx += dy·W in bf16. dy [rows, out], w [out, in].
inline void gemm_dy_w_bf16(const bf16_matrix& dy, const bf16_matrix& w, matrix_ref<float> dx) {
    gemm_bf16(dy.rows(), w.cols(), dy.cols(), {dy.data(), dy.cols(), 1}, {w.data(), w.cols(), 1}, true, dx.data(),
              dx.outerStride());
}
// dW += dyᵀ·x in bf16. dy [rows, out], x [rows, in].
inline void gemm_dyt_x_bf16(const bf16_matrix& dy, const bf16_matrix& x, matrix<float>& dw) {
    gemm_bf16(dy.cols(), x.cols(), dy.rows(), {dy.data(), 1, dy.cols()}, {x.data(), x.cols(), 1}, true, dw.data(),
              dw.outerStride());
}

}  // namespace gemm_onednn / gemm_eigen
}  // namespace detail

// Which kernel the bf16 products of a Linear run here: oneDNN's name for its matmul kernel (e.g.
// "brg:avx512_core_bf16") or "eigen (widened to float)" (the Eigen backend, or oneDNN without a bf16 matmul
// on this CPU: correct, no faster than float).
inline std::string bf16_gemm_kernel() {
#if LONGNET_NN_GEMM_ONEDNN
    const detail::bf16_matmul_desc d(64, 64, 64, {nullptr, 64, 1}, {nullptr, 64, 1}, false, 64);
    if (const char* k = d.kernel()) return std::string("onednn ") + k;
#endif
    return "eigen (widened to float)";
}

}  // namespace longnet::nn
