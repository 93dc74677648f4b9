// SPDX-License-Identifier: Apache-2.0
// Backward of dilated and dense attention (SPEC §6) against central finite differences, the double
// oracles of tests/oracle_backward.hpp and the shared fixtures tests/data/attn_bwd_0*.

#include <cstring>
#include <limits>
#include <string>

#include <longnet/backward.hpp>
#include <longnet/io/npy.hpp>

#include "catch.hpp"
#include "oracle_backward.hpp"
#include "test_support.hpp"

#if LONGNET_HAS_OPENMP
#include <omp.h>
#endif

using namespace test_support;
using oracle::config;

namespace {

struct inputs {
    std::vector<double> q, k, v, dout;
};
inputs random_inputs(const config& c, std::uint64_t seed) {
    const auto n = static_cast<std::size_t>(c.B * c.N * c.H * c.D);
    return {oracle::random_normal(n, seed), oracle::random_normal(n, seed + 1), oracle::random_normal(n, seed + 2),
            oracle::random_normal(n, seed + 3)};
}

struct grads {
    std::vector<double> dq, dk, dv;
};

// The library's forward (for out and lse), then its backward, on storage type T.
template <class T>
grads run_backward(const config& c, const inputs& in, longnet::grad_mode mode) {
    using A = longnet::accum_t<T>;
    using CT = const T;
    auto q = convert<T>(in.q), k = convert<T>(in.k), v = convert<T>(in.v), dout = convert<T>(in.dout);
    std::vector<T> out(q.size());
    std::vector<A> lse(static_cast<std::size_t>(c.B * c.N * c.H));
    auto view = [&](std::vector<T>& x) { return longnet::make_bnhd(x.data(), c.B, c.N, c.H, c.D); };
    auto cview = [&](std::vector<T>& x) { return longnet::make_bnhd<CT>(x.data(), c.B, c.N, c.H, c.D); };
    const longnet::dilated_options opt = to_options(c);
    longnet::dilated_attention(cview(q), cview(k), cview(v), view(out), opt, longnet::make_lse_bnh(lse.data(), c.B, c.N, c.H));
    std::vector<T> dq(q.size(), T(9.0f)), dk(q.size(), T(9.0f)), dv(q.size(), T(9.0f));  // garbage to overwrite
    longnet::dilated_attention_backward(cview(q), cview(k), cview(v), cview(out),
                                        longnet::make_lse_bnh<const A>(lse.data(), c.B, c.N, c.H), cview(dout), view(dq),
                                        view(dk), view(dv), opt, mode);
    return {widen(dq), widen(dk), widen(dv)};
}

oracle::gradients reference(const config& c, const inputs& in, longnet::grad_mode mode) {
    return mode == longnet::grad_mode::exact ? oracle::dilated_backward_exact(c, in.q, in.k, in.v, in.dout)
                                             : oracle::dilated_backward_stop_grad(c, in.q, in.k, in.v, in.dout);
}

template <class T>
inputs rounded_inputs(const inputs& in) {
    return {rounded<T>(in.q), rounded<T>(in.k), rounded<T>(in.v), rounded<T>(in.dout)};
}

template <class T>
void check_against_oracle(const config& c, std::uint64_t seed, longnet::grad_mode mode, double tol) {
    const inputs in = rounded_inputs<T>(random_inputs(c, seed));  // the oracle sees what the library sees
    const oracle::gradients ref = reference(c, in, mode);
    const grads got = run_backward<T>(c, in, mode);
    INFO(describe(c) << " mode=" << longnet::to_string(mode));
    CHECK(rel_error(got.dq, ref.dq) <= tol);
    CHECK(rel_error(got.dk, ref.dk) <= tol);
    CHECK(rel_error(got.dv, ref.dv) <= tol);
}

// Ragged tails, N < w, H < r (uncovered residues), tiny segments, odd head dims, several blocks.
std::vector<config> shapes() {
    return {
        make_config(1, 45, 4, 8, {8, 16, 32}, {1, 2, 4}),
        make_config(2, 50, 3, 8, {7, 12}, {2, 5}),
        make_config(1, 33, 2, 8, {6, 33}, {3, 4}),
        make_config(1, 100, 4, 24, {16, 200}, {1, 3}),
        make_config(1, 77, 3, 80, {64, 128}, {2, 4}),
        make_config(1, 23, 3, 5, {1, 2, 3}, {1, 3, 2}),
        make_config(1, 300, 2, 33, {256, 100}, {1, 3}),  // several key and query blocks per segment
        make_config(1, 300, 2, 64, {128, 300}, {1, 2}),  // D = 64, 32, 96: whole AMX tile rows
        make_config(1, 150, 3, 32, {48, 150}, {1, 3}),
        make_config(1, 90, 2, 96, {40, 90}, {2, 1}),
    };
}

double sum_out_dout(const config& c, const inputs& in) {
    const oracle::result r = oracle::dilated(c, in.q, in.k, in.v);
    double s = 0;
    for (std::size_t i = 0; i < r.out.size(); ++i) s += r.out[i] * in.dout[i];
    return s;
}

// Central differences of sum(out ∘ dout) for every entry of q, k, v; max |FD − grad| / max |grad|.
double finite_difference_error(const config& c, const inputs& in, const grads& g) {
    const double h = 1e-5;
    double err = 0, scale = 1e-30;
    auto sweep = [&](std::vector<double> inputs::*member, const std::vector<double>& grad) {
        for (std::size_t e = 0; e < grad.size(); ++e) {
            inputs plus = in, minus = in;
            (plus.*member)[e] += h;
            (minus.*member)[e] -= h;
            const double fd = (sum_out_dout(c, plus) - sum_out_dout(c, minus)) / (2 * h);
            err = std::max(err, std::fabs(fd - grad[e]));
            scale = std::max(scale, std::fabs(grad[e]));
        }
    };
    sweep(&inputs::q, g.dq);
    sweep(&inputs::k, g.dk);
    sweep(&inputs::v, g.dv);
    return err / scale;
}

}  // namespace

