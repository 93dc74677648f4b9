// SPDX-License-Identifier: Apache-2.0
#pragma once
// Training data: token streams (byte-level text: one token per byte, vocabulary 256; or integer ids
// from a .npy file), a held-out tail, seeded random windows for batches, llm.c token shards streamed
// from memory-mapped files (shard_dataset), and the synthetic long-range recall task.
//
// A training example is a `sequence`: inputs x[0..T) and targets y[0..T) (next tokens, y[t] = x[t+1] of
// the underlying stream); a target of nn::ignore_target (−1) is not scored. Packed documents
// (pack_documents, longnet_train --pack-documents): the sequence also carries the boundaries of the
// documents it holds, split at an end token (see pack_documents and docs/training.md).

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/io/npy.hpp"
#include "longnet/io/token_shards.hpp"
#include "longnet/nn/cross_entropy.hpp"
#include "longnet/nn/random_init.hpp"

namespace longnet::training {

struct sequence {
    std::vector<std::int64_t> inputs, targets;
    // Packed documents: cu_seqlens over the inputs (0, ..., inputs.size()); empty: one sequence.
    std::vector<std::int64_t> documents;
};

// Packs a sequence of documents separated by the end token `eos` (each document's last token; the
// sequence's last document may be cut off by its end, its first may have begun before it): a boundary
// follows every input equal to eos (documents = 0, one past each such input, inputs.size(); no empty
// document), and the target of every such input, the next document's first token, becomes
// nn::ignore_target: a document is not asked to predict the one after it. Every other target stays
// (the target of the token before an end token is the end token: ending a document is learned). The
// decoder then attends and positions each document as if alone (nn::decoder::forward_backward with
// documents).
inline void pack_documents(sequence& s, std::int64_t eos) {
    const std::size_t n = s.inputs.size();
    s.documents.assign(1, 0);
    for (std::size_t t = 0; t < n; ++t) {
        if (s.inputs[t] != eos) continue;
        if (t < s.targets.size()) s.targets[t] = nn::ignore_target;
        if (t + 1 < n) s.documents.push_back(static_cast<std::int64_t>(t + 1));
    }
    s.documents.push_back(static_cast<std::int64_t>(n));
}

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

// One rank's share of a batch under mpirun (distributed_trainer.hpp's layout): the sequences i of the
// batch with i mod groups = group (its data-parallel group), and of each the chunk `part` of `parts`
// equal chunks (its place in the group). The default is the whole batch.
struct data_share {
    std::size_t group = 0, groups = 1, part = 0, parts = 1;
};

// Training and held-out windows drawn from llm.c token shards (io/token_shards.hpp), memory-mapped:
// only the pages of the windows drawn are read, so memory does not grow with the corpus. The training
// shards form one stream (in the order given; glob_token_shards sorts by name); sample() draws its
// window start exactly as token_dataset::sample does (rng.below(tokens - seq_len)), so the same seed
// gives the same windows as the same tokens in one .npy, and a resumed rng_state continues the stream
// bitwise. Every token is checked against `vocab` when the dataset is made (before training starts).
// Under mpirun, sample_batch and heldout with a data_share read only the rank's part: the windows are
// drawn exactly as for the whole batch (every rank advances the same rng over every sequence), and of
// each of its group's windows only its chunk's n = T/parts inputs and their n next-token targets, the
// n + 1 tokens [start + part·n, start + (part + 1)·n], are read; tokens_read() counts them. The
// vocabulary check and max_token split the shards between the ranks the same way (part of parts).
class shard_dataset {
public:
    shard_dataset() = default;
    // heldout_paths may be empty (no held-out windows).
    shard_dataset(const std::vector<std::string>& train_paths, const std::vector<std::string>& heldout_paths, std::size_t seq_len,
                  std::uint64_t vocab)
        : train_(std::make_shared<io::token_shard_stream>(train_paths)), seq_len_(seq_len) {
        if (seq_len < 1) throw std::invalid_argument("training data: sequence length must be >= 1");
        if (!heldout_paths.empty()) heldout_ = std::make_shared<io::token_shard_stream>(heldout_paths);
        check_vocab(vocab);
        if (train_->size() < seq_len + 1)
            throw std::runtime_error("training data: the training shards hold " + std::to_string(train_->size()) +
                                     " tokens, too few for sequences of " + std::to_string(seq_len) + " tokens (need " +
                                     std::to_string(seq_len + 1) + ")");
        if (heldout_ && heldout_->size() < seq_len + 1)
            throw std::runtime_error("training data: the held-out shards hold " + std::to_string(heldout_->size()) +
                                     " tokens, too few for one sequence of " + std::to_string(seq_len) + " tokens (need " +
                                     std::to_string(seq_len + 1) + ")");
    }
    std::size_t seq_len() const noexcept { return seq_len_; }
    std::uint64_t train_tokens() const noexcept { return train_ ? train_->size() : 0; }
    std::uint64_t heldout_tokens() const noexcept { return heldout_ ? heldout_->size() : 0; }
    // Every token (training and held-out) below vocab, or io::token_shard_error naming the file and offset.
    // Split between `parts` callers (e.g. MPI ranks, each then agreeing on the outcome): part p scans the
    // shards k (the training shards, then the held-out ones, in order) with k mod parts = p.
    void check_vocab(std::uint64_t vocab, std::size_t part = 0, std::size_t parts = 1) const {
        for_shards(part, parts, [&](const io::token_shard& s) { s.check_vocab(vocab); });
    }
    // The largest token of the shards this part scans (as check_vocab; the whole data by default).
    std::uint32_t max_token(std::size_t part = 0, std::size_t parts = 1) const {
        std::uint32_t m = 0;
        for_shards(part, parts, [&](const io::token_shard& s) { m = std::max(m, s.max_token()); });
        return m;
    }

