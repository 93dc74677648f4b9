// SPDX-License-Identifier: Apache-2.0
// Padded batches (padding.hpp): real rows bitwise equal to varlen on the real tokens of each batch row,
// pads zero (out, dq, dk, dv) with lse −inf, pads never read, no NaN; key_padding_mask (left, right,
// mixed, holes, fully padded, unpadded; bool and uint8) and lengths (int32, int64); causal or not; both
// grad modes; strided views; bfloat16 and half; the float64 oracle; bad input rejected before anything
// is written.

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "catch.hpp"
#include "longnet/padding.hpp"
#include "oracle_backward.hpp"
#include "test_support.hpp"

using namespace test_support;

namespace {

constexpr std::int64_t N = 23, H = 3, D = 8;

// One string per batch row, N characters: '.' real, 'x' pad.
std::vector<std::uint8_t> mask_of(const std::vector<std::string>& rows) {
    std::vector<std::uint8_t> m;
    for (const auto& r : rows) {
        REQUIRE(static_cast<std::int64_t>(r.size()) == N);
        for (char c : r) m.push_back(c == 'x' ? 1 : 0);
    }
    return m;
}

const std::vector<std::string> mixed_rows = {
    "......................x",  // right padding (one pad)
    "xxxxxx.................",  // left padding
    "xxxxxxxxxxxxxxxxxxxxxxx",  // fully padded
    ".......................",  // unpadded
    "xx...xxx............xxx",  // left, right and a hole
    "x.x.x.x.x.x.x.x.x.x.x.x",  // every other row
    "xxxxxxxxxxx.xxxxxxxxxxx",  // one real token in the middle
};

std::int64_t batch_of(const std::vector<std::uint8_t>& mask) { return static_cast<std::int64_t>(mask.size()) / N; }

template <class T>
struct run {
    std::vector<T> out, dq, dk, dv;
    std::vector<longnet::accum_t<T>> lse;
};

template <class T>
run<T> garbage_run(std::size_t n, std::size_t rows) {  // what every call must overwrite
    return {std::vector<T>(n, T(7.0f)), std::vector<T>(n, T(7.0f)), std::vector<T>(n, T(7.0f)), std::vector<T>(n, T(7.0f)),
            std::vector<longnet::accum_t<T>>(rows, 3)};
}

// [B, N, H, D] contiguous <-> [B, H, N, D] contiguous.
template <class T>
std::vector<T> to_bhnd(const std::vector<T>& x, std::int64_t B) {
    std::vector<T> y(x.size());
    for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t n = 0; n < N; ++n)
            for (std::int64_t h = 0; h < H; ++h)
                for (std::int64_t d = 0; d < D; ++d)
                    y[static_cast<std::size_t>(((b * H + h) * N + n) * D + d)] = x[static_cast<std::size_t>(((b * N + n) * H + h) * D + d)];
    return y;
}
template <class T>
std::vector<T> from_bhnd(const std::vector<T>& y, std::int64_t B) {
    std::vector<T> x(y.size());
    for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t n = 0; n < N; ++n)
            for (std::int64_t h = 0; h < H; ++h)
                for (std::int64_t d = 0; d < D; ++d)
                    x[static_cast<std::size_t>(((b * N + n) * H + h) * D + d)] = y[static_cast<std::size_t>(((b * H + h) * N + n) * D + d)];
    return x;
}