TEST_CASE("exact gradients agree with central finite differences on every entry (double)", "[backward][fd]") {
    std::uint64_t seed = 1000;
    std::vector<config> cases = {
        make_config(1, 24, 2, 4, {4, 8, 24}, {1, 2, 3}),                                 // the attn_bwd_00 configuration
        make_config(1, 24, 2, 4, {4, 8, 24}, {1, 2, 3}, true),                           // causal
        make_config(1, 21, 2, 4, {8, 16}, {1, 3}, false, oracle::offsets::torchscale),  // ragged tails
        make_config(1, 20, 2, 3, {10}, {4}),                                             // H < r: uncovered rows
        make_config(1, 22, 2, 4, {8, 16}, {1, 3}, false, oracle::offsets::torchscale, true),  // zero_pad keys
        make_config(2, 13, 3, 2, {5, 13}, {2, 2}, true),
    };
    for (const config& c : cases) {
        const inputs in = random_inputs(c, seed += 7);
        const grads got = run_backward<double>(c, in, longnet::grad_mode::exact);
        const oracle::gradients ref = oracle::dilated_backward_exact(c, in.q, in.k, in.v, in.dout);
        INFO(describe(c));
        CHECK(finite_difference_error(c, in, got) <= 1e-7);
        CHECK(finite_difference_error(c, in, {ref.dq, ref.dk, ref.dv}) <= 1e-7);  // the oracle itself
        CHECK(rel_error(got.dq, ref.dq) <= 1e-12);
        CHECK(rel_error(got.dk, ref.dk) <= 1e-12);
        CHECK(rel_error(got.dv, ref.dv) <= 1e-12);
    }
}

