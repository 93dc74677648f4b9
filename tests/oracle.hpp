// SPDX-License-Identifier: Apache-2.0
#pragma once
// Slow, obviously correct double-precision oracle of SPEC §3: for one query, list every (branch, key)
// it sees (a key two branches both show counts twice; zero_pad adds keys with logit 0 and value 0),
// take one softmax. Independent of the library's kernels: it shares only head_offset's formula,
// written out again here.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace oracle {

enum class offsets { paper, torchscale };

struct config {
    std::int64_t B = 1, N = 1, H = 1, D = 1;
    std::vector<std::int64_t> segments, dilations;
    bool causal = false;
    offsets policy = offsets::paper;
    bool zero_pad = false;
    double scale = 0;  // 0: 1/sqrt(D)
};

inline std::int64_t offset_of(const config& c, std::int64_t h, std::int64_t r) {
    if (c.policy == offsets::paper) return h % r;
    const std::int64_t group = (c.H + r - 1) / r;
    return h / group;
}

// Contiguous [B, N, H, D] data in double; out [B, N, H, D], lse [B, N, H].
struct result {
    std::vector<double> out, lse;
};

// One entry of the multiset: key position, or -1 for a zero padding key.
inline std::vector<std::int64_t> keys_of(const config& c, std::int64_t p, std::int64_t h) {
    std::vector<std::int64_t> keys;
    for (std::size_t i = 0; i < c.segments.size(); ++i) {
        const std::int64_t w = std::min(c.segments[i], c.N), r = c.dilations[i];
        const std::int64_t o = offset_of(c, h, r);
        const std::int64_t start = (p / w) * w, end = std::min(start + w, c.N);
        if (p - start < o || (p - start - o) % r != 0) continue;  // branch i does not select p
        std::int64_t selected = 0;
        for (std::int64_t j = start + o; j < end; j += r) {
            ++selected;
            if (c.causal && j > p) continue;
            keys.push_back(j);
        }
        if (c.zero_pad && !c.causal) {
            const std::int64_t full = (w + r - 1) / r;  // selected rows of a zero-padded segment
            for (std::int64_t e = selected; e < full; ++e) keys.push_back(-1);
        }
    }
    return keys;
}

inline result dilated(const config& c, const std::vector<double>& q, const std::vector<double>& k,
                      const std::vector<double>& v) {
    const double scale = c.scale != 0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.D));
    result res;
    res.out.assign(static_cast<std::size_t>(c.B * c.N * c.H * c.D), 0.0);
    res.lse.assign(static_cast<std::size_t>(c.B * c.N * c.H), -std::numeric_limits<double>::infinity());
    auto at = [&](std::int64_t b, std::int64_t n, std::int64_t h) { return ((b * c.N + n) * c.H + h) * c.D; };
    for (std::int64_t b = 0; b < c.B; ++b)
        for (std::int64_t p = 0; p < c.N; ++p)
            for (std::int64_t h = 0; h < c.H; ++h) {
                const auto keys = keys_of(c, p, h);
                if (keys.empty()) continue;
                std::vector<double> logits;
                for (std::int64_t j : keys) {
                    double dot = 0;
                    if (j >= 0)
                        for (std::int64_t d = 0; d < c.D; ++d) dot += q[at(b, p, h) + d] * k[at(b, j, h) + d];
                    logits.push_back(scale * dot);
                }
                const double mx = *std::max_element(logits.begin(), logits.end());
                double z = 0;
                for (double x : logits) z += std::exp(x - mx);
                for (std::size_t e = 0; e < keys.size(); ++e) {
                    if (keys[e] < 0) continue;
                    const double weight = std::exp(logits[e] - mx) / z;
                    for (std::int64_t d = 0; d < c.D; ++d) res.out[at(b, p, h) + d] += weight * v[at(b, keys[e], h) + d];
                }
                res.lse[static_cast<std::size_t>((b * c.N + p) * c.H + h)] = mx + std::log(z);
            }
    return res;
}

// Standard normal values (never all zero), deterministic per seed.
inline std::vector<double> random_normal(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    std::normal_distribution<double> dist(0.0, 1.0);
    std::vector<double> x(n);
    for (auto& e : x) e = dist(gen);
    return x;
}

}  // namespace oracle
