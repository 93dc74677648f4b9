// SPDX-License-Identifier: Apache-2.0
#pragma once
// Dilated attention on padded batches (issue 22 §2), forward and backward, built on the public ops.
//
// q, k, v, out (and dout, dq, dk, dv): [B, N, H, D] views, any strides, each batch row holding its real
// tokens among padding. Which rows are real is given either way users hold it:
//   key_padding_mask  B·N values, row-major [B, N], true / non-zero = pad (torchscale's convention), as
//                     a pointer + size of bool or std::uint8_t, or a std::vector<std::uint8_t>
//                     (std::vector<bool> is bit-packed and not accepted: copy it to bytes). Any mask works:
//                     left padding, right padding, both, holes, a fully padded or unpadded row;
//   padding_lengths   B lengths (int32 or int64, pointer + count or std::vector): right padding, row b's
//                     real tokens are positions [0, lengths[b]).
// Semantics: on real rows the result (out, lse; dq, dk, dv) is exactly that of dilated_attention_varlen
// on the real tokens of each batch row, in order, run alone — segments start at the row's first real
// token (so left padding shifts nothing), its own tail rule, causal mask and head offsets; no token
// attends to a pad. Pads: out = 0, lse = −inf (the op's value for a row without keys: "no keys", weight
// 0 in any log-sum-exp merge) and dq = dk = dv = 0. The pads of q, k, v (and of out, lse, dout in the
// backward) are never read, so whatever they hold (even NaN) changes nothing; finite real rows give no NaN.
// How: a batch row whose real tokens are contiguous runs as one call of the public op on a zero-copy
// sub-view (bitwise the per-sequence call); a row with holes is gathered into a contiguous buffer, run,
// and scattered back (bitwise the same, at the cost of a copy of that row).
// Bad input (shapes, options, a mask of size != B·N, a null mask or lengths, a lengths count != B, a
// negative length or one > N, an unknown grad mode) throws std::invalid_argument naming the bad value,
// before anything is written.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "longnet/backward.hpp"
#include "longnet/detail/validate.hpp"
#include "longnet/dilated_attention.hpp"
#include "longnet/numeric.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"

namespace longnet {

// A non-owning [B, N] row-major key padding mask: true / non-zero = pad. The memory must outlive the call.
class key_padding_mask {
public:
    key_padding_mask(const bool* data, std::size_t size) noexcept : bools_(data), size_(size) {}
    key_padding_mask(const std::uint8_t* data, std::size_t size) noexcept : bytes_(data), size_(size) {}
    key_padding_mask(const std::vector<std::uint8_t>& mask) noexcept  // NOLINT(google-explicit-constructor)
        : bytes_(mask.data()), size_(mask.size()) {}

    std::size_t size() const noexcept { return size_; }
    bool null() const noexcept { return bools_ == nullptr && bytes_ == nullptr; }
    bool is_pad(std::size_t i) const noexcept { return bools_ != nullptr ? bools_[i] : bytes_[i] != 0; }

private:
    const bool* bools_ = nullptr;
    const std::uint8_t* bytes_ = nullptr;
    std::size_t size_ = 0;
};

// Non-owning per-batch-row real lengths, right padding: row b's real tokens are [0, lengths[b]).
class padding_lengths {
public:
    padding_lengths(const std::int32_t* data, std::size_t count) noexcept : i32_(data), count_(count) {}
    padding_lengths(const std::int64_t* data, std::size_t count) noexcept : i64_(data), count_(count) {}
    padding_lengths(const std::vector<std::int32_t>& lengths) noexcept  // NOLINT(google-explicit-constructor)
        : i32_(lengths.data()), count_(lengths.size()) {}
    padding_lengths(const std::vector<std::int64_t>& lengths) noexcept  // NOLINT(google-explicit-constructor)
        : i64_(lengths.data()), count_(lengths.size()) {}

