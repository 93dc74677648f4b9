// SPDX-License-Identifier: Apache-2.0
// Dilated and dense attention forward against the double-precision multiset oracle (SPEC §3).

#include <sys/mman.h>

#include <cstring>
#include <limits>

#include "catch.hpp"
#include "test_support.hpp"

#if LONGNET_HAS_OPENMP
#include <omp.h>
#endif

using namespace test_support;
using oracle::config;

namespace {

struct inputs {
    std::vector<double> q, k, v;
};
inputs random_inputs(const config& c, std::uint64_t seed) {
    const auto n = static_cast<std::size_t>(c.B * c.N * c.H * c.D);
    return {oracle::random_normal(n, seed), oracle::random_normal(n, seed + 1), oracle::random_normal(n, seed + 2)};
}

template <class T>
void check_against_oracle(const config& c, std::uint64_t seed, double tol) {
    const inputs in = random_inputs(c, seed);
    // the oracle sees exactly the storage-rounded values the library sees
    const auto q = rounded<T>(in.q), k = rounded<T>(in.k), v = rounded<T>(in.v);
    const oracle::result ref = oracle::dilated(c, q, k, v);
    const run_result got = run_dilated<T>(c, in.q, in.k, in.v);
    INFO(describe(c));
    CHECK(rel_error(got.out, ref.out) <= tol);
    CHECK(lse_error(got.lse, ref.lse) <= tol);
}

// The configurations every precision is checked on: ragged tails, N < w, H < r, H not divisible by r,
// tiny segments, odd head dims, several query/key blocks per segment.
std::vector<config> shapes() {
    return {
        make_config(1, 45, 4, 8, {8, 16, 32}, {1, 2, 4}),
        make_config(2, 50, 3, 8, {7, 12}, {2, 5}),          // H < r, H not divisible by r: uncovered residues
        make_config(1, 40, 8, 16, {8, 16, 40}, {1, 2, 8}),
        make_config(1, 33, 2, 8, {6, 33}, {3, 4}),
        make_config(1, 100, 4, 24, {16, 200}, {1, 3}),      // N < w, odd D
        make_config(1, 77, 5, 80, {64, 128}, {2, 4}),       // D = 80
        make_config(1, 40, 2, 128, {8, 40}, {1, 2}),        // D = 128
        make_config(1, 23, 3, 5, {1, 2, 3}, {1, 3, 2}),     // tiny segments, r > w
        make_config(1, 700, 2, 64, {300, 700}, {1, 2}),     // several query and key blocks per segment
        make_config(2, 300, 3, 33, {256, 100}, {1, 3}),
        make_config(1, 150, 3, 32, {48, 150}, {1, 3}),      // D = 32, 96: whole AMX tile rows, ragged blocks
        make_config(1, 90, 2, 96, {40, 90}, {2, 1}),
    };
}

}  // namespace

TEST_CASE("dilated attention matches the oracle (float)", "[dilated][float]") {
    std::uint64_t seed = 100;
    for (config c : shapes())
        for (bool causal : {false, true})
            for (auto pol : {oracle::offsets::paper, oracle::offsets::torchscale})
                for (bool zero_pad : {false, true}) {
                    c.causal = causal, c.policy = pol, c.zero_pad = zero_pad;
                    check_against_oracle<float>(c, seed += 3, 2e-5);
                }
}

TEST_CASE("dilated attention matches the oracle (double)", "[dilated][double]") {
    std::uint64_t seed = 200;
    for (config c : shapes())
        for (bool causal : {false, true})
            for (auto pol : {oracle::offsets::paper, oracle::offsets::torchscale}) {
                c.causal = causal, c.policy = pol, c.zero_pad = !causal && pol == oracle::offsets::torchscale;
                check_against_oracle<double>(c, seed += 3, 1e-10);
            }
}

TEST_CASE("bfloat16 and half storage match the oracle within 1e-2", "[dilated][bf16][half]") {
    std::uint64_t seed = 300;
    for (config c : {make_config(1, 100, 4, 16, {16, 64}, {1, 2}), make_config(1, 300, 2, 64, {256, 100}, {1, 3})})
        for (bool causal : {false, true}) {
            c.causal = causal;
            check_against_oracle<longnet::bfloat16>(c, seed += 3, 1e-2);
            check_against_oracle<longnet::half>(c, seed += 3, 1e-2);
        }
}

