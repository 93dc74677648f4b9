// SPDX-License-Identifier: Apache-2.0
#pragma once
// Where the training pass computes attention (issue 20): the one model pass of nn/ (multihead_attention::
// forward_train / backward, decoder_layer, decoder::forward_backward) serves every parallel layout, as
// llm.c's single model pass does; only this backend differs.
//   attention_backend<T> (this class, the default): the pass holds the whole sequence and runs
//       longnet::dilated_attention / dense_attention and their backward on it.
//   a derived backend: the pass holds rows [first, first + n) of a longer sequence and computes their
//       attention over all of it (training/distributed_trainer.hpp: the rows of one MPI rank, the
//       attention over the sequence group's communicator). XPos rotates those rows at their global positions.
//   document_attention<T> (below): the pass holds packed documents, one sequence of documents laid end to
//       end with their boundaries (cu_seqlens); each document's attention runs as if it were alone
//       (longnet::dilated_attention_varlen) and XPos positions restart at 0 at each document's first token.
// nn/ never includes MPI: communicating backends live above it (training/).


#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "longnet/attention.hpp"
#include "longnet/backward.hpp"
#include "longnet/dilated_attention.hpp"
#include "longnet/nn/common.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"
#include "longnet/varlen.hpp"

namespace longnet::nn {

enum class attention_kind { dilated, dense };

inline const char* to_string(attention_kind k) noexcept { return k == attention_kind::dilated ? "dilated" : "dense"; }

// The rows a pass holds: [first, first + rows) of a sequence of total rows.
struct row_slice {
    index_t first = 0;
    index_t total = 0;
};

template <class T>
class attention_backend {
public:
    using A = accum_t<T>;
    virtual ~attention_backend() = default;

    // Where the pass's `rows` rows lie in the sequence. Local: all of it.
    virtual row_slice slice(index_t rows) const { return {0, rows}; }
    // Packed documents: the boundaries (cu_seqlens) of the documents the held rows are made of, each to
    // be attended and positioned as if alone; null: the rows are one sequence.
    virtual const std::vector<index_t>* documents() const noexcept { return nullptr; }
    // The backend computes at a precision of its own (bf16_attention): the pass then sends every attention
    // call through it, where it would otherwise run a whole sequence's anchored XPos forward itself with
    // the compute type's kernels (multihead_attention::forward_train).
    virtual bool own_precision() const noexcept { return false; }

    // out, lse = attention of the held rows' queries q over the sequence's keys and values ([1, n, H, hd]
    // views of the held rows; lse [1, n, H]).
    virtual void forward(attention_kind kind, const dilated_options& opt, tensor_view<const T> q, tensor_view<const T> k,
                         tensor_view<const T> v, tensor_view<T> out, lse_view<A> lse) {
        if (kind == attention_kind::dilated)
            dilated_attention(q, k, v, out, opt, lse);
        else
            dense_attention(q, k, v, out, dense_options(opt), lse);
    }
    // dq, dk, dv (overwritten) of the held rows from the forward's inputs, out, lse and the upstream dout.
    virtual void backward(attention_kind kind, const dilated_options& opt, tensor_view<const T> q, tensor_view<const T> k,
                          tensor_view<const T> v, tensor_view<const T> out, lse_view<const A> lse,
                          tensor_view<const T> dout, tensor_view<T> dq, tensor_view<T> dk, tensor_view<T> dv,
                          grad_mode mode) {
        if (kind == attention_kind::dilated)
            dilated_attention_backward(q, k, v, out, lse, dout, dq, dk, dv, opt, mode);
        else
            dense_attention_backward(q, k, v, out, lse, dout, dq, dk, dv, dense_options(opt));
    }

