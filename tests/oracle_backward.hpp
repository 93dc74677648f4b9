// SPDX-License-Identifier: Apache-2.0
#pragma once
// Slow, obviously correct double-precision oracles of the backward (SPEC §6), built on the forward
// oracle's key lists (oracle.hpp). Gradients are those of sum(out ∘ dout).
//
//   exact:             one softmax per query over the multiset of (branch, key) pairs it sees;
//                      the softmax Jacobian applied entry by entry.
//   stop_grad_weights: per branch its own softmax over its own keys (o_i, l_i); the upstream gradient
//                      of branch i is α_i·dO with α_i = exp(l_i − L) a constant.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "oracle.hpp"

namespace oracle {

struct gradients {
    std::vector<double> dq, dk, dv;
};

// The keys one branch shows query p of head h (−1: a zero padding key); empty if it does not select p.
inline std::vector<std::int64_t> branch_keys_of(const config& c, std::size_t i, std::int64_t p, std::int64_t h) {
    config one = c;
    one.segments = {c.segments[i]};
    one.dilations = {c.dilations[i]};
    return keys_of(one, p, h);
}

// Backward of one softmax over `keys` for query (b, p, h): adds into g. `upstream` is the output gradient
// row, `delta` = upstream · (this softmax's output), `log_norm` the log-sum-exp that normalises it.
inline void softmax_backward(const config& c, const std::vector<double>& q, const std::vector<double>& k,
                             const std::vector<double>& v, const std::vector<std::int64_t>& keys, std::int64_t b,
                             std::int64_t p, std::int64_t h, const double* upstream, double delta, double log_norm,
                             gradients& g) {
    const double scale = c.scale != 0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.D));
    auto at = [&](std::int64_t n) { return static_cast<std::size_t>(((b * c.N + n) * c.H + h) * c.D); };
    for (std::int64_t j : keys) {
        if (j < 0) continue;  // a padding key has no k or v row: no gradient target
        double dot = 0, dp = 0;
        for (std::int64_t d = 0; d < c.D; ++d) {
            dot += q[at(p) + static_cast<std::size_t>(d)] * k[at(j) + static_cast<std::size_t>(d)];
            dp += upstream[d] * v[at(j) + static_cast<std::size_t>(d)];
        }
        const double prob = std::exp(scale * dot - log_norm);
        const double ds = prob * (dp - delta);
        for (std::int64_t d = 0; d < c.D; ++d) {
            const auto e = static_cast<std::size_t>(d);
            g.dq[at(p) + e] += scale * ds * k[at(j) + e];
            g.dk[at(j) + e] += scale * ds * q[at(p) + e];
            g.dv[at(j) + e] += prob * upstream[d];
        }
    }
}

// log Σ exp(τ q_p·k_j) over keys (padding keys: logit 0), and the normalised output.
inline double softmax_forward(const config& c, const std::vector<double>& q, const std::vector<double>& k,
                              const std::vector<double>& v, const std::vector<std::int64_t>& keys, std::int64_t b,
                              std::int64_t p, std::int64_t h, std::vector<double>& out_row) {
    const double scale = c.scale != 0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.D));
    auto at = [&](std::int64_t n) { return static_cast<std::size_t>(((b * c.N + n) * c.H + h) * c.D); };
    std::vector<double> logits;
    for (std::int64_t j : keys) {
        double dot = 0;
        if (j >= 0)
            for (std::int64_t d = 0; d < c.D; ++d) dot += q[at(p) + static_cast<std::size_t>(d)] * k[at(j) + static_cast<std::size_t>(d)];
        logits.push_back(scale * dot);
    }
    const double mx = *std::max_element(logits.begin(), logits.end());
    double z = 0;
    for (double x : logits) z += std::exp(x - mx);
    out_row.assign(static_cast<std::size_t>(c.D), 0.0);
    for (std::size_t e = 0; e < keys.size(); ++e) {
        if (keys[e] < 0) continue;
        const double w = std::exp(logits[e] - mx) / z;
        for (std::int64_t d = 0; d < c.D; ++d) out_row[static_cast<std::size_t>(d)] += w * v[at(keys[e]) + static_cast<std::size_t>(d)];
    }
    return mx + std::log(z);
}

// The true gradient of the merged output.
inline gradients dilated_backward_exact(const config& c, const std::vector<double>& q, const std::vector<double>& k,
                                        const std::vector<double>& v, const std::vector<double>& dout) {
    gradients g{std::vector<double>(q.size(), 0.0), std::vector<double>(q.size(), 0.0), std::vector<double>(q.size(), 0.0)};
    std::vector<double> o;
    for (std::int64_t b = 0; b < c.B; ++b)
        for (std::int64_t p = 0; p < c.N; ++p)
            for (std::int64_t h = 0; h < c.H; ++h) {
                const auto keys = keys_of(c, p, h);
                if (keys.empty()) continue;
                const double L = softmax_forward(c, q, k, v, keys, b, p, h, o);
                const double* up = dout.data() + ((b * c.N + p) * c.H + h) * c.D;
                double delta = 0;
                for (std::int64_t d = 0; d < c.D; ++d) delta += up[d] * o[static_cast<std::size_t>(d)];
                softmax_backward(c, q, k, v, keys, b, p, h, up, delta, L, g);
            }
    return g;
}

// Merge weights held constant (torchscale's autograd).
inline gradients dilated_backward_stop_grad(const config& c, const std::vector<double>& q, const std::vector<double>& k,
                                            const std::vector<double>& v, const std::vector<double>& dout) {
    gradients g{std::vector<double>(q.size(), 0.0), std::vector<double>(q.size(), 0.0), std::vector<double>(q.size(), 0.0)};
    const std::size_t branches = c.segments.size();
    std::vector<std::vector<double>> o(branches);
    std::vector<double> l(branches);
    std::vector<double> up(static_cast<std::size_t>(c.D));
    for (std::int64_t b = 0; b < c.B; ++b)
        for (std::int64_t p = 0; p < c.N; ++p)
            for (std::int64_t h = 0; h < c.H; ++h) {
                std::vector<std::vector<std::int64_t>> keys(branches);
                double L = -std::numeric_limits<double>::infinity();
                for (std::size_t i = 0; i < branches; ++i) {
                    keys[i] = branch_keys_of(c, i, p, h);
                    if (keys[i].empty()) continue;
                    l[i] = softmax_forward(c, q, k, v, keys[i], b, p, h, o[i]);
                    const double hi = std::max(L, l[i]);
                    L = hi + std::log(std::exp(L - hi) + std::exp(l[i] - hi));
                }
                const double* dout_row = dout.data() + ((b * c.N + p) * c.H + h) * c.D;
                for (std::size_t i = 0; i < branches; ++i) {
                    if (keys[i].empty()) continue;
                    const double alpha = std::exp(l[i] - L);  // constant merge weight
                    double delta = 0;
                    for (std::int64_t d = 0; d < c.D; ++d) {
                        up[static_cast<std::size_t>(d)] = alpha * dout_row[d];
                        delta += up[static_cast<std::size_t>(d)] * o[i][static_cast<std::size_t>(d)];
                    }
                    softmax_backward(c, q, k, v, keys[i], b, p, h, up.data(), delta, l[i], g);
                }
            }
    return g;
}

}  // namespace oracle