    std::size_t size() const noexcept { return count_; }
    bool null() const noexcept { return i32_ == nullptr && i64_ == nullptr; }
    index_t operator[](std::size_t b) const noexcept {
        return i32_ != nullptr ? static_cast<index_t>(i32_[b]) : static_cast<index_t>(i64_[b]);
    }

private:
    const std::int32_t* i32_ = nullptr;
    const std::int64_t* i64_ = nullptr;
    std::size_t count_ = 0;
};

namespace detail {

// Where the real tokens are: batch row b's real positions are real[cu[b] .. cu[b+1]), increasing
// (cu is the cu_seqlens of the real tokens packed).
struct padding_plan {
    index_t batch = 0, seq = 0;
    std::vector<index_t> real;
    std::vector<index_t> cu;

    index_t count(index_t b) const noexcept { return cu[static_cast<std::size_t>(b) + 1] - cu[static_cast<std::size_t>(b)]; }
    const index_t* positions(index_t b) const noexcept { return real.data() + cu[static_cast<std::size_t>(b)]; }
    // The real rows are one run [first, first + count): zero-copy.
    bool contiguous(index_t b) const noexcept {
        const index_t n = count(b);
        return n == 0 || positions(b)[n - 1] - positions(b)[0] + 1 == n;
    }
};

inline padding_plan make_padding_plan(const key_padding_mask& mask, index_t B, index_t N, const char* op) {
    const std::string who = std::string("longnet::") + op + ": ";
    const auto want = static_cast<std::size_t>(B * N);
    if (mask.size() != want)
        throw std::invalid_argument(who + "key_padding_mask has " + std::to_string(mask.size()) +
                                    " entries but q has B = " + std::to_string(B) + ", N = " + std::to_string(N) +
                                    " (need B * N = " + std::to_string(want) + ")");
    if (want > 0 && mask.null()) throw std::invalid_argument(who + "key_padding_mask is a null pointer");
    padding_plan p{B, N, {}, {0}};
    p.cu.reserve(static_cast<std::size_t>(B) + 1);
    for (index_t b = 0; b < B; ++b) {
        for (index_t n = 0; n < N; ++n)
            if (!mask.is_pad(static_cast<std::size_t>(b * N + n))) p.real.push_back(n);
        p.cu.push_back(static_cast<index_t>(p.real.size()));
    }
    return p;
}

inline padding_plan make_padding_plan(const padding_lengths& lengths, index_t B, index_t N, const char* op) {
    const std::string who = std::string("longnet::") + op + ": ";
    if (lengths.size() != static_cast<std::size_t>(B))
        throw std::invalid_argument(who + "lengths has " + std::to_string(lengths.size()) +
                                    " entries but the batch has B = " + std::to_string(B) + " rows");
    if (B > 0 && lengths.null()) throw std::invalid_argument(who + "lengths is a null pointer");
    for (index_t b = 0; b < B; ++b) {
        const index_t len = lengths[static_cast<std::size_t>(b)];
        const std::string at = "lengths[" + std::to_string(b) + "] = " + std::to_string(len);
        if (len < 0) throw std::invalid_argument(who + at + " is negative");
        if (len > N)
            throw std::invalid_argument(who + at + " is greater than the sequence length N = " + std::to_string(N));
    }
    padding_plan p{B, N, {}, {0}};
    p.cu.reserve(static_cast<std::size_t>(B) + 1);
    for (index_t b = 0; b < B; ++b) {
        for (index_t n = 0; n < lengths[static_cast<std::size_t>(b)]; ++n) p.real.push_back(n);
        p.cu.push_back(static_cast<index_t>(p.real.size()));
    }
    return p;
}

// Rows [first, first + n) of batch row b as a [1, n, H, D] (resp. [1, n, H]) view; null views stay null.
template <class T>
tensor_view<T> padded_rows(const tensor_view<T>& t, index_t b, index_t first, index_t n) {
    return tensor_view<T>(t.empty() ? nullptr : t.data_handle() + t.offset(b, first, 0), {1, n, t.extent(2), t.extent(3)},
                          {t.stride(0), t.stride(1), t.stride(2)});
}
template <class T>
lse_view<T> padded_rows(const lse_view<T>& t, index_t b, index_t first, index_t n) {
    return lse_view<T>(t.empty() ? nullptr : &t(b, first, 0), {1, n, t.extent(2)}, {t.stride(0), t.stride(1), t.stride(2)});
}

// Contiguous [1, n, H, D] copies of the real rows of batch row b (the holes path), and back.
template <class T, class U>
tensor_view<T> padded_gather(const tensor_view<U>& t, const padding_plan& p, index_t b, std::vector<T>& buf) {
    const index_t n = p.count(b), H = t.extent(2), D = t.extent(3);
    buf.resize(static_cast<std::size_t>(n * H * D));
    if (D > 0)
        for (index_t i = 0; i < n; ++i)
            for (index_t h = 0; h < H; ++h) std::copy_n(t.row(b, p.positions(b)[i], h), D, buf.data() + (i * H + h) * D);
    return make_bnhd(buf.data(), 1, n, H, D);
}
template <class T, class U>
lse_view<T> padded_gather(const lse_view<U>& t, const padding_plan& p, index_t b, std::vector<T>& buf) {
    const index_t n = p.count(b), H = t.extent(2);
    buf.resize(static_cast<std::size_t>(n * H));
    for (index_t i = 0; i < n; ++i)
        for (index_t h = 0; h < H; ++h) buf[static_cast<std::size_t>(i * H + h)] = t(b, p.positions(b)[i], h);
    return make_lse_bnh(buf.data(), 1, n, H);
}
// A contiguous [1, n, H, D] buffer for batch row b's real rows (results).
template <class T>
tensor_view<T> padded_buffer(const padding_plan& p, index_t b, index_t H, index_t D, std::vector<T>& buf) {
    const index_t n = p.count(b);
    buf.resize(static_cast<std::size_t>(n * H * D));
    return make_bnhd(buf.data(), 1, n, H, D);
}
template <class T>
void padded_scatter(const std::vector<T>& buf, const padding_plan& p, index_t b, const tensor_view<T>& t) {
    const index_t n = p.count(b), H = t.extent(2), D = t.extent(3);
    if (D > 0)
        for (index_t i = 0; i < n; ++i)
            for (index_t h = 0; h < H; ++h) std::copy_n(buf.data() + (i * H + h) * D, D, t.row(b, p.positions(b)[i], h));
}
template <class T>
void padded_scatter(const std::vector<T>& buf, const padding_plan& p, index_t b, const lse_view<T>& t) {
    const index_t n = p.count(b), H = t.extent(2);
    for (index_t i = 0; i < n; ++i)
        for (index_t h = 0; h < H; ++h) t(b, p.positions(b)[i], h) = buf[static_cast<std::size_t>(i * H + h)];
}

// Calls f(n) for every pad position n of batch row b.
template <class F>
void for_each_pad(const padding_plan& p, index_t b, F&& f) {
    const index_t* real = p.positions(b);
    const index_t count = p.count(b);
    index_t i = 0;
    for (index_t n = 0; n < p.seq; ++n) {
        if (i < count && real[i] == n) {
            ++i;
            continue;
        }
        f(n);
    }
}
// Writes zeros to every pad row of t (nothing when t has no elements).
template <class T>
void zero_pads(const tensor_view<T>& t, const padding_plan& p) {
    if (t.size() == 0) return;
    for (index_t b = 0; b < p.batch; ++b)
        for_each_pad(p, b, [&](index_t n) {
            for (index_t h = 0; h < t.extent(2); ++h) std::fill_n(t.row(b, n, h), t.extent(3), T{});
        });
}
template <class T>
void fill_pads(const lse_view<T>& t, const padding_plan& p, T value) {
    if (t.empty()) return;
    for (index_t b = 0; b < p.batch; ++b)
        for_each_pad(p, b, [&](index_t n) {
            for (index_t h = 0; h < t.extent(2); ++h) t(b, n, h) = value;
        });
}

template <class TQ, class TK, class TV, class TO>
void check_padded_forward(const char* op, const tensor_view<TQ>& q, const tensor_view<TK>& k, const tensor_view<TV>& v,
                          const tensor_view<TO>& out, const dilated_options& opt, const lse_view<accum_t<TO>>& lse) {
    using T = std::remove_const_t<TO>;
    static_assert(!std::is_const_v<TO>, "longnet::dilated_attention_padded: out must be a mutable view");
    static_assert(std::is_same_v<std::remove_const_t<TQ>, T> && std::is_same_v<std::remove_const_t<TK>, T> &&
                      std::is_same_v<std::remove_const_t<TV>, T>,
                  "longnet::dilated_attention_padded: q, k, v and out must have the same element type");
    static_assert(is_storage_type<T>::value,
                  "longnet::dilated_attention_padded: element type must be float, double, bfloat16 or half");
    validate(opt);
    check_shapes(op, q, k, v, out, lse);
}

template <class TQ, class TK, class TV, class TO>
void padded_forward(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, const padding_plan& p,
                    tensor_view<TO> out, const dilated_options& opt, lse_view<accum_t<TO>> lse) {
    using T = std::remove_const_t<TO>;
    using L = accum_t<T>;
    zero_pads(out, p);
    fill_pads(lse, p, -std::numeric_limits<L>::infinity());
    std::vector<T> gq, gk, gv, go;
    std::vector<L> gl;
    for (index_t b = 0; b < p.batch; ++b) {
        const index_t n = p.count(b);
        if (n == 0) continue;
        if (p.contiguous(b)) {
            const index_t s = p.positions(b)[0];
            dilated_attention(padded_rows(q, b, s, n), padded_rows(k, b, s, n), padded_rows(v, b, s, n),
                              padded_rows(out, b, s, n), opt, lse.empty() ? lse_view<L>() : padded_rows(lse, b, s, n));
            continue;
        }
        lse_view<L> l;
        if (!lse.empty()) {
            gl.resize(static_cast<std::size_t>(n * q.extent(2)));
            l = make_lse_bnh(gl.data(), 1, n, q.extent(2));
        }
        dilated_attention(padded_gather(q, p, b, gq), padded_gather(k, p, b, gk), padded_gather(v, p, b, gv),
                          padded_buffer(p, b, q.extent(2), q.extent(3), go), opt, l);
        padded_scatter(go, p, b, out);
        if (!lse.empty()) padded_scatter(gl, p, b, lse);
    }
}

}  // namespace detail

// Forward. q, k, v, out: [B, N, H, D]; lse: optional [B, N, H] view of accum_t<T>. See the header comment.
template <class TQ, class TK, class TV, class TO>
void dilated_attention_padded(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, const key_padding_mask& mask,
                              tensor_view<TO> out, const dilated_options& opt, lse_view<accum_t<TO>> lse = {}) {
    const char* op = "dilated_attention_padded";
    detail::check_padded_forward(op, q, k, v, out, opt, lse);
    const auto plan = detail::make_padding_plan(mask, q.extent(0), q.extent(1), op);
    detail::padded_forward(q, k, v, plan, out, opt, lse);
}
template <class TQ, class TK, class TV, class TO>
void dilated_attention_padded(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, const padding_lengths& lengths,
                              tensor_view<TO> out, const dilated_options& opt, lse_view<accum_t<TO>> lse = {}) {
    const char* op = "dilated_attention_padded";
    detail::check_padded_forward(op, q, k, v, out, opt, lse);
    const auto plan = detail::make_padding_plan(lengths, q.extent(0), q.extent(1), op);
    detail::padded_forward(q, k, v, plan, out, opt, lse);
}

namespace detail {
template <class TQ, class TK, class TV, class TO, class TL, class TD, class TGQ, class TGK, class TGV>
void padded_backward(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, tensor_view<TO> out, lse_view<TL> lse,
                     tensor_view<TD> dout, tensor_view<TGQ> dq, tensor_view<TGK> dk, tensor_view<TGV> dv,
                     const padding_plan& p, const dilated_options& opt, grad_mode mode) {
    using T = std::remove_const_t<TQ>;
    using L = std::remove_const_t<TL>;
    zero_pads(dq, p);
    zero_pads(dk, p);
    zero_pads(dv, p);
    std::vector<T> gq, gk, gv, go, gd, gdq, gdk, gdv;
    std::vector<L> gl;
    for (index_t b = 0; b < p.batch; ++b) {
        const index_t n = p.count(b);
        if (n == 0) continue;
        if (p.contiguous(b)) {
            const index_t s = p.positions(b)[0];
            dilated_attention_backward(padded_rows(q, b, s, n), padded_rows(k, b, s, n), padded_rows(v, b, s, n),
                                       padded_rows(out, b, s, n), padded_rows(lse, b, s, n), padded_rows(dout, b, s, n),
                                       padded_rows(dq, b, s, n), padded_rows(dk, b, s, n), padded_rows(dv, b, s, n), opt,
                                       mode);
            continue;
        }
        const index_t H = q.extent(2), D = q.extent(3);
        dilated_attention_backward(padded_gather(q, p, b, gq), padded_gather(k, p, b, gk), padded_gather(v, p, b, gv),
                                   padded_gather(out, p, b, go), padded_gather(lse, p, b, gl),
                                   padded_gather(dout, p, b, gd), padded_buffer(p, b, H, D, gdq),
                                   padded_buffer(p, b, H, D, gdk), padded_buffer(p, b, H, D, gdv), opt, mode);
        padded_scatter(gdq, p, b, dq);
        padded_scatter(gdk, p, b, dk);
        padded_scatter(gdv, p, b, dv);
    }
}

template <class TQ, class TK, class TV, class TO, class TL, class TD, class TGQ, class TGK, class TGV>
void check_padded_backward(const char* op, const tensor_view<TQ>& q, const tensor_view<TK>& k, const tensor_view<TV>& v,
                           const tensor_view<TO>& out, const lse_view<TL>& lse, const tensor_view<TD>& dout,
                           const tensor_view<TGQ>& dq, const tensor_view<TGK>& dk, const tensor_view<TGV>& dv,
                           const dilated_options& opt, grad_mode mode) {
    static_assert(backward_types_ok<TQ, TK, TV, TO, TL, TD, TGQ, TGK, TGV>(),
                  "longnet::dilated_attention_padded_backward: q, k, v, out, dout, dq, dk, dv must share one element "
                  "type T (dq, dk, dv mutable) and lse must be accum_t<T>");
    validate(opt);
    if (mode != grad_mode::exact && mode != grad_mode::stop_grad_weights)
        throw std::invalid_argument(std::string("longnet::") + op + ": unknown grad mode value " +
                                    std::to_string(static_cast<int>(mode)));
    check_shapes(op, q, k, v, out, lse);
    check_backward_shapes(op, q, out, lse, dout, dq, dk, dv);
}
}  // namespace detail

// Backward: arguments as dilated_attention_backward, padded, plus the mask (or lengths) the forward used.
// lse is the forward's [B, N, H] log-sum-exp (required; its pads are not read). dq, dk, dv are
// overwritten, zero on the pads.
template <class TQ, class TK, class TV, class TO, class TL, class TD, class TGQ, class TGK, class TGV>
void dilated_attention_padded_backward(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, tensor_view<TO> out,
                                       lse_view<TL> lse, tensor_view<TD> dout, tensor_view<TGQ> dq, tensor_view<TGK> dk,
                                       tensor_view<TGV> dv, const key_padding_mask& mask, const dilated_options& opt,
                                       grad_mode mode = grad_mode::exact) {
    const char* op = "dilated_attention_padded_backward";
    detail::check_padded_backward(op, q, k, v, out, lse, dout, dq, dk, dv, opt, mode);
    const auto plan = detail::make_padding_plan(mask, q.extent(0), q.extent(1), op);
    detail::padded_backward(q, k, v, out, lse, dout, dq, dk, dv, plan, opt, mode);
}
template <class TQ, class TK, class TV, class TO, class TL, class TD, class TGQ, class TGK, class TGV>
void dilated_attention_padded_backward(tensor_view<TQ> q, tensor_view<TK> k, tensor_view<TV> v, tensor_view<TO> out,
                                       lse_view<TL> lse, tensor_view<TD> dout, tensor_view<TGQ> dq, tensor_view<TGK> dk,
                                       tensor_view<TGV> dv, const padding_lengths& lengths, const dilated_options& opt,
                                       grad_mode mode = grad_mode::exact) {
    const char* op = "dilated_attention_padded_backward";
    detail::check_padded_backward(op, q, k, v, out, lse, dout, dq, dk, dv, opt, mode);
    const auto plan = detail::make_padding_plan(lengths, q.extent(0), q.extent(1), op);
    detail::padded_backward(q, k, v, out, lse, dout, dq, dk, dv, plan, opt, mode);
}

}  // namespace longnet