// Forward then backward through the padded API; pad is a key_padding_mask or padding_lengths.
template <class T, class P>
run<T> run_padded(std::vector<T> q, std::vector<T> k, std::vector<T> v, std::vector<T> dout, std::int64_t B, const P& pad,
                  const longnet::dilated_options& opt, longnet::grad_mode mode, bool bhnd = false) {
    auto r = garbage_run<T>(q.size(), static_cast<std::size_t>(B * N * H));
    auto view = [&](auto& x) {
        return bhnd ? longnet::make_bhnd(x.data(), B, N, H, D) : longnet::make_bnhd(x.data(), B, N, H, D);
    };
    if (bhnd)
        for (auto* x : {&q, &k, &v, &dout, &r.out, &r.dq, &r.dk, &r.dv}) *x = to_bhnd(*x, B);
    auto lse = longnet::make_lse_bnh(r.lse.data(), B, N, H);
    longnet::dilated_attention_padded(view(q), view(k), view(v), pad, view(r.out), opt, lse);
    longnet::dilated_attention_padded_backward(view(q), view(k), view(v), view(r.out), lse, view(dout), view(r.dq),
                                               view(r.dk), view(r.dv), pad, opt, mode);
    if (bhnd)
        for (auto* x : {&r.out, &r.dq, &r.dk, &r.dv}) *x = from_bhnd(*x, B);
    return r;
}

// The definition: the real tokens of every batch row packed (in order) and run through varlen; pads of
// the result 0 (lse −inf).
template <class T>
run<T> run_reference(const std::vector<T>& q, const std::vector<T>& k, const std::vector<T>& v,
                     const std::vector<T>& dout, const std::vector<std::uint8_t>& mask,
                     const longnet::dilated_options& opt, longnet::grad_mode mode) {
    const std::int64_t B = batch_of(mask);
    std::vector<std::int64_t> cu{0}, where;  // where: padded index (b * N + n) of each packed token
    for (std::int64_t b = 0; b < B; ++b) {
        for (std::int64_t n = 0; n < N; ++n)
            if (mask[static_cast<std::size_t>(b * N + n)] == 0) where.push_back(b * N + n);
        cu.push_back(static_cast<std::int64_t>(where.size()));
    }
    const std::int64_t total = cu.back();
    const auto row = static_cast<std::size_t>(H * D);
    auto pack = [&](const std::vector<T>& x) {
        std::vector<T> y(static_cast<std::size_t>(total) * row);
        for (std::size_t i = 0; i < where.size(); ++i)
            std::copy_n(x.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(where[i]) * row), row,
                        y.begin() + static_cast<std::ptrdiff_t>(i * row));
        return y;
    };
    auto pq = pack(q), pk = pack(k), pv = pack(v), pd = pack(dout);
    std::vector<T> po(pq.size()), gq(pq.size()), gk(pq.size()), gv(pq.size());
    std::vector<longnet::accum_t<T>> pl(static_cast<std::size_t>(total * H));
    auto view = [&](auto& x) { return longnet::make_bnhd(x.data(), 1, total, H, D); };
    auto lse = longnet::make_lse_bnh(pl.data(), 1, total, H);
    longnet::dilated_attention_varlen(view(pq), view(pk), view(pv), cu, view(po), opt, lse);
    longnet::dilated_attention_varlen_backward(view(pq), view(pk), view(pv), view(po), lse, view(pd), view(gq), view(gk),
                                               view(gv), cu, opt, mode);
    run<T> r{std::vector<T>(q.size(), T(0.0f)), std::vector<T>(q.size(), T(0.0f)), std::vector<T>(q.size(), T(0.0f)),
             std::vector<T>(q.size(), T(0.0f)),
             std::vector<longnet::accum_t<T>>(static_cast<std::size_t>(B * N * H),
                                              -std::numeric_limits<longnet::accum_t<T>>::infinity())};
    for (std::size_t i = 0; i < where.size(); ++i) {
        const auto to = static_cast<std::ptrdiff_t>(static_cast<std::size_t>(where[i]) * row);
        const auto from = static_cast<std::ptrdiff_t>(i * row);
        std::copy_n(po.begin() + from, row, r.out.begin() + to);
        std::copy_n(gq.begin() + from, row, r.dq.begin() + to);
        std::copy_n(gk.begin() + from, row, r.dk.begin() + to);
        std::copy_n(gv.begin() + from, row, r.dv.begin() + to);
        std::copy_n(pl.begin() + static_cast<std::ptrdiff_t>(i * H), H,
                    r.lse.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(where[i] * H)));
    }
    return r;
}

