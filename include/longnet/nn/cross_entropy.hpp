// SPDX-License-Identifier: Apache-2.0
#pragma once
// Softmax cross-entropy over the vocabulary (natural log), forward and backward on a block of logit rows.
//   loss_t = log Σ_v exp(z_tv) − z_t,target(t)
//   ∂loss_t/∂z_tv = softmax(z_t)_v − [v = target(t)]
// The backward overwrites the logits with their gradient (no second [rows, V] buffer); callers run it
// over blocks of rows (decoder: loss_row_block) so the [T, V] logits never exist at once.
// Every target must be in [0, V) or ignore_target (−1: the row is not scored, its gradient is 0);
// checked: std::out_of_range naming the row and value.
// float rows: the max, Σ exp(z − max) and the softmax are vectorized (partial sums of at most 256 terms
// per lane in float, added in double; exp within an ulp or two of std::exp): on the runtime ISA dispatch
// (detail/nn_loops.hpp) where it picks an AVX2 or AVX-512 path, i.e. in builds without -march on such
// CPUs; otherwise (-march builds, the native path) on xsimd batches at the build's ISA. The loss is summed
// in double either way. double rows: scalar, in double.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/detail/nn_loops.hpp"
#include "longnet/nn/common.hpp"
#if LONGNET_HAS_XSIMD
#include <xsimd/xsimd.hpp>
#endif

