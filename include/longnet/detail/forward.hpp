// SPDX-License-Identifier: Apache-2.0
#pragma once
// TEMPORARY straightforward forward (being replaced by the packed SIMD kernel).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "longnet/numeric.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"

namespace longnet::detail {

template <class T>
void forward(tensor_view<const T> q, tensor_view<const T> k, tensor_view<const T> v, tensor_view<T> out,
             const dilated_options& opt, lse_view<accum_t<T>> lse_out) {
    using A = accum_t<T>;
    const index_t B = q.batch(), N = q.seq_len(), H = q.heads(), D = q.head_dim();
    if (q.size() == 0) return;
    const A scale = static_cast<A>(effective_scale(opt.scale, D));
    std::vector<A> lse_buf(static_cast<std::size_t>(N));
    std::vector<A> acc(static_cast<std::size_t>(N * D));
    std::vector<A> s;
    for (index_t b = 0; b < B; ++b)
        for (index_t h = 0; h < H; ++h) {
            std::fill(lse_buf.begin(), lse_buf.end(), -std::numeric_limits<A>::infinity());
            std::fill(acc.begin(), acc.end(), A(0));
            for (const branch& br : opt.branches) {
                const index_t r = br.dilation, o = head_offset(opt.offsets, h, H, r);
                const index_t w = opt.tail == tail_mode::zero_pad ? std::min(br.segment_length, N) : br.segment_length;
                for (index_t s0 = 0; s0 < N; s0 += w) {
                    const index_t e = std::min(s0 + w, N);
                    index_t m = e > s0 + o ? (e - s0 - o + r - 1) / r : 0;
                    index_t padded = 0;
                    if (opt.tail == tail_mode::zero_pad && !opt.causal) padded = (w + r - 1) / r - m;
                    for (index_t i = 0; i < m; ++i) {
                        const index_t p = s0 + o + i * r;
                        const index_t kend = opt.causal ? i + 1 : m;
                        s.assign(static_cast<std::size_t>(kend), A(0));
                        A mx = padded > 0 ? A(0) : -std::numeric_limits<A>::infinity();
                        for (index_t j = 0; j < kend; ++j) {
                            A dot = 0;
                            for (index_t d = 0; d < D; ++d)
                                dot += to_accum<A>(q(b, p, h, d)) * to_accum<A>(k(b, s0 + o + j * r, h, d));
                            s[static_cast<std::size_t>(j)] = dot * scale;
                            mx = std::max(mx, dot * scale);
                        }
                        A sum = static_cast<A>(padded) * std::exp(-mx);
                        std::vector<A> o_i(static_cast<std::size_t>(D), A(0));
                        for (index_t j = 0; j < kend; ++j) {
                            const A e2 = std::exp(s[static_cast<std::size_t>(j)] - mx);
                            sum += e2;
                            for (index_t d = 0; d < D; ++d)
                                o_i[static_cast<std::size_t>(d)] += e2 * to_accum<A>(v(b, s0 + o + j * r, h, d));
                        }
                        const A l_i = mx + std::log(sum);
                        A& L = lse_buf[static_cast<std::size_t>(p)];
                        const A Ln = std::max(L, l_i) + std::log1p(std::exp(-std::fabs(L - l_i)));
                        const A wa = std::exp(L - Ln), wb = std::exp(l_i - Ln) / sum;
                        for (index_t d = 0; d < D; ++d) {
                            A& a = acc[static_cast<std::size_t>(p * D + d)];
                            a = a * wa + wb * o_i[static_cast<std::size_t>(d)];
                        }
                        L = Ln;
                    }
                }
            }
            for (index_t n = 0; n < N; ++n) {
                for (index_t d = 0; d < D; ++d) out(b, n, h, d) = from_accum<T>(acc[static_cast<std::size_t>(n * D + d)]);
                if (!lse_out.empty()) lse_out(b, n, h) = lse_buf[static_cast<std::size_t>(n)];
            }
        }
}

}  // namespace longnet::detail