TEST_CASE("the two grad modes differ when several branches see a row", "[backward]") {
    const config c = make_config(1, 24, 2, 4, {4, 8, 24}, {1, 2, 3});
    const inputs in = random_inputs(c, 3);
    const grads exact = run_backward<double>(c, in, longnet::grad_mode::exact);
    const grads stop = run_backward<double>(c, in, longnet::grad_mode::stop_grad_weights);
    CHECK(rel_error(stop.dq, exact.dq) > 1e-3);
    CHECK(rel_error(stop.dv, exact.dv) <= 1e-14);  // dV = exp(S − L)ᵀ·dO in both modes
    // one branch: no merge weights, the modes coincide
    const config one = make_config(1, 24, 2, 4, {8}, {2});
    const grads e1 = run_backward<double>(one, in, longnet::grad_mode::exact);
    const grads s1 = run_backward<double>(one, in, longnet::grad_mode::stop_grad_weights);
    CHECK(rel_error(s1.dq, e1.dq) <= 1e-13);
    CHECK(rel_error(s1.dk, e1.dk) <= 1e-13);
}

TEST_CASE("backward matches the oracles (double)", "[backward][double]") {
    std::uint64_t seed = 2000;
    int variant = 0;
    for (config c : shapes())
        for (bool causal : {false, true}) {
            // alternate the offset policy; zero_pad where it matters (non-causal torchscale)
            const auto pol = (variant++ % 3 == 1) ? oracle::offsets::paper : oracle::offsets::torchscale;
            c.causal = causal, c.policy = pol, c.zero_pad = !causal && pol == oracle::offsets::torchscale;
            check_against_oracle<double>(c, seed += 5, longnet::grad_mode::exact, 1e-10);
            check_against_oracle<double>(c, seed += 5, longnet::grad_mode::stop_grad_weights, 1e-10);
        }
}

TEST_CASE("backward matches the oracles (float)", "[backward][float]") {
    std::uint64_t seed = 3000;
    int variant = 0;
    for (config c : shapes())
        for (bool causal : {false, true}) {
            const bool zero_pad = variant++ % 3 != 1;
            c.causal = causal, c.zero_pad = zero_pad, c.policy = zero_pad ? oracle::offsets::torchscale : oracle::offsets::paper;
            check_against_oracle<float>(c, seed += 5, longnet::grad_mode::exact, 1e-4);
            check_against_oracle<float>(c, seed += 5, longnet::grad_mode::stop_grad_weights, 1e-4);
        }
}

TEST_CASE("bfloat16 and half gradients match the oracle within 2e-2", "[backward][bf16][half]") {
    std::uint64_t seed = 4000;
    for (config c : {make_config(1, 100, 4, 16, {16, 64}, {1, 2}), make_config(1, 300, 2, 64, {256, 100}, {1, 3})})
        for (bool causal : {false, true}) {
            c.causal = causal;
            check_against_oracle<longnet::bfloat16>(c, seed += 5, longnet::grad_mode::exact, 2e-2);
            check_against_oracle<longnet::half>(c, seed += 5, longnet::grad_mode::exact, 2e-2);
        }
}

// bfloat16 storage on the bf16 dot-product backward (detail/segment_backward.hpp, backward_bf16) where this
// process has it, else on the float path, against the double oracle: every shape, mask, offset policy and
// both grad modes. The gradients are rounded to bf16 (2^-9) and the dot path rounds P and dS to bf16 for
// dV, dK and dQ (2^-9 per term), on top of the bf16 output the exact mode's Δ reads: 2e-2 of the
// largest gradient, the bound of the float path on bf16 storage.
TEST_CASE("bfloat16 backward on the bf16 dot-product path: every shape within 2e-2", "[backward][bf16]") {
    const bool saved = longnet::bf16_dot_products(), saved_amx = longnet::bf16_amx_tiles();
    // the float path, the vdpbf16ps tiles, the AMX tiles (head dims a multiple of 32; others keep vdpbf16ps)
    for (int products = 0; products < 3; ++products) {
        const bool dot = products > 0, amx = products == 2;
        CHECK(longnet::set_bf16_dot_products(dot) == (dot && bf16_dot_expected()));
        CHECK(longnet::set_bf16_amx_tiles(amx) == (amx && amx_expected()));
        INFO("bf16 dot-product kernels: " << (longnet::bf16_dot_products() ? "on" : "off") << ", AMX "
                                          << (longnet::bf16_amx_tiles() ? "enabled" : "off") << ", path "
                                          << longnet::simd_isa());
        std::uint64_t seed = 9000;
        for (config c : shapes())
            for (bool causal : {false, true}) {
                c.causal = causal, c.zero_pad = !causal, c.policy = oracle::offsets::torchscale;
                check_against_oracle<longnet::bfloat16>(c, seed += 5, longnet::grad_mode::exact, 2e-2);
                c.zero_pad = false, c.policy = oracle::offsets::paper;
                check_against_oracle<longnet::bfloat16>(c, seed += 5, longnet::grad_mode::stop_grad_weights, 2e-2);
            }
    }
    longnet::set_bf16_dot_products(saved);
    longnet::set_bf16_amx_tiles(saved_amx);
}

