// SPDX-License-Identifier: Apache-2.0
// Every forward case of tests/data (made by the float64 reference and by torchscale's own
// DilatedAttention, see tests/data/README.md) reproduced in float (2e-5 relative) and double (1e-10).

#include <string>

#include <longnet/io/npy.hpp>

#include "catch.hpp"
#include "test_support.hpp"

namespace {

struct fixture_case {
    const char* name;
    std::vector<std::int64_t> segments, dilations;
    bool causal;
    oracle::offsets policy;
    bool zero_pad;
};

// The parameters of each case, as in its params.json (and the table in tests/data/README.md).
const std::vector<fixture_case>& forward_cases() {
    using oracle::offsets;
    static const std::vector<fixture_case> cases = {
        {"attn_fwd_00", {8, 16, 32}, {1, 2, 4}, false, offsets::paper, false},
        {"attn_fwd_01", {8, 16, 32}, {1, 2, 4}, true, offsets::torchscale, false},
        {"attn_fwd_02", {16, 64}, {2, 4}, true, offsets::paper, false},
        {"attn_fwd_03", {10, 40, 150}, {1, 3, 5}, false, offsets::torchscale, false},
        {"attn_fwd_04", {16, 32, 64}, {1, 2, 4}, false, offsets::torchscale, true},
        {"attn_fwd_05", {8, 32, 64, 128}, {1, 2, 4, 8}, true, offsets::torchscale, false},
    };
    return cases;
}

longnet::io::npy_array load(const std::string& case_name, const std::string& file) {
    return longnet::io::load_npy(std::string(LONGNET_TEST_DATA_DIR) + "/" + case_name + "/" + file);
}

template <class T>
void check_case(const fixture_case& fc, double tol) {
    const auto q = load(fc.name, "q.npy"), k = load(fc.name, "k.npy"), v = load(fc.name, "v.npy");
    const auto out_ref = load(fc.name, "out.npy").as_double(), lse_ref = load(fc.name, "lse.npy").as_double();
    REQUIRE(q.ndim() == 3);
    oracle::config c;
    c.B = 1, c.N = q.shape()[0], c.H = q.shape()[1], c.D = q.shape()[2];
    c.segments = fc.segments, c.dilations = fc.dilations, c.causal = fc.causal, c.policy = fc.policy,
    c.zero_pad = fc.zero_pad;
    const test_support::run_result got = test_support::run_dilated<T>(c, q.as_double(), k.as_double(), v.as_double());
    INFO(fc.name << " " << test_support::describe(c));
    CHECK(test_support::rel_error(got.out, out_ref) <= tol);
    CHECK(test_support::lse_error(got.lse, lse_ref) <= tol);
    // and the C++ oracle agrees with the fixture (both are float64 definitions of the same thing)
    const oracle::result mine = oracle::dilated(c, q.as_double(), k.as_double(), v.as_double());
    CHECK(test_support::rel_error(mine.out, out_ref) <= 1e-12);
    CHECK(test_support::lse_error(mine.lse, lse_ref) <= 1e-12);
}

}  // namespace

TEST_CASE("forward fixtures reproduced in float within 2e-5", "[fixtures][float]") {
    for (const auto& fc : forward_cases()) check_case<float>(fc, 2e-5);
}

TEST_CASE("forward fixtures reproduced in double within 1e-10", "[fixtures][double]") {
    for (const auto& fc : forward_cases()) check_case<double>(fc, 1e-10);
}
