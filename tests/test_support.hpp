// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers shared by the attention tests: run the library on oracle::config data, compare.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <longnet/longnet.hpp>

#if LONGNET_AMX_TILES
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "oracle.hpp"

namespace test_support {

// An oracle configuration in one call (tests build many).
inline oracle::config make_config(std::int64_t B, std::int64_t N, std::int64_t H, std::int64_t D,
                                  std::vector<std::int64_t> w, std::vector<std::int64_t> r, bool causal = false,
                                  oracle::offsets pol = oracle::offsets::paper, bool zero_pad = false) {
    oracle::config c;
    c.B = B, c.N = N, c.H = H, c.D = D, c.segments = std::move(w), c.dilations = std::move(r), c.causal = causal,
    c.policy = pol, c.zero_pad = zero_pad;
    return c;
}

inline longnet::dilated_options to_options(const oracle::config& c) {
    longnet::dilated_options o = longnet::dilated_options::from_lists(c.segments, c.dilations, c.causal);
    o.offsets = c.policy == oracle::offsets::paper ? longnet::offset_policy::paper : longnet::offset_policy::torchscale;
    o.tail = c.zero_pad ? longnet::tail_mode::zero_pad : longnet::tail_mode::exact;
    if (c.scale != 0) o.scale = c.scale;
    return o;
}

template <class T>
std::vector<T> convert(const std::vector<double>& x) {
    if constexpr (std::is_same_v<T, double>) {
        return x;
    } else {
        std::vector<T> y(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) y[i] = T(static_cast<float>(x[i]));
        return y;
    }
}
template <class T>
std::vector<double> widen(const std::vector<T>& x) {
    std::vector<double> y(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) y[i] = static_cast<double>(static_cast<longnet::accum_t<T>>(x[i]));
    return y;
}

// The storage-rounded inputs as double: what the oracle must see to judge a T computation.
template <class T>
std::vector<double> rounded(const std::vector<double>& x) {
    return widen(convert<T>(x));
}

struct run_result {
    std::vector<double> out, lse;
};

template <class T>
run_result run_dilated(const oracle::config& c, const std::vector<double>& q, const std::vector<double>& k,
                       const std::vector<double>& v) {
    auto qt = convert<T>(q), kt = convert<T>(k), vt = convert<T>(v);
    std::vector<T> out(qt.size(), T(7.0f));  // garbage that must be overwritten
    std::vector<longnet::accum_t<T>> lse(static_cast<std::size_t>(c.B * c.N * c.H), 3);
    using CT = const T;
    longnet::dilated_attention(longnet::make_bnhd<CT>(qt.data(), c.B, c.N, c.H, c.D),
                               longnet::make_bnhd<CT>(kt.data(), c.B, c.N, c.H, c.D),
                               longnet::make_bnhd<CT>(vt.data(), c.B, c.N, c.H, c.D),
                               longnet::make_bnhd(out.data(), c.B, c.N, c.H, c.D), to_options(c),
                               longnet::make_lse_bnh(lse.data(), c.B, c.N, c.H));
    return {widen(out), widen(lse)};
}

// Can this process run the bf16 dot-product path now? Compiled in (an AVX512-BF16 target, or the
// dispatched AVX-512 path while it is the active one) and, decided independently of the library, the
// CPU has AVX512-BF16.
inline bool bf16_dot_expected() {
#if LONGNET_BF16_TILES && defined(__GNUC__) && defined(__x86_64__)
    __builtin_cpu_init();
    const bool on_path = LONGNET_HAS_BF16_DOT || std::string(longnet::simd_isa()) == "avx512bw";
    return on_path && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
#else
    return false;
#endif
}

// Are AMX tiles available to the bf16 dot-product forward? Compiled in and, decided independently of the
// library, the CPU has AVX512-BF16, CPUID reports AMX-TILE and AMX-BF16, and Linux grants the tile state.
inline bool amx_expected() {
#if LONGNET_AMX_TILES
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512bf16") || !__builtin_cpu_supports("avx512bw")) return false;
    unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
    if (((edx >> 22) & 1u) == 0 || ((edx >> 24) & 1u) == 0) return false;
    return syscall(SYS_arch_prctl, 0x1023L, 18L) == 0;  // ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
#else
    return false;
#endif
}

// max |a − b| / max(|b|, tiny), with NaN counted as an infinite error.
inline double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
    double err = 0, scale = 1e-30;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
        scale = std::max(scale, std::fabs(b[i]));
    }
    for (std::size_t i = 0; i < a.size(); ++i) err = std::max(err, std::fabs(a[i] - b[i]));
    return err / scale;
}

// LSE: the same rows are −inf; elsewhere max |a − b| / max |b|.
inline double lse_error(const std::vector<double>& a, const std::vector<double>& b) {
    double err = 0, scale = 1.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::isinf(b[i]) || std::isinf(a[i])) {
            if (a[i] != b[i]) return INFINITY;
            continue;
        }
        if (std::isnan(a[i]) || std::isnan(b[i])) return INFINITY;
        scale = std::max(scale, std::fabs(b[i]));
        err = std::max(err, std::fabs(a[i] - b[i]));
    }
    return err / scale;
}

inline std::string describe(const oracle::config& c) {
    std::string s = "B=" + std::to_string(c.B) + " N=" + std::to_string(c.N) + " H=" + std::to_string(c.H) +
                    " D=" + std::to_string(c.D) + " w=";
    for (auto w : c.segments) s += std::to_string(w) + ",";
    s += " r=";
    for (auto r : c.dilations) s += std::to_string(r) + ",";
    s += c.causal ? " causal" : " full";
    s += c.policy == oracle::offsets::paper ? " paper" : " torchscale";
    s += c.zero_pad ? " zero_pad" : " exact";
    return s;
}

}  // namespace test_support