// The dot-product paths against the float path on the same bf16 inputs: only the bf16 rounding of P and
// dS (and the float sums' order) separates them, well inside the oracle bound; and each did run (some
// bits differ). vdpbf16ps and, where available, AMX.
TEST_CASE("bf16 dot-product gradients differ from the float path's by bf16 rounding only", "[backward][bf16]") {
    if (!bf16_dot_expected()) {
        WARN("this process has no bf16 dot-product path (no AVX512-BF16 kernels or CPU, or another dispatch "
             "path): compared nothing");
        return;
    }
    const bool saved = longnet::bf16_dot_products(), saved_amx = longnet::bf16_amx_tiles();
    for (bool causal : {false, true}) {
        const config c = make_config(1, 600, 2, 64, {128, 600}, {1, 2}, causal);
        const inputs in = rounded_inputs<longnet::bfloat16>(random_inputs(c, 91));
        longnet::set_bf16_dot_products(false);
        const grads fma = run_backward<longnet::bfloat16>(c, in, longnet::grad_mode::exact);
        REQUIRE(longnet::set_bf16_dot_products(true));
        for (bool amx : {false, true}) {
            if (longnet::set_bf16_amx_tiles(amx) != amx) continue;  // no AMX here: the vdpbf16ps tiles only
            const grads dot = run_backward<longnet::bfloat16>(c, in, longnet::grad_mode::exact);
            INFO(describe(c) << (amx ? " AMX" : " vdpbf16ps"));
            CHECK(rel_error(dot.dq, fma.dq) <= 1e-2);
            CHECK(rel_error(dot.dk, fma.dk) <= 1e-2);
            CHECK(rel_error(dot.dv, fma.dv) <= 1e-2);
            CHECK(dot.dq != fma.dq);  // the dot path ran: P and dS rounded to bf16 change some bits
        }
    }
    longnet::set_bf16_dot_products(saved);
    longnet::set_bf16_amx_tiles(saved_amx);
}

TEST_CASE("a custom scale is honoured", "[backward]") {
    config c = make_config(1, 60, 2, 16, {20, 60}, {1, 2});
    c.scale = 0.3;
    check_against_oracle<double>(c, 7, longnet::grad_mode::exact, 1e-10);
    c.scale = -1.5;
    check_against_oracle<float>(c, 8, longnet::grad_mode::stop_grad_weights, 1e-4);
}

TEST_CASE("rows no branch selects get zero gradients, never NaN", "[backward]") {
    for (bool causal : {false, true}) {
        const config c = make_config(1, 50, 3, 8, {12}, {5}, causal);  // residues 3, 4 have no head
        const inputs in = random_inputs(c, 31);
        const grads g = run_backward<float>(c, in, longnet::grad_mode::exact);
        int uncovered = 0;
        for (std::int64_t p = 0; p < c.N; ++p)
            for (std::int64_t h = 0; h < c.H; ++h) {
                const bool selected = (p % 12) % 5 == h && (p % 12) >= h;
                for (std::int64_t d = 0; d < c.D; ++d) {
                    const auto e = static_cast<std::size_t>((p * c.H + h) * c.D + d);
                    REQUIRE_FALSE(std::isnan(g.dq[e] + g.dk[e] + g.dv[e]));
                    if (!selected) CHECK((g.dq[e] == 0 && g.dk[e] == 0 && g.dv[e] == 0));
                }
                uncovered += selected ? 0 : 1;
            }
        CHECK(uncovered > 0);
    }
}