template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// Independent of the reference: every pad row is exactly +0 (lse −inf), nothing is NaN.
template <class T>
void check_pads_and_nan(const run<T>& r, const std::vector<std::uint8_t>& mask) {
    const auto row = static_cast<std::size_t>(H * D);
    const auto out = widen(r.out), dq = widen(r.dq), dk = widen(r.dk), dv = widen(r.dv);
    std::size_t bad_pads = 0, nans = 0;
    for (std::size_t p = 0; p < mask.size(); ++p) {
        for (const auto* x : {&out, &dq, &dk, &dv})
            for (std::size_t e = p * row; e < (p + 1) * row; ++e) {
                if (std::isnan((*x)[e])) ++nans;
                if (mask[p] != 0 && !((*x)[e] == 0 && !std::signbit((*x)[e]))) ++bad_pads;
            }
        for (std::size_t h = 0; h < static_cast<std::size_t>(H); ++h) {
            const auto l = r.lse[p * static_cast<std::size_t>(H) + h];
            if (std::isnan(l)) ++nans;
            if (mask[p] != 0 && !(std::isinf(l) && l < 0)) ++bad_pads;
        }
    }
    CHECK(bad_pads == 0);
    CHECK(nans == 0);
}

template <class T>
void check_equal(const run<T>& got, const run<T>& want) {
    CHECK(bitwise_equal(got.out, want.out));
    CHECK(bitwise_equal(got.lse, want.lse));
    CHECK(bitwise_equal(got.dq, want.dq));
    CHECK(bitwise_equal(got.dk, want.dk));
    CHECK(bitwise_equal(got.dv, want.dv));
}

template <class T = float>
struct inputs {
    std::vector<T> q, k, v, d;
};
template <class T = float>
inputs<T> random_inputs(std::int64_t B, std::uint64_t seed) {
    const auto n = static_cast<std::size_t>(B * N * H * D);
    return {convert<T>(oracle::random_normal(n, seed)), convert<T>(oracle::random_normal(n, seed + 1)),
            convert<T>(oracle::random_normal(n, seed + 2)), convert<T>(oracle::random_normal(n, seed + 3))};
}

}  // namespace

TEST_CASE("padded with a key_padding_mask equals varlen on the real tokens bitwise (float)") {
    const auto mask = mask_of(mixed_rows);
    const std::int64_t B = batch_of(mask);
    const auto in = random_inputs(B, 31);
    std::unique_ptr<bool[]> bools(new bool[mask.size()]);
    for (std::size_t i = 0; i < mask.size(); ++i) bools[i] = mask[i] != 0;
    for (bool causal : {false, true})
        for (auto mode : {longnet::grad_mode::exact, longnet::grad_mode::stop_grad_weights}) {
            const auto opt = to_options(make_config(1, 1, H, D, {4, 8, 16}, {1, 2, 4}, causal));
            INFO("causal " << causal << " mode " << longnet::to_string(mode));
            const auto want = run_reference(in.q, in.k, in.v, in.d, mask, opt, mode);
            const auto got = run_padded(in.q, in.k, in.v, in.d, B, longnet::key_padding_mask(mask), opt, mode);
            check_equal(got, want);
            check_pads_and_nan(got, mask);
            // the same mask as bool, and [B, H, N, D] strided views: the same bits
            check_equal(run_padded(in.q, in.k, in.v, in.d, B, longnet::key_padding_mask(bools.get(), mask.size()), opt, mode),
                        want);
            check_equal(run_padded(in.q, in.k, in.v, in.d, B, longnet::key_padding_mask(mask), opt, mode, true), want);
        }
}

