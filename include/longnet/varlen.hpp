// SPDX-License-Identifier: Apache-2.0
#pragma once
// Packed variable-length dilated attention (issue 22 §1), forward and backward, built on the public ops.
//
// q, k, v, out (and dout, dq, dk, dv): packed [1, total, H, D] views — B sequences laid end to end.
// cu_seqlens: B + 1 offsets (int32 or int64), cu_seqlens[0] = 0, non-decreasing, cu_seqlens[B] = total
// (flash-attn's convention). Sequence b is rows [cu_seqlens[b], cu_seqlens[b+1]).
// Semantics: exactly as if each sequence were run alone through longnet::dilated_attention (resp. its
// backward): segments restart at the sequence's first token, its own tail rule, its own causal mask,
// its own head offsets; no token attends across a boundary; length-0 sequences are allowed (nothing to
// do). lse is per packed row: [1, total, H]. Each sequence is a zero-copy sub-view of the packed tensors
// and one call of the public op, so results are bitwise those of the per-sequence calls and the cost is
// proportional to the sum over sequences.
// Bad cu_seqlens (empty, first != 0, negative, decreasing, last != total) throw std::invalid_argument
// naming the bad index and value, before anything is written.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "longnet/backward.hpp"
#include "longnet/dilated_attention.hpp"
#include "longnet/numeric.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"

namespace longnet {

// Checks cu_seqlens[0..count) against total; returns the offsets as int64. Throws std::invalid_argument.
template <class I>
std::vector<index_t> check_cu_seqlens(const I* cu_seqlens, std::size_t count, index_t total) {
    static_assert(std::is_same_v<I, std::int32_t> || std::is_same_v<I, std::int64_t>,
                  "longnet::check_cu_seqlens: cu_seqlens must be int32 or int64");
    const std::string who = "longnet::dilated_attention_varlen: ";
    if (count == 0 || cu_seqlens == nullptr)
        throw std::invalid_argument(who + "cu_seqlens is empty (need B + 1 >= 1 offsets, the first 0)");
    std::vector<index_t> cu(count);
    for (std::size_t i = 0; i < count; ++i) {
        const index_t x = static_cast<index_t>(cu_seqlens[i]);
        const std::string at = "cu_seqlens[" + std::to_string(i) + "] = " + std::to_string(x);
        if (x < 0) throw std::invalid_argument(who + at + " is negative");
        if (i == 0 && x != 0) throw std::invalid_argument(who + at + " must be 0");
        if (x > total)
            throw std::invalid_argument(who + at + " is past the total token count " + std::to_string(total));
        if (i > 0 && x < cu[i - 1])
            throw std::invalid_argument(who + at + " is less than cu_seqlens[" + std::to_string(i - 1) +
                                        "] = " + std::to_string(cu[i - 1]) + " (must be non-decreasing)");
        cu[i] = x;
    }
    if (cu.back() != total)
        throw std::invalid_argument(who + "cu_seqlens[" + std::to_string(count - 1) + "] = " +
                                    std::to_string(cu.back()) + " but the packed tensors hold " +
                                    std::to_string(total) + " tokens");
    return cu;
}
template <class I>
std::vector<index_t> check_cu_seqlens(const std::vector<I>& cu_seqlens, index_t total) {
    return check_cu_seqlens(cu_seqlens.data(), cu_seqlens.size(), total);
}

namespace varlen_views {
template <class T>
tensor_view<T> rows(const tensor_view<T>& t, index_t begin, index_t len) {
    return tensor_view<T>(t.data_handle() == nullptr ? nullptr : t.data_handle() + begin * t.stride(1),
                          {1, len, t.extent(2), t.extent(3)}, {t.stride(0), t.stride(1), t.stride(2)});
}
template <class T>
lse_view<T> rows(const lse_view<T>& t, index_t begin, index_t len) {
    return lse_view<T>(t.data_handle() == nullptr ? nullptr : t.data_handle() + begin * t.stride(1),
                       {1, len, t.extent(2)}, {t.stride(0), t.stride(1), t.stride(2)});
}
inline std::string shape_of(index_t a, index_t b, index_t c, index_t d = -1) {
    std::string s = "[" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c);
    if (d >= 0) s += ", " + std::to_string(d);
    return s + "]";
}
// Every packed view must be [1, total, H, D] like q (lse [1, total, H] when given), so that no
// sequence is written before a bad argument is found.
template <class T>
void check_packed(const char* op, const char* name, const tensor_view<T>& q, const tensor_view<T>& t) {
    const std::string who = std::string("longnet::") + op + ": ";
    if (q.extent(0) != 1)
        throw std::invalid_argument(who + "q must be a packed [1, total, H, D] view but has shape " +
                                    shape_of(q.extent(0), q.extent(1), q.extent(2), q.extent(3)));
    for (int i = 0; i < 4; ++i)
        if (t.extent(i) != q.extent(i))
            throw std::invalid_argument(who + name + " has shape " + shape_of(t.extent(0), t.extent(1), t.extent(2), t.extent(3)) +
                                        " but q has shape " + shape_of(q.extent(0), q.extent(1), q.extent(2), q.extent(3)));
    if (q.size() > 0 && t.data_handle() == nullptr) throw std::invalid_argument(who + name + " is a null view");
}
template <class T, class L>
void check_packed_lse(const char* op, const tensor_view<T>& q, const lse_view<L>& lse, bool required) {
    if (lse.empty()) {
        if (required && q.size() > 0)
            throw std::invalid_argument(std::string("longnet::") + op + ": lse is required");
        return;
    }
    for (int i = 0; i < 3; ++i)
        if (lse.extent(i) != q.extent(i))
            throw std::invalid_argument(std::string("longnet::") + op + ": lse has shape " +
                                        shape_of(lse.extent(0), lse.extent(1), lse.extent(2)) + " but must be " +
                                        shape_of(q.extent(0), q.extent(1), q.extent(2)));
}
// The forward's views (k, v, out like q; lse optional) and the backward's (also dout, dq, dk, dv; lse
// required), checked in that order.
template <class TQ, class TK, class TV, class TO, class L>
void check_forward_packed(const char* op, const tensor_view<TQ>& q, const tensor_view<TK>& k, const tensor_view<TV>& v,
                          const tensor_view<TO>& out, const lse_view<L>& lse, bool lse_required = false) {
    using C = tensor_view<const std::remove_const_t<TO>>;
    check_packed(op, "k", C(q), C(k));
    check_packed(op, "v", C(q), C(v));
    check_packed(op, "out", C(q), C(out));
    if (!lse_required) check_packed_lse(op, q, lse, false);
}
template <class TQ, class TK, class TV, class TO, class L, class TD, class TGQ, class TGK, class TGV>
void check_backward_packed(const char* op, const tensor_view<TQ>& q, const tensor_view<TK>& k,
                           const tensor_view<TV>& v, const tensor_view<TO>& out, const lse_view<L>& lse,
                           const tensor_view<TD>& dout, const tensor_view<TGQ>& dq, const tensor_view<TGK>& dk,
                           const tensor_view<TGV>& dv) {
    using C = tensor_view<const std::remove_const_t<TQ>>;
    check_forward_packed(op, q, k, v, out, lse, true);
    check_packed(op, "dout", C(q), C(dout));
    check_packed(op, "dq", C(q), C(dq));
    check_packed(op, "dk", C(q), C(dk));
    check_packed(op, "dv", C(q), C(dv));
    check_packed_lse(op, q, lse, true);
}
}  // namespace varlen_views