// bfloat16 storage on the bf16 dot-product path where this process has it (bf16_dot_expected), else on
// the float path: every shape, mask, offset policy and tail mode. The output is bf16 (rounding
// 2^-9) and P is rounded to bf16 for PV (2^-9 per weight): 1e-2 of the largest output. The LSE depends
// on S = τ·q·k only, computed in float from exact bf16 inputs: 1e-5 of max(1, |LSE|).
TEST_CASE("bfloat16 storage on every shape: output within 1e-2, LSE within 1e-5", "[dilated][bf16]") {
    const bool saved = longnet::bf16_dot_products(), saved_amx = longnet::bf16_amx_tiles();
    // the float path, the vdpbf16ps tiles, the AMX tiles (head dims a multiple of 32; others keep vdpbf16ps)
    for (int products = 0; products < 3; ++products) {
        const bool dot = products > 0, amx = products == 2;
        // each path runs where this process has it (compiled in, CPU support), whatever the default
        CHECK(longnet::set_bf16_dot_products(dot) == (dot && bf16_dot_expected()));
        CHECK(longnet::set_bf16_amx_tiles(amx) == (amx && amx_expected()));  // used when the dot path runs
        INFO("bf16 dot-product kernel: " << (longnet::bf16_dot_products() ? "on" : "off")
                                         << ", AMX: " << (longnet::bf16_amx_tiles() ? "enabled" : "off"));
        std::uint64_t seed = 400;
        for (config c : shapes())
            for (bool causal : {false, true})
                for (auto pol : {oracle::offsets::paper, oracle::offsets::torchscale}) {
                    c.causal = causal, c.policy = pol, c.zero_pad = !causal && pol == oracle::offsets::torchscale;
                    const inputs in = random_inputs(c, seed += 3);
                    const auto q = rounded<longnet::bfloat16>(in.q), k = rounded<longnet::bfloat16>(in.k),
                               v = rounded<longnet::bfloat16>(in.v);
                    const oracle::result ref = oracle::dilated(c, q, k, v);
                    const run_result got = run_dilated<longnet::bfloat16>(c, in.q, in.k, in.v);
                    INFO(describe(c));
                    CHECK(rel_error(got.out, ref.out) <= 1e-2);
                    CHECK(lse_error(got.lse, ref.lse) <= 1e-5);
                }
    }
    longnet::set_bf16_dot_products(saved);
    longnet::set_bf16_amx_tiles(saved_amx);
}

// The AMX tiles against the vdpbf16ps tiles on the same bf16 inputs: the same pair products and the same P
// rounding, summed in another order (float accumulation either way), so the outputs agree to float
// rounding of the sums, far inside the bf16 bound; and AMX did run (not the same bits everywhere).
TEST_CASE("AMX tiles agree with the vdpbf16ps tiles", "[dilated][bf16][amx]") {
    if (!amx_expected()) {
        WARN("this process has no AMX tiles (not compiled in, no AMX-BF16, or no tile permission): compared nothing");
        return;
    }
    const bool saved = longnet::bf16_dot_products(), saved_amx = longnet::bf16_amx_tiles();
    if (!longnet::set_bf16_dot_products(true)) {
        WARN("the bf16 dot-product path does not run on this path (" << longnet::simd_isa() << "): compared nothing");
        return;
    }
    for (bool causal : {false, true}) {
        const config c = make_config(1, 1100, 2, 64, {256, 1100}, {1, 2}, causal);
        const inputs in = random_inputs(c, 97);
        REQUIRE_FALSE(longnet::set_bf16_amx_tiles(false));
        const run_result vdp = run_dilated<longnet::bfloat16>(c, in.q, in.k, in.v);
        REQUIRE(longnet::set_bf16_amx_tiles(true));
        const run_result amx = run_dilated<longnet::bfloat16>(c, in.q, in.k, in.v);
        INFO(describe(c));
        CHECK(rel_error(amx.out, vdp.out) <= 1e-2);
        CHECK(lse_error(amx.lse, vdp.lse) <= 1e-5);
        CHECK(amx.lse != vdp.lse);
    }
    longnet::set_bf16_dot_products(saved);
    longnet::set_bf16_amx_tiles(saved_amx);
}

