// SPDX-License-Identifier: Apache-2.0
#pragma once
// Gradients of dense and dilated attention (SPEC §6), for training.
//
// From the forward's inputs q, k, v, its output out and merged log-sum-exp lse, and the upstream
// gradient dout, compute dq, dk, dv: the gradients of sum(out ∘ dout).
//
//   grad_mode::exact (default)       the true gradient of the merged output (one softmax over the
//                                    multiset union of the branches' keys). Per branch and segment it is
//                                    the flash-attention backward with the merged O and L:
//                                      P = exp(τ·q·kᵀ − L), Δ = rowsum(dO ∘ O), dS = P ∘ (dO·vᵀ − Δ),
//                                      dQ = τ·dS·K, dK = τ·dSᵀ·Q, dV = Pᵀ·dO,
//                                    summed over branches (dK, dV added to the rows they came from).
//   grad_mode::stop_grad_weights     torchscale parity: the merge weights α_i = exp(l_i − L) are held
//                                    constant; each branch backpropagates α_i·dO through its own softmax
//                                    (its output o_i is recomputed; only Δ changes: Δ_i = rowsum(dO ∘ o_i)).
//
// zero_pad padding keys (logit 0, value 0) have no gradient of their own; they are already part of L and O.
// Rows no branch selects (lse = −inf) get zero gradients, never NaN.
//
// dq, dk, dv are overwritten (not accumulated into). Computation in accum_t<T> (float, double for
// double); float/double gradients are accumulated across branches in the output itself, in branch
// order; bfloat16/half gradients are accumulated in float buffers (3 × B·N·H·D floats) and rounded to
// storage once. Results are bitwise identical for any number of threads. Besides those buffers, memory is
// per-thread scratch of O(segment rows × D): no N×N matrix, no per-branch full-size buffer.

#include <stdexcept>
#include <string>
#include <type_traits>

#include "longnet/detail/dispatch.hpp"
#include "longnet/detail/validate.hpp"
#include "longnet/numeric.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"