namespace {
struct fixture_case {
    const char* name;
    std::int64_t N, H, D;
    std::vector<std::int64_t> w, r;
    bool causal;
    oracle::offsets policy;
    longnet::grad_mode mode;
};

std::vector<double> load(const std::string& dir, const char* file, const std::vector<std::int64_t>& shape) {
    const longnet::io::npy_array a = longnet::io::load_npy(dir + "/" + file);
    REQUIRE(a.shape() == shape);
    return a.as_double();
}
}  // namespace

TEST_CASE("backward fixtures (both modes, float and double)", "[backward][fixtures]") {
    using longnet::grad_mode;
    const std::vector<fixture_case> cases = {
        {"attn_bwd_00", 24, 2, 4, {4, 8, 24}, {1, 2, 3}, false, oracle::offsets::paper, grad_mode::exact},
        {"attn_bwd_01", 100, 4, 16, {8, 16, 32}, {1, 2, 4}, true, oracle::offsets::torchscale, grad_mode::exact},
        {"attn_bwd_02", 100, 3, 16, {16, 40}, {2, 4}, false, oracle::offsets::paper, grad_mode::exact},
        {"attn_bwd_03", 100, 4, 16, {8, 16, 32}, {1, 2, 4}, true, oracle::offsets::torchscale, grad_mode::stop_grad_weights},
        {"attn_bwd_04", 128, 4, 16, {16, 32, 64}, {1, 2, 4}, false, oracle::offsets::torchscale, grad_mode::stop_grad_weights},
    };
    for (const fixture_case& f : cases) {
        const std::string dir = std::string(LONGNET_TEST_DATA_DIR) + "/" + f.name;
        const std::vector<std::int64_t> shape{f.N, f.H, f.D};
        const config c = make_config(1, f.N, f.H, f.D, f.w, f.r, f.causal, f.policy);
        const inputs in{load(dir, "q.npy", shape), load(dir, "k.npy", shape), load(dir, "v.npy", shape),
                        load(dir, "dout.npy", shape)};
        const std::vector<double> out = load(dir, "out.npy", shape), lse = load(dir, "lse.npy", {f.N, f.H});
        const oracle::gradients want{load(dir, "dq.npy", shape), load(dir, "dk.npy", shape), load(dir, "dv.npy", shape)};
        INFO(f.name);
        // float: the library's own forward feeds its backward
        const grads got_f = run_backward<float>(c, in, f.mode);
        CHECK(rel_error(got_f.dq, want.dq) <= 1e-4);
        CHECK(rel_error(got_f.dk, want.dk) <= 1e-4);
        CHECK(rel_error(got_f.dv, want.dv) <= 1e-4);
        // double, with the fixture's out and lse
        auto q = in.q, k = in.k, v = in.v, dout = in.dout, o = out;
        std::vector<double> dq(q.size()), dk(q.size()), dv(q.size());
        auto cv = [&](std::vector<double>& x) { return longnet::make_bnhd<const double>(x.data(), 1, f.N, f.H, f.D); };
        auto mv = [&](std::vector<double>& x) { return longnet::make_bnhd(x.data(), 1, f.N, f.H, f.D); };
        longnet::dilated_attention_backward(cv(q), cv(k), cv(v), cv(o), longnet::make_lse_bnh(lse.data(), 1, f.N, f.H),
                                            cv(dout), mv(dq), mv(dk), mv(dv), to_options(c), f.mode);
        CHECK(rel_error(dq, want.dq) <= 1e-9);
        CHECK(rel_error(dk, want.dk) <= 1e-9);
        CHECK(rel_error(dv, want.dv) <= 1e-9);
        // the other mode against the double oracle on the fixture inputs
        const grad_mode other = f.mode == grad_mode::exact ? grad_mode::stop_grad_weights : grad_mode::exact;
        const oracle::gradients ref = reference(c, in, other);
        const grads got_o = run_backward<double>(c, in, other);
        CHECK(rel_error(got_o.dq, ref.dq) <= 1e-9);
        CHECK(rel_error(got_o.dk, ref.dk) <= 1e-9);
        CHECK(rel_error(got_o.dv, ref.dv) <= 1e-9);
        // and the fixture's own mode through the oracle, so the oracle is checked against the fixture too
        const oracle::gradients own = reference(c, in, f.mode);
        CHECK(rel_error(own.dq, want.dq) <= 1e-9);
    }
}

