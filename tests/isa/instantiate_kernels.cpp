// SPDX-License-Identifier: Apache-2.0
// ISA warning check: instantiates every kernel (forward and backward for each storage type, the nn
// decoder forward) so that the compiler sees the SIMD code paths of the target it is given. Built by
// CTest (tests/isa/isa_check.cmake) with -O3 -Wall -Wextra -Wpedantic -Werror for several -march
// targets and with both g++ and clang++: what a user's -Werror build would see on such a machine.
// Compile only: nothing here runs (the test suites run the kernels against the oracle).
// LONGNET_ISA_CHECK_IMMINTRIN_FIRST: <immintrin.h> comes before longnet, as in a translation unit that
// includes another SIMD library first (torch, for python/): longnet's own code must stay clean of GCC 12's
// undefined-merge-source warnings then too (PR 105593; detail/x86_intrinsics.hpp). Without the nn decoder:
// Eigen's AVX-512 code is not ours to change.
#if LONGNET_ISA_CHECK_IMMINTRIN_FIRST
#include <immintrin.h>
#endif
#include <longnet/longnet.hpp>
#if LONGNET_ISA_CHECK_NN
#include <longnet/nn/nn.hpp>
#endif

#include <cstdint>
#include <vector>

namespace {

template <class T>
void instantiate_attention() {
    using L = longnet::accum_t<T>;
    const longnet::index_t b = 1, n = 64, h = 2, d = 16;
    const std::size_t count = static_cast<std::size_t>(b * n * h * d);
    std::vector<T> q(count, T(0.5f)), k(count, T(0.25f)), v(count, T(1.0f)), out(count), dout(count, T(1.0f));
    std::vector<T> dq(count), dk(count), dv(count);
    std::vector<L> lse(static_cast<std::size_t>(b * n * h));
    const auto opt = longnet::dilated_options::from_lists({16, 32}, {1, 2}, /*causal=*/true);
    auto view = [&](std::vector<T>& x) { return longnet::make_bnhd(x.data(), b, n, h, d); };
    auto cview = [&](const std::vector<T>& x) { return longnet::make_bnhd<const T>(x.data(), b, n, h, d); };
    const auto lv = longnet::make_lse_bnh(lse.data(), b, n, h);
    longnet::attention_options dense;
    dense.causal = true;
    longnet::dense_attention(cview(q), cview(k), cview(v), view(out), dense, lv);
    longnet::dilated_attention(cview(q), cview(k), cview(v), view(out), opt, lv);
    longnet::dilated_attention_backward(cview(q), cview(k), cview(v), cview(out),
                                        longnet::make_lse_bnh<const L>(lse.data(), b, n, h), cview(dout), view(dq),
                                        view(dk), view(dv), opt);
}

}  // namespace

int longnet_isa_check() {
    instantiate_attention<float>();
    instantiate_attention<double>();
    instantiate_attention<longnet::bfloat16>();
    instantiate_attention<longnet::half>();
#if LONGNET_ISA_CHECK_NN
    longnet::nn::decoder_config cfg;
    cfg.vocab_size = 32;
    cfg.embed_dim = 16;
    cfg.heads = 2;
    cfg.ffn_dim = 32;
    cfg.layers = 1;
    cfg.segment_length = {8, 16};
    cfg.dilated_ratio = {1, 2};
    longnet::nn::decoder<float> f(cfg);
    longnet::nn::decoder<double> d(cfg);
    const std::vector<std::int64_t> tokens{1, 2, 3};
    // mixed precision: a Linear's bf16 products (nn/gemm.hpp) and the bf16 attention backend
    longnet::nn::linear<float> lin(16, 8);
    lin.set_bf16_weight();
    const longnet::nn::matrix<float> x = longnet::nn::matrix<float>::Ones(3, 16);
    longnet::nn::matrix<float> dx = longnet::nn::matrix<float>::Zero(3, 16);
    auto lg = lin.make_grad();
    lin.backward(x, lin(x), dx, lg);
    longnet::nn::bf16_attention bf16_attention;
    std::vector<float> qkv(3 * 2 * 16, 0.5f), o(3 * 2 * 16), dq(o.size()), lse(3 * 2);
    const auto in = longnet::make_bnhd<const float>(qkv.data(), 1, 3, 2, 16);
    const auto lv = longnet::make_lse_bnh(lse.data(), 1, 3, 2);
    bf16_attention.forward(longnet::nn::attention_kind::dilated, f.layers[0].self_attn.config.dilated, in, in, in,
                           longnet::make_bnhd(o.data(), 1, 3, 2, 16), lv);
    const auto dqv = longnet::make_bnhd(dq.data(), 1, 3, 2, 16);
    bf16_attention.backward(longnet::nn::attention_kind::dilated, f.layers[0].self_attn.config.dilated, in, in, in,
                            longnet::make_bnhd<const float>(o.data(), 1, 3, 2, 16), lv, in, dqv, dqv, dqv,
                            longnet::grad_mode::exact);
    return static_cast<int>(f.forward(tokens)(0, 0) + static_cast<float>(d.forward(tokens)(0, 0)) + dx(0, 0) + dq[0]);
#else
    return 0;
#endif
}
