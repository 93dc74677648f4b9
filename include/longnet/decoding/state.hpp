// SPDX-License-Identifier: Apache-2.0
#pragma once
// The decoding state of one sequence: what future tokens can still see (SPEC §8).
//
// A token at position p attends, in branch (w, r), only to the rows of its own segment [g·w, g·w + w),
// g = floor(p / w), that its head selects. So per layer, per branch and per head the state keeps the
// keys and values of the current segment's selected rows — at most ceil(w / r) rows — and drops them
// when the next segment of that branch starts. Keys are stored rotated and decayed with the branch's
// anchored XPos factor (nn/xpos.hpp), ready for the dot product. Memory is bounded whatever the
// position:
//   max_bytes() = 2 · layers · heads · Σ_branches ceil(w / r) · head_dim · sizeof(T)
// (paper base model in float: 2 · 12 · 12 · 11606 · 64 · 4 B = 856 MB); bytes() is what is allocated
// now (rows are allocated as a segment fills, geometrically, never more than the bound; room not yet
// written is left uninitialized, so it is not resident memory until rows fill it).
//
// A state is made by incremental_decoder::make_state() and filled by its prefill() and step().

#include <algorithm>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/options.hpp"
#include "longnet/tensor.hpp"

namespace longnet::decoding {

template <class T, class W>
class incremental_decoder;

template <class T>
class decoding_state {
public:
    decoding_state() = default;
    decoding_state(index_t layers, index_t heads, index_t head_dim, const dilated_options& attention)
        : branches_(attention.branches), offsets_(attention.offsets), layers_(layers), heads_(heads), head_dim_(head_dim) {
        if (layers < 0 || heads < 1 || head_dim < 1 || branches_.empty())
            throw std::invalid_argument("longnet::decoding::decoding_state: " + std::to_string(layers) + " layers, " +
                                        std::to_string(heads) + " heads, head dim " + std::to_string(head_dim) + ", " +
                                        std::to_string(branches_.size()) + " branches");
        slots_.resize(static_cast<std::size_t>(layers_ * branch_count() * heads_));
        for (slot& s : slots_) s.head_dim = head_dim_;
        segment_.assign(branches_.size(), 0);
    }

    // Tokens seen so far = the position of the next token.
    index_t position() const noexcept { return position_; }
    index_t layers() const noexcept { return layers_; }
    index_t heads() const noexcept { return heads_; }
    index_t head_dim() const noexcept { return head_dim_; }
    index_t branch_count() const noexcept { return static_cast<index_t>(branches_.size()); }
    const std::vector<branch>& branches() const noexcept { return branches_; }
    offset_policy offsets() const noexcept { return offsets_; }

    // ceil(w / r): the most rows a head can select in one segment of branch b.
    index_t capacity(index_t b) const {
        const branch& br = branches_.at(static_cast<std::size_t>(b));
        return (br.segment_length + br.dilation - 1) / br.dilation;
    }
    // Cached rows of (layer, branch, head) and their keys / values [rows, head_dim], row-major.
    index_t rows(index_t layer, index_t b, index_t head) const { return at(layer, b, head).rows; }
    const T* keys(index_t layer, index_t b, index_t head) const { return at(layer, b, head).keys.get(); }
    const T* values(index_t layer, index_t b, index_t head) const { return at(layer, b, head).values.get(); }

    // Bytes of keys and values allocated now, and the bound they never exceed (see the header comment).
    std::size_t bytes() const noexcept {
        std::size_t n = 0;
        for (const slot& s : slots_) n += 2 * static_cast<std::size_t>(s.allocated * head_dim_) * sizeof(T);
        return n;
    }
    std::size_t max_bytes() const noexcept {
        std::size_t rows_per_head = 0;
        for (index_t b = 0; b < branch_count(); ++b) rows_per_head += static_cast<std::size_t>(capacity(b));
        return 2 * static_cast<std::size_t>(layers_ * heads_ * head_dim_) * rows_per_head * sizeof(T);
    }

    // Back to an empty sequence at position 0 (allocations are kept for reuse).
    void clear() noexcept {
        for (slot& s : slots_) s.rows = 0;
        for (index_t& g : segment_) g = 0;
        position_ = 0;
    }

private:
    template <class, class>
    friend class incremental_decoder;

    // Keys and values [allocated rows, head_dim]: rows past `rows` are uninitialized, so room allocated
    // ahead (prefill, geometric growth) costs no memory traffic and, for large blocks, no resident pages
    // until rows are written. Copies copy the rows in use.
    struct slot {
        std::unique_ptr<T[]> keys, values;
        index_t allocated = 0;  // rows of room
        index_t rows = 0;       // rows in use
        index_t head_dim = 0;

        slot() = default;
        slot(slot&&) noexcept = default;
        slot& operator=(slot&&) noexcept = default;
        slot(const slot& o) : rows(0), head_dim(o.head_dim) {
            grow(o.allocated);
            rows = o.rows;
            std::copy(o.keys.get(), o.keys.get() + rows * head_dim, keys.get());
            std::copy(o.values.get(), o.values.get() + rows * head_dim, values.get());
        }
        slot& operator=(const slot& o) {
            if (this != &o) *this = slot(o);
            return *this;
        }
        // Room for `to` rows (≥ allocated), keeping the rows in use.
        void grow(index_t to) {
            if (to <= allocated) return;
            const std::size_t n = static_cast<std::size_t>(to * head_dim), used = static_cast<std::size_t>(rows * head_dim);
            std::unique_ptr<T[]> k(new T[n]), v(new T[n]);  // default-initialized: untouched
            std::copy(keys.get(), keys.get() + used, k.get());
            std::copy(values.get(), values.get() + used, v.get());
            keys = std::move(k);
            values = std::move(v);
            allocated = to;
        }
    };

    slot& at(index_t layer, index_t b, index_t head) { return slots_[index_of(layer, b, head)]; }
    const slot& at(index_t layer, index_t b, index_t head) const { return slots_[index_of(layer, b, head)]; }
    std::size_t index_of(index_t layer, index_t b, index_t head) const {
        if (layer < 0 || layer >= layers_ || b < 0 || b >= branch_count() || head < 0 || head >= heads_)
            throw std::out_of_range("longnet::decoding::decoding_state: (layer " + std::to_string(layer) + ", branch " +
                                    std::to_string(b) + ", head " + std::to_string(head) + ") outside (" +
                                    std::to_string(layers_) + ", " + std::to_string(branch_count()) + ", " +
                                    std::to_string(heads_) + ")");
        return static_cast<std::size_t>((layer * branch_count() + b) * heads_ + head);
    }
    // Room for `rows` rows in (layer, b, head): grows geometrically, never past capacity(b).
    void reserve(index_t layer, index_t b, index_t head, index_t rows) {
        slot& s = at(layer, b, head);
        if (rows <= s.allocated) return;
        s.grow(std::min(capacity(b), std::max<index_t>({rows, 16, 2 * s.allocated})));
    }
    // A new segment of branch b starts: its rows are dropped in every layer and head.
    void start_segment(index_t b, index_t segment) {
        segment_[static_cast<std::size_t>(b)] = segment;
        for (index_t l = 0; l < layers_; ++l)
            for (index_t h = 0; h < heads_; ++h) at(l, b, h).rows = 0;
    }

    std::vector<slot> slots_;     // (layer, branch, head)
    std::vector<index_t> segment_;  // per branch: the segment whose rows are cached
    std::vector<branch> branches_;
    offset_policy offsets_ = offset_policy::paper;
    index_t layers_ = 0, heads_ = 0, head_dim_ = 0, position_ = 0;
};

}  // namespace longnet::decoding