TEST_CASE("dense backward matches the oracle", "[backward][dense]") {
    for (bool causal : {false, true})
        for (std::int64_t n : {37, 300, 500}) {
            const config c = make_config(n == 500 ? 1 : 2, n, n == 500 ? 1 : 2, 16, {n}, {1}, causal);  // 500: one segment
            const inputs in = random_inputs(c, 91);
            const oracle::gradients ref = oracle::dilated_backward_exact(c, in.q, in.k, in.v, in.dout);
            auto q = in.q, k = in.k, v = in.v, dout = in.dout;
            std::vector<double> out(q.size()), lse(static_cast<std::size_t>(c.B * c.N * c.H)), dq(q.size()), dk(q.size()),
                dv(q.size());
            auto cv = [&](std::vector<double>& x) { return longnet::make_bnhd<const double>(x.data(), c.B, c.N, c.H, c.D); };
            auto mv = [&](std::vector<double>& x) { return longnet::make_bnhd(x.data(), c.B, c.N, c.H, c.D); };
            longnet::attention_options ao;
            ao.causal = causal;
            longnet::dense_attention(cv(q), cv(k), cv(v), mv(out), ao, longnet::make_lse_bnh(lse.data(), c.B, c.N, c.H));
            longnet::dense_attention_backward(cv(q), cv(k), cv(v), cv(out), longnet::make_lse_bnh(lse.data(), c.B, c.N, c.H),
                                              cv(dout), mv(dq), mv(dk), mv(dv), ao);
            INFO("causal=" << causal << " N=" << n);
            CHECK(rel_error(dq, ref.dq) <= 1e-11);
            CHECK(rel_error(dk, ref.dk) <= 1e-11);
            CHECK(rel_error(dv, ref.dv) <= 1e-11);
        }
}

TEST_CASE("strided views ([B, H, N, D], [B, H, N] lse) equal contiguous ones bitwise", "[backward][strided]") {
    const config c = make_config(2, 90, 4, 24, {16, 32, 90}, {1, 2, 4}, true, oracle::offsets::torchscale);
    const inputs in = random_inputs(c, 41);
    for (auto mode : {longnet::grad_mode::exact, longnet::grad_mode::stop_grad_weights}) {
        const grads ref = run_backward<float>(c, in, mode);
        auto idx_bnhd = [&](std::int64_t b, std::int64_t n, std::int64_t h) { return static_cast<std::size_t>(((b * c.N + n) * c.H + h) * c.D); };
        auto idx_bhnd = [&](std::int64_t b, std::int64_t n, std::int64_t h) { return static_cast<std::size_t>(((b * c.H + h) * c.N + n) * c.D); };
        auto to_bhnd = [&](const std::vector<double>& x) {
            std::vector<float> y(x.size());
            for (std::int64_t b = 0; b < c.B; ++b)
                for (std::int64_t n = 0; n < c.N; ++n)
                    for (std::int64_t h = 0; h < c.H; ++h)
                        for (std::int64_t d = 0; d < c.D; ++d)
                            y[idx_bhnd(b, n, h) + static_cast<std::size_t>(d)] = static_cast<float>(x[idx_bnhd(b, n, h) + static_cast<std::size_t>(d)]);
            return y;
        };
        auto q = to_bhnd(in.q), k = to_bhnd(in.k), v = to_bhnd(in.v), dout = to_bhnd(in.dout);
        std::vector<float> out(q.size()), lse(static_cast<std::size_t>(c.B * c.H * c.N)), dq(q.size(), 5.f), dk(q.size(), 5.f),
            dv(q.size(), 5.f);
        auto cv = [&](std::vector<float>& x) { return longnet::make_bhnd<const float>(x.data(), c.B, c.N, c.H, c.D); };
        auto mv = [&](std::vector<float>& x) { return longnet::make_bhnd(x.data(), c.B, c.N, c.H, c.D); };
        const auto opt = to_options(c);
        longnet::dilated_attention(cv(q), cv(k), cv(v), mv(out), opt, longnet::make_lse_bhn(lse.data(), c.B, c.N, c.H));
        longnet::dilated_attention_backward(cv(q), cv(k), cv(v), cv(out), longnet::make_lse_bhn(lse.data(), c.B, c.N, c.H),
                                            cv(dout), mv(dq), mv(dk), mv(dv), opt, mode);
        bool same = true;
        for (std::int64_t b = 0; b < c.B; ++b)
            for (std::int64_t n = 0; n < c.N; ++n)
                for (std::int64_t h = 0; h < c.H; ++h)
                    for (std::int64_t d = 0; d < c.D; ++d) {
                        const auto s = idx_bhnd(b, n, h) + static_cast<std::size_t>(d), t = idx_bnhd(b, n, h) + static_cast<std::size_t>(d);
                        same = same && dq[s] == static_cast<float>(ref.dq[t]) && dk[s] == static_cast<float>(ref.dk[t]) &&
                               dv[s] == static_cast<float>(ref.dv[t]);
                    }
        CHECK(same);
    }
}

