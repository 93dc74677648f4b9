// SPDX-License-Identifier: Apache-2.0
#pragma once
// Incremental decoding of a LongNet decoder (nn::decoder with dilated attention) with a bounded cache.
//
//   longnet::decoding::incremental_decoder<float> gen(model);     // keeps a reference to model
//   auto state = gen.make_state();
//   nn::vector<float> logits = gen.prefill(state, prompt);         // logits of the last prompt token
//   logits = gen.step(state, next_token);                          // logits at the next position
//
// prefill(tokens) runs the full-sequence forward (the dilated kernels) over the prompt and keeps, per
// layer, branch and head, the keys and values of the current segment's selected rows (decoding/state.hpp).
// step(token) appends the token at position p = state.position(): in each branch where the head selects
// p, its key and value join the cache and its query attends to the cached rows (all at positions ≤ p, in
// p's segment); the branches merge through their log-sum-exps as in dilated_attention (SPEC §3, §8).
// The logits of step at p equal row p of the full forward's logits (to rounding), for both offset
// policies, any prompt length (0 included) and across segment boundaries of every branch. A step costs
// the same at position 1K and at position 1G: it reads at most Σ_branches ceil(w/r) rows per head.
//
// Batches: prefill(states, prompts) and step(states, tokens) take one state per sequence; each sequence
// has its own length and position. step reads each weight matrix once for the whole batch, and row i of
// a batched step is bitwise what sequence i gets stepped alone (see "the products of a step" below).
//
// first_position (prefill): the prompt's tokens sit at positions first_position .. first_position + n − 1.
// It must be a multiple of every segment length; then nothing before it is visible to these or later
// tokens, and the state equals that of any sequence of first_position earlier tokens followed by the
// prompt. This reaches long positions cheaply (benchmarks, streaming past a segment boundary).
//
// Errors (std::invalid_argument, or std::out_of_range for token ids): a token outside [0, vocab) (named
// with its position), prefill on a state that is not at position 0, a state made for another model, a
// batch whose sizes differ or that names one state twice, a model with dense attention (its cache would
// grow with the position).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "longnet/decoding/state.hpp"
#include "longnet/detail/dispatch.hpp"
#include "longnet/nn/decoder.hpp"
#include "longnet/nn/gelu.hpp"
#include "longnet/options.hpp"

namespace longnet::decoding {

namespace detail {
#if defined(__GNUC__)
// 16 lanes of T as one GCC/Clang vector (lowered to the target's registers: 1 zmm, 2 ymm, 4 xmm of float).
template <class T>
struct lane_vector;
template <>
struct lane_vector<float> {
    typedef float type __attribute__((vector_size(64)));
};
template <>
struct lane_vector<double> {
    typedef double type __attribute__((vector_size(128)));
};
#endif
}  // namespace detail

template <class T, class W = T>
class incremental_decoder {
public:
    using model_type = nn::decoder<T, W>;

    explicit incremental_decoder(const model_type& model) : model_(&model) {
        if (model.layers.empty()) throw std::invalid_argument("longnet::decoding: the model has no layers");
        if (model.options.attention != nn::attention_kind::dilated)
            throw std::invalid_argument("longnet::decoding: incremental decoding needs dilated attention; with dense "
                                        "attention the cache would grow with the position");
        // XPos of a segment longer than the anchor's limit runs as blocks (key_offset): the one thing that
        // can refuse it, a dilation longer than a block, is found here rather than mid-step
        for (const auto& layer : model.layers)
            if (layer.self_attn.config.rotary.kind == nn::position_encoding::xpos)
                for (const branch& br : layer.self_attn.config.dilated.branches)
                    if (br.segment_length > layer.self_attn.rotary.segment_limit()) (void)layer.self_attn.rotary.block_length(br.dilation);
    }

    const model_type& model() const noexcept { return *model_; }
    const dilated_options& attention() const noexcept { return model_->layers.front().self_attn.config.dilated; }