TEST_CASE("padded with lengths (right padding, int32 and int64) equals varlen bitwise (float)") {
    const std::vector<std::int64_t> lengths = {17, 0, 23, 1, 9, 22};
    const auto B = static_cast<std::int64_t>(lengths.size());
    std::vector<std::uint8_t> mask;
    for (auto len : lengths)
        for (std::int64_t n = 0; n < N; ++n) mask.push_back(n < len ? 0 : 1);
    const std::vector<std::int32_t> lengths32(lengths.begin(), lengths.end());
    const auto in = random_inputs(B, 41);
    for (bool causal : {false, true})
        for (auto mode : {longnet::grad_mode::exact, longnet::grad_mode::stop_grad_weights}) {
            const auto opt = to_options(make_config(1, 1, H, D, {4, 8, 16}, {1, 2, 4}, causal));
            INFO("causal " << causal << " mode " << longnet::to_string(mode));
            const auto want = run_reference(in.q, in.k, in.v, in.d, mask, opt, mode);
            const auto got = run_padded(in.q, in.k, in.v, in.d, B, longnet::padding_lengths(lengths), opt, mode);
            check_equal(got, want);
            check_pads_and_nan(got, mask);
            check_equal(run_padded(in.q, in.k, in.v, in.d, B, longnet::padding_lengths(lengths32), opt, mode), want);
            check_equal(run_padded(in.q, in.k, in.v, in.d, B, longnet::key_padding_mask(mask), opt, mode), want);
        }
}

TEST_CASE("padded bfloat16 and half equal varlen bitwise, pads zero") {
    const auto mask = mask_of(mixed_rows);
    const std::int64_t B = batch_of(mask);
    const auto opt = to_options(make_config(1, 1, H, D, {4, 8, 16}, {1, 2, 4}, true));
    auto one = [&](auto tag) {
        using T = decltype(tag);
        const auto in = random_inputs<T>(B, 81);
        const auto mode = longnet::grad_mode::exact;
        const auto got = run_padded(in.q, in.k, in.v, in.d, B, longnet::key_padding_mask(mask), opt, mode);
        check_equal(got, run_reference(in.q, in.k, in.v, in.d, mask, opt, mode));
        check_pads_and_nan(got, mask);
    };
    one(longnet::bfloat16());
    one(longnet::half());
}

TEST_CASE("pads are never read: NaN in every pad of q, k, v, out, lse, dout changes nothing") {
    const auto mask = mask_of(mixed_rows);
    const std::int64_t B = batch_of(mask);
    const auto in = random_inputs(B, 51);
    const auto opt = to_options(make_config(1, 1, H, D, {4, 8}, {1, 2}, true));
    const auto clean = run_padded(in.q, in.k, in.v, in.d, B, longnet::key_padding_mask(mask), opt,
                                  longnet::grad_mode::exact);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const auto row = static_cast<std::size_t>(H * D);
    auto poison = [&](std::vector<float> x, std::size_t width) {
        for (std::size_t p = 0; p < mask.size(); ++p)
            if (mask[p] != 0) std::fill_n(x.begin() + static_cast<std::ptrdiff_t>(p * width), width, nan);
        return x;
    };
    auto q = poison(in.q, row), k = poison(in.k, row), v = poison(in.v, row), d = poison(in.d, row);
    auto r = garbage_run<float>(q.size(), static_cast<std::size_t>(B * N * H));
    auto view = [&](auto& x) { return longnet::make_bnhd(x.data(), B, N, H, D); };
    auto lse = longnet::make_lse_bnh(r.lse.data(), B, N, H);
    longnet::dilated_attention_padded(view(q), view(k), view(v), mask, view(r.out), opt, lse);
    CHECK(bitwise_equal(r.out, clean.out));
    CHECK(bitwise_equal(r.lse, clean.lse));
    auto out = poison(r.out, row), lse_poisoned = poison(r.lse, static_cast<std::size_t>(H));
    longnet::dilated_attention_padded_backward(view(q), view(k), view(v), view(out),
                                               longnet::make_lse_bnh(lse_poisoned.data(), B, N, H), view(d), view(r.dq),
                                               view(r.dk), view(r.dv), mask, opt);
    check_equal(r, clean);
}

