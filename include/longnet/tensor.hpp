// SPDX-License-Identifier: Apache-2.0
#pragma once
// Strided, non-owning views over someone else's memory (the model is Eigen::Map / std::mdspan).
//
//   tensor_view<T>  logical [B, N, H, D] (batch, sequence, head, head dim) for q, k, v, out.
//                   The innermost dim (D) is contiguous; B, N and H have arbitrary signed strides,
//                   in elements (never bytes), 64-bit. A [B, H, N, D] buffer is the same view with
//                   other strides (see make_bhnd).
//   lse_view<T>     logical [B, N, H] for the log-sum-exp, all three strides free
//                   ([B, H, N] storage is just other strides).
//
// T may be const-qualified (inputs) or not (outputs). Names follow mdspan so a later move to
// std::mdspan is a rename: extent(i), stride(i), data_handle(), operator()(b, n, h, d).

#include <array>
#include <cstddef>
#include <type_traits>

namespace longnet {

using index_t = std::ptrdiff_t;  // every extent, stride and offset is signed 64-bit

template <class T>
class tensor_view {
public:
    using element_type = T;
    using value_type = std::remove_cv_t<T>;
    static constexpr int rank = 4;

    tensor_view() = default;

    // Fully strided: strides for b, n, h in elements; d has stride 1.
    tensor_view(T* data, std::array<index_t, 4> extents, std::array<index_t, 3> strides_bnh) noexcept
        : data_(data), extents_(extents), strides_{strides_bnh[0], strides_bnh[1], strides_bnh[2], 1} {}

    // Contiguous row-major [B, N, H, D].
    tensor_view(T* data, index_t batch, index_t seq, index_t heads, index_t dim) noexcept
        : tensor_view(data, {batch, seq, heads, dim}, {seq * heads * dim, heads * dim, dim}) {}

    // A mutable view converts to a const view.
    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    tensor_view(const tensor_view<U>& other) noexcept  // NOLINT(google-explicit-constructor)
        : data_(other.data_handle()),
          extents_{other.extent(0), other.extent(1), other.extent(2), other.extent(3)},
          strides_{other.stride(0), other.stride(1), other.stride(2), 1} {}

    T* data_handle() const noexcept { return data_; }
    index_t extent(int i) const noexcept { return extents_[static_cast<std::size_t>(i)]; }
    index_t stride(int i) const noexcept { return strides_[static_cast<std::size_t>(i)]; }
    index_t batch() const noexcept { return extents_[0]; }
    index_t seq_len() const noexcept { return extents_[1]; }
    index_t heads() const noexcept { return extents_[2]; }
    index_t head_dim() const noexcept { return extents_[3]; }
    // Number of logical elements B·N·H·D.
    index_t size() const noexcept { return extents_[0] * extents_[1] * extents_[2] * extents_[3]; }
    bool empty() const noexcept { return data_ == nullptr; }

    // Offset of element (b, n, h, 0) in elements.
    index_t offset(index_t b, index_t n, index_t h) const noexcept {
        return b * strides_[0] + n * strides_[1] + h * strides_[2];
    }
    // Pointer to the contiguous row of D values at (b, n, h).
    T* row(index_t b, index_t n, index_t h) const noexcept { return data_ + offset(b, n, h); }
    T& operator()(index_t b, index_t n, index_t h, index_t d) const noexcept { return data_[offset(b, n, h) + d]; }

private:
    T* data_ = nullptr;
    std::array<index_t, 4> extents_{0, 0, 0, 0};
    std::array<index_t, 4> strides_{0, 0, 0, 1};
};

template <class T>
class lse_view {
public:
    using element_type = T;
    using value_type = std::remove_cv_t<T>;
    static constexpr int rank = 3;

    lse_view() = default;
    lse_view(T* data, std::array<index_t, 3> extents, std::array<index_t, 3> strides) noexcept
        : data_(data), extents_(extents), strides_(strides) {}
    // Contiguous row-major [B, N, H].
    lse_view(T* data, index_t batch, index_t seq, index_t heads) noexcept
        : lse_view(data, {batch, seq, heads}, {seq * heads, heads, 1}) {}

    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    lse_view(const lse_view<U>& other) noexcept  // NOLINT(google-explicit-constructor)
        : data_(other.data_handle()),
          extents_{other.extent(0), other.extent(1), other.extent(2)},
          strides_{other.stride(0), other.stride(1), other.stride(2)} {}

    T* data_handle() const noexcept { return data_; }
    index_t extent(int i) const noexcept { return extents_[static_cast<std::size_t>(i)]; }
    index_t stride(int i) const noexcept { return strides_[static_cast<std::size_t>(i)]; }
    index_t size() const noexcept { return extents_[0] * extents_[1] * extents_[2]; }
    bool empty() const noexcept { return data_ == nullptr; }
    T& operator()(index_t b, index_t n, index_t h) const noexcept {
        return data_[b * strides_[0] + n * strides_[1] + h * strides_[2]];
    }

private:
    T* data_ = nullptr;
    std::array<index_t, 3> extents_{0, 0, 0};
    std::array<index_t, 3> strides_{0, 0, 0};
};

// View a contiguous [B, N, H, D] buffer.
template <class T>
tensor_view<T> make_bnhd(T* data, index_t batch, index_t seq, index_t heads, index_t dim) noexcept {
    return tensor_view<T>(data, batch, seq, heads, dim);
}
// View a contiguous [B, H, N, D] buffer (PyTorch's usual attention layout) as logical [B, N, H, D].
template <class T>
tensor_view<T> make_bhnd(T* data, index_t batch, index_t seq, index_t heads, index_t dim) noexcept {
    return tensor_view<T>(data, {batch, seq, heads, dim}, {heads * seq * dim, dim, seq * dim});
}
// View a contiguous [B, N, H] LSE buffer.
template <class T>
lse_view<T> make_lse_bnh(T* data, index_t batch, index_t seq, index_t heads) noexcept {
    return lse_view<T>(data, batch, seq, heads);
}
// View a contiguous [B, H, N] LSE buffer as logical [B, N, H].
template <class T>
lse_view<T> make_lse_bhn(T* data, index_t batch, index_t seq, index_t heads) noexcept {
    return lse_view<T>(data, {batch, seq, heads}, {heads * seq, 1, seq});
}

}  // namespace longnet
