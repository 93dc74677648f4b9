// SPDX-License-Identifier: Apache-2.0
// Packed variable-length attention (varlen.hpp): bitwise equal to per-sequence calls, agrees with the
// float64 oracle, forward and backward, both grad modes, causal or not; bad cu_seqlens are rejected.

#include <cstring>
#include <string>

#include "catch.hpp"
#include "longnet/varlen.hpp"
#include "oracle_backward.hpp"
#include "test_support.hpp"

using namespace test_support;

namespace {

constexpr std::int64_t H = 3, D = 8;

std::vector<std::int64_t> offsets_of(const std::vector<std::int64_t>& lens) {
    std::vector<std::int64_t> cu{0};
    for (auto n : lens) cu.push_back(cu.back() + n);
    return cu;
}

template <class T>
struct packed_run {
    std::vector<T> out, dq, dk, dv;
    std::vector<longnet::accum_t<T>> lse;
};

// Packed forward + backward through the varlen API.
template <class T, class I>
packed_run<T> run_varlen(const std::vector<T>& q, const std::vector<T>& k, const std::vector<T>& v,
                         const std::vector<T>& dout, const std::vector<I>& cu, const longnet::dilated_options& opt,
                         longnet::grad_mode mode) {
    const std::int64_t total = static_cast<std::int64_t>(cu.back());
    packed_run<T> r{std::vector<T>(q.size()), std::vector<T>(q.size()), std::vector<T>(q.size()),
                    std::vector<T>(q.size()), std::vector<longnet::accum_t<T>>(static_cast<std::size_t>(total * H))};
    auto view = [&](auto& x) { return longnet::make_bnhd(x.data(), 1, total, H, D); };
    auto lse = longnet::make_lse_bnh(r.lse.data(), 1, total, H);
    longnet::dilated_attention_varlen(view(q), view(k), view(v), cu, view(r.out), opt, lse);
    longnet::dilated_attention_varlen_backward(view(q), view(k), view(v), view(r.out), lse, view(dout), view(r.dq),
                                               view(r.dk), view(r.dv), cu, opt, mode);
    return r;
}

// The definition: each sequence copied out and run alone through the public ops.
template <class T>
packed_run<T> run_each(const std::vector<T>& q, const std::vector<T>& k, const std::vector<T>& v,
                       const std::vector<T>& dout, const std::vector<std::int64_t>& cu,
                       const longnet::dilated_options& opt, longnet::grad_mode mode) {
    packed_run<T> r{std::vector<T>(q.size()), std::vector<T>(q.size()), std::vector<T>(q.size()),
                    std::vector<T>(q.size()), std::vector<longnet::accum_t<T>>(static_cast<std::size_t>(cu.back() * H))};
    for (std::size_t b = 0; b + 1 < cu.size(); ++b) {
        const std::int64_t n = cu[b + 1] - cu[b];
        if (n == 0) continue;
        const std::size_t s = static_cast<std::size_t>(cu[b] * H * D), len = static_cast<std::size_t>(n * H * D);
        auto cut = [&](const std::vector<T>& x) { return std::vector<T>(x.begin() + static_cast<std::ptrdiff_t>(s), x.begin() + static_cast<std::ptrdiff_t>(s + len)); };
        auto q1 = cut(q), k1 = cut(k), v1 = cut(v), d1 = cut(dout);
        std::vector<T> o(len), gq(len), gk(len), gv(len);
        std::vector<longnet::accum_t<T>> l(static_cast<std::size_t>(n * H));
        auto view = [&](auto& x) { return longnet::make_bnhd(x.data(), 1, n, H, D); };
        auto lse = longnet::make_lse_bnh(l.data(), 1, n, H);
        longnet::dilated_attention(view(q1), view(k1), view(v1), view(o), opt, lse);
        longnet::dilated_attention_backward(view(q1), view(k1), view(v1), view(o), lse, view(d1), view(gq), view(gk),
                                            view(gv), opt, mode);
        std::copy(o.begin(), o.end(), r.out.begin() + static_cast<std::ptrdiff_t>(s));
        std::copy(gq.begin(), gq.end(), r.dq.begin() + static_cast<std::ptrdiff_t>(s));
        std::copy(gk.begin(), gk.end(), r.dk.begin() + static_cast<std::ptrdiff_t>(s));
        std::copy(gv.begin(), gv.end(), r.dv.begin() + static_cast<std::ptrdiff_t>(s));
        std::copy(l.begin(), l.end(), r.lse.begin() + cu[b] * H);
    }
    return r;
}

template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
    // memcmp on an empty vector's data() (possibly null) is undefined even for 0 bytes (UBSan says so)
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

const std::vector<std::vector<std::int64_t>> batches = {
    {5, 0, 1, 13, 2},          // zero, one, a prime
    {97, 1, 1, 3, 0, 7, 1},    // one long next to many short
    {0},                       // a single empty sequence
    {31},                      // a single sequence
    {0, 0, 17, 0},
};

}  // namespace