namespace longnet::nn {

inline constexpr std::int64_t ignore_target = -1;

// The number of scored rows (targets other than ignore_target).
inline index_t scored_targets(const std::int64_t* targets, index_t rows) noexcept {
    index_t n = 0;
    for (index_t i = 0; i < rows; ++i) n += targets[i] != ignore_target;
    return n;
}

namespace detail {
inline void check_targets(const std::int64_t* targets, index_t rows, index_t vocab) {
    for (index_t i = 0; i < rows; ++i)
        if ((targets[i] < 0 && targets[i] != ignore_target) || targets[i] >= vocab)
            throw std::out_of_range("longnet::nn::cross_entropy: target " + std::to_string(targets[i]) + " at row " +
                                    std::to_string(i) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
}
#if LONGNET_HAS_XSIMD
using float_batch = xsimd::batch<float>;
inline constexpr index_t float_lanes = static_cast<index_t>(float_batch::size);
// The lanes of a batch, added in double (no horizontal-add instruction: the same on every ISA).
inline double lane_sum(const float_batch& x) noexcept {
    alignas(64) float lanes[float_batch::size];
    x.store_aligned(lanes);
    double s = 0;
    for (float l : lanes) s += static_cast<double>(l);
    return s;
}
#endif
// log Σ exp over one row, max-shifted; the sum in double (see the header comment for float rows).
// path: the runtime ISA path (float rows on avx2/avx512 go through detail/nn_loops.hpp).
template <class T>
double row_log_sum_exp(const T* z, index_t vocab, double& max_out, longnet::detail::isa_path path) {
    namespace loops = longnet::detail::nn_loops;
    if constexpr (std::is_same_v<T, float>) {
        if (path != longnet::detail::isa_path::native && vocab > 0) {
            const float m = loops::ce_max(path, z, vocab);
            max_out = m;
            return static_cast<double>(m) + std::log(loops::ce_sum_exp(path, z, vocab, m));
        }
    }
    double m = -INFINITY;
    index_t v = 0;
#if LONGNET_HAS_XSIMD
    if constexpr (std::is_same_v<T, float>) {
        if (vocab >= float_lanes) {
            float_batch bm = float_batch::load_unaligned(z);
            for (v = float_lanes; v + float_lanes <= vocab; v += float_lanes)
                bm = xsimd::max(bm, float_batch::load_unaligned(z + v));
            alignas(64) float lanes[float_batch::size];
            bm.store_aligned(lanes);
            for (float l : lanes) m = std::max(m, static_cast<double>(l));
        }
    }
#endif
    for (; v < vocab; ++v) m = std::max(m, static_cast<double>(z[v]));
    double sum = 0;
    v = 0;
#if LONGNET_HAS_XSIMD
    if constexpr (std::is_same_v<T, float>) {
        const float_batch shift(static_cast<float>(m));
        while (v + float_lanes <= vocab) {
            const index_t end = std::min(v + 256 * float_lanes, vocab - (vocab - v) % float_lanes);
            float_batch acc(0.0f);
            for (; v < end; v += float_lanes) acc += xsimd::exp(float_batch::load_unaligned(z + v) - shift);
            sum += lane_sum(acc);
        }
    }
#endif
    for (; v < vocab; ++v) sum += std::exp(static_cast<double>(z[v]) - m);
    max_out = m;
    return m + std::log(sum);
}
// z[v] ← exp(z[v] − lse)·scale for every v.
template <class T>
void softmax_scaled(T* z, index_t vocab, double lse, double scale, longnet::detail::isa_path path) {
    if constexpr (std::is_same_v<T, float>) {
        if (path != longnet::detail::isa_path::native) {
            longnet::detail::nn_loops::ce_softmax_scaled(path, z, vocab, static_cast<float>(lse), static_cast<float>(scale));
            return;
        }
    }
    index_t v = 0;
#if LONGNET_HAS_XSIMD
    if constexpr (std::is_same_v<T, float>) {
        const float_batch shift(static_cast<float>(lse)), s(static_cast<float>(scale));
        for (; v + float_lanes <= vocab; v += float_lanes)
            (xsimd::exp(float_batch::load_unaligned(z + v) - shift) * s).store_unaligned(z + v);
    }
#endif
    for (; v < vocab; ++v) z[v] = static_cast<T>(std::exp(static_cast<double>(z[v]) - lse) * scale);
}
}  // namespace detail

// Sum over the rows of the cross-entropy of logits [rows, V] against targets[0 .. rows).
template <class T>
double cross_entropy_forward(const_matrix_ref<T> logits, const std::int64_t* targets) {
    const index_t rows = logits.rows(), vocab = logits.cols();
    detail::check_targets(targets, rows, vocab);
    const auto path = longnet::detail::nn_loops::nn_loop_path();  // outside the loop: it may throw
    std::vector<double> loss(static_cast<std::size_t>(rows), 0.0);
    LONGNET_NN_PARALLEL_FOR
    for (index_t i = 0; i < rows; ++i) {
        const T* z = logits.data() + i * logits.outerStride();
        double m;
        if (targets[i] == ignore_target) continue;  // loss stays 0
        loss[static_cast<std::size_t>(i)] = detail::row_log_sum_exp(z, vocab, m, path) - static_cast<double>(z[targets[i]]);
    }
    double total = 0;
    for (double l : loss) total += l;  // fixed order: same sum for any thread count
    return total;
}

// Forward and backward at once: returns the summed loss as cross_entropy_forward does, and replaces
// logits by grad_scale · ∂(summed loss)/∂logits = grad_scale · (softmax − one_hot(target)).
template <class T>
double cross_entropy_backward(matrix_ref<T> logits, const std::int64_t* targets, double grad_scale) {
    const index_t rows = logits.rows(), vocab = logits.cols();
    detail::check_targets(targets, rows, vocab);
    const auto path = longnet::detail::nn_loops::nn_loop_path();  // outside the loop: it may throw
    std::vector<double> loss(static_cast<std::size_t>(rows), 0.0);
    LONGNET_NN_PARALLEL_FOR
    for (index_t i = 0; i < rows; ++i) {
        T* z = logits.data() + i * logits.outerStride();
        double m;
        if (targets[i] == ignore_target) {  // not scored: no loss, no gradient
            for (index_t v = 0; v < vocab; ++v) z[v] = T(0);
            continue;
        }
        const double lse = detail::row_log_sum_exp(z, vocab, m, path);
        loss[static_cast<std::size_t>(i)] = lse - static_cast<double>(z[targets[i]]);
        detail::softmax_scaled(z, vocab, lse, grad_scale, path);
        z[targets[i]] = static_cast<T>(static_cast<double>(z[targets[i]]) - grad_scale);
    }
    double total = 0;
    for (double l : loss) total += l;
    return total;
}

}  // namespace longnet::nn