#if LONGNET_HAS_OPENMP
TEST_CASE("gradients are bitwise identical for 1 and 2 threads", "[backward][threads]") {
    for (bool causal : {false, true})
        for (auto mode : {longnet::grad_mode::exact, longnet::grad_mode::stop_grad_weights}) {
            const config c = make_config(1, 600, 2, 64, {128, 512, 600}, {1, 2, 4}, causal);  // several blocks per segment
            const inputs in = random_inputs(c, 71);
            const int saved = omp_get_max_threads();
            omp_set_num_threads(1);
            const grads one = run_backward<float>(c, in, mode);
            omp_set_num_threads(2);
            const grads two = run_backward<float>(c, in, mode);
            omp_set_num_threads(saved);
            CHECK(one.dq == two.dq);
            CHECK(one.dk == two.dk);
            CHECK(one.dv == two.dv);
        }
    // bfloat16 storage on the bf16 dot-product path where this process has it
    {
        const bool saved = longnet::bf16_dot_products(), saved_amx = longnet::bf16_amx_tiles();
        longnet::set_bf16_dot_products(true);
        // many segments; then one segment and one head (2 threads split it into key and query parts); on
        // the vdpbf16ps tiles, then on AMX where available
        for (bool amx : {false, true}) {
            longnet::set_bf16_amx_tiles(amx);
            for (const config& c : {make_config(1, 600, 2, 64, {128, 600}, {1, 2}, true),
                                    make_config(1, 700, 1, 64, {700}, {1}, true)}) {
                const inputs in = random_inputs(c, 72);
                const int threads = omp_get_max_threads();
                omp_set_num_threads(1);
                const grads one = run_backward<longnet::bfloat16>(c, in, longnet::grad_mode::exact);
                omp_set_num_threads(2);
                const grads two = run_backward<longnet::bfloat16>(c, in, longnet::grad_mode::exact);
                omp_set_num_threads(threads);
                CHECK(one.dq == two.dq);
                CHECK(one.dk == two.dk);
                CHECK(one.dv == two.dv);
            }
        }
        longnet::set_bf16_dot_products(saved);
        longnet::set_bf16_amx_tiles(saved_amx);
    }
    // one segment, one head: 2 threads split the segment into key parts (dK, dV) and query parts (dQ)
    for (bool causal : {false, true}) {
        const config c = make_config(1, 700, 1, 32, {700}, {1}, causal);
        const inputs in = random_inputs(c, 73);
        const int saved = omp_get_max_threads();
        omp_set_num_threads(1);
        const grads one = run_backward<float>(c, in, longnet::grad_mode::exact);
        omp_set_num_threads(2);
        const grads two = run_backward<float>(c, in, longnet::grad_mode::exact);
        omp_set_num_threads(saved);
        CHECK(one.dq == two.dq);
        CHECK(one.dk == two.dk);
        CHECK(one.dv == two.dv);
    }
}
#endif

