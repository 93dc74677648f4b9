// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the attention ops compute: branches, causality, head offsets, tails, scale (SPEC §2–5).

#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/tensor.hpp"

namespace longnet {

// Which gradient the backward computes (backward.hpp, distributed.hpp; the kernels take it as it is):
//   exact              the true gradient of the merged output: each branch's softmax backward uses the
//                      merged output's Δ = rowsum(dO ∘ O) (default);
//   stop_grad_weights  torchscale parity: the merge weights are held constant, each branch uses its own
//                      output's Δ_i = rowsum(dO ∘ o_i).
enum class grad_mode {
    exact,             // the true gradient of the merged output (default)
    stop_grad_weights  // merge weights held constant, as torchscale's autograd does
};

inline const char* to_string(grad_mode m) noexcept { return m == grad_mode::exact ? "exact" : "stop_grad_weights"; }

// Parse "exact" / "stop_grad_weights"; throws std::invalid_argument naming the bad value.
inline grad_mode parse_grad_mode(const std::string& s) {
    if (s == "exact") return grad_mode::exact;
    if (s == "stop_grad_weights") return grad_mode::stop_grad_weights;
    throw std::invalid_argument("longnet: unknown grad mode '" + s + "' (expected exact or stop_grad_weights)");
}


// One dilated-attention branch: segments of `segment_length` rows, every `dilation`-th row kept.
struct branch {
    index_t segment_length = 0;
    index_t dilation = 1;
};

// Which row offset head h uses inside a segment of branch (w, r).
enum class offset_policy {
    paper,      // h mod r (default): with H >= r every residue is covered by some head
    torchscale  // h / ceil(H / r): contiguous head groups, as microsoft/torchscale does
};

// What happens at the end of the sequence.
enum class tail_mode {
    exact,    // rows past N do not exist (default)
    zero_pad  // torchscale parity: zero K/V padding rows act as keys with logit 0 (non-causal only)
};

// Options of dense (standard) attention.
struct attention_options {
    bool causal = false;
    std::optional<double> scale;  // default 1/sqrt(D)
};

// Options of LongNet dilated attention.
struct dilated_options {
    std::vector<branch> branches;
    bool causal = false;
    offset_policy offsets = offset_policy::paper;
    tail_mode tail = tail_mode::exact;
    std::optional<double> scale;  // default 1/sqrt(D)

    // The paper's configuration: w = 2048..32768, r = 1, 2, 4, 6, 12.
    static dilated_options paper(bool causal = false) {
        dilated_options o;
        o.branches = {{2048, 1}, {4096, 2}, {8192, 4}, {16384, 6}, {32768, 12}};
        o.causal = causal;
        return o;
    }
    // Branches from two equally long lists (segment lengths, dilations); validated by the ops.
    static dilated_options from_lists(const std::vector<index_t>& segment_lengths,
                                      const std::vector<index_t>& dilations, bool causal = false) {
        if (segment_lengths.size() != dilations.size())
            throw std::invalid_argument("longnet: " + std::to_string(segment_lengths.size()) +
                                        " segment lengths but " + std::to_string(dilations.size()) +
                                        " dilations; the counts must be equal");
        dilated_options o;
        for (std::size_t i = 0; i < segment_lengths.size(); ++i) o.branches.push_back({segment_lengths[i], dilations[i]});
        o.causal = causal;
        return o;
    }
};

inline const char* to_string(offset_policy p) noexcept { return p == offset_policy::paper ? "paper" : "torchscale"; }
inline const char* to_string(tail_mode t) noexcept { return t == tail_mode::exact ? "exact" : "zero_pad"; }

// Parse "paper" / "torchscale"; throws std::invalid_argument naming the bad value.
inline offset_policy parse_offset_policy(const std::string& s) {
    if (s == "paper") return offset_policy::paper;
    if (s == "torchscale") return offset_policy::torchscale;
    throw std::invalid_argument("longnet: unknown offset policy '" + s + "' (expected paper or torchscale)");
}
// Parse "exact" / "zero_pad"; throws std::invalid_argument naming the bad value.
inline tail_mode parse_tail_mode(const std::string& s) {
    if (s == "exact") return tail_mode::exact;
    if (s == "zero_pad") return tail_mode::zero_pad;
    throw std::invalid_argument("longnet: unknown tail mode '" + s + "' (expected exact or zero_pad)");
}

// Row offset of head h (of H) in a branch with dilation r (SPEC §4). Always in [0, r).
inline index_t head_offset(offset_policy policy, index_t h, index_t heads, index_t dilation) noexcept {
    if (policy == offset_policy::paper) return h % dilation;
    const index_t group = (heads + dilation - 1) / dilation;  // ceil(H / r)
    return h / group;
}

// The scale the ops use: the caller's, or 1/sqrt(D).
inline double effective_scale(const std::optional<double>& scale, index_t head_dim) noexcept {
    return scale ? *scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

// Flop count of SPEC §3 (2 flops per multiply-add, QKᵀ and PV), used by benchmarks and the CLI:
// dense: 4·D·N² per head and batch item (half when causal).
inline double dense_attention_flops(index_t batch, index_t seq, index_t heads, index_t dim, bool causal) noexcept {
    const double f = 4.0 * static_cast<double>(dim) * static_cast<double>(seq) * static_cast<double>(seq);
    return static_cast<double>(batch) * static_cast<double>(heads) * (causal ? 0.5 * f : f);
}
// dilated: Σ_i 4·D·N·min(w_i, N)/r_i² per head and batch item (half when causal).
inline double dilated_attention_flops(index_t batch, index_t seq, index_t heads, index_t dim,
                                      const dilated_options& opt) noexcept {
    double f = 0;
    for (const branch& br : opt.branches) {
        const double w = static_cast<double>(br.segment_length < seq ? br.segment_length : seq);
        const double r = static_cast<double>(br.dilation);
        f += 4.0 * static_cast<double>(dim) * static_cast<double>(seq) * w / (r * r);
    }
    return static_cast<double>(batch) * static_cast<double>(heads) * (opt.causal ? 0.5 * f : f);
}

namespace detail {
inline void check_scale(const std::optional<double>& scale) {
    if (scale && !std::isfinite(*scale))
        throw std::invalid_argument("longnet: scale must be a finite number, got " + std::to_string(*scale));
}
}  // namespace detail

// Validate dilated options alone (the ops also validate shapes). Throws std::invalid_argument.
inline void validate(const dilated_options& opt) {
    if (opt.branches.empty())
        throw std::invalid_argument("longnet: dilated attention needs at least one branch (segment_length, dilation)");
    for (std::size_t i = 0; i < opt.branches.size(); ++i) {
        const branch& b = opt.branches[i];
        if (b.segment_length < 1)
            throw std::invalid_argument("longnet: branch " + std::to_string(i) + ": segment_length must be >= 1, got " +
                                        std::to_string(b.segment_length));
        if (b.dilation < 1)
            throw std::invalid_argument("longnet: branch " + std::to_string(i) + ": dilation must be >= 1, got " +
                                        std::to_string(b.dilation));
    }
    if (opt.offsets != offset_policy::paper && opt.offsets != offset_policy::torchscale)
        throw std::invalid_argument("longnet: unknown offset policy value " + std::to_string(static_cast<int>(opt.offsets)));
    if (opt.tail != tail_mode::exact && opt.tail != tail_mode::zero_pad)
        throw std::invalid_argument("longnet: unknown tail mode value " + std::to_string(static_cast<int>(opt.tail)));
    detail::check_scale(opt.scale);
}

inline void validate(const attention_options& opt) { detail::check_scale(opt.scale); }

}  // namespace longnet
