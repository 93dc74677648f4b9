// SPDX-License-Identifier: Apache-2.0
// Runtime ISA dispatch (isa.hpp, detail/dispatch.hpp): which paths a build offers on this CPU, that the path
// in force is the one asked for, and that a path that cannot run is refused with a clear error.
//
// Built twice: in the ordinary build (-march=native: one path, no dispatch) and, as part of the
// *_dispatch test executables, without -march (x86-64 baseline: dispatch), where CTest runs it once per
// path with LONGNET_ISA set, next to the kernel tests of that executable (test_dilated.cpp,
// test_backward.cpp) which then run on that path against the double oracle.
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include <longnet/longnet.hpp>

#include "catch.hpp"

namespace {

[[maybe_unused]] bool cpu_has_avx2() {
#if defined(__GNUC__) && defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

[[maybe_unused]] bool cpu_has_avx512() {
#if defined(__GNUC__) && defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
    for (const auto& e : v)
        if (e == s) return true;
    return false;
}

std::string message_of(const std::string& path) {
    try {
        longnet::set_simd_isa(path);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return {};
}

}  // namespace

TEST_CASE("dispatch: the paths offered are those this build compiled and this CPU runs") {
    const auto paths = longnet::simd_isas();
    INFO("build LONGNET_DISPATCH=" << LONGNET_DISPATCH << ", paths offered: " << paths.size());
    REQUIRE(!paths.empty());
    CHECK(paths.back() == "native");
#if LONGNET_DISPATCH_AVX512
    CHECK(contains(paths, "avx512") == cpu_has_avx512());
#else
    CHECK(!contains(paths, "avx512"));
#endif
#if LONGNET_DISPATCH_AVX2
    CHECK(contains(paths, "avx2") == cpu_has_avx2());
#else
    CHECK(!contains(paths, "avx2"));
#endif
#if LONGNET_DISPATCH
    // a build without -march on x86-64: its own path is xsimd's baseline, the better ones are dispatched
    CHECK(std::string(longnet::detail::isa_name(longnet::detail::isa_path::native)) == "sse2");
#endif
}

TEST_CASE("dispatch: the path in force is the best one, or the one LONGNET_ISA names") {
    const char* env = std::getenv("LONGNET_ISA");
    const std::string active = longnet::simd_isa();
    if (env != nullptr && *env != '\0') {
        const std::string want = env;
        const std::string name = want == "avx512" ? "avx512bw"
                                 : want == "avx2" ? "fma3+avx2"
                                                  : longnet::detail::isa_name(longnet::detail::isa_path::native);
        CHECK(active == name);
    } else {
        const std::string best = longnet::simd_isas().front();
        CHECK(active == (best == "avx512" ? "avx512bw" : best == "avx2" ? "fma3+avx2" : active));
        if (best == "native") CHECK(active == longnet::detail::isa_name(longnet::detail::isa_path::native));
    }
}

TEST_CASE("dispatch: paths that cannot run are refused, naming the value, and change nothing") {
    const std::string before = longnet::simd_isa();
    const std::string bogus = message_of("avx9000");
    CHECK(bogus.find("avx9000") != std::string::npos);
    CHECK(bogus.find("native, avx2 or avx512") != std::string::npos);
    CHECK(std::string(longnet::simd_isa()) == before);
    for (const std::string path : {"avx2", "avx512"}) {
        const auto paths = longnet::simd_isas();
        if (contains(paths, path)) {
            CHECK(message_of(path).empty());
        } else {
            const std::string why = message_of(path);
            INFO(why);
            CHECK(why.find(path) != std::string::npos);
            CHECK(std::string(longnet::simd_isa()) == before);
        }
    }
    // back to what the environment asked for (the kernel tests of this executable run after this one)
    const char* env = std::getenv("LONGNET_ISA");
    longnet::set_simd_isa(env != nullptr && *env != '\0' ? env : longnet::simd_isas().front());
    CHECK(std::string(longnet::simd_isa()) == before);
}

TEST_CASE("dispatch: every path offered computes the same attention (to rounding)") {
    const longnet::index_t B = 1, N = 700, H = 3, D = 40;  // D not a multiple of any width
    const auto n = static_cast<std::size_t>(B * N * H * D);
    std::vector<float> q(n), k(n), v(n);
    std::uint64_t s = 12345;
    for (auto* x : {&q, &k, &v})
        for (auto& e : *x) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            e = static_cast<float>(static_cast<double>(s >> 11) / 9007199254740992.0 * 4.0 - 2.0);
        }
    const auto opt = longnet::dilated_options::from_lists({64, 128, 512}, {1, 2, 4}, /*causal=*/true);
    const std::string before = longnet::simd_isa();
    std::vector<std::vector<float>> outs;
    for (const auto& path : longnet::simd_isas()) {
        longnet::set_simd_isa(path);
        std::vector<float> out(n);
        longnet::dilated_attention(longnet::make_bnhd<const float>(q.data(), B, N, H, D),
                                   longnet::make_bnhd<const float>(k.data(), B, N, H, D),
                                   longnet::make_bnhd<const float>(v.data(), B, N, H, D),
                                   longnet::make_bnhd(out.data(), B, N, H, D), opt);
        outs.push_back(out);
    }
    for (std::size_t p = 1; p < outs.size(); ++p)
        for (std::size_t i = 0; i < n; ++i) REQUIRE(std::abs(outs[p][i] - outs[0][i]) <= 2e-5f);
    const char* env = std::getenv("LONGNET_ISA");
    longnet::set_simd_isa(env != nullptr && *env != '\0' ? env : longnet::simd_isas().front());
    CHECK(std::string(longnet::simd_isa()) == before);
}