    // An empty state (position 0) for this model.
    decoding_state<T> make_state() const {
        const nn::decoder_config& c = model_->config;
        return decoding_state<T>(static_cast<index_t>(model_->layers.size()), c.heads, c.head_dim(), attention());
    }

    // ---- one sequence ------------------------------------------------------------------------------------

    // Feeds the prompt (positions first_position ..) to a state at position 0; returns the logits [vocab]
    // of its last token (an empty vector for an empty prompt).
    nn::vector<T> prefill(decoding_state<T>& state, const std::vector<std::int64_t>& tokens, index_t first_position = 0,
                          nn::forward_profile* profile = nullptr) const {
        check_state(state, "prefill");
        if (state.position_ != 0)
            throw std::invalid_argument("longnet::decoding::prefill: the state is at position " + std::to_string(state.position_) +
                                        ", not 0; continue it with step() or clear() it first");
        model_->layers.front().self_attn.check_first_position(first_position);
        check_tokens(tokens, first_position, "prefill");
        const index_t n = static_cast<index_t>(tokens.size()), next = first_position + n;
        for (index_t b = 0; b < state.branch_count(); ++b)
            state.start_segment(b, next / state.branches_[static_cast<std::size_t>(b)].segment_length);
        state.position_ = first_position;
        if (n == 0) return nn::vector<T>();

        try {
            return prefill_layers(state, tokens, first_position, profile);
        } catch (...) {
            state.clear();  // a failed prefill leaves an empty state, not a half-filled one
            throw;
        }
    }

    // Feeds one token at position state.position(); returns the logits [vocab] at that position.
    nn::vector<T> step(decoding_state<T>& state, std::int64_t token) const {
        decoding_state<T>* one = &state;
        return step_batch(&one, &token, 1).row(0).transpose();
    }

    // ---- batches ------------------------------------------------------------------------------------------

    // prompts[i] into states[i] (each at position 0); row i of the result: the logits of its last token
    // (NaN for an empty prompt: there is nothing to predict from).
    nn::matrix<T> prefill(std::vector<decoding_state<T>>& states, const std::vector<std::vector<std::int64_t>>& prompts) const {
        if (states.size() != prompts.size())
            throw std::invalid_argument("longnet::decoding::prefill: " + std::to_string(states.size()) + " states but " +
                                        std::to_string(prompts.size()) + " prompts");
        for (std::size_t i = 0; i < states.size(); ++i) {  // every bad input before any state changes
            check_state(states[i], "prefill");
            if (states[i].position_ != 0)
                throw std::invalid_argument("longnet::decoding::prefill: state " + std::to_string(i) + " is at position " +
                                            std::to_string(states[i].position_) + ", not 0");
            for (std::size_t j = 0; j < i; ++j)
                if (&states[j] == &states[i]) throw std::invalid_argument("longnet::decoding::prefill: a state given twice");
            check_tokens(prompts[i], 0, "prefill");
        }
        nn::matrix<T> logits(static_cast<index_t>(states.size()), model_->vocab_size());
        for (std::size_t i = 0; i < states.size(); ++i) {
            const nn::vector<T> row = prefill(states[i], prompts[i]);
            if (row.size() == 0) logits.row(static_cast<index_t>(i)).setConstant(std::numeric_limits<T>::quiet_NaN());
            else logits.row(static_cast<index_t>(i)) = row.transpose();
        }
        return logits;
    }

    // tokens[i] into states[i], at each state's own position; row i: its logits.
    nn::matrix<T> step(std::vector<decoding_state<T>>& states, const std::vector<std::int64_t>& tokens) const {
        if (states.size() != tokens.size())
            throw std::invalid_argument("longnet::decoding::step: " + std::to_string(states.size()) + " states but " +
                                        std::to_string(tokens.size()) + " tokens");
        std::vector<decoding_state<T>*> ptrs;
        for (auto& s : states) ptrs.push_back(&s);
        return step_batch(ptrs.data(), tokens.data(), static_cast<index_t>(tokens.size()));
    }
    // The same over states held elsewhere (each pointer once).
    nn::matrix<T> step(const std::vector<decoding_state<T>*>& states, const std::vector<std::int64_t>& tokens) const {
        if (states.size() != tokens.size())
            throw std::invalid_argument("longnet::decoding::step: " + std::to_string(states.size()) + " states but " +
                                        std::to_string(tokens.size()) + " tokens");
        return step_batch(states.data(), tokens.data(), static_cast<index_t>(tokens.size()));
    }

private:
    const model_type* model_;

