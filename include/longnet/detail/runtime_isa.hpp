// SPDX-License-Identifier: Apache-2.0
#pragma once
// Process-wide choices of the kernels made at run time: which instruction set the dispatched kernels run
// (runtime ISA dispatch, detail/dispatch.hpp; LONGNET_DISPATCH in config.hpp), whether bfloat16 storage
// takes the bf16 dot-product path (bf16_dot.hpp) and whether that path uses AMX tiles. Public interface:
// longnet/isa.hpp.

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#endif

#include "longnet/config.hpp"
#if LONGNET_AMX_TILES
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include "longnet/detail/simd.hpp"

namespace longnet::detail {

// Does this CPU run the bf16 dot-product tiles (AVX512-BF16 with AVX512BW; the compiler's CPU detection
// also checks that the operating system saves the AVX-512 registers)?
inline bool bf16_dot_cpu() noexcept {
#if LONGNET_BF16_TILES && defined(__GNUC__) && defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
#else
    return false;
#endif
}

// Can the bf16 dot-product path run in this process (compiled in and supported by the CPU)?
inline bool bf16_dot_available() noexcept { return LONGNET_BF16_TILES && bf16_dot_cpu(); }

// Can the bf16 dot-product path use AMX tiles here (bf16_tiles.hpp)? Compiled in (LONGNET_AMX_TILES), the
// CPU has AMX-TILE, AMX-BF16 and AVX512-BF16, and Linux grants this process the tile state (the
// arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) request every AMX program makes once; refused, e.g.
// by a seccomp policy, the path is simply not used). Decided once per process.
inline bool bf16_amx_available() noexcept {
#if LONGNET_AMX_TILES
    static const bool available = [] {
        if (!bf16_dot_cpu()) return false;
        unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
        if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
        const bool amx_bf16 = (edx >> 22) & 1u, amx_tile = (edx >> 24) & 1u;
        if (!amx_bf16 || !amx_tile) return false;
        constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
        return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
    }();
    return available;
#else
    return false;
#endif
}

// 0 or 1 from the environment variable `name`, else `fallback`.
inline bool env_switch(const char* name, bool fallback) noexcept {
    if (const char* env = std::getenv(name)) {
        if (std::strcmp(env, "1") == 0) return true;
        if (std::strcmp(env, "0") == 0) return false;
    }
    return fallback;
}

// The process-wide switch behind longnet::bf16_amx_tiles() (isa.hpp): where AMX is available, on unless
// LONGNET_AMX=0.
inline std::atomic<bool>& bf16_amx_switch() noexcept {
    static std::atomic<bool> on{bf16_amx_available() && env_switch("LONGNET_AMX", true)};
    return on;
}

// The process-wide switch behind longnet::bf16_dot_products() (isa.hpp): initialised once, where the
// path is available, from LONGNET_BF16_DOT (0 or 1) if set, else on where it is faster than the float
// path: with AMX tiles (bf16_amx_available and not LONGNET_AMX=0), or on an AuthenticAMD CPU (vdpbf16ps at
// the FMA rate); off where it is not available.
inline bool bf16_dot_default() noexcept {
    if (!bf16_dot_available()) return false;
    if (const char* env = std::getenv("LONGNET_BF16_DOT")) {
        if (std::strcmp(env, "1") == 0) return true;
        if (std::strcmp(env, "0") == 0) return false;
    }
    if (bf16_amx_switch().load(std::memory_order_relaxed)) return true;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0) return false;
    char vendor[13];
    std::memcpy(vendor, &ebx, 4);
    std::memcpy(vendor + 4, &edx, 4);
    std::memcpy(vendor + 8, &ecx, 4);
    vendor[12] = '\0';
    return std::strcmp(vendor, "AuthenticAMD") == 0;
#else
    return false;
#endif
}

inline std::atomic<bool>& bf16_dot_switch() noexcept {
    static std::atomic<bool> on{bf16_dot_default()};
    return on;
}

// ---- runtime ISA dispatch -------------------------------------------------------------------------------
// The kernel paths of a translation unit: `native` is the code compiled for the build's own target
// (always there); avx2 and avx512 exist where LONGNET_DISPATCH_AVX2 / _AVX512 compiled them.
enum class isa_path : int { native = 0, avx2 = 1, avx512 = 2 };

constexpr bool isa_compiled(isa_path p) noexcept {
    return p == isa_path::native || (p == isa_path::avx2 && LONGNET_DISPATCH_AVX2) ||
           (p == isa_path::avx512 && LONGNET_DISPATCH_AVX512);
}

