// SPDX-License-Identifier: Apache-2.0
#pragma once
// AdamW as torch.optim.AdamW (decoupled weight decay, bias-corrected moments), and global L2-norm
// gradient clipping as torch.nn.utils.clip_grad_norm_. Per parameter p with gradient g, step t = 1, 2, ...:
//   p ← p − lr·λ·p                         (weight decay; only on matrices: Linear weights, embedding,
//                                            output projection — never biases or LayerNorm parameters)
//   m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
// Moments are stored in T, with the parameters' layout (one buffer per parameter, same names). The update
// is computed in double, on the runtime ISA dispatch (detail/nn_loops.hpp).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/detail/nn_loops.hpp"  // the update loop, on the runtime ISA dispatch
#include "longnet/nn/common.hpp"  // LONGNET_NN_PARALLEL_FOR
#include "longnet/training/parameters.hpp"

namespace longnet::training {

struct adamw_options {
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.01;  // λ, on matrices only

    // Throws std::invalid_argument naming the bad value.
    void validate() const {
        if (!(beta1 >= 0 && beta1 < 1)) throw std::invalid_argument("adamw: beta1 must be in [0, 1), got " + std::to_string(beta1));
        if (!(beta2 >= 0 && beta2 < 1)) throw std::invalid_argument("adamw: beta2 must be in [0, 1), got " + std::to_string(beta2));
        if (!(eps > 0) || !std::isfinite(eps)) throw std::invalid_argument("adamw: eps must be a positive number, got " + std::to_string(eps));
        if (!(weight_decay >= 0) || !std::isfinite(weight_decay))
            throw std::invalid_argument("adamw: weight decay must be >= 0, got " + std::to_string(weight_decay));
    }
};

// The global L2 norm of all gradients (accumulated in double, in list order).
template <class T>
double global_grad_norm(const std::vector<named_tensor<T>>& grads) {
    double sq = 0;
    for (const auto& g : grads)
        for (std::int64_t i = 0; i < g.size(); ++i) sq += static_cast<double>(g.data[i]) * static_cast<double>(g.data[i]);
    return std::sqrt(sq);
}

// torch clip_grad_norm_: when max_norm / (norm + 1e-6) < 1, scale every gradient by it. max_norm <= 0
// turns clipping off. Returns the norm before clipping.
template <class T>
double clip_grad_norm(const std::vector<named_tensor<T>>& grads, double max_norm) {
    const double norm = global_grad_norm(grads);
    if (max_norm > 0) {
        const double coef = max_norm / (norm + 1e-6);
        if (coef < 1)
            for (const auto& g : grads)
                for (std::int64_t i = 0; i < g.size(); ++i) g.data[i] = static_cast<T>(static_cast<double>(g.data[i]) * coef);
    }
    return norm;
}

template <class T>
class adamw {
public:
    adamw() = default;
    // Zero moments shaped like params.
    adamw(const std::vector<named_tensor<T>>& params, const adamw_options& opt) : options_(opt) {
        opt.validate();
        for (const auto& p : params) {
            exp_avg_.emplace_back(static_cast<std::size_t>(p.size()), T(0));
            exp_avg_sq_.emplace_back(static_cast<std::size_t>(p.size()), T(0));
        }
    }

    const adamw_options& options() const noexcept { return options_; }
    std::int64_t steps() const noexcept { return step_; }

    // One step with learning rate lr. params and grads: named_parameters / named_gradients of one model.
    void step(const std::vector<named_tensor<T>>& params, const std::vector<named_tensor<T>>& grads, double lr) {
        if (params.size() != exp_avg_.size() || grads.size() != params.size())
            throw std::invalid_argument("adamw: " + std::to_string(params.size()) + " parameters and " +
                                        std::to_string(grads.size()) + " gradients for an optimizer of " +
                                        std::to_string(exp_avg_.size()) + " tensors");
        if (!std::isfinite(lr) || lr < 0) throw std::invalid_argument("adamw: learning rate must be >= 0, got " + std::to_string(lr));
        ++step_;
        const double b1 = options_.beta1, b2 = options_.beta2;
        const double bias1 = 1 - std::pow(b1, static_cast<double>(step_));
        const double bias2_sqrt = std::sqrt(1 - std::pow(b2, static_cast<double>(step_)));
        const double step_size = lr / bias1;
        namespace loops = longnet::detail::nn_loops;
        const auto path = loops::nn_loop_path();
        for (std::size_t t = 0; t < params.size(); ++t) {
            const auto& p = params[t];
            const auto& g = grads[t];
            if (p.size() != g.size() || static_cast<std::size_t>(p.size()) != exp_avg_[t].size())
                throw std::invalid_argument("adamw: tensor " + p.name + " has " + std::to_string(p.size()) +
                                            " values but its gradient/state has " + std::to_string(g.size()));
            const loops::adamw_coefficients c{1 - lr * (p.is_matrix() ? options_.weight_decay : 0.0), b1, b2, step_size,
                                              bias2_sqrt, options_.eps};
            T* x = p.data;
            const T* d = g.data;
            T* m = exp_avg_[t].data();
            T* v = exp_avg_sq_[t].data();
            const std::int64_t n = p.size();
            // elementwise, in chunks of a multiple of 16 (the blocks of the update): the same values for any
            // thread count
            constexpr std::int64_t chunk = 4096;
            const std::int64_t chunks = (n + chunk - 1) / chunk;
            LONGNET_NN_PARALLEL_FOR
            for (std::int64_t k = 0; k < chunks; ++k) {
                const std::int64_t i0 = k * chunk, len = std::min(chunk, n - i0);
                loops::adamw(path, x + i0, d + i0, m + i0, v + i0, len, c);
            }
        }
    }

    // State, for checkpoints: first and second moments per tensor (same order as the parameters).
    std::vector<std::vector<T>>& exp_avg() noexcept { return exp_avg_; }
    std::vector<std::vector<T>>& exp_avg_sq() noexcept { return exp_avg_sq_; }
    void set_steps(std::int64_t s) noexcept { step_ = s; }

private:
    adamw_options options_;
    std::int64_t step_ = 0;
    std::vector<std::vector<T>> exp_avg_, exp_avg_sq_;
};

}  // namespace longnet::training