TEST_CASE("backward: bad arguments throw std::invalid_argument naming the value", "[backward][validation]") {
    std::vector<float> x(2 * 8 * 2 * 4, 0.5f), y(x.size()), z(2 * 9 * 2 * 4), l(2 * 8 * 2);
    auto q = longnet::make_bnhd<const float>(x.data(), 2, 8, 2, 4);
    auto g = longnet::make_bnhd(y.data(), 2, 8, 2, 4);
    auto bad = longnet::make_bnhd(z.data(), 2, 9, 2, 4);
    auto lse = longnet::make_lse_bnh<const float>(l.data(), 2, 8, 2);
    longnet::dilated_options o = longnet::dilated_options::from_lists({4}, {1});
    CHECK_THROWS_WITH(longnet::dilated_attention_backward(q, q, q, q, lse, q, bad, g, g, o),
                      Catch::Contains("dq has shape [2, 9, 2, 4] but q has shape [2, 8, 2, 4]"));
    CHECK_THROWS_WITH(longnet::dilated_attention_backward(q, q, q, q, lse, longnet::tensor_view<const float>(bad), g, g, g, o),
                      Catch::Contains("dout has shape [2, 9, 2, 4]"));
    CHECK_THROWS_WITH(longnet::dilated_attention_backward(q, q, q, longnet::tensor_view<const float>(bad), lse, q, g, g, g, o),
                      Catch::Contains("out has shape [2, 9, 2, 4]"));
    CHECK_THROWS_WITH(longnet::dilated_attention_backward(q, q, q, q, longnet::make_lse_bnh<const float>(l.data(), 2, 8, 1), q,
                                                          g, g, g, o),
                      Catch::Contains("lse has shape [2, 8, 1]"));
    CHECK_THROWS_WITH(longnet::dilated_attention_backward(q, q, q, q, longnet::lse_view<const float>(), q, g, g, g, o),
                      Catch::Contains("lse is required"));
    o.branches = {{4, 0}};
    CHECK_THROWS_WITH(longnet::dilated_attention_backward(q, q, q, q, lse, q, g, g, g, o),
                      Catch::Contains("dilation must be >= 1, got 0"));
    o.branches = {{4, 1}};
    CHECK_THROWS_WITH(longnet::dilated_attention_backward(q, q, q, q, lse, q, g, g, g, o, static_cast<longnet::grad_mode>(7)),
                      Catch::Contains("unknown grad mode value 7"));
    CHECK_THROWS_WITH(longnet::parse_grad_mode("stop"), Catch::Contains("'stop'"));
    CHECK(longnet::parse_grad_mode("stop_grad_weights") == longnet::grad_mode::stop_grad_weights);
    longnet::attention_options ao;
    ao.scale = std::nan("");
    CHECK_THROWS_AS(longnet::dense_attention_backward(q, q, q, q, lse, q, g, g, g, ao), std::invalid_argument);
}

TEST_CASE("a selected row whose lse is -inf gets zero gradients, never NaN", "[backward]") {
    // not produced by the forward, but a caller may pass it: no probability mass means no gradient
    const config c = make_config(1, 40, 2, 8, {8, 40}, {1, 2});
    const inputs in = random_inputs(c, 33);
    auto q = convert<float>(in.q), dout = convert<float>(in.dout);
    std::vector<float> lse(static_cast<std::size_t>(c.N * c.H), -std::numeric_limits<float>::infinity());
    std::vector<float> dq(q.size(), 1.f), dk(q.size(), 1.f), dv(q.size(), 1.f);
    auto cv = [&](std::vector<float>& x) { return longnet::make_bnhd<const float>(x.data(), 1, c.N, c.H, c.D); };
    auto mv = [&](std::vector<float>& x) { return longnet::make_bnhd(x.data(), 1, c.N, c.H, c.D); };
    longnet::dilated_attention_backward(cv(q), cv(q), cv(q), cv(q), longnet::make_lse_bnh<const float>(lse.data(), 1, c.N, c.H),
                                        cv(dout), mv(dq), mv(dk), mv(dv), to_options(c));
    for (std::size_t e = 0; e < q.size(); ++e) REQUIRE((dq[e] == 0 && dk[e] == 0 && dv[e] == 0));
}
