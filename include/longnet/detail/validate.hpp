// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shape checks shared by the public entry points. Throw std::invalid_argument naming the bad values.

#include <stdexcept>
#include <string>

#include "longnet/tensor.hpp"

namespace longnet::detail {

inline std::string shape_string(index_t b, index_t n, index_t h, index_t d) {
    return "[" + std::to_string(b) + ", " + std::to_string(n) + ", " + std::to_string(h) + ", " + std::to_string(d) + "]";
}
template <class T>
std::string shape_string(const tensor_view<T>& t) {
    return shape_string(t.extent(0), t.extent(1), t.extent(2), t.extent(3));
}

template <class TQ, class TK, class TV, class TO, class TL>
void check_shapes(const char* op, const tensor_view<TQ>& q, const tensor_view<TK>& k, const tensor_view<TV>& v,
                  const tensor_view<TO>& out, const lse_view<TL>& lse) {
    const std::string who = std::string("longnet::") + op + ": ";
    for (int i = 0; i < 4; ++i)
        if (q.extent(i) < 0)
            throw std::invalid_argument(who + "q has a negative extent: " + shape_string(q));
    auto same = [&](const char* name, auto const& t) {
        for (int i = 0; i < 4; ++i)
            if (t.extent(i) != q.extent(i))
                throw std::invalid_argument(who + name + " has shape " + shape_string(t) + " but q has shape " +
                                            shape_string(q) + " (all of q, k, v, out are [B, N, H, D])");
    };
    same("k", k);
    same("v", v);
    same("out", out);
    if (q.size() > 0) {
        if (q.head_dim() < 1) throw std::invalid_argument(who + "head dim D must be >= 1");
        if (q.empty() || k.empty() || v.empty() || out.empty())
            throw std::invalid_argument(who + "a null data pointer for a non-empty tensor of shape " + shape_string(q));
    }
    if (!lse.empty()) {
        if (lse.extent(0) != q.extent(0) || lse.extent(1) != q.extent(1) || lse.extent(2) != q.extent(2))
            throw std::invalid_argument(who + "lse has shape [" + std::to_string(lse.extent(0)) + ", " +
                                        std::to_string(lse.extent(1)) + ", " + std::to_string(lse.extent(2)) +
                                        "] but must be [B, N, H] = [" + std::to_string(q.extent(0)) + ", " +
                                        std::to_string(q.extent(1)) + ", " + std::to_string(q.extent(2)) + "]");
    }
}

}  // namespace longnet::detail
