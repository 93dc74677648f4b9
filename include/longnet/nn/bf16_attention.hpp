// SPDX-License-Identifier: Apache-2.0
#pragma once
// The attention of a float training pass in bf16 (mixed precision, training/precision.hpp): an
// attention_backend<float> that rounds q, k, v (and, for the backward, out and dout) to bf16 and runs the
// attention kernels' bf16 storage path (the bf16 dot products of detail/bf16_dot.hpp where the CPU has
// AVX512-BF16 or AMX and the path is on, isa.hpp; else the kernels widen the bf16 values to float): float
// accumulation, float log-sum-exp, out and dq/dk/dv rounded to bf16 by the kernels and widened back into
// the float views. The rounding costs nothing the Linears do not already do: out feeds out_proj (through
// the Sub-LN) and dq/dk/dv feed the q/k/v projections' backward, which round their inputs to bf16 anyway.
// The whole sequence, in this process (as local_attention); packed documents and the distributed
// backends keep their float attention.

#include <vector>

#include "longnet/nn/attention_backend.hpp"
#include "longnet/numeric.hpp"

namespace longnet::nn {

class bf16_attention final : public attention_backend<float> {
public:
    bool own_precision() const noexcept override { return true; }
    void forward(attention_kind kind, const dilated_options& opt, tensor_view<const float> q, tensor_view<const float> k,
                 tensor_view<const float> v, tensor_view<float> out, lse_view<float> lse) override {
        const tensor_view<const bfloat16> qb = rounded(q, q_), kb = rounded(k, k_), vb = rounded(v, v_);
        const tensor_view<bfloat16> ob = like(out, o_);
        if (kind == attention_kind::dilated)
            dilated_attention(qb, kb, vb, ob, opt, lse);
        else
            dense_attention(qb, kb, vb, ob, dense_options(opt), lse);
        widen(ob, out);
    }
    void backward(attention_kind kind, const dilated_options& opt, tensor_view<const float> q, tensor_view<const float> k,
                  tensor_view<const float> v, tensor_view<const float> out, lse_view<const float> lse,
                  tensor_view<const float> dout, tensor_view<float> dq, tensor_view<float> dk, tensor_view<float> dv,
                  grad_mode mode) override {
        const tensor_view<const bfloat16> qb = rounded(q, q_), kb = rounded(k, k_), vb = rounded(v, v_),
                                          ob = rounded(out, o_), dob = rounded(dout, do_);
        const tensor_view<bfloat16> dqb = like(dq, dq_), dkb = like(dk, dk_), dvb = like(dv, dv_);
        if (kind == attention_kind::dilated)
            dilated_attention_backward(qb, kb, vb, ob, lse, dob, dqb, dkb, dvb, opt, mode);
        else
            dense_attention_backward(qb, kb, vb, ob, lse, dob, dqb, dkb, dvb, dense_options(opt));
        widen(dqb, dq);
        widen(dkb, dk);
        widen(dvb, dv);
    }

private:
    std::vector<bfloat16> q_, k_, v_, o_, do_, dq_, dk_, dv_;  // reused across calls

    // A contiguous bf16 view shaped like t, in buf.
    template <class U>
    static tensor_view<bfloat16> like(const tensor_view<U>& t, std::vector<bfloat16>& buf) {
        buf.resize(static_cast<std::size_t>(t.size()));
        return tensor_view<bfloat16>(buf.data(), t.extent(0), t.extent(1), t.extent(2), t.extent(3));
    }
    // t rounded to bf16 (nearest even), contiguous, in buf.
    static tensor_view<const bfloat16> rounded(tensor_view<const float> t, std::vector<bfloat16>& buf) {
        const tensor_view<bfloat16> b = like(t, buf);
        const index_t batch = t.extent(0), n = t.extent(1), heads = t.extent(2), dim = t.extent(3);
        for (index_t bi = 0; bi < batch; ++bi) {
            LONGNET_NN_PARALLEL_FOR
            for (index_t i = 0; i < n; ++i)
                for (index_t h = 0; h < heads; ++h) {
                    const float* src = t.row(bi, i, h);
                    bfloat16* dst = b.row(bi, i, h);
                    for (index_t d = 0; d < dim; ++d) dst[d] = bfloat16(src[d]);
                }
        }
        return b;
    }
    // out = b widened to float (exact).
    static void widen(tensor_view<const bfloat16> b, tensor_view<float> out) {
        const index_t batch = b.extent(0), n = b.extent(1), heads = b.extent(2), dim = b.extent(3);
        for (index_t bi = 0; bi < batch; ++bi) {
            LONGNET_NN_PARALLEL_FOR
            for (index_t i = 0; i < n; ++i)
                for (index_t h = 0; h < heads; ++h) {
                    const bfloat16* src = b.row(bi, i, h);
                    float* dst = out.row(bi, i, h);
                    for (index_t d = 0; d < dim; ++d) dst[d] = static_cast<float>(src[d]);
                }
        }
    }
};

}  // namespace longnet::nn
