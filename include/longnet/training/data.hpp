// SPDX-License-Identifier: Apache-2.0
#pragma once
// Training data: token streams (byte-level text: one token per byte, vocabulary 256; or integer ids
// from a .npy file), a held-out tail, seeded random windows for batches, and the synthetic long-range
// recall task.
//
// A training example is a `sequence`: inputs x[0..T) and targets y[0..T) (next tokens, y[t] = x[t+1] of
// the underlying stream); a target of nn::ignore_target (−1) is not scored.

#include <cstdint>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/io/npy.hpp"
#include "longnet/nn/cross_entropy.hpp"
#include "longnet/nn/random_init.hpp"

namespace longnet::training {

struct sequence {
    std::vector<std::int64_t> inputs, targets;
};

// The window tokens[start .. start + length] as a sequence of `length` inputs and targets.
inline sequence window(const std::vector<std::int64_t>& tokens, std::size_t start, std::size_t length) {
    if (start + length + 1 > tokens.size())
        throw std::out_of_range("training data: window [" + std::to_string(start) + ", " + std::to_string(start + length + 1) +
                                ") past the end of " + std::to_string(tokens.size()) + " tokens");
    sequence s;
    s.inputs.assign(tokens.begin() + static_cast<std::ptrdiff_t>(start), tokens.begin() + static_cast<std::ptrdiff_t>(start + length));
    s.targets.assign(tokens.begin() + static_cast<std::ptrdiff_t>(start + 1),
                     tokens.begin() + static_cast<std::ptrdiff_t>(start + length + 1));
    return s;
}

// Every byte of a file as a token in [0, 256). Throws std::runtime_error naming the file.
inline std::vector<std::int64_t> read_text_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open the text file");
    std::vector<std::int64_t> out;
    for (std::istreambuf_iterator<char> it(in), end; it != end; ++it) out.push_back(static_cast<unsigned char>(*it));
    if (in.bad()) throw std::runtime_error(path + ": read error");
    return out;
}

// Integer token ids from a .npy file ([T] or [1, T], int32 or int64). Throws std::runtime_error.
inline std::vector<std::int64_t> read_token_file(const std::string& path) {
    const io::npy_array a = io::load_npy(path);
    if (a.ndim() != 1 && !(a.ndim() == 2 && a.shape()[0] == 1))
        throw std::runtime_error(path + ": tokens must be a [T] (or [1, T]) integer array, got shape " + io::shape_string(a.shape()));
    if (a.dtype() != io::npy_dtype::int64 && a.dtype() != io::npy_dtype::int32)
        throw std::runtime_error(path + ": tokens must be int32 or int64, got " + io::dtype_name(a.dtype()));
    std::vector<std::int64_t> t = a.as_int64();
    for (std::size_t i = 0; i < t.size(); ++i)
        if (t[i] < 0) throw std::runtime_error(path + ": token " + std::to_string(t[i]) + " at position " + std::to_string(i) + " is negative");
    return t;
}

// Seeded random numbers whose whole state is one 64-bit word (saved in checkpoints).
struct rng_state {
    std::uint64_t state = 0;
    std::uint64_t next() noexcept { return nn::detail::splitmix64(state); }
    std::uint64_t below(std::uint64_t n) noexcept { return n ? next() % n : 0; }  // bias < n/2^64
};