    nn::vector<T> prefill_layers(decoding_state<T>& state, const std::vector<std::int64_t>& tokens, index_t first_position,
                                 nn::forward_profile* profile) const {
        const index_t n = static_cast<index_t>(tokens.size()), next = first_position + n;
        nn::matrix<T> x = model_->embed(tokens), h(n, model_->embed_dim()), y(n, model_->embed_dim());
        for (std::size_t l = 0; l < model_->layers.size(); ++l) {
            const auto& layer = model_->layers[l];
            const auto keep = [&](const nn::matrix<T>& keys, const nn::matrix<T>& values) {
                fill_layer(state, static_cast<index_t>(l), keys, values, first_position);
            };
            // the decoder layer (nn/decoder_layer.hpp) with the cache observer on its attention
            layer.self_attn_layer_norm.forward(x, h);
            layer.self_attn.forward(h, y, profile, first_position, keep);
            x += y;
            layer.final_layer_norm.forward(x, h);
            layer.ffn.forward(h, y, profile);
            x += y;
        }
        state.position_ = next;
        nn::matrix<T> last = x.bottomRows(1);
        model_->final_norm.forward(last, last);
        return model_->project(last, profile).row(0).transpose();
    }

    void check_state(const decoding_state<T>& s, const char* what) const {
        const nn::decoder_config& c = model_->config;
        const dilated_options& a = attention();
        bool same = s.layers_ == static_cast<index_t>(model_->layers.size()) && s.heads_ == c.heads &&
                    s.head_dim_ == c.head_dim() && s.offsets_ == a.offsets && s.branches_.size() == a.branches.size();
        for (std::size_t b = 0; same && b < a.branches.size(); ++b)
            same = s.branches_[b].segment_length == a.branches[b].segment_length && s.branches_[b].dilation == a.branches[b].dilation;
        if (!same)
            throw std::invalid_argument(std::string("longnet::decoding::") + what + ": the state (" + std::to_string(s.layers_) +
                                        " layers, " + std::to_string(s.heads_) + " heads, head dim " + std::to_string(s.head_dim_) +
                                        ", " + std::to_string(s.branches_.size()) +
                                        " branches) was not made for this model; use make_state()");
    }