TEST_CASE("a custom scale is honoured", "[dilated]") {
    config c = make_config(1, 60, 2, 16, {20, 60}, {1, 2});
    c.scale = 0.3;
    check_against_oracle<double>(c, 7, 1e-10);
    c.scale = -1.5;
    check_against_oracle<float>(c, 8, 2e-5);
}

TEST_CASE("one branch with w >= N and r = 1 equals dense attention", "[dense]") {
    for (bool causal : {false, true})
        for (std::int64_t w : {37, 64}) {
            const config c = make_config(2, 37, 3, 16, {w}, {1}, causal);
            const inputs in = random_inputs(c, 11);
            const run_result dil = run_dilated<double>(c, in.q, in.k, in.v);
            std::vector<double> out(in.q.size()), lse(static_cast<std::size_t>(c.B * c.N * c.H));
            longnet::attention_options ao;
            ao.causal = causal;
            longnet::dense_attention(longnet::make_bnhd(in.q.data(), c.B, c.N, c.H, c.D),
                                     longnet::make_bnhd(in.k.data(), c.B, c.N, c.H, c.D),
                                     longnet::make_bnhd(in.v.data(), c.B, c.N, c.H, c.D),
                                     longnet::make_bnhd(out.data(), c.B, c.N, c.H, c.D), ao,
                                     longnet::make_lse_bnh(lse.data(), c.B, c.N, c.H));
            const oracle::result ref = oracle::dilated(c, in.q, in.k, in.v);
            INFO("causal=" << causal << " w=" << w);
            CHECK(rel_error(out, ref.out) <= 1e-12);
            CHECK(lse_error(lse, ref.lse) <= 1e-12);
            CHECK(rel_error(dil.out, out) <= 1e-12);
        }
}

TEST_CASE("dense attention over several blocks (float) matches the oracle", "[dense]") {
    for (bool causal : {false, true}) {
        const config c = make_config(1, 600, 2, 64, {600}, {1}, causal);
        check_against_oracle<float>(c, 21, 2e-5);
    }
}

TEST_CASE("rows no branch selects get O = 0 and LSE = -inf, never NaN", "[dilated]") {
    for (bool causal : {false, true}) {
        // H = 3 < r = 5: residues 3 and 4 of the only branch have no head
        const config c = make_config(1, 50, 3, 8, {12}, {5}, causal);
        const inputs in = random_inputs(c, 31);
        const run_result got = run_dilated<float>(c, in.q, in.k, in.v);
        int uncovered = 0;
        for (std::int64_t p = 0; p < c.N; ++p)
            for (std::int64_t h = 0; h < c.H; ++h) {
                const double l = got.lse[static_cast<std::size_t>(p * c.H + h)];
                REQUIRE_FALSE(std::isnan(l));
                const bool selected = (p % 12) % 5 == h && (p % 12) >= h;
                if (!selected) {
                    ++uncovered;
                    CHECK(l == -std::numeric_limits<double>::infinity());
                    for (std::int64_t d = 0; d < c.D; ++d) CHECK(got.out[static_cast<std::size_t>((p * c.H + h) * c.D + d)] == 0.0);
                } else {
                    CHECK(std::isfinite(l));
                }
            }
        CHECK(uncovered > 0);
    }
}

