// SPDX-License-Identifier: Apache-2.0
// Consumer check: the umbrella header compiles and dilated attention runs. Exit code 0 only when
// the output is finite everywhere and not all zero.
#include <longnet/longnet.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

int main() {
    const longnet::index_t batch = 1, seq = 64, heads = 4, dim = 8;
    const std::size_t count = static_cast<std::size_t>(batch * seq * heads * dim);
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> q(count), k(count), v(count), out(count, 0.0f);
    for (auto* x : {&q, &k, &v})
        for (float& e : *x) e = normal(rng);

    longnet::dilated_options options = longnet::dilated_options::from_lists({16, 32}, {1, 2});
    longnet::dilated_attention(longnet::make_bnhd<const float>(q.data(), batch, seq, heads, dim),
                               longnet::make_bnhd<const float>(k.data(), batch, seq, heads, dim),
                               longnet::make_bnhd<const float>(v.data(), batch, seq, heads, dim),
                               longnet::make_bnhd(out.data(), batch, seq, heads, dim), options);

    std::size_t non_finite = 0, non_zero = 0;
    for (float e : out) {
        if (!std::isfinite(e)) ++non_finite;
        if (e != 0.0f) ++non_zero;
    }
    std::printf("longnet %s consumer: %zu outputs, %zu non-finite, %zu non-zero\n", LONGNET_VERSION_STRING, count,
                non_finite, non_zero);
    return (non_finite == 0 && non_zero > 0) ? 0 : 1;
}
