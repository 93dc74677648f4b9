// SPDX-License-Identifier: Apache-2.0
#pragma once
// LongNet dilated attention (SPEC §2–5).
//
// For each branch (w, r) and head h (offset o = head_offset(policy, h, H, r)), the sequence is cut into
// segments [g·w, min((g+1)·w, N)); rows g·w + o, g·w + o + r, ... of a segment attend densely among
// themselves (causal: to selected keys at positions ≤ their own). Branch results merge through their
// log-sum-exps: O = Σ_i exp(l_i − L) · o_i, L = log Σ_i exp(l_i) — one softmax over the multiset union
// of the keys each branch shows the row. A row no branch selects gets O = 0 and LSE = −inf.
//
// NaN or Inf inputs make NaN only in the rows whose softmax reaches them (the rows of the same selected
// segments); other rows are unaffected.

#include "longnet/detail/dispatch.hpp"
#include "longnet/detail/validate.hpp"
#include "longnet/numeric.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"

namespace longnet {

// q, k, v, out: [B, N, H, D] views (q, k, v may be const). lse: optional [B, N, H] view of accum_t<T>.
// Throws std::invalid_argument (naming the bad value) for an empty branch list, a segment length or
// dilation < 1, mismatched shapes or a non-finite scale. out may not alias q, k or v.
template <class TQ, class TK, class TV, class TO>
void dilated_attention(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, tensor_view<TO> out,
                       const dilated_options& opt, lse_view<accum_t<TO>> lse = {}) {
    using T = std::remove_const_t<TO>;
    static_assert(!std::is_const_v<TO>, "longnet::dilated_attention: out must be a mutable view");
    static_assert(std::is_same_v<std::remove_const_t<TQ>, T> && std::is_same_v<std::remove_const_t<TK>, T> &&
                      std::is_same_v<std::remove_const_t<TV>, T>,
                  "longnet::dilated_attention: q, k, v and out must have the same element type");
    static_assert(is_storage_type<T>::value,
                  "longnet::dilated_attention: element type must be float, double, bfloat16 or half");
    validate(opt);
    detail::check_shapes("dilated_attention", q, k, v, out, lse);
    detail::run_forward<T>(tensor_view<const T>(q), tensor_view<const T>(k), tensor_view<const T>(v), out, opt, lse);
}

}  // namespace longnet