TEST_CASE("varlen forward and backward equal the per-sequence calls bitwise (float)") {
    for (bool causal : {false, true})
        for (auto mode : {longnet::grad_mode::exact, longnet::grad_mode::stop_grad_weights})
            for (const auto& lens : batches) {
                const auto cu = offsets_of(lens);
                const auto n = static_cast<std::size_t>(cu.back() * H * D);
                const auto q = convert<float>(oracle::random_normal(n, 11)), k = convert<float>(oracle::random_normal(n, 12)),
                           v = convert<float>(oracle::random_normal(n, 13)), d = convert<float>(oracle::random_normal(n, 14));
                const auto opt = to_options(make_config(1, 1, H, D, {4, 8, 16}, {1, 2, 4}, causal));
                const auto got = run_varlen(q, k, v, d, cu, opt, mode);
                std::vector<std::int32_t> cu32(cu.begin(), cu.end());
                const auto got32 = run_varlen(q, k, v, d, cu32, opt, mode);
                const auto want = run_each(q, k, v, d, cu, opt, mode);
                INFO("total " << cu.back() << " causal " << causal << " mode " << longnet::to_string(mode));
                CHECK(bitwise_equal(got.out, want.out));
                CHECK(bitwise_equal(got.lse, want.lse));
                CHECK(bitwise_equal(got.dq, want.dq));
                CHECK(bitwise_equal(got.dk, want.dk));
                CHECK(bitwise_equal(got.dv, want.dv));
                CHECK(bitwise_equal(got32.out, got.out));
                CHECK(bitwise_equal(got32.dq, got.dq));
            }
}

TEST_CASE("varlen agrees with the float64 oracle run per sequence") {
    const std::vector<std::int64_t> lens = {11, 0, 1, 23, 5};
    const auto cu = offsets_of(lens);
    for (bool causal : {false, true})
        for (auto mode : {longnet::grad_mode::exact, longnet::grad_mode::stop_grad_weights}) {
            const auto n = static_cast<std::size_t>(cu.back() * H * D);
            const auto q = oracle::random_normal(n, 21), k = oracle::random_normal(n, 22), v = oracle::random_normal(n, 23),
                       d = oracle::random_normal(n, 24);
            const auto base = make_config(1, 1, H, D, {4, 8}, {1, 2}, causal);
            const auto got = run_varlen(q, k, v, d, cu, to_options(base), mode);
            std::vector<double> out(n), lse(static_cast<std::size_t>(cu.back() * H)), dq(n), dk(n), dv(n);
            for (std::size_t b = 0; b + 1 < cu.size(); ++b) {
                auto c = base;
                c.N = cu[b + 1] - cu[b];
                if (c.N == 0) continue;
                const auto s = static_cast<std::ptrdiff_t>(cu[b] * H * D), len = static_cast<std::ptrdiff_t>(c.N * H * D);
                auto cut = [&](const std::vector<double>& x) { return std::vector<double>(x.begin() + s, x.begin() + s + len); };
                const auto r = oracle::dilated(c, cut(q), cut(k), cut(v));
                const auto g = mode == longnet::grad_mode::exact
                                   ? oracle::dilated_backward_exact(c, cut(q), cut(k), cut(v), cut(d))
                                   : oracle::dilated_backward_stop_grad(c, cut(q), cut(k), cut(v), cut(d));
                std::copy(r.out.begin(), r.out.end(), out.begin() + s);
                std::copy(r.lse.begin(), r.lse.end(), lse.begin() + cu[b] * H);
                std::copy(g.dq.begin(), g.dq.end(), dq.begin() + s);
                std::copy(g.dk.begin(), g.dk.end(), dk.begin() + s);
                std::copy(g.dv.begin(), g.dv.end(), dv.begin() + s);
            }
            INFO("causal " << causal << " mode " << longnet::to_string(mode));
            CHECK(rel_error(got.out, out) <= 1e-12);
            CHECK(lse_error(got.lse, lse) <= 1e-12);
            CHECK(rel_error(got.dq, dq) <= 1e-10);
            CHECK(rel_error(got.dk, dk) <= 1e-10);
            CHECK(rel_error(got.dv, dv) <= 1e-10);
        }
}

namespace {
void expect_rejected(const std::vector<std::int64_t>& cu, std::int64_t total, const std::string& needle) {
    INFO("expecting '" << needle << "'");
    try {
        (void)longnet::check_cu_seqlens(cu, total);
        FAIL("accepted a bad cu_seqlens");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
}
}  // namespace

TEST_CASE("bad cu_seqlens throw naming the index and value") {
    expect_rejected({0, 5, 3, 9}, 9, "cu_seqlens[2] = 3");      // unsorted
    expect_rejected({0, -2, 9}, 9, "cu_seqlens[1] = -2");       // negative
    expect_rejected({0, 12, 9}, 9, "cu_seqlens[1] = 12");       // out of range
    expect_rejected({0, 4, 8}, 9, "cu_seqlens[2] = 8");         // wrong total
    expect_rejected({1, 4, 9}, 9, "cu_seqlens[0] = 1");         // does not start at 0
    expect_rejected({}, 9, "empty");                            // empty
    expect_rejected({0, 4}, 9, "cu_seqlens[1] = 4");            // wrong length (too short for the total)
    CHECK(longnet::check_cu_seqlens(std::vector<std::int64_t>{0, 0, 4, 9}, 9).size() == 4);
    // the op itself rejects before writing anything
    std::vector<float> x(9 * H * D, 1.5f), out(9 * H * D, 7.0f);
    auto view = [&](auto& t) { return longnet::make_bnhd(t.data(), 1, 9, H, D); };
    const auto opt = to_options(make_config(1, 1, H, D, {4}, {1}));
    CHECK_THROWS_AS(longnet::dilated_attention_varlen(view(x), view(x), view(x), std::vector<std::int32_t>{0, 3, 2, 9},
                                                      view(out), opt),
                    std::invalid_argument);
    CHECK(out[0] == 7.0f);
}