TEST_CASE("strided views ([B, H, N, D] buffers, [B, H, N] lse) equal contiguous ones bitwise", "[dilated][strided]") {
    const config c = make_config(2, 90, 4, 24, {16, 32, 90}, {1, 2, 4}, true, oracle::offsets::torchscale);
    const inputs in = random_inputs(c, 41);
    const run_result ref = run_dilated<float>(c, in.q, in.k, in.v);
    // transpose inputs into [B, H, N, D]
    auto to_bhnd = [&](const std::vector<double>& x) {
        std::vector<float> y(x.size());
        for (std::int64_t b = 0; b < c.B; ++b)
            for (std::int64_t n = 0; n < c.N; ++n)
                for (std::int64_t h = 0; h < c.H; ++h)
                    for (std::int64_t d = 0; d < c.D; ++d)
                        y[static_cast<std::size_t>(((b * c.H + h) * c.N + n) * c.D + d)] =
                            static_cast<float>(x[static_cast<std::size_t>(((b * c.N + n) * c.H + h) * c.D + d)]);
        return y;
    };
    auto q = to_bhnd(in.q), k = to_bhnd(in.k), v = to_bhnd(in.v);
    std::vector<float> out(q.size(), -1.0f), lse(static_cast<std::size_t>(c.B * c.H * c.N), 5.0f);
    longnet::dilated_attention(longnet::make_bhnd<const float>(q.data(), c.B, c.N, c.H, c.D),
                               longnet::make_bhnd<const float>(k.data(), c.B, c.N, c.H, c.D),
                               longnet::make_bhnd<const float>(v.data(), c.B, c.N, c.H, c.D),
                               longnet::make_bhnd(out.data(), c.B, c.N, c.H, c.D), to_options(c),
                               longnet::make_lse_bhn(lse.data(), c.B, c.N, c.H));
    for (std::int64_t b = 0; b < c.B; ++b)
        for (std::int64_t n = 0; n < c.N; ++n)
            for (std::int64_t h = 0; h < c.H; ++h) {
                REQUIRE(lse[static_cast<std::size_t>((b * c.H + h) * c.N + n)] ==
                        static_cast<float>(ref.lse[static_cast<std::size_t>((b * c.N + n) * c.H + h)]));
                for (std::int64_t d = 0; d < c.D; ++d)
                    REQUIRE(out[static_cast<std::size_t>(((b * c.H + h) * c.N + n) * c.D + d)] ==
                            static_cast<float>(ref.out[static_cast<std::size_t>(((b * c.N + n) * c.H + h) * c.D + d)]));
            }
}

TEST_CASE("batch items are independent", "[dilated]") {
    const config c = make_config(3, 64, 2, 16, {16, 64}, {1, 4}, false);
    const inputs in = random_inputs(c, 51);
    const run_result all = run_dilated<float>(c, in.q, in.k, in.v);
    const std::size_t per_item = static_cast<std::size_t>(c.N * c.H * c.D);
    for (std::int64_t b = 0; b < c.B; ++b) {
        config one = c;
        one.B = 1;
        auto slice = [&](const std::vector<double>& x) {
            return std::vector<double>(x.begin() + static_cast<std::ptrdiff_t>(b * per_item),
                                       x.begin() + static_cast<std::ptrdiff_t>((b + 1) * per_item));
        };
        const run_result alone = run_dilated<float>(one, slice(in.q), slice(in.k), slice(in.v));
        CHECK(alone.out == slice(all.out));
    }
}

namespace {
// A NaN planted in k (or v) at one row of one head must reach exactly the rows that attend to that row.
template <class T>
void check_nan_reach(const config& c, bool in_values, std::uint64_t seed) {
    inputs in = random_inputs(c, seed);
    const run_result clean = run_dilated<T>(c, in.q, in.k, in.v);
    const std::int64_t bad_row = 20, bad_head = 1;
    (in_values ? in.v : in.k)[static_cast<std::size_t>((bad_row * c.H + bad_head) * c.D + 3)] =
        std::numeric_limits<double>::quiet_NaN();
    const run_result dirty = run_dilated<T>(c, in.q, in.k, in.v);
    INFO(describe(c) << (std::is_same<T, float>::value ? ", float" : ", bfloat16") << (in_values ? ", NaN in v" : ", NaN in k"));
    int poisoned = 0;
    for (std::int64_t p = 0; p < c.N; ++p)
        for (std::int64_t h = 0; h < c.H; ++h) {
            const auto keys = oracle::keys_of(c, p, h);
            const bool reaches = h == bad_head && std::find(keys.begin(), keys.end(), bad_row) != keys.end();
            const std::size_t row = static_cast<std::size_t>((p * c.H + h) * c.D);
            if (reaches) {
                ++poisoned;
                CHECK(std::isnan(dirty.out[row + 3]));
            } else {
                for (std::int64_t d = 0; d < c.D; ++d) CHECK(dirty.out[row + static_cast<std::size_t>(d)] == clean.out[row + static_cast<std::size_t>(d)]);
            }
        }
    CHECK(poisoned > 0);
    CHECK(poisoned < c.N * c.H / 2);
}
}  // namespace

