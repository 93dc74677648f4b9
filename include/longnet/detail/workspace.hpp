// SPDX-License-Identifier: Apache-2.0
#pragma once
// Per-thread scratch: a 64-byte aligned buffer that only grows. No global state.

#include <cstddef>
#include <cstdlib>
#include <new>

namespace longnet::detail {

template <class A>
class aligned_buffer {
public:
    aligned_buffer() = default;
    aligned_buffer(const aligned_buffer&) = delete;
    aligned_buffer& operator=(const aligned_buffer&) = delete;
    ~aligned_buffer() { std::free(data_); }

    // Make room for at least n elements (contents are not preserved) and return the storage.
    A* reserve(std::size_t n) {
        if (n > capacity_) {
            std::free(data_);
            data_ = nullptr;
            capacity_ = 0;
            const std::size_t bytes = ((n * sizeof(A) + 63) / 64) * 64;
            data_ = static_cast<A*>(std::aligned_alloc(64, bytes));
            if (!data_) throw std::bad_alloc();
            capacity_ = n;
        }
        return data_;
    }
    A* data() const noexcept { return data_; }

private:
    A* data_ = nullptr;
    std::size_t capacity_ = 0;
};

}  // namespace longnet::detail