namespace longnet {

namespace detail {
template <class TQ, class TO, class TL, class TD, class TGQ, class TGK, class TGV>
void check_backward_shapes(const char* op, const tensor_view<TQ>& q, const tensor_view<TO>& out,
                           const lse_view<TL>& lse, const tensor_view<TD>& dout, const tensor_view<TGQ>& dq,
                           const tensor_view<TGK>& dk, const tensor_view<TGV>& dv) {
    const std::string who = std::string("longnet::") + op + ": ";
    auto same = [&](const char* name, const auto& t) {
        for (int i = 0; i < 4; ++i)
            if (t.extent(i) != q.extent(i))
                throw std::invalid_argument(who + name + " has shape " + shape_string(t) + " but q has shape " +
                                            shape_string(q) + " (q, k, v, out, dout, dq, dk, dv are all [B, N, H, D])");
        if (q.size() > 0 && t.empty())
            throw std::invalid_argument(who + name + " is a null view for a non-empty tensor of shape " + shape_string(q));
    };
    same("dout", dout);
    same("dq", dq);
    same("dk", dk);
    same("dv", dv);
    (void)out;
    if (q.size() > 0 && lse.empty())
        throw std::invalid_argument(who + "lse is required: pass the forward's merged log-sum-exp, shape [B, N, H] = [" +
                                    std::to_string(q.extent(0)) + ", " + std::to_string(q.extent(1)) + ", " +
                                    std::to_string(q.extent(2)) + "]");
}

template <class TQ, class TK, class TV, class TO, class TL, class TD, class TGQ, class TGK, class TGV>
constexpr bool backward_types_ok() {
    using T = std::remove_const_t<TQ>;
    return std::is_same_v<std::remove_const_t<TK>, T> && std::is_same_v<std::remove_const_t<TV>, T> &&
           std::is_same_v<std::remove_const_t<TO>, T> && std::is_same_v<std::remove_const_t<TD>, T> &&
           std::is_same_v<TGQ, T> && std::is_same_v<TGK, T> && std::is_same_v<TGV, T> &&
           std::is_same_v<std::remove_const_t<TL>, accum_t<T>>;
}
}  // namespace detail

// q, k, v, out, dout: [B, N, H, D] views (may be const); lse: the forward's merged [B, N, H] log-sum-exp
// (accum_t<T>); dq, dk, dv: mutable [B, N, H, D] views of the same element type, overwritten.
// Throws std::invalid_argument (naming the bad value) for an empty branch list, a segment length or
// dilation < 1, a non-finite scale, mismatched shapes or a missing lse. The gradients may not alias
// any input.
template <class TQ, class TK, class TV, class TO, class TL, class TD, class TGQ, class TGK, class TGV>
void dilated_attention_backward(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, tensor_view<TO> out,
                                lse_view<TL> lse, tensor_view<TD> dout, tensor_view<TGQ> dq, tensor_view<TGK> dk,
                                tensor_view<TGV> dv, const dilated_options& opt, grad_mode mode = grad_mode::exact) {
    using T = std::remove_const_t<TQ>;
    static_assert(is_storage_type<T>::value,
                  "longnet::dilated_attention_backward: element type must be float, double, bfloat16 or half");
    static_assert(detail::backward_types_ok<TQ, TK, TV, TO, TL, TD, TGQ, TGK, TGV>(),
                  "longnet::dilated_attention_backward: q, k, v, out, dout, dq, dk, dv must share one element type T "
                  "(dq, dk, dv mutable) and lse must be accum_t<T>");
    validate(opt);
    if (mode != grad_mode::exact && mode != grad_mode::stop_grad_weights)
        throw std::invalid_argument("longnet::dilated_attention_backward: unknown grad mode value " +
                                    std::to_string(static_cast<int>(mode)));
    detail::check_shapes("dilated_attention_backward", q, k, v, out, lse);
    detail::check_backward_shapes("dilated_attention_backward", q, out, lse, dout, dq, dk, dv);
    detail::run_backward<T>(tensor_view<const T>(q), tensor_view<const T>(k), tensor_view<const T>(v),
                        tensor_view<const T>(out), lse_view<const accum_t<T>>(lse), tensor_view<const T>(dout), dq, dk,
                        dv, opt,
                        mode);
}

// Dense attention's backward (one softmax per row: both grad modes coincide). Arguments as above.
template <class TQ, class TK, class TV, class TO, class TL, class TD, class TGQ, class TGK, class TGV>
void dense_attention_backward(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, tensor_view<TO> out,
                              lse_view<TL> lse, tensor_view<TD> dout, tensor_view<TGQ> dq, tensor_view<TGK> dk,
                              tensor_view<TGV> dv, const attention_options& opt = {}) {
    using T = std::remove_const_t<TQ>;
    static_assert(is_storage_type<T>::value,
                  "longnet::dense_attention_backward: element type must be float, double, bfloat16 or half");
    static_assert(detail::backward_types_ok<TQ, TK, TV, TO, TL, TD, TGQ, TGK, TGV>(),
                  "longnet::dense_attention_backward: q, k, v, out, dout, dq, dk, dv must share one element type T "
                  "(dq, dk, dv mutable) and lse must be accum_t<T>");
    validate(opt);
    detail::check_shapes("dense_attention_backward", q, k, v, out, lse);
    detail::check_backward_shapes("dense_attention_backward", q, out, lse, dout, dq, dk, dv);
    dilated_options as_dilated;
    as_dilated.branches = {{q.seq_len() > 0 ? q.seq_len() : 1, 1}};
    as_dilated.causal = opt.causal;
    as_dilated.scale = opt.scale;
    detail::run_backward<T>(tensor_view<const T>(q), tensor_view<const T>(k), tensor_view<const T>(v),
                        tensor_view<const T>(out), lse_view<const accum_t<T>>(lse), tensor_view<const T>(dout), dq, dk,
                        dv, as_dilated, grad_mode::exact);
}

}  // namespace longnet