TEST_CASE("NaN inputs make NaN only in the rows that attend to them", "[dilated][nan]") {
    check_nan_reach<float>(make_config(1, 64, 2, 8, {16, 32}, {1, 2}, false), false, 61);
    // causal, NaN in a value: rows before it never see it (odd key counts included: bf16 pairs keys)
    const bool saved = longnet::bf16_dot_products(), saved_amx = longnet::bf16_amx_tiles();
    for (bool values : {false, true}) {
        check_nan_reach<float>(make_config(1, 64, 2, 8, {16, 32}, {1, 2}, true), values, 62);
        for (int products = 0; products < 3; ++products) {  // float, vdpbf16ps, AMX (D a multiple of 32)
            longnet::set_bf16_dot_products(products > 0);
            longnet::set_bf16_amx_tiles(products == 2);
            check_nan_reach<longnet::bfloat16>(make_config(1, 64, 2, 8, {16, 32}, {1, 2}, true), values, 63);
            check_nan_reach<longnet::bfloat16>(make_config(1, 64, 2, 9, {16, 64}, {1, 3}, false), values, 64);
            check_nan_reach<longnet::bfloat16>(make_config(1, 300, 2, 32, {100, 300}, {1, 2}, true), values, 65);
            check_nan_reach<longnet::bfloat16>(make_config(1, 200, 2, 64, {64, 200}, {1, 2}, false), values, 66);
        }
    }
    longnet::set_bf16_dot_products(saved);
    longnet::set_bf16_amx_tiles(saved_amx);
}

#if LONGNET_HAS_OPENMP
TEST_CASE("results are bitwise identical for 1 and 2 threads", "[dilated][threads]") {
    for (bool causal : {false, true}) {
        const config c = make_config(1, 1000, 3, 64, {128, 512, 1000}, {1, 2, 4}, causal);
        const inputs in = random_inputs(c, 71);
        const int saved = omp_get_max_threads();
        omp_set_num_threads(1);
        const run_result one = run_dilated<float>(c, in.q, in.k, in.v);
        omp_set_num_threads(2);
        const run_result two = run_dilated<float>(c, in.q, in.k, in.v);
        const run_result again = run_dilated<float>(c, in.q, in.k, in.v);
        omp_set_num_threads(saved);
        CHECK(one.out == two.out);
        CHECK(one.lse == two.lse);
        CHECK(two.out == again.out);
    }
}
#endif

