// SPDX-License-Identifier: Apache-2.0
#pragma once
// Packed variable-length sequences split across ranks (longnet::distributed::dilated_attention_varlen,
// issue 22 §1): the agreement on cu_seqlens and the chunk sizes, which sequences are local to a rank
// and which span ranks, and the point-to-point exchange that assembles a spanning sequence's rows on
// every rank that holds part of it. Included only with <mpi.h> (longnet/distributed.hpp).
//
// Layout: rank ρ holds the packed rows [c_ρ, c_ρ+1) of the global [total, H, D] tensors (c from an
// all-gather of the chunk lengths; they may differ between ranks). Sequence b covers rows
// [cu[b], cu[b+1]). A sequence inside one chunk runs locally; a sequence over several ranks ("spanning")
// has as peers exactly the ranks whose chunks intersect it: each sends every peer the (row, head) pairs of
// its rows that the peer reads (rows_read; MPI_Isend/Irecv on a duplicate of the communicator; two ranks
// share at most one spanning sequence, the one over the boundaries between them, so one tag per tensor
// identifies a message).

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <map>
#include <utility>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/detail/distributed_common.hpp"
#include "longnet/tensor.hpp"
#include "longnet/varlen.hpp"

namespace longnet::detail::dist {

// One non-empty sequence that intersects this rank's chunk.
struct varlen_sequence {
    index_t begin = 0, length = 0;  // global rows [begin, begin + length)
    index_t own_begin = 0;          // first global row of it on this rank
    index_t own_length = 0;         // its rows on this rank
    bool spans = false;             // some of its rows are on other ranks
    std::vector<int> peers;         // the other ranks holding part of it (spanning only)
};

// The agreed layout of one call, identical on every rank but for `rank`.
struct varlen_layout {
    int rank = 0;
    std::vector<index_t> chunk;  // P + 1 offsets: rank ρ holds global rows [chunk[ρ], chunk[ρ+1])
    std::vector<varlen_sequence> sequences;  // this rank's, in sequence order
    index_t local_begin() const { return chunk[static_cast<std::size_t>(rank)]; }
};

// The shared checks of the varlen entries on every rank, before any blocking collective: the local
// errors, then the fingerprint of the shapes, options and cu_seqlens (every rank must pass the same
// offsets), then the chunk lengths (all-gathered) against cu_seqlens. Throws std::invalid_argument
// with the same message on every rank.
template <class T, class I>
varlen_layout agree_varlen(MPI_Comm comm, const char* op, const std::string& local_error, index_t n, index_t heads,
                           index_t dim, const dilated_options& opt, const std::vector<I>& cu_seqlens, long long extra,
                           std::uint64_t& control_bytes) {
    agree_on_errors(comm, local_error, control_bytes);
    std::vector<fingerprint_field> fields = fingerprint<T>(1, 0, heads, dim, opt, extra);
    fields.erase(fields.begin(), fields.begin() + 2);  // chunk lengths may differ; batch is 1 (checked locally)
    std::vector<long long> cu64(cu_seqlens.begin(), cu_seqlens.end());
    fields.push_back({"number of cu_seqlens entries", static_cast<long long>(cu64.size())});
    fields.push_back({"cu_seqlens (hash of the offsets)", hash_bits(cu64.data(), cu64.size() * sizeof(long long))});
    agree_on_fingerprint(comm, op, fields, control_bytes);

    varlen_layout lay;
    int size = 1;
    MPI_Comm_rank(comm, &lay.rank);
    MPI_Comm_size(comm, &size);
    const long long mine = static_cast<long long>(n);
    std::vector<long long> lengths(static_cast<std::size_t>(size));
    mpi_check(MPI_Allgather(&mine, 1, MPI_LONG_LONG, lengths.data(), 1, MPI_LONG_LONG, comm),
              "MPI_Allgather (chunk lengths)");
    control_bytes += lengths.size() * sizeof(long long);
    lay.chunk.assign(1, 0);
    for (long long len : lengths) lay.chunk.push_back(lay.chunk.back() + static_cast<index_t>(len));
    std::vector<index_t> cu;
    try {
        cu = check_cu_seqlens(cu_seqlens, lay.chunk.back());
    } catch (const std::invalid_argument& e) {
        const std::string msg = e.what(), from = "longnet::dilated_attention_varlen: ";
        throw std::invalid_argument(std::string("longnet::distributed::") + op + ": " +
                                    (msg.rfind(from, 0) == 0 ? msg.substr(from.size()) : msg) +
                                    " (the total is the sum of every rank's chunk length)");
    }
    // A message is at most one rank's rows of a spanning sequence, in bytes an MPI int count: checked for
    // every sequence on every rank (the same inputs), so that all ranks throw or none does.
    const long long row_bytes = static_cast<long long>(heads) * static_cast<long long>(dim) * static_cast<long long>(sizeof(T));
    index_t widest = 0;
    for (std::size_t p = 0; p + 1 < lay.chunk.size(); ++p) widest = std::max(widest, lay.chunk[p + 1] - lay.chunk[p]);
    for (std::size_t b = 0; b + 1 < cu.size(); ++b) {
        if (cu[b + 1] == cu[b]) continue;
        const auto first = std::upper_bound(lay.chunk.begin(), lay.chunk.end(), cu[b]);  // end of cu[b]'s chunk
        const bool spans = first != lay.chunk.end() && *first < cu[b + 1];
        const index_t most = std::min(cu[b + 1] - cu[b], widest);
        if (spans && row_bytes > 0 && most > INT_MAX / row_bytes)
            throw std::invalid_argument(std::string("longnet::distributed::") + op + ": sequence " + std::to_string(b) +
                                        " spans ranks with up to " + std::to_string(most) + " rows of " +
                                        std::to_string(row_bytes) + " bytes on one rank: more than MPI's int counts");
    }
    const index_t c0 = lay.chunk[static_cast<std::size_t>(lay.rank)];
    const index_t c1 = lay.chunk[static_cast<std::size_t>(lay.rank) + 1];
    for (std::size_t b = 0; b + 1 < cu.size(); ++b) {
        varlen_sequence s;
        s.begin = cu[b];
        s.length = cu[b + 1] - cu[b];
        s.own_begin = std::max(s.begin, c0);
        s.own_length = std::min(cu[b + 1], c1) - s.own_begin;
        if (s.length == 0 || s.own_length <= 0) continue;
        s.spans = s.own_length != s.length;
        if (s.spans) {
            for (int p = 0; p < size; ++p)
                if (p != lay.rank && std::max(lay.chunk[static_cast<std::size_t>(p)], s.begin) <
                                         std::min(lay.chunk[static_cast<std::size_t>(p) + 1], cu[b + 1]))
                    s.peers.push_back(p);
        }
        lay.sequences.push_back(s);
    }
    return lay;
}

// The rows [a, a + len) of a local [1, n, H, D] view <-> a contiguous [len][H][D] buffer.
template <class E, class X>
void copy_rows_out(const tensor_view<X>& x, index_t a, index_t len, E* dst) {
    const index_t H = x.heads(), D = x.head_dim();
    for (index_t i = 0; i < len; ++i)
        for (index_t h = 0; h < H; ++h) std::copy_n(x.row(0, a + i, h), D, dst + (i * H + h) * D);
}
template <class E, class X>
void copy_rows_in(const E* src, index_t len, const tensor_view<X>& x, index_t a) {
    const index_t H = x.heads(), D = x.head_dim();
    for (index_t i = 0; i < len; ++i)
        for (index_t h = 0; h < H; ++h) std::copy_n(src + (i * H + h) * D, D, x.row(0, a + i, h));
}
template <class E, class X>
void copy_lse_out(const lse_view<X>& x, index_t a, index_t len, E* dst) {
    const index_t H = x.extent(2);
    for (index_t i = 0; i < len; ++i)
        for (index_t h = 0; h < H; ++h) dst[i * H + h] = x(0, a + i, h);
}
template <class E, class X>
void copy_lse_in(const E* src, index_t len, const lse_view<X>& x, index_t a) {
    const index_t H = x.extent(2);
    for (index_t i = 0; i < len; ++i)
        for (index_t h = 0; h < H; ++h) x(0, a + i, h) = src[i * H + h];
}

// The (row, head) pairs of a sequence of L rows that a rank holding its rows [a, b) (sequence-relative)
// reads, as mask[row·H + h]: for every branch (segment w' = min(w, L), dilation r, head offset o_h) the
// selected rows of head h in every segment where head h selects one of [a, b). Exactly the keys of the
// rank's own queries in the single-process op (and, as the selection is symmetric, the queries of its
// own keys in the backward); every other row of the sequence never reaches the rank's rows.
inline std::vector<char> rows_read(index_t L, index_t a, index_t b, index_t H, const dilated_options& opt) {
    std::vector<char> mask(static_cast<std::size_t>(L * H), 0);
    for (const branch& br : opt.branches) {
        const index_t w = std::min(br.segment_length, L), r = br.dilation;
        for (index_t h = 0; h < H; ++h) {
            const index_t o = head_offset(opt.offsets, h, H, r);
            for (index_t g = a / w; g * w < b; ++g) {
                const index_t start = g * w, stop = std::min(start + w, L);
                const index_t lo = std::max(a, start + o);  // first own row at or after the offset
                const index_t first = start + o + (lo - start - o + r - 1) / r * r;
                if (first >= std::min(b, stop)) continue;  // head h selects none of [a, b) here
                for (index_t j = start + o; j < stop; j += r) mask[static_cast<std::size_t>(j * H + h)] = 1;
            }
        }
    }
    return mask;
}

// Assembles the rows of spanning sequences that each rank reads: add() one [L][H][E] tensor of one
// sequence (this rank's rows already in `full` at their place), then run() packs what every peer reads
// of this rank's rows, posts every send and receive, waits, and unpacks what this rank reads of the
// peers' rows (the rest of `full` stays as it was). reads_all: every row (stop_grad_weights backward).
class row_exchange {
public:
    row_exchange(MPI_Comm comm, const varlen_layout& lay, const dilated_options& opt, index_t heads, bool reads_all)
        : comm_(comm), lay_(lay), opt_(opt), heads_(heads), all_(reads_all) {}