// Name of a path: the instruction set its kernels use (xsimd's names; "scalar" without SIMD).
inline const char* isa_name(isa_path p) noexcept {
    switch (p) {
        case isa_path::avx2: return "fma3+avx2";
        case isa_path::avx512: return "avx512bw";
        case isa_path::native: break;
    }
#if LONGNET_HAS_XSIMD
    return simd::native::name();
#else
    return "scalar";
#endif
}

// Does this CPU (and its operating system: the compiler's CPU detection checks the saved register state)
// run the path's code?
inline bool isa_cpu_supports(isa_path p) noexcept {
#if defined(__GNUC__) && defined(__x86_64__)
    switch (p) {
        case isa_path::native: return true;
        case isa_path::avx2:
            __builtin_cpu_init();
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case isa_path::avx512:
            __builtin_cpu_init();
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
                   __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                   __builtin_cpu_supports("avx512vl");
    }
    return false;
#else
    return p == isa_path::native;
#endif
}

// Can the path run here (compiled in and supported by the CPU)?
inline bool isa_available(isa_path p) noexcept { return isa_compiled(p) && isa_cpu_supports(p); }

// The accepted names of LONGNET_ISA and longnet::set_simd_isa().
inline bool isa_parse(const std::string& name, isa_path& out) noexcept {
    if (name == "native") out = isa_path::native;
    else if (name == "avx2") out = isa_path::avx2;
    else if (name == "avx512") out = isa_path::avx512;
    else return false;
    return true;
}

// Why a requested path cannot be used (empty when it can).
inline std::string isa_refusal(const std::string& what, const std::string& name) {
    isa_path p{};
    if (!isa_parse(name, p))
        return what + "=\"" + name + "\": unknown instruction-set path (expected native, avx2 or avx512)";
    if (!isa_compiled(p))
        return what + "=" + name + ": this build has no " + name + " kernels (" +
               (LONGNET_DISPATCH ? std::string("its own target already has them: use native")
                                 : std::string("runtime dispatch is off: LONGNET_DISPATCH=0 or a -march build "
                                               "whose kernels are ") +
                                       isa_name(isa_path::native)) +
               ")";
    if (!isa_cpu_supports(p)) return what + "=" + name + ": this CPU does not support " + isa_name(p);
    return {};
}

inline isa_path isa_best() noexcept {
    if (isa_available(isa_path::avx512)) return isa_path::avx512;
    if (isa_available(isa_path::avx2)) return isa_path::avx2;
    return isa_path::native;
}

// The selection: from LONGNET_ISA when set (an unusable value is kept as an error that every kernel call
// reports), else the best available path. Read once, at the first kernel call.
struct isa_selection {
    std::atomic<int> path{static_cast<int>(isa_path::native)};
    std::atomic<bool> invalid{false};
    std::string error;  // written once, before `invalid` is set; cleared only by set_simd_isa
    isa_selection() {
        const char* env = std::getenv("LONGNET_ISA");
        if (env != nullptr && *env != '\0') {
            error = isa_refusal("LONGNET_ISA", env);
            if (!error.empty()) {
                invalid.store(true);
                return;
            }
            isa_path p{};
            isa_parse(env, p);
            path.store(static_cast<int>(p));
            return;
        }
        path.store(static_cast<int>(isa_best()));
    }
};

inline isa_selection& isa_state() {
    static isa_selection s;
    return s;
}

// The path kernels run now; throws std::invalid_argument when LONGNET_ISA named an unusable path.
inline isa_path active_isa() {
    isa_selection& s = isa_state();
    if (s.invalid.load(std::memory_order_acquire)) throw std::invalid_argument("longnet: " + s.error);
    return static_cast<isa_path>(s.path.load(std::memory_order_relaxed));
}

// Does bfloat16 storage take the bf16 dot-product path on the active path when the switch is on? Always
// in a build whose target has AVX512-BF16; in a dispatched build, on the AVX-512 path only.
inline bool bf16_dot_on_active_path() noexcept {
#if LONGNET_HAS_BF16_DOT
    return true;
#elif LONGNET_DISPATCH_BF16
    isa_selection& s = isa_state();
    return !s.invalid.load(std::memory_order_acquire) &&
           static_cast<isa_path>(s.path.load(std::memory_order_relaxed)) == isa_path::avx512;
#else
    return false;
#endif
}

}  // namespace longnet::detail