    // A uniformly random window of the training stream (the draw of token_dataset::sample).
    sequence sample(rng_state& rng) const { return stream_window(*train_, rng.below(train_->size() - seq_len_), {}); }
    // `batch` windows drawn as `batch` calls of sample(); returned: the share's chunks of its group's
    // windows (all of them, whole, by default), in batch order. Throws std::invalid_argument when the
    // sequence length does not split into share.parts equal chunks (before drawing).
    std::vector<sequence> sample_batch(rng_state& rng, std::size_t batch, const data_share& share = {}) const {
        check_share(share);
        std::vector<sequence> out;
        for (std::size_t i = 0; i < batch; ++i) {
            const std::uint64_t start = rng.below(train_->size() - seq_len_);  // every rank draws every window
            if (i % share.groups == share.group) out.push_back(stream_window(*train_, start, share));
        }
        return out;
    }
    // Consecutive windows of the held-out stream from its start (at most max_windows); with a share,
    // its chunks of its group's windows (window i goes to group i mod groups).
    std::vector<sequence> heldout(std::size_t max_windows, const data_share& share = {}) const {
        check_share(share);
        std::vector<sequence> out;
        const std::size_t n = heldout_windows(max_windows);
        for (std::size_t i = share.group; i < n; i += share.groups)
            out.push_back(stream_window(*heldout_, static_cast<std::uint64_t>(i) * seq_len_, share));
        return out;
    }
    // How many held-out windows heldout(max_windows) covers (over all shares).
    std::size_t heldout_windows(std::size_t max_windows) const noexcept {
        if (!heldout_ || heldout_->size() < seq_len_ + 1) return 0;
        return static_cast<std::size_t>(std::min<std::uint64_t>(max_windows, (heldout_->size() - 1) / seq_len_));
    }
    // The reader statistic: tokens read from the training and the held-out shards (not counting the
    // vocabulary check's scan).
    std::uint64_t tokens_read() const noexcept {
        return (train_ ? train_->tokens_read() : 0) + (heldout_ ? heldout_->tokens_read() : 0);
    }

private:
    template <class F>
    void for_shards(std::size_t part, std::size_t parts, F&& f) const {
        std::size_t k = 0;
        for (const io::token_shard_stream* stream : {train_.get(), heldout_.get()})
            for (std::size_t i = 0; stream && i < stream->shard_count(); ++i, ++k)
                if (parts < 2 || k % parts == part) f(stream->shard(i));
    }
    void check_share(const data_share& share) const {
        if (share.groups < 1 || share.group >= share.groups || share.parts < 1 || share.part >= share.parts)
            throw std::invalid_argument("training data: share: group " + std::to_string(share.group) + " of " +
                                        std::to_string(share.groups) + ", part " + std::to_string(share.part) + " of " +
                                        std::to_string(share.parts) + " is not a valid share");
        if (seq_len_ % share.parts != 0)
            throw std::invalid_argument("training data: a sequence of " + std::to_string(seq_len_) +
                                        " tokens does not split into " + std::to_string(share.parts) +
                                        " equal chunks (the sequence length must be a multiple of the ranks per sequence)");
    }
    // The share's chunk of the window at `start`: n inputs from start + part·n and their targets.
    sequence stream_window(const io::token_shard_stream& stream, std::uint64_t start, const data_share& share) const {
        const std::uint64_t n = seq_len_ / share.parts;
        std::vector<std::int64_t> t = stream.read(start + n * share.part, n + 1);
        sequence s;
        s.inputs.assign(t.begin(), t.end() - 1);
        s.targets.assign(t.begin() + 1, t.end());
        return s;
    }
    std::shared_ptr<const io::token_shard_stream> train_, heldout_;
    std::size_t seq_len_ = 0;
};

// Synthetic long-range recall (--task recall). Vocabulary 64: keys 0..15, values 16..31, filler 32..63.
// A sequence of T tokens (T a multiple of 8) starts with `pairs` (key, value) pairs, pair p at positions
// 8p + 6 and 8p + 7 (distinct keys, random values), the block of pairs repeated `copies` times; then
// random filler. Its last `queries` positions ≡ 7 (mod 8) (T − 1, T − 9, ...) hold query keys (random
// among the pairs); the target there is the key's value, and these are the only scored targets. The
// answer never appears as an input near the queries (the token after a query is filler), so the value
// must come from the start. Values and queries sit at positions ≡ 7 (mod 8): a dilated branch with
// r | 8 selects them in the same head.
struct recall_task {
    static constexpr std::int64_t vocab = 64, keys = 16, values = 16, filler_first = 32;
    std::size_t seq_len = 8192;  // inputs per sequence
    std::size_t pairs = 4;
    std::size_t copies = 1;
    std::size_t queries = 1;