TEST_CASE("padded agrees with the float64 oracle run on each row's real tokens") {
    const auto mask = mask_of({"xxx.........x.....xxxxx", "xxxxxxxxxxxxxxxxxxxxxxx", "......................."});
    const std::int64_t B = batch_of(mask);
    const auto n = static_cast<std::size_t>(B * N * H * D);
    const auto q = oracle::random_normal(n, 61), k = oracle::random_normal(n, 62), v = oracle::random_normal(n, 63),
               d = oracle::random_normal(n, 64);
    const auto row = static_cast<std::ptrdiff_t>(H * D);
    for (bool causal : {false, true})
        for (auto mode : {longnet::grad_mode::exact, longnet::grad_mode::stop_grad_weights}) {
            const auto base = make_config(1, 1, H, D, {4, 8}, {1, 2}, causal);
            const auto got = run_padded(q, k, v, d, B, longnet::key_padding_mask(mask), to_options(base), mode);
            std::vector<double> out(n, 0.0), dq(n, 0.0), dk(n, 0.0), dv(n, 0.0),
                lse(static_cast<std::size_t>(B * N * H), -std::numeric_limits<double>::infinity());
            for (std::int64_t b = 0; b < B; ++b) {
                std::vector<std::int64_t> real;
                for (std::int64_t p = 0; p < N; ++p)
                    if (mask[static_cast<std::size_t>(b * N + p)] == 0) real.push_back(b * N + p);
                if (real.empty()) continue;
                auto c = base;
                c.N = static_cast<std::int64_t>(real.size());
                auto gather = [&](const std::vector<double>& x) {
                    std::vector<double> y;
                    for (auto p : real) y.insert(y.end(), x.begin() + p * row, x.begin() + (p + 1) * row);
                    return y;
                };
                const auto r = oracle::dilated(c, gather(q), gather(k), gather(v));
                const auto g = mode == longnet::grad_mode::exact
                                   ? oracle::dilated_backward_exact(c, gather(q), gather(k), gather(v), gather(d))
                                   : oracle::dilated_backward_stop_grad(c, gather(q), gather(k), gather(v), gather(d));
                for (std::size_t i = 0; i < real.size(); ++i) {
                    const auto from = static_cast<std::ptrdiff_t>(i) * row, to = real[i] * row;
                    std::copy_n(r.out.begin() + from, row, out.begin() + to);
                    std::copy_n(g.dq.begin() + from, row, dq.begin() + to);
                    std::copy_n(g.dk.begin() + from, row, dk.begin() + to);
                    std::copy_n(g.dv.begin() + from, row, dv.begin() + to);
                    std::copy_n(r.lse.begin() + static_cast<std::ptrdiff_t>(i) * H, H, lse.begin() + real[i] * H);
                }
            }
            INFO("causal " << causal << " mode " << longnet::to_string(mode));
            CHECK(rel_error(got.out, out) <= 1e-12);
            CHECK(lse_error(got.lse, lse) <= 1e-12);
            CHECK(rel_error(got.dq, dq) <= 1e-10);
            CHECK(rel_error(got.dk, dk) <= 1e-10);
            CHECK(rel_error(got.dv, dv) <= 1e-10);
            check_pads_and_nan(got, mask);
        }
}

