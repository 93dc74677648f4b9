// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared vocabulary of the longnet::nn layers.
//
// Activations are Eigen row-major matrices [tokens, features]: one sequence (batch 1) at a time. Row i
// of q/k/v [T, H·hd] is token i, head h owns columns h·hd .. h·hd + hd − 1, so the same buffer is the
// [B=1, N=T, H, hd] view the attention ops take (make_bnhd).
//
// T is the compute type (float or double); W is the storage type of the big weight matrices (Linear
// weights, token embedding, output projection): T itself, float in a double build, or Eigen::bfloat16.
// Weights stored narrower than T are widened to T right before each GEMM (fp32 accumulation for bf16).
// Small parameters (biases, LayerNorm gains) are always stored as T.

#include <chrono>
#include <cstdint>
#include <type_traits>

#include "longnet/detail/x86_intrinsics.hpp"  // before Eigen: GCC 12 AVX-512 warning, see there
#include <Eigen/Core>

#include "longnet/config.hpp"
#include "longnet/tensor.hpp"

// Parallel loop over rows, serial without OpenMP (no unknown-pragma warnings).
#if LONGNET_HAS_OPENMP
#define LONGNET_NN_PARALLEL_FOR _Pragma("omp parallel for schedule(static)")
#else
#define LONGNET_NN_PARALLEL_FOR
#endif

namespace longnet::nn {

template <class T>
using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
// A block of rows of a matrix<T> (or the whole of one), as layers read and write it.
template <class T>
using matrix_ref = Eigen::Ref<matrix<T>>;
template <class T>
using const_matrix_ref = Eigen::Ref<const matrix<T>>;

template <class T>
struct is_compute_type : std::bool_constant<std::is_same_v<T, float> || std::is_same_v<T, double>> {};
template <class W>
struct is_weight_type
    : std::bool_constant<std::is_same_v<W, float> || std::is_same_v<W, double> || std::is_same_v<W, Eigen::bfloat16>> {};

// Where a forward pass spends its time (wall seconds, accumulated over calls).
struct forward_profile {
    double attention = 0;  // the attention op (dilated or dense)
    double dense = 0;      // GEMMs: q/k/v/out projections, FFN, output projection
    double norms = 0;      // LayerNorms (pre-LN, Sub-LN, final)
    double other = 0;      // XPos/RoPE rotation, GELU, embedding lookup, residual adds
    double total() const noexcept { return attention + dense + norms + other; }
    void reset() noexcept { *this = forward_profile{}; }
};

namespace detail {
// Adds the scope's wall time to *slot (nothing when slot is null).
class scoped_timer {
public:
    explicit scoped_timer(double* slot) noexcept : slot_(slot) {
        if (slot_) start_ = std::chrono::steady_clock::now();
    }
    scoped_timer(const scoped_timer&) = delete;
    scoped_timer& operator=(const scoped_timer&) = delete;
    ~scoped_timer() {
        if (slot_) *slot_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }

private:
    double* slot_;
    std::chrono::steady_clock::time_point start_;
};
inline double* slot(forward_profile* p, double forward_profile::*member) noexcept { return p ? &(p->*member) : nullptr; }
}  // namespace detail

}  // namespace longnet::nn