TEST_CASE("offsets past 2^31 elements are addressed correctly", "[dilated][index64]") {
    // q/k/v/out rows 2^15 + 16 elements apart: the last row sits past element 2^31 of its buffer.
    const longnet::index_t N = 65536, D = 16, row_stride = (1 << 15) + 16;
    const std::size_t elems = static_cast<std::size_t>(N * row_stride);
    REQUIRE(static_cast<double>(elems) > 2147483648.0);
    auto map = [&](std::size_t n) {
        void* p = mmap(nullptr, n * sizeof(float), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        REQUIRE(p != MAP_FAILED);
        return static_cast<float*>(p);
    };
    float* buf[4] = {map(elems), map(elems), map(elems), map(elems)};
    const auto vals = oracle::random_normal(static_cast<std::size_t>(3 * N * D), 81);
    std::vector<float> dense_in[3];
    for (int t = 0; t < 3; ++t) {
        dense_in[t].resize(static_cast<std::size_t>(N * D));
        for (longnet::index_t n = 0; n < N; ++n)
            for (longnet::index_t d = 0; d < D; ++d) {
                const float x = static_cast<float>(vals[static_cast<std::size_t>((t * N + n) * D + d)]);
                buf[t][static_cast<std::size_t>(n * row_stride + d)] = x;
                dense_in[t][static_cast<std::size_t>(n * D + d)] = x;
            }
    }
    longnet::dilated_options opt = longnet::dilated_options::from_lists({64, 256}, {1, 4}, true);
    auto strided = [&](float* p) { return longnet::tensor_view<float>(p, {1, N, 1, D}, {N * row_stride, row_stride, D}); };
    longnet::dilated_attention(longnet::tensor_view<const float>(strided(buf[0])), strided(buf[1]), strided(buf[2]),
                               strided(buf[3]), opt);
    std::vector<float> ref(static_cast<std::size_t>(N * D));
    longnet::dilated_attention(longnet::make_bnhd<const float>(dense_in[0].data(), 1, N, 1, D),
                               longnet::make_bnhd<const float>(dense_in[1].data(), 1, N, 1, D),
                               longnet::make_bnhd<const float>(dense_in[2].data(), 1, N, 1, D),
                               longnet::make_bnhd(ref.data(), 1, N, 1, D), opt);
    bool same = true;
    for (longnet::index_t n = 0; n < N && same; ++n)
        same = std::memcmp(buf[3] + n * row_stride, ref.data() + n * D, static_cast<std::size_t>(D) * sizeof(float)) == 0;
    CHECK(same);
    for (float* p : buf) munmap(p, elems * sizeof(float));
}

TEST_CASE("bad arguments throw std::invalid_argument naming the value", "[validation]") {
    std::vector<float> x(2 * 8 * 2 * 4, 0.5f), y(x.size());
    auto q = longnet::make_bnhd<const float>(x.data(), 2, 8, 2, 4);
    auto out = longnet::make_bnhd(y.data(), 2, 8, 2, 4);
    auto expect_error = [&](const longnet::dilated_options& o, const std::string& needle) {
        try {
            longnet::dilated_attention(q, q, q, out, o);
            FAIL("no exception for " << needle);
        } catch (const std::invalid_argument& e) {
            INFO(e.what());
            CHECK(std::string(e.what()).find(needle) != std::string::npos);
        }
    };
    longnet::dilated_options o;
    expect_error(o, "at least one branch");
    o.branches = {{0, 1}};
    expect_error(o, "segment_length must be >= 1, got 0");
    o.branches = {{4, 1}, {8, -2}};
    expect_error(o, "dilation must be >= 1, got -2");
    o.branches = {{4, 1}};
    o.scale = std::numeric_limits<double>::infinity();
    expect_error(o, "scale must be a finite number");
    o.scale.reset();
    CHECK_THROWS_WITH(longnet::dilated_options::from_lists({4, 8}, {1}), Catch::Contains("2 segment lengths but 1 dilations"));
    std::vector<float> z(2 * 9 * 2 * 4);
    auto k_bad = longnet::make_bnhd<const float>(z.data(), 2, 9, 2, 4);
    CHECK_THROWS_WITH(longnet::dilated_attention(q, k_bad, q, out, o), Catch::Contains("k has shape [2, 9, 2, 4] but q has shape [2, 8, 2, 4]"));
    std::vector<float> l(16);
    CHECK_THROWS_WITH(longnet::dilated_attention(q, q, q, out, o, longnet::make_lse_bnh(l.data(), 2, 8, 1)),
                      Catch::Contains("lse has shape [2, 8, 1]"));
    longnet::attention_options ao;
    ao.scale = std::nan("");
    CHECK_THROWS_AS(longnet::dense_attention(q, q, q, out, ao), std::invalid_argument);
    CHECK_THROWS_WITH(longnet::parse_offset_policy("papr"), Catch::Contains("'papr'"));
    CHECK_THROWS_WITH(longnet::parse_tail_mode("pad"), Catch::Contains("'pad'"));
}

TEST_CASE("empty sequences are a no-op", "[dilated]") {
    std::vector<float> x(1);
    auto q = longnet::make_bnhd<const float>(x.data(), 1, 0, 2, 4);
    auto out = longnet::make_bnhd(x.data(), 1, 0, 2, 4);
    CHECK_NOTHROW(longnet::dilated_attention(q, q, q, out, longnet::dilated_options::paper()));
}