// A token stream split into a training part and a held-out tail.
class token_dataset {
public:
    token_dataset() = default;
    // heldout_fraction of the tokens (at least seq_len + 1 of them when > 0) form the held-out tail.
    token_dataset(std::vector<std::int64_t> tokens, std::size_t seq_len, double heldout_fraction)
        : tokens_(std::move(tokens)), seq_len_(seq_len) {
        if (seq_len < 1) throw std::invalid_argument("training data: sequence length must be >= 1");
        std::size_t heldout = 0;
        if (heldout_fraction > 0) {
            heldout = static_cast<std::size_t>(static_cast<double>(tokens_.size()) * heldout_fraction);
            heldout = std::max(heldout, seq_len + 1);
        }
        if (tokens_.size() < heldout + seq_len + 1)
            throw std::runtime_error("training data: " + std::to_string(tokens_.size()) + " tokens are too few for sequences of " +
                                     std::to_string(seq_len) + " tokens" +
                                     (heldout ? " plus a held-out tail of " + std::to_string(heldout) : std::string()) +
                                     " (need " + std::to_string(heldout + seq_len + 1) + ")");
        train_end_ = tokens_.size() - heldout;
    }
    std::size_t seq_len() const noexcept { return seq_len_; }
    std::size_t train_tokens() const noexcept { return train_end_; }
    std::size_t heldout_tokens() const noexcept { return tokens_.size() - train_end_; }
    std::int64_t max_token() const noexcept {
        std::int64_t m = 0;
        for (auto t : tokens_) m = std::max(m, t);
        return m;
    }

    // A uniformly random window of the training part.
    sequence sample(rng_state& rng) const { return window(tokens_, rng.below(train_end_ - seq_len_), seq_len_); }
    // Consecutive windows of the held-out tail (at most max_windows).
    std::vector<sequence> heldout(std::size_t max_windows) const {
        std::vector<sequence> out;
        for (std::size_t s = train_end_; s + seq_len_ + 1 <= tokens_.size() && out.size() < max_windows; s += seq_len_)
            out.push_back(window(tokens_, s, seq_len_));
        return out;
    }

private:
    std::vector<std::int64_t> tokens_;
    std::size_t seq_len_ = 0, train_end_ = 0;
};

// Synthetic long-range recall (--task recall). Vocabulary 64: keys 0..15, values 16..31, filler 32..63.
// A sequence of T tokens (T a multiple of 8) starts with `pairs` (key, value) pairs, pair p at positions
// 8p + 6 and 8p + 7 (distinct keys, random values; filler around them), then random filler, and ends
// with one of the keys at position T − 1; the only scored target is the next token after that final key:
// its value. Values and the final key sit at positions ≡ 7 (mod 8), so a dilated branch with dilation
// r | 8 selects them in the same head (segments start at multiples of w): solving it needs attention from
// position T − 1 back to the first 8·pairs tokens.
struct recall_task {
    static constexpr std::int64_t vocab = 64, keys = 16, values = 16, filler_first = 32;
    std::size_t seq_len = 8192;  // inputs per sequence
    std::size_t pairs = 4;

    void validate() const {
        if (pairs < 1 || pairs > static_cast<std::size_t>(keys))
            throw std::invalid_argument("recall task: pairs must be 1..16, got " + std::to_string(pairs));
        if (seq_len % 8 != 0 || seq_len < 8 * pairs + 8)
            throw std::invalid_argument("recall task: sequence length " + std::to_string(seq_len) +
                                        " must be a multiple of 8 and at least " + std::to_string(8 * pairs + 8) + " for " +
                                        std::to_string(pairs) + " pairs (too short otherwise)");
    }
    sequence sample(rng_state& rng) const {
        std::vector<std::int64_t> stream(seq_len + 1);
        for (std::size_t i = 0; i + 1 < seq_len; ++i)
            stream[i] = filler_first + static_cast<std::int64_t>(rng.below(vocab - filler_first));
        std::int64_t perm[16], value_of[16];
        for (std::int64_t i = 0; i < keys; ++i) perm[i] = i;
        for (std::int64_t i = keys - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(static_cast<std::uint64_t>(i + 1))]);
        for (std::size_t p = 0; p < pairs; ++p) {
            value_of[p] = keys + static_cast<std::int64_t>(rng.below(values));
            stream[8 * p + 6] = perm[p];
            stream[8 * p + 7] = value_of[p];
        }
        const std::size_t q = rng.below(pairs);
        stream[seq_len - 1] = perm[q];
        stream[seq_len] = value_of[q];
        sequence s = window(stream, 0, seq_len);
        for (std::size_t i = 0; i + 1 < seq_len; ++i) s.targets[i] = nn::ignore_target;  // score the answer only
        return s;
    }
};

}  // namespace longnet::training