    // Row moves for the XPos blocks of a long segment on a slice of a sequence (multihead_attention.hpp):
    // y = the rows first − shift .. first + n − shift of the sequence-wide matrix whose rows first .. first
    // + n − 1 this pass holds as x (n = x.rows(); rows before the sequence's start are 0), and its
    // transpose, x += the rows first + shift .. of the sequence-wide y (rows past the end add nothing).
    // Local: the whole sequence is here. A slice backend moves the rows between its holders (collective).
    virtual void shifted_rows(const matrix<T>& x, index_t shift, matrix<T>& y) {
        const index_t n = x.rows(), keep = std::max<index_t>(n - shift, 0);
        y.setZero(n, x.cols());
        if (keep > 0) y.bottomRows(keep) = x.topRows(keep);
    }
    virtual void add_shifted_back(const matrix<T>& y, index_t shift, matrix<T>& x) {
        const index_t keep = std::max<index_t>(y.rows() - shift, 0);
        if (keep > 0) x.topRows(keep) += y.bottomRows(keep);
    }

    // Dense attention takes causal and scale from the dilated options.
    static attention_options dense_options(const dilated_options& opt) {
        attention_options dense;
        dense.causal = opt.causal;
        dense.scale = opt.scale;
        return dense;
    }
};

// Packed documents (issue 22 §4, longnet_train --pack-documents): the pass holds a whole sequence made
// of documents laid end to end; cu_seqlens (B + 1 offsets, 0 .. total, non-decreasing: varlen.hpp's
// convention, checked there) says where each begins. No token attends across a boundary: the dilated
// attention is longnet::dilated_attention_varlen (segments, tails and causal masks restart at each
// document), dense attention runs once per document; multihead_attention restarts the XPos / RoPE
// positions at 0 at each document (documents()). Length-0 documents are allowed. The result for each
// document's rows is that of the document run alone.
template <class T>
class document_attention : public attention_backend<T> {
public:
    using A = accum_t<T>;
    // Throws std::invalid_argument (naming the bad offset) unless cu_seqlens fits `total` rows.
    document_attention(const std::vector<std::int64_t>& cu_seqlens, index_t total)
        : cu_(check_cu_seqlens(cu_seqlens, total)) {}

    const std::vector<index_t>* documents() const noexcept override { return &cu_; }

    void forward(attention_kind kind, const dilated_options& opt, tensor_view<const T> q, tensor_view<const T> k,
                 tensor_view<const T> v, tensor_view<T> out, lse_view<A> lse) override {
        check_rows(q.extent(1));
        if (kind == attention_kind::dilated) {
            dilated_attention_varlen(q, k, v, cu_, out, opt, lse);
            return;
        }
        using varlen_views::rows;
        for (std::size_t b = 0; b + 1 < cu_.size(); ++b) {
            const index_t s = cu_[b], n = cu_[b + 1] - s;
            if (n > 0)
                dense_attention(rows(q, s, n), rows(k, s, n), rows(v, s, n), rows(out, s, n), this->dense_options(opt),
                                rows(lse, s, n));
        }
    }
    void backward(attention_kind kind, const dilated_options& opt, tensor_view<const T> q, tensor_view<const T> k,
                  tensor_view<const T> v, tensor_view<const T> out, lse_view<const A> lse, tensor_view<const T> dout,
                  tensor_view<T> dq, tensor_view<T> dk, tensor_view<T> dv, grad_mode mode) override {
        check_rows(q.extent(1));
        if (kind == attention_kind::dilated) {
            dilated_attention_varlen_backward(q, k, v, out, lse, dout, dq, dk, dv, cu_, opt, mode);
            return;
        }
        using varlen_views::rows;
        for (std::size_t b = 0; b + 1 < cu_.size(); ++b) {
            const index_t s = cu_[b], n = cu_[b + 1] - s;
            if (n > 0)
                dense_attention_backward(rows(q, s, n), rows(k, s, n), rows(v, s, n), rows(out, s, n), rows(lse, s, n),
                                         rows(dout, s, n), rows(dq, s, n), rows(dk, s, n), rows(dv, s, n),
                                         this->dense_options(opt));
        }
    }

private:
    void check_rows(index_t rows) const {
        if (rows != cu_.back())
            throw std::invalid_argument("longnet::nn::document_attention: the pass holds " + std::to_string(rows) +
                                        " rows but the documents end at " + std::to_string(cu_.back()));
    }
    std::vector<index_t> cu_;
};

// The default backend: the whole sequence, in this process (stateless, shared).
template <class T>
attention_backend<T>& local_attention() {
    static attention_backend<T> local;
    return local;
}

}  // namespace longnet::nn
