// SPDX-License-Identifier: Apache-2.0
#pragma once
// Choosing the next token from logits: greedy, temperature, top-k, top-p (nucleus), with seeds.
//
//   longnet::decoding::sampler pick({/*temperature=*/0.8, /*top_k=*/40, /*top_p=*/0.95}, /*seed=*/42);
//   std::int64_t next = pick(logits);          // logits: any Eigen vector/row, or pointer + count
//
// temperature 0 is greedy: the arg max (the lowest id among equal maxima), no random number drawn.
// Otherwise p_i ∝ exp(logit_i / temperature) (computed in double); top_k > 0 keeps the k most likely
// ids; top_p < 1 then keeps the smallest set of most likely ids whose probability reaches top_p (at
// least one id); one uniform number picks an id from what is kept, renormalised. Ties are ordered by id,
// so the candidate set and the pick are deterministic. The random numbers are the library's own
// (splitmix64), not std:: distributions: the same seed gives the same tokens on every platform, compiler
// and thread count.
//
// Errors (std::invalid_argument naming the value): temperature negative or not finite, top_k < 0,
// top_p outside (0, 1], an empty logit vector, a NaN logit; with temperature > 0 also a +inf logit or all
// logits -inf.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/tensor.hpp"

namespace longnet::decoding {

struct sampling_options {
    double temperature = 1.0;  // 0: greedy
    index_t top_k = 0;         // 0: all ids
    double top_p = 1.0;        // (0, 1]; 1: all ids

    void validate() const {
        if (!(temperature >= 0) || !std::isfinite(temperature))
            throw std::invalid_argument("longnet::decoding: temperature must be a finite number >= 0, got " + std::to_string(temperature));
        if (top_k < 0) throw std::invalid_argument("longnet::decoding: top_k must be >= 0 (0: off), got " + std::to_string(top_k));
        if (!(top_p > 0 && top_p <= 1))
            throw std::invalid_argument("longnet::decoding: top_p must be in (0, 1], got " + std::to_string(top_p));
    }
    bool greedy() const noexcept { return temperature == 0; }
};

class sampler {
public:
    explicit sampler(const sampling_options& options = {}, std::uint64_t seed = 0) : options_(options), state_(seed) {
        options_.validate();
    }

    const sampling_options& options() const noexcept { return options_; }

    // The next token id for logits[0 .. count).
    template <class T>
    std::int64_t sample(const T* logits, index_t count) {
        if (count < 1) throw std::invalid_argument("longnet::decoding::sampler: no logits to sample from");
        for (index_t i = 0; i < count; ++i)
            if (std::isnan(static_cast<double>(logits[i])))
                throw std::invalid_argument("longnet::decoding::sampler: logit " + std::to_string(i) + " is NaN");
        if (options_.greedy()) {
            index_t best = 0;
            for (index_t i = 1; i < count; ++i)
                if (logits[i] > logits[best]) best = i;
            return best;
        }
        // ids by decreasing logit, ties by id: the order top-k and top-p cut
        order_.resize(static_cast<std::size_t>(count));
        std::iota(order_.begin(), order_.end(), index_t(0));
        const auto before = [&](index_t a, index_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
        const index_t keep_k = options_.top_k > 0 ? std::min(options_.top_k, count) : count;
        if (keep_k < count) {
            std::partial_sort(order_.begin(), order_.begin() + keep_k, order_.end(), before);
            order_.resize(static_cast<std::size_t>(keep_k));
        } else {
            std::sort(order_.begin(), order_.end(), before);
        }
        const double top = static_cast<double>(logits[order_.front()]);
        if (std::isinf(top))
            throw std::invalid_argument("longnet::decoding::sampler: logit " + std::to_string(order_.front()) + " is " +
                                        (top > 0 ? "+inf" : "-inf (every logit is -inf)"));
        weights_.resize(order_.size());
        double total = 0;
        for (std::size_t i = 0; i < order_.size(); ++i) {
            weights_[i] = std::exp((static_cast<double>(logits[order_[i]]) - top) / options_.temperature);  // ≤ 1, first = 1
            total += weights_[i];
        }
        std::size_t kept = order_.size();
        if (options_.top_p < 1) {  // smallest prefix whose probability reaches top_p
            double mass = 0;
            for (std::size_t i = 0; i < order_.size(); ++i) {
                mass += weights_[i];
                if (mass >= options_.top_p * total) {
                    kept = i + 1;
                    break;
                }
            }
            total = std::accumulate(weights_.begin(), weights_.begin() + static_cast<std::ptrdiff_t>(kept), 0.0);
        }
        const double u = uniform() * total;
        double acc = 0;
        for (std::size_t i = 0; i < kept; ++i) {
            acc += weights_[i];
            if (u < acc) return order_[i];
        }
        return order_[kept - 1];  // u rounded up to total
    }
    template <class Vector>
    std::int64_t operator()(const Vector& logits) {
        const auto flat = logits.eval();
        return sample(flat.data(), static_cast<index_t>(flat.size()));
    }
    std::int64_t operator()(const std::vector<float>& logits) { return sample(logits.data(), static_cast<index_t>(logits.size())); }
    std::int64_t operator()(const std::vector<double>& logits) { return sample(logits.data(), static_cast<index_t>(logits.size())); }

    // A uniform number in [0, 1) from the sampler's stream (53 random bits).
    double uniform() noexcept { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }

private:
    std::uint64_t next() noexcept {  // splitmix64
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }

    sampling_options options_;
    std::uint64_t state_;
    std::vector<index_t> order_;
    std::vector<double> weights_;
};

}  // namespace longnet::decoding