    void check_tokens(const std::vector<std::int64_t>& tokens, index_t first_position, const char* what) const {
        const index_t vocab = model_->vocab_size();
        for (std::size_t i = 0; i < tokens.size(); ++i)
            if (tokens[i] < 0 || tokens[i] >= vocab)
                throw std::out_of_range(std::string("longnet::decoding::") + what + ": token " + std::to_string(tokens[i]) +
                                        " at position " + std::to_string(first_position + static_cast<index_t>(i)) +
                                        " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }

    // The XPos offset of the key at in-segment index u of branch br from its anchor: the segment's
    // (i − anchor(i, w), nn/xpos.hpp), or, for a segment longer than the anchor's limit, its block's
    // (blocks of P = block_length(r) positions, as nn/multihead_attention.hpp runs them; the query is then
    // decayed onto each key block's anchor in turn).
    static index_t key_offset(const nn::rotary_embedding<T>& rotary, const branch& br, index_t u) {
        if (br.segment_length <= rotary.segment_limit()) return u - rotary.anchor(0, br.segment_length);
        const index_t P = rotary.block_length(br.dilation);
        return u - rotary.anchor(u, P);
    }

    // Prefill: keep layer l's rows of the current segment of every branch (keys decayed per branch).
    void fill_layer(decoding_state<T>& state, index_t l, const nn::matrix<T>& keys, const nn::matrix<T>& values,
                    index_t first_position) const {
        const auto& attn = model_->layers[static_cast<std::size_t>(l)].self_attn;
        const auto& rotary = attn.rotary;
        const bool xpos = attn.config.rotary.kind == nn::position_encoding::xpos;
        const index_t n = keys.rows(), next = first_position + n, H = state.heads_, hd = state.head_dim_, half = hd / 2;
        for (index_t b = 0; b < state.branch_count(); ++b) {
            const branch& br = state.branches_[static_cast<std::size_t>(b)];
            const index_t start = next / br.segment_length * br.segment_length;  // segment of the next token
            const index_t len = next - start;                                     // its rows seen so far
            nn::matrix<T> decay;                                                  // [len, hd/2] key factors
            if (xpos && len > 0) {
                decay.resize(len, half);
                for (index_t u = 0; u < len; ++u)
                    for (index_t c = 0; c < half; ++c) decay(u, c) = rotary.decay_factor(key_offset(rotary, br, u), c, true);
            }
            for (index_t h = 0; h < H; ++h) {
                const index_t offset = head_offset(state.offsets_, h, H, br.dilation);
                const index_t count = len > offset ? (len - offset + br.dilation - 1) / br.dilation : 0;
                // room ahead for the steps that follow (2·count, as the growth would give; not touched yet)
                state.reserve(l, b, h, std::min(state.capacity(b), 2 * count));
                auto& s = state.at(l, b, h);
                s.rows = count;
                for (index_t m = 0; m < count; ++m) {
                    const index_t u = offset + m * br.dilation, row = start + u - first_position;
                    const T* k = keys.data() + row * keys.cols() + h * hd;
                    const T* v = values.data() + row * values.cols() + h * hd;
                    T* kd = s.keys.get() + m * hd;
                    T* vd = s.values.get() + m * hd;
                    for (index_t d = 0; d < hd; ++d) vd[d] = v[d];
                    if (xpos)
                        for (index_t c = 0; c < half; ++c) {
                            kd[2 * c] = k[2 * c] * decay(u, c);
                            kd[2 * c + 1] = k[2 * c + 1] * decay(u, c);
                        }
                    else
                        for (index_t d = 0; d < hd; ++d) kd[d] = k[d];
                }
            }
        }
    }

    // ---- the products of a step ---------------------------------------------------------------------
    // A step multiplies a few rows (one per sequence) by every weight matrix: memory-bound, the weights
    // must stream from memory once for the whole batch. A GEMM library packs the weights first (Eigen:
    // a copy of every block, more traffic than the product) or switches kernels with the row count
    // (one row: GEMV), so a sequence in a batch would not get bitwise the numbers it gets alone.
    // few_rows_product below reads each weight row once for all rows, and sums every output element in
    // one fixed order whatever the row count: 16 lanes over k (lane l: k ≡ l mod 16, increasing k), then
    // the lanes in a fixed tree. So row i of a batch is bitwise what the same row gives alone.

    static constexpr index_t lanes = 16;
    static constexpr index_t prefetch_ahead = 1024;  // weights ahead of the product (measured: 4 KB of float)
#if defined(__GNUC__)
    using vec = typename detail::lane_vector<T>::type;  // 16 lanes of T (GCC/Clang vector extension)
#endif

    template <class S>
    static T widen(S w) noexcept {
        if constexpr (std::is_same_v<S, Eigen::bfloat16>) {  // exact: a bf16 is a float's upper 16 bits
            const std::uint32_t bits = static_cast<std::uint32_t>(Eigen::numext::bit_cast<std::uint16_t>(w)) << 16;
            float f;
            std::memcpy(&f, &bits, sizeof f);
            return static_cast<T>(f);
        } else {
            return static_cast<T>(w);
        }
    }
    static T lane_sum(const T* a) noexcept {  // the fixed tree over 16 lanes
        T s8[8], s4[4];
        for (int l = 0; l < 8; ++l) s8[l] = a[l] + a[l + 8];
        for (int l = 0; l < 4; ++l) s4[l] = s8[l] + s8[l + 4];
        return (s4[0] + s4[2]) + (s4[1] + s4[3]);
    }

    // y[i, o] = Σ_k x[i, k]·w[o, k] (+ bias[o]) for rows i < R (R known at compile time), outputs [o0, o1).
    // Lane l of acc[i] sums k ≡ l (mod 16) in increasing k: the vector and the scalar forms below do
    // the same operations lane by lane.
    template <index_t R, class S>
    static void product_block(const T* x, index_t ldx, const S* w, index_t K, const T* bias, T* y, index_t ldy,
                              index_t o0, index_t o1) noexcept {
        for (index_t o = o0; o < o1; ++o) {
            const S* wo = w + o * K;
            T sums[R][lanes];
            index_t k = 0;
#if defined(__GNUC__)
            vec acc[R];
            for (index_t i = 0; i < R; ++i) acc[i] = vec{};
            for (; k + lanes <= K; k += lanes) {
                __builtin_prefetch(wo + k + prefetch_ahead, 0, 0);  // the hardware's prefetch alone falls behind
                vec wl;
                if constexpr (std::is_same_v<S, Eigen::bfloat16> && std::is_same_v<T, float>) {
                    using u16 = std::uint16_t __attribute__((vector_size(2 * lanes)));
                    using u32 = std::uint32_t __attribute__((vector_size(4 * lanes)));
                    u16 bits;
                    std::memcpy(&bits, wo + k, sizeof bits);
                    const u32 wide = __builtin_convertvector(bits, u32) << 16;
                    std::memcpy(&wl, &wide, sizeof wl);
                } else if constexpr (std::is_same_v<S, T>) {
                    std::memcpy(&wl, wo + k, sizeof wl);
                } else {
                    for (index_t l = 0; l < lanes; ++l) wl[l] = widen(wo[k + l]);
                }
                for (index_t i = 0; i < R; ++i) {
                    vec xi;
                    std::memcpy(&xi, x + i * ldx + k, sizeof xi);
                    acc[i] += xi * wl;
                }
            }
            for (index_t i = 0; i < R; ++i) std::memcpy(sums[i], &acc[i], sizeof acc[i]);
#else
            for (index_t i = 0; i < R; ++i)
                for (index_t l = 0; l < lanes; ++l) sums[i][l] = T(0);
            for (; k + lanes <= K; k += lanes)
                for (index_t l = 0; l < lanes; ++l) {
                    const T wl = widen(wo[k + l]);
                    for (index_t i = 0; i < R; ++i) sums[i][l] += x[i * ldx + k + l] * wl;
                }
#endif
            for (index_t l = 0; k + l < K; ++l) {
                const T wl = widen(wo[k + l]);
                for (index_t i = 0; i < R; ++i) sums[i][l] += x[i * ldx + k + l] * wl;
            }
            for (index_t i = 0; i < R; ++i) y[i * ldy + o] = bias ? lane_sum(sums[i]) + bias[o] : lane_sum(sums[i]);
        }
    }

    // y = x·Wᵀ + b for a step's rows (x [n, in], y resized to [n, out]): output features split across
    // threads in blocks, rows in groups of 8, 4, 2, 1 over each block while it is in cache.
    template <class Linear>
    static void project_rows(const Linear& lin, const nn::matrix<T>& x, nn::matrix<T>& y) {
        const index_t out = lin.out_features(), K = lin.in_features(), n = x.rows();
        y.resize(n, out);
        if (x.cols() != K)
            throw std::invalid_argument("longnet::decoding: rows of " + std::to_string(x.cols()) + " features into a layer of " +
                                        std::to_string(K));
        const auto* w = lin.weight.data();
        const T* bias = lin.has_bias() ? lin.bias.data() : nullptr;
        // output features per task: ~32K weights (128 KB of float), contiguous, so a block read once from
        // memory stays in L2 while every row group of a larger batch passes over it
        const index_t block = std::max<index_t>(16, (index_t(1) << 15) / std::max<index_t>(K, 1));
        const index_t blocks = (out + block - 1) / block;
        LONGNET_NN_PARALLEL_FOR
        for (index_t bi = 0; bi < blocks; ++bi) {
            const index_t o0 = bi * block, o1 = std::min(out, o0 + block);
            for (index_t i = 0; i < n;) {
                const T* xi = x.data() + i * K;
                T* yi = y.data() + i * out;
                const index_t left = n - i;
                if (left >= 8) product_block<8>(xi, K, w, K, bias, yi, out, o0, o1), i += 8;
                else if (left >= 4) product_block<4>(xi, K, w, K, bias, yi, out, o0, o1), i += 4;
                else if (left >= 2) product_block<2>(xi, K, w, K, bias, yi, out, o0, o1), i += 2;
                else product_block<1>(xi, K, w, K, bias, yi, out, o0, o1), i += 1;
            }
        }
    }

    // o = softmax(τ·K·q)·V over `rows` cached rows (keys, values [rows, hd] row-major); returns
    // log Σ_j exp(τ·q·k_j). scores: room for `rows`.
    static T attend_one(const T* q_scaled, const T* keys, const T* values, index_t rows, index_t hd, T* out, T* scores) {
        for (index_t j = 0; j < rows; ++j) {  // s_j = q·k_j: 16 lanes over d (d ≡ l mod 16), then the lane tree
            const T* kj = keys + j * hd;
            T acc[lanes];
            index_t d = 0;
#if defined(__GNUC__)
            vec va{};
            for (; d + lanes <= hd; d += lanes) {
                vec qv, kv;
                std::memcpy(&qv, q_scaled + d, sizeof qv);
                std::memcpy(&kv, kj + d, sizeof kv);
                va += qv * kv;
            }
            std::memcpy(acc, &va, sizeof va);
#else
            for (index_t l = 0; l < lanes; ++l) acc[l] = T(0);
            for (; d + lanes <= hd; d += lanes)
                for (index_t l = 0; l < lanes; ++l) acc[l] += q_scaled[d + l] * kj[d + l];
#endif
            for (index_t l = 0; d + l < hd; ++l) acc[l] += q_scaled[d + l] * kj[d + l];
            scores[j] = lane_sum(acc);
        }
        Eigen::Map<nn::vector<T>> s(scores, rows);
        const T m = s.maxCoeff();
        s = (s.array() - m).exp();
        const T sum = s.sum();
        for (index_t d = 0; d < hd; ++d) out[d] = T(0);
        for (index_t j = 0; j < rows; ++j) {  // o += p_j·v_j, in increasing j for every d
            const T p = scores[j];
            const T* vj = values + j * hd;
            for (index_t d = 0; d < hd; ++d) out[d] += p * vj[d];
        }
        const T inv = T(1) / sum;
        for (index_t d = 0; d < hd; ++d) out[d] *= inv;
        return m + std::log(sum);
    }

    nn::matrix<T> step_batch(decoding_state<T>* const* states, const std::int64_t* tokens, index_t n) const {
        if (n < 1) throw std::invalid_argument("longnet::decoding::step: an empty batch");
        for (index_t i = 0; i < n; ++i) {
            check_state(*states[i], "step");
            for (index_t j = 0; j < i; ++j)
                if (states[j] == states[i])
                    throw std::invalid_argument("longnet::decoding::step: batch entries " + std::to_string(j) + " and " +
                                                std::to_string(i) + " are the same state");
            check_tokens({tokens[i]}, states[i]->position_, "step");
        }
        const nn::decoder_config& c = model_->config;
        const index_t D = c.embed_dim, H = c.heads, hd = c.head_dim(), half = hd / 2, L = static_cast<index_t>(model_->layers.size());
        const std::vector<branch>& branches = attention().branches;
        const index_t nb = static_cast<index_t>(branches.size());
        const offset_policy offsets = attention().offsets;

        // per (sequence, branch): segment roll-over and in-segment index; per (sequence, branch, head): selected?
        std::vector<index_t> in_segment(static_cast<std::size_t>(n * nb));
        std::vector<char> selected(static_cast<std::size_t>(n * nb * H));
        for (index_t i = 0; i < n; ++i) {
            decoding_state<T>& s = *states[i];
            const index_t p = s.position_;
            for (index_t b = 0; b < nb; ++b) {
                const branch& br = branches[static_cast<std::size_t>(b)];
                const index_t g = p / br.segment_length;
                if (g != s.segment_[static_cast<std::size_t>(b)]) s.start_segment(b, g);  // the old rows are invisible now
                const index_t u = p - g * br.segment_length;
                in_segment[static_cast<std::size_t>(i * nb + b)] = u;
                for (index_t h = 0; h < H; ++h) {
                    const index_t o = head_offset(offsets, h, H, br.dilation);
                    const bool sel = u >= o && (u - o) % br.dilation == 0;
                    selected[static_cast<std::size_t>((i * nb + b) * H + h)] = sel;
                    if (sel)
                        for (index_t l = 0; l < L; ++l) s.reserve(l, b, h, s.at(l, b, h).rows + 1);
                }
            }
        }

        std::vector<std::int64_t> ids(tokens, tokens + n);
        nn::matrix<T> x = model_->embed(ids), hN(n, D), q(n, D), k(n, D), v(n, D), a(n, D), y(n, D), f;
        nn::matrix<T> q_decay(n * nb, half), k_decay(n * nb, half);
        const T tau = static_cast<T>(effective_scale(attention().scale, hd));
        for (index_t l = 0; l < L; ++l) {
            const auto& layer = model_->layers[static_cast<std::size_t>(l)];
            const auto& attn = layer.self_attn;
            const bool xpos = attn.config.rotary.kind == nn::position_encoding::xpos;
            layer.self_attn_layer_norm.forward(x, hN);
            project_rows(attn.q_proj, hN, q);
            project_rows(attn.k_proj, hN, k);
            project_rows(attn.v_proj, hN, v);
            if (attn.config.rotary.kind != nn::position_encoding::none)
                for (index_t i = 0; i < n; ++i) {
                    const nn::matrix<T> table = attn.rotary.rotation(states[i]->position_, 1);
                    attn.rotary.apply(q.middleRows(i, 1), table);
                    attn.rotary.apply(k.middleRows(i, 1), table);
                }
            std::vector<index_t> block(static_cast<std::size_t>(nb), 0);  // long segments: block length P
            if (xpos)
                for (index_t b = 0; b < nb; ++b) {
                    const branch& br = branches[static_cast<std::size_t>(b)];
                    if (br.segment_length > attn.rotary.segment_limit())
                        block[static_cast<std::size_t>(b)] = attn.rotary.block_length(br.dilation);
                    for (index_t i = 0; i < n; ++i) {
                        const index_t offset = key_offset(attn.rotary, br, in_segment[static_cast<std::size_t>(i * nb + b)]);
                        for (index_t cc = 0; cc < half; ++cc) {  // (a long segment's query factors: per key block below)
                            q_decay(i * nb + b, cc) = attn.rotary.decay_factor(offset, cc, false);
                            k_decay(i * nb + b, cc) = attn.rotary.decay_factor(offset, cc, true);
                        }
                    }
                }
            a.setZero();
            const index_t tasks = n * H;
            index_t max_rows = 0;
            for (index_t b = 0; b < nb; ++b) max_rows = std::max(max_rows, states[0]->capacity(b));
            LONGNET_NN_PARALLEL_FOR
            for (index_t t = 0; t < tasks; ++t) {
                const index_t i = t / H, h = t % H;
                decoding_state<T>& s = *states[i];
                std::vector<T> qd(static_cast<std::size_t>(hd)), o(static_cast<std::size_t>(hd)),
                    scores(static_cast<std::size_t>(max_rows));
                T lse = -std::numeric_limits<T>::infinity();
                T* out = a.data() + i * D + h * hd;
                const T* qi = q.data() + i * D + h * hd;
                const T* ki = k.data() + i * D + h * hd;
                const T* vi = v.data() + i * D + h * hd;
                for (index_t b = 0; b < nb; ++b) {
                    if (!selected[static_cast<std::size_t>((i * nb + b) * H + h)]) continue;
                    auto& slot = s.at(l, b, h);
                    T* kd = slot.keys.get() + slot.rows * hd;
                    T* vd = slot.values.get() + slot.rows * hd;
                    for (index_t d = 0; d < hd; ++d) vd[d] = vi[d];
                    if (xpos) {
                        const T* kf = k_decay.data() + (i * nb + b) * half;
                        const T* qf = q_decay.data() + (i * nb + b) * half;
                        for (index_t cc = 0; cc < half; ++cc) {
                            kd[2 * cc] = ki[2 * cc] * kf[cc];
                            kd[2 * cc + 1] = ki[2 * cc + 1] * kf[cc];
                            qd[2 * cc] = qi[2 * cc] * qf[cc];
                            qd[2 * cc + 1] = qi[2 * cc + 1] * qf[cc];
                        }
                    } else {
                        for (index_t d = 0; d < hd; ++d) {
                            kd[d] = ki[d];
                            qd[d] = qi[d];
                        }
                    }
                    ++slot.rows;
                    const index_t P = block[static_cast<std::size_t>(b)];
                    if (P > 0) {  // a long segment: the cached rows by key block, the query decayed onto each block's anchor
                        const index_t per = P / branches[static_cast<std::size_t>(b)].dilation;  // rows of one head per block
                        const index_t u = in_segment[static_cast<std::size_t>(i * nb + b)];
                        for (index_t kb = 0; kb * per < slot.rows; ++kb) {
                            const index_t offset = u - attn.rotary.anchor(kb * P, P);
                            for (index_t cc = 0; cc < half; ++cc) {
                                const T f = attn.rotary.decay_factor(offset, cc, false);
                                qd[static_cast<std::size_t>(2 * cc)] = qi[2 * cc] * f * tau;
                                qd[static_cast<std::size_t>(2 * cc + 1)] = qi[2 * cc + 1] * f * tau;
                            }
                            const index_t count = std::min(slot.rows, (kb + 1) * per) - kb * per;
                            const T lb = attend_one(qd.data(), slot.keys.get() + kb * per * hd, slot.values.get() + kb * per * hd,
                                                    count, hd, o.data(), scores.data());
                            longnet::detail::merge_row<T, T>(out, lse, o.data(), lb, hd);
                        }
                        continue;
                    }
                    for (T& e : qd) e *= tau;  // the forward's kernels pre-scale queries by τ too
                    const T lb = attend_one(qd.data(), slot.keys.get(), slot.values.get(), slot.rows, hd, o.data(), scores.data());
                    longnet::detail::merge_row<T, T>(out, lse, o.data(), lb, hd);  // branch merge, as the forward
                }
            }
            attn.inner_attn_ln.forward(a, a);
            project_rows(attn.out_proj, a, y);
            x += y;
            // the FFN (nn/feed_forward.hpp): fc1, GELU, Sub-LN, fc2
            layer.final_layer_norm.forward(x, hN);
            project_rows(layer.ffn.fc1, hN, f);
            nn::gelu_inplace<T>(f, layer.ffn.gelu_in_float);
            layer.ffn.ffn_layernorm.forward(f, f);
            project_rows(layer.ffn.fc2, f, y);
            x += y;
        }
        model_->final_norm.forward(x, x);
        for (index_t i = 0; i < n; ++i) ++states[i]->position_;
        nn::matrix<T> logits;
        project_rows(model_->output_projection, x, logits);
        return logits;
    }
};

}  // namespace longnet::decoding
