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
// nn/ never includes MPI: communicating backends live above it (training/).


#include "longnet/attention.hpp"
#include "longnet/backward.hpp"
#include "longnet/dilated_attention.hpp"
#include "longnet/nn/common.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"

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

    // Dense attention takes causal and scale from the dilated options.
    static attention_options dense_options(const dilated_options& opt) {
        attention_options dense;
        dense.causal = opt.causal;
        dense.scale = opt.scale;
        return dense;
    }
};

// The default backend: the whole sequence, in this process (stateless, shared).
template <class T>
attention_backend<T>& local_attention() {
    static attention_backend<T> local;
    return local;
}

}  // namespace longnet::nn