    template <class E>
    void add(const varlen_sequence& s, E* full, index_t elems, int tag) {
        const std::size_t bytes = static_cast<std::size_t>(elems) * sizeof(E);
        if (bytes == 0 || heads_ == 0) return;
        auto* base = reinterpret_cast<unsigned char*>(full);
        const index_t a = s.own_begin - s.begin, b = a + s.own_length;
        const std::vector<char>& mine = mask(s, a, b);
        for (int p : s.peers) {
            const index_t p0 = std::max(s.begin, lay_.chunk[static_cast<std::size_t>(p)]) - s.begin;
            const index_t p1 = std::min(s.begin + s.length, lay_.chunk[static_cast<std::size_t>(p) + 1]) - s.begin;
            item recv{base, bytes, p, tag, false, pairs(mine, p0, p1), {}};
            item send{base, bytes, p, tag, true, pairs(mask(s, p0, p1), a, b), {}};
            items_.push_back(std::move(recv));
            items_.push_back(std::move(send));
        }
    }

    void run(distributed::comm_stats& st) {
        if (items_.empty()) return;
        std::vector<MPI_Request> requests(items_.size(), MPI_REQUEST_NULL);
        for (item& it : items_) {
            it.buffer.resize(it.at.size() * it.bytes);
            if (it.send)
                for (std::size_t i = 0; i < it.at.size(); ++i)
                    std::copy_n(it.base + static_cast<std::size_t>(it.at[i]) * it.bytes, it.bytes, it.buffer.data() + i * it.bytes);
        }
        const auto t0 = clock::now();
        {
            cpu_scope cpu(st.cpu_seconds_communication);
            for (std::size_t i = 0; i < items_.size(); ++i) {
                item& it = items_[i];
                if (it.buffer.size() > static_cast<std::size_t>(INT_MAX))
                    throw std::runtime_error("longnet::distributed: a varlen message exceeds MPI's int count");
                const int count = static_cast<int>(it.buffer.size());
                if (it.send)
                    mpi_check(MPI_Isend(it.buffer.data(), count, MPI_BYTE, it.peer, it.tag, comm_, &requests[i]), "MPI_Isend (rows)");
                else
                    mpi_check(MPI_Irecv(it.buffer.data(), count, MPI_BYTE, it.peer, it.tag, comm_, &requests[i]), "MPI_Irecv (rows)");
                (it.send ? st.bytes_sent : st.bytes_received) += it.buffer.size();
                st.collectives += it.send ? 1 : 0;
            }
            mpi_check(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall (rows)");
        }
        st.seconds_communication += seconds_since(t0);
        for (const item& it : items_)
            if (!it.send)
                for (std::size_t i = 0; i < it.at.size(); ++i)
                    std::copy_n(it.buffer.data() + i * it.bytes, it.bytes, it.base + static_cast<std::size_t>(it.at[i]) * it.bytes);
        items_.clear();
    }

private:
    struct item {
        unsigned char* base;  // the [L][H][E] tensor
        std::size_t bytes;    // of one (row, head): E elements
        int peer, tag;
        bool send;
        std::vector<index_t> at;  // row·H + h of each (row, head) in the message, in order
        std::vector<unsigned char> buffer;
    };
    // The rows [a, b) of the mask as (row·H + h) indices.
    std::vector<index_t> pairs(const std::vector<char>& m, index_t a, index_t b) const {
        std::vector<index_t> at;
        for (index_t j = a * heads_; j < b * heads_; ++j)
            if (all_ || m[static_cast<std::size_t>(j)]) at.push_back(j);
        return at;
    }
    // rows_read of the rows [a, b) of s, cached (the same for every tensor of a call).
    const std::vector<char>& mask(const varlen_sequence& s, index_t a, index_t b) {
        auto& slot = masks_[{s.begin, a}];
        if (slot.empty() && !all_) slot = rows_read(s.length, a, b, heads_, opt_);
        return slot;
    }
    MPI_Comm comm_;
    const varlen_layout& lay_;
    const dilated_options& opt_;
    index_t heads_;
    bool all_;
    std::vector<item> items_;
    std::map<std::pair<index_t, index_t>, std::vector<char>> masks_;
};

// A whole spanning sequence's [1, L, H, D] tensor, this rank's rows copied from a local view.
template <class T>
struct full_rows {
    std::vector<T> data;
    full_rows(const varlen_sequence& s, index_t H, index_t D) : data(static_cast<std::size_t>(s.length * H * D), T(0)) {}
    template <class X>
    full_rows(const varlen_sequence& s, const tensor_view<X>& x, index_t local_begin)
        : full_rows(s, x.heads(), x.head_dim()) {
        copy_rows_out(x, s.own_begin - local_begin, s.own_length, own(s, x.heads() * x.head_dim()));
    }
    T* own(const varlen_sequence& s, index_t row_elems) { return data.data() + (s.own_begin - s.begin) * row_elems; }
    tensor_view<T> view(const varlen_sequence& s, index_t H, index_t D) { return make_bnhd(data.data(), 1, s.length, H, D); }
};

}  // namespace longnet::detail::dist
