// SPDX-License-Identifier: Apache-2.0
#pragma once
// The elementwise and row-reduction loops of nn/ and training/ (GELU forward and backward in float,
// LayerNorm's rows and parameter sums, the float cross-entropy's row max, Σ exp and softmax, AdamW's
// update) on the runtime ISA dispatch: the bodies
// (nn_loop_bodies.hpp) are compiled once per instruction-set path by foreach_isa.hpp, like the attention
// kernels, so a build without -march runs them with AVX2 or AVX-512 where the CPU has it. A -march
// build has the native path only. Callers take the path once (nn_loop_path(), outside their OpenMP
// loops: it throws when LONGNET_ISA names an unusable path) and pass it to each call.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "longnet/config.hpp"
#include "longnet/detail/runtime_isa.hpp"
#include "longnet/detail/simd_x86.hpp"
#include "longnet/detail/target_region.hpp"
#include "longnet/tensor.hpp"  // index_t
#if LONGNET_HAS_XSIMD
#include <xsimd/xsimd.hpp>
#endif

namespace longnet::detail::nn_loops {

// AdamW's per-step coefficients (adamw.hpp).
struct adamw_coefficients {
    double decay;       // 1 − lr·λ (λ = 0 for vectors)
    double beta1, beta2;
    double step_size;   // lr / (1 − β1^t)
    double bias2_sqrt;  // sqrt(1 − β2^t)
    double eps;
};

// p[0..16) ← sqrt(p[0..16)), correctly rounded, per path.
inline namespace isa_native {
inline void sqrt_block(double* p) noexcept {
#if LONGNET_HAS_XSIMD
    using batch = xsimd::batch<double>;
    for (int l = 0; l < 16; l += static_cast<int>(batch::size)) xsimd::sqrt(batch::load_unaligned(p + l)).store_unaligned(p + l);
#else
    for (int l = 0; l < 16; ++l) p[l] = std::sqrt(p[l]);
#endif
}
}  // namespace isa_native
#if LONGNET_DISPATCH_AVX2
namespace isa_avx2 {
LONGNET_AVX2_FN void sqrt_block(double* p) noexcept {
    for (int l = 0; l < 16; l += 4) _mm256_storeu_pd(p + l, _mm256_sqrt_pd(_mm256_loadu_pd(p + l)));
}
}  // namespace isa_avx2
#endif
#if LONGNET_DISPATCH_AVX512
namespace isa_avx512 {
LONGNET_AVX512_FN void sqrt_block(double* p) noexcept {
    for (int l = 0; l < 16; l += 8) _mm512_storeu_pd(p + l, _mm512_sqrt_pd(_mm512_loadu_pd(p + l)));
}
}  // namespace isa_avx512
#endif

}  // namespace longnet::detail::nn_loops

#define LONGNET_ISA_NO_TOGGLE_
#define LONGNET_ISA_BODIES "longnet/detail/nn_loop_bodies.hpp"
#include "longnet/detail/foreach_isa.hpp"

// LONGNET_DETAIL_NN_CALL_(path, call): `return ns::call;` for the namespace of `path`.
#if LONGNET_DISPATCH_AVX512
#define LONGNET_DETAIL_NN_AVX512_(path, call) \
    if (path == isa_path::avx512) return isa_avx512::call;
#else
#define LONGNET_DETAIL_NN_AVX512_(path, call)
#endif
#if LONGNET_DISPATCH_AVX2
#define LONGNET_DETAIL_NN_AVX2_(path, call) \
    if (path == isa_path::avx2) return isa_avx2::call;
#else
#define LONGNET_DETAIL_NN_AVX2_(path, call)
#endif
#define LONGNET_DETAIL_NN_CALL_(path, call)  \
    (void)path;                              \
    LONGNET_DETAIL_NN_AVX512_(path, call)    \
    LONGNET_DETAIL_NN_AVX2_(path, call)      \
    return isa_native::call;

namespace longnet::detail::nn_loops {

// The path the loops run (active_isa(); throws std::invalid_argument when LONGNET_ISA is unusable).
inline isa_path nn_loop_path() { return active_isa(); }

inline void gelu(isa_path path, float* r, index_t n) noexcept { LONGNET_DETAIL_NN_CALL_(path, gelu_row(r, n)) }
inline void gelu_backward(isa_path path, const float* x, const float* dy, float* d, index_t n) noexcept {
    LONGNET_DETAIL_NN_CALL_(path, gelu_backward_row(x, dy, d, n))
}
inline void gelu_backward_inplace(isa_path path, const float* x, float* d, index_t n) noexcept {
    LONGNET_DETAIL_NN_CALL_(path, gelu_backward_inplace_row(x, d, n))
}
template <class T>
void layer_norm(isa_path path, const T* x, T* y, const T* w, const T* b, index_t n, T eps, T& mean, T& rstd) noexcept {
    LONGNET_DETAIL_NN_CALL_(path, layer_norm_row<T>(x, y, w, b, n, eps, mean, rstd))
}
template <class T>
void layer_norm_backward(isa_path path, const T* x, const T* dy, const T* w, T mu, T rs, T* d, index_t n) noexcept {
    LONGNET_DETAIL_NN_CALL_(path, layer_norm_backward_row<T>(x, dy, w, mu, rs, d, n))
}
template <class T>
void layer_norm_params(isa_path path, const T* x, const T* dy, T mu, T rs, T* dw, T* db, index_t n) noexcept {
    LONGNET_DETAIL_NN_CALL_(path, layer_norm_param_row<T>(x, dy, mu, rs, dw, db, n))
}
inline float ce_max(isa_path path, const float* z, index_t n) noexcept { LONGNET_DETAIL_NN_CALL_(path, ce_row_max(z, n)) }
inline double ce_sum_exp(isa_path path, const float* z, index_t n, float shift) noexcept {
    LONGNET_DETAIL_NN_CALL_(path, ce_row_sum_exp(z, n, shift))
}
inline void ce_softmax_scaled(isa_path path, float* z, index_t n, float shift, float scale) noexcept {
    LONGNET_DETAIL_NN_CALL_(path, ce_softmax_scaled_row(z, n, shift, scale))
}
template <class T>
void adamw(isa_path path, T* x, const T* d, T* m, T* v, std::int64_t n, const adamw_coefficients& c) noexcept {
    LONGNET_DETAIL_NN_CALL_(path, adamw_update<T>(x, d, m, v, n, c))
}

}  // namespace longnet::detail::nn_loops

#undef LONGNET_DETAIL_NN_AVX512_
#undef LONGNET_DETAIL_NN_AVX2_
#undef LONGNET_DETAIL_NN_CALL_