// Forward. lse: optional packed [1, total, H] view of accum_t<T>. Shapes are checked as by
// dilated_attention (on the whole packed tensors) before any sequence runs.
template <class TQ, class TK, class TV, class TO, class I>
void dilated_attention_varlen(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, const std::vector<I>& cu_seqlens,
                              tensor_view<TO> out, const dilated_options& opt, lse_view<accum_t<TO>> lse = {}) {
    validate(opt);
    varlen_views::check_forward_packed("dilated_attention_varlen", q, k, v, out, lse);
    const std::vector<index_t> cu = check_cu_seqlens(cu_seqlens, q.extent(1));
    using varlen_views::rows;
    for (std::size_t b = 0; b + 1 < cu.size(); ++b) {
        const index_t s = cu[b], n = cu[b + 1] - cu[b];
        if (n == 0) continue;
        dilated_attention(rows(q, s, n), rows(k, s, n), rows(v, s, n), rows(out, s, n), opt,
                          lse.empty() ? lse_view<accum_t<TO>>() : rows(lse, s, n));
    }
}

// Backward: arguments as dilated_attention_backward, packed, plus cu_seqlens. lse is the forward's packed
// [1, total, H] log-sum-exp (required). dq, dk, dv are overwritten.
template <class TQ, class TK, class TV, class TO, class TL, class TD, class TGQ, class TGK, class TGV, class I>
void dilated_attention_varlen_backward(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, tensor_view<TO> out,
                                       lse_view<TL> lse, tensor_view<TD> dout, tensor_view<TGQ> dq,
                                       tensor_view<TGK> dk, tensor_view<TGV> dv, const std::vector<I>& cu_seqlens,
                                       const dilated_options& opt, grad_mode mode = grad_mode::exact) {
    validate(opt);
    varlen_views::check_backward_packed("dilated_attention_varlen_backward", q, k, v, out, lse, dout, dq, dk, dv);
    const std::vector<index_t> cu = check_cu_seqlens(cu_seqlens, q.extent(1));
    using varlen_views::rows;
    for (std::size_t b = 0; b + 1 < cu.size(); ++b) {
        const index_t s = cu[b], n = cu[b + 1] - cu[b];
        if (n == 0) continue;
        dilated_attention_backward(rows(q, s, n), rows(k, s, n), rows(v, s, n), rows(out, s, n), rows(lse, s, n),
                                   rows(dout, s, n), rows(dq, s, n), rows(dk, s, n), rows(dv, s, n), opt, mode);
    }
}

}  // namespace longnet
