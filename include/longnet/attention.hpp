// SPDX-License-Identifier: Apache-2.0
#pragma once
// Dense (standard) softmax attention: the drop-in baseline LongNet replaces.
//
//   out[b, i, h, :] = Σ_j softmax_j(τ · q[b, i, h, :] · k[b, j, h, :]) · v[b, j, h, :]
//   lse[b, i, h]    = log Σ_j exp(τ · q·k)            (causal: j ≤ i)
//
// Storage float, double, bfloat16 or half; accumulation in accum_t<T> (double for double, else float).

#include "longnet/detail/dispatch.hpp"
#include "longnet/detail/validate.hpp"
#include "longnet/numeric.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"

namespace longnet {

// q, k, v, out: [B, N, H, D] views (q, k, v may be const). lse: optional [B, N, H] view.
// Throws std::invalid_argument (naming the bad value) for mismatched shapes or a non-finite scale.
// out may not alias q, k or v.
template <class TQ, class TK, class TV, class TO>
void dense_attention(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, tensor_view<TO> out,
                     const attention_options& opt = {}, lse_view<accum_t<TO>> lse = {}) {
    using T = std::remove_const_t<TO>;
    static_assert(!std::is_const_v<TO>, "longnet::dense_attention: out must be a mutable view");
    static_assert(std::is_same_v<std::remove_const_t<TQ>, T> && std::is_same_v<std::remove_const_t<TK>, T> &&
                      std::is_same_v<std::remove_const_t<TV>, T>,
                  "longnet::dense_attention: q, k, v and out must have the same element type");
    static_assert(is_storage_type<T>::value, "longnet::dense_attention: element type must be float, double, bfloat16 or half");
    validate(opt);
    detail::check_shapes("dense_attention", q, k, v, out, lse);
    dilated_options as_dilated;
    as_dilated.branches = {{q.seq_len() > 0 ? q.seq_len() : 1, 1}};
    as_dilated.causal = opt.causal;
    as_dilated.scale = opt.scale;
    detail::run_forward<T>(tensor_view<const T>(q), tensor_view<const T>(k), tensor_view<const T>(v), out, as_dilated, lse);
}

}  // namespace longnet