namespace {
template <class F>
void expect_rejected(F&& call, const std::string& needle) {
    INFO("expecting '" << needle << "'");
    try {
        call();
        FAIL("accepted bad input");
    } catch (const std::invalid_argument& e) {
        INFO("got '" << e.what() << "'");
        CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
}
}  // namespace

TEST_CASE("bad padding input throws naming the value, before anything is written") {
    const std::int64_t B = 2;
    const auto in = random_inputs(B, 71);
    const auto size = in.q.size();
    std::vector<float> out(size, 7.0f), dq(size, 7.0f), dk(size, 7.0f), dv(size, 7.0f), small(size / 2, 1.0f);
    std::vector<float> lse(static_cast<std::size_t>(B * N * H), 3.0f);
    auto q = in.q, k = in.k, v = in.v, d = in.d;
    auto view = [&](auto& x) { return longnet::make_bnhd(x.data(), B, N, H, D); };
    auto lv = longnet::make_lse_bnh(lse.data(), B, N, H);
    const auto opt = to_options(make_config(1, 1, H, D, {4}, {1}));
    const std::vector<std::uint8_t> mask(static_cast<std::size_t>(B * N), 0);
    auto fwd = [&](const auto& pad) {
        return [&] { longnet::dilated_attention_padded(view(q), view(k), view(v), pad, view(out), opt, lv); };
    };
    auto bwd = [&](const auto& pad, longnet::grad_mode mode = longnet::grad_mode::exact) {
        return [&, mode] {
            longnet::dilated_attention_padded_backward(view(q), view(k), view(v), view(out), lv, view(d), view(dq),
                                                       view(dk), view(dv), pad, opt, mode);
        };
    };
    const std::vector<std::uint8_t> short_mask(static_cast<std::size_t>(B * N - 1), 0);
    expect_rejected(fwd(longnet::key_padding_mask(short_mask)), "key_padding_mask has 45 entries");
    expect_rejected(bwd(longnet::key_padding_mask(short_mask)), "need B * N = 46");
    expect_rejected(fwd(longnet::key_padding_mask(static_cast<const bool*>(nullptr), mask.size())), "null");
    const std::vector<std::int64_t> three = {1, 2, 3}, negative = {4, -2}, too_long = {24, 1};
    const std::vector<std::int32_t> negative32 = {4, -2};
    expect_rejected(fwd(longnet::padding_lengths(three)), "lengths has 3 entries but the batch has B = 2");
    expect_rejected(fwd(longnet::padding_lengths(negative)), "lengths[1] = -2 is negative");
    expect_rejected(bwd(longnet::padding_lengths(negative32)), "lengths[1] = -2 is negative");
    expect_rejected(fwd(longnet::padding_lengths(too_long)), "lengths[0] = 24 is greater than the sequence length N = 23");
    expect_rejected(bwd(longnet::padding_lengths(too_long)), "lengths[0] = 24");
    expect_rejected(bwd(longnet::key_padding_mask(mask), static_cast<longnet::grad_mode>(7)), "unknown grad mode value 7");
    // shapes: k with half the rows
    expect_rejected(
        [&] {
            longnet::dilated_attention_padded(view(q), longnet::make_bnhd(small.data(), 1, N, H, D), view(v), mask,
                                              view(out), opt, lv);
        },
        "k has shape [1, 23, 3, 8]");
    expect_rejected(
        [&] {
            longnet::dilated_attention_padded_backward(view(q), view(k), view(v), view(out), lv, view(d),
                                                       longnet::make_bnhd(small.data(), 1, N, H, D), view(dk), view(dv),
                                                       mask, opt);
        },
        "dq has shape [1, 23, 3, 8]");
    expect_rejected(
        [&] {
            longnet::dilated_attention_padded_backward(view(q), view(k), view(v), view(out), longnet::lse_view<float>(),
                                                       view(d), view(dq), view(dk), view(dv), mask, opt);
        },
        "lse is required");
    for (const auto* x : {&out, &dq, &dk, &dv})
        CHECK(std::all_of(x->begin(), x->end(), [](float e) { return e == 7.0f; }));
    CHECK(std::all_of(lse.begin(), lse.end(), [](float e) { return e == 3.0f; }));
}

TEST_CASE("an empty batch and a batch of empty rows are fine") {
    const auto opt = to_options(make_config(1, 1, H, D, {4}, {1}));
    std::vector<float> none;
    auto empty = longnet::make_bnhd(none.data(), 0, N, H, D);
    longnet::dilated_attention_padded(empty, empty, empty, std::vector<std::uint8_t>{}, empty, opt);
    longnet::dilated_attention_padded(empty, empty, empty, std::vector<std::int64_t>{}, empty, opt);
    CHECK_THROWS_AS(longnet::dilated_attention_padded(empty, empty, empty, std::vector<std::int64_t>{0}, empty, opt),
                    std::invalid_argument);
}