    void validate() const {
        if (pairs < 1 || pairs > static_cast<std::size_t>(keys))
            throw std::invalid_argument("recall task: pairs must be 1..16, got " + std::to_string(pairs));
        if (copies < 1) throw std::invalid_argument("recall task: copies must be >= 1");
        if (queries < 1) throw std::invalid_argument("recall task: queries must be >= 1");
        const std::size_t need = 8 * pairs * copies + 8 * queries;
        if (seq_len % 8 != 0 || seq_len < need)
            throw std::invalid_argument("recall task: sequence length " + std::to_string(seq_len) +
                                        " must be a multiple of 8 and at least " + std::to_string(need) + " for " +
                                        std::to_string(pairs) + " pairs x " + std::to_string(copies) + " copies and " +
                                        std::to_string(queries) + " queries (too short otherwise)");
    }
    sequence sample(rng_state& rng) const {
        sequence s;
        s.inputs.resize(seq_len);
        s.targets.assign(seq_len, nn::ignore_target);  // only the queries are scored
        for (auto& t : s.inputs) t = filler_first + static_cast<std::int64_t>(rng.below(vocab - filler_first));
        std::int64_t perm[16], value_of[16];
        for (std::int64_t i = 0; i < keys; ++i) perm[i] = i;
        for (std::int64_t i = keys - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(static_cast<std::uint64_t>(i + 1))]);
        for (std::size_t p = 0; p < pairs; ++p) value_of[p] = keys + static_cast<std::int64_t>(rng.below(values));
        for (std::size_t c = 0; c < copies; ++c)
            for (std::size_t p = 0; p < pairs; ++p) {
                s.inputs[8 * (c * pairs + p) + 6] = perm[p];
                s.inputs[8 * (c * pairs + p) + 7] = value_of[p];
            }
        for (std::size_t j = 0; j < queries; ++j) {
            const std::size_t at = seq_len - 1 - 8 * j, q = rng.below(pairs);
            s.inputs[at] = perm[q];
            s.targets[at] = value_of[q];
        }
        return s;
    }
};

}  // namespace longnet::training
