// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the kernels compute with: the instruction-set path, and the bf16 dot-product path.
//
// Paths (see also README, "Runtime ISA dispatch"). A build for a target with AVX2 + FMA (-march=native on
// any recent x86 machine, -march=x86-64-v3 or -v4) has one path: the kernels are compiled for that
// target, with no dispatch. A build without such flags (a distribution's, a portable project's,
// `cmake -S . -B build` without LONGNET_MARCH) compiles the kernels three times, for its own target
// (x86-64: SSE2), for AVX2 + FMA and for AVX-512 (F, CD, BW, DQ, VL), and the first attention call
// runs the best one this CPU supports (LONGNET_DISPATCH, config.hpp). The environment variable
// LONGNET_ISA=native|avx2|avx512 (read at the first call) or set_simd_isa() forces a path; a path this
// build or this CPU cannot run is an error (std::invalid_argument naming it), never a crash.

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/config.hpp"
#include "longnet/detail/dispatch.hpp"
#include "longnet/detail/runtime_isa.hpp"

namespace longnet {

// Name of the instruction set the attention kernels run now: "avx512bw", "fma3+avx2", "sse2", ...
// (xsimd's architecture names), or "scalar". Throws std::invalid_argument if LONGNET_ISA names a path
// that cannot run here.
inline const char* simd_isa() { return detail::isa_name(detail::active_isa()); }

// The paths this build can run on this CPU, best first (the names set_simd_isa() and LONGNET_ISA
// accept): "avx512", "avx2" where compiled in for dispatch and supported, then always "native".
inline std::vector<std::string> simd_isas() {
    std::vector<std::string> out;
    if (detail::isa_available(detail::isa_path::avx512)) out.emplace_back("avx512");
    if (detail::isa_available(detail::isa_path::avx2)) out.emplace_back("avx2");
    out.emplace_back("native");
    return out;
}

// Run the kernels on `path` ("native", "avx2" or "avx512") from now on, in this process; throws
// std::invalid_argument (and changes nothing) if the name is unknown, the build has no such kernels or
// the CPU lacks the instructions. Not while an attention call runs on another thread.
inline void set_simd_isa(const std::string& path) {
    const std::string why = detail::isa_refusal("set_simd_isa", path);
    if (!why.empty()) throw std::invalid_argument("longnet: " + why);
    detail::isa_path p{};
    detail::isa_parse(path, p);
    detail::isa_selection& s = detail::isa_state();
    s.path.store(static_cast<int>(p), std::memory_order_relaxed);
    s.invalid.store(false, std::memory_order_release);
}

// The bf16 dot-product path (detail/bf16_dot.hpp): bfloat16 storage computes the attention's products
// with AVX512-BF16 dot products (vdpbf16ps, float accumulation) instead of widening to float: QKᵀ and
// PV in the forward (P rounded to bf16 for PV), and in the backward the scores, dP, dV, dK and dQ (P and
// dS rounded to bf16 for the last three), as flash-attention does in half precision.
//
// Available where it is compiled in and the CPU has AVX512-BF16: a build whose target has it
// (LONGNET_HAS_BF16_DOT, config.hpp: -march=native on Zen 4, Sapphire Rapids, Cooper Lake), or a
// portable build with runtime dispatch, whose AVX-512 path carries it (LONGNET_DISPATCH_BF16; it runs
// when that path is the active one). Whether it runs is decided once per process, because it pays only
// where its products are faster than the float FMAs: AMD Zen 4 and later run vdpbf16ps at the FMA rate
// (twice the multiply-adds: measured 458 vs 230 GFLOP/s on 2 threads); an Intel Sapphire Rapids-class
// Xeon runs vdpbf16ps at half its FMA flop rate (measured 0.50-0.54x), but has AMX: there the forward's
// QKᵀ and PV run on the tile unit (TDPBF16PS, bf16_amx_tiles() below). Default: on with AMX or on
// AuthenticAMD, off otherwise. The environment variable LONGNET_BF16_DOT=1 or =0 overrides the default;
// set_bf16_dot_products() changes it at run time (not while an attention call runs on another thread).

// True when bfloat16 storage takes the bf16 dot-product path now: available, enabled, and (in a
// dispatched build) the AVX-512 path is the active one.
inline bool bf16_dot_products() noexcept {
    return detail::bf16_dot_switch().load(std::memory_order_relaxed) && detail::bf16_dot_on_active_path();
}

// Enable or disable the bf16 dot-product path; returns what is now in force (bf16_dot_products(): false
// when it is not available, i.e. not compiled in or the CPU lacks AVX512-BF16, or when the active path
// of a dispatched build is not AVX-512; the switch stays on for when it is).
inline bool set_bf16_dot_products(bool on) noexcept {
    detail::bf16_dot_switch().store(on && detail::bf16_dot_available(), std::memory_order_relaxed);
    return bf16_dot_products();
}

// AMX tiles for the bf16 dot-product path (detail/bf16_tiles.hpp): where the CPU has AMX-BF16 (Intel
// Sapphire Rapids and later) and Linux grants the tile state (the arch_prctl request every AMX program
// makes, once per process), the products of head dims that are a multiple of 32 run as TDPBF16PS on
// 16×16 tiles, forward (QKᵀ, PV) and backward (scores, dP, dV, dK, dQ): the same pair layouts, the same
// bf16 roundings of P and dS, float accumulation. Other head dims keep vdpbf16ps; the causal diagonal's
// last keys of a row in the forward too. LONGNET_AMX=0 turns AMX off for the process.

// True when AMX tiles are available and enabled: the bf16 dot-product path uses them whenever it runs
// (bf16_dot_products()) on a head dim that is a multiple of 32.
inline bool bf16_amx_tiles() noexcept { return detail::bf16_amx_switch().load(std::memory_order_relaxed); }

// Enable or disable the AMX tiles; returns what is now in force (false where AMX is not available).
inline bool set_bf16_amx_tiles(bool on) noexcept {
    detail::bf16_amx_switch().store(on && detail::bf16_amx_available(), std::memory_order_relaxed);
    return bf16_amx_tiles();
}

}  // namespace longnet
