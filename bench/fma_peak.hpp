// SPDX-License-Identifier: Apache-2.0
#pragma once
// Measured single-precision FMA peak of this machine: the denominator of every `efficiency` counter.
//
// Each OpenMP thread runs `chains` independent vector FMA chains acc_i = acc_i·a + b. A chain's next
// FMA waits for its previous one (latency ~4-5 cycles) and a core issues up to 2 FMAs per cycle, so
// latency × throughput ≈ 10 chains keep both FMA pipes full; we use 12 (AVX2: 12 + 2 constants fit the
// 16 ymm registers) or 16 (AVX-512: 32 zmm registers). Flops = 2 per lane per FMA.

#include <chrono>
#include <cstdint>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#include <cstring>
#endif

namespace longnet_bench {

#if defined(__AVX512F__)
inline constexpr const char* fma_isa = "avx512f";
inline constexpr int fma_lanes = 16;
inline constexpr int fma_chains = 16;
#elif defined(__AVX2__) && defined(__FMA__)
inline constexpr const char* fma_isa = "avx2+fma";
inline constexpr int fma_lanes = 8;
inline constexpr int fma_chains = 12;
#else
inline constexpr const char* fma_isa = "scalar";
inline constexpr int fma_lanes = 1;
inline constexpr int fma_chains = 12;
#endif

#if defined(__AVX512F__)
// Sum of all lanes of all chains. Not _mm512_reduce_add_ps: GCC 12 implements it with an extract from
// an undefined register and then warns about it (-Wuninitialized, GCC PR 105593).
inline float sum_chains(const __m512* acc) noexcept {
    __m512 sum = acc[0];
    for (int i = 1; i < fma_chains; ++i) sum = _mm512_add_ps(sum, acc[i]);
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, sum);
    float total = 0;
    for (float x : lanes) total += x;
    return total;
}
#endif

// Run `steps` rounds of fma_chains independent FMAs on the calling thread; returns a value that
// depends on every chain so the compiler cannot drop the work.
inline float fma_chains_run(std::int64_t steps) noexcept {
    // acc·a + b with |a| < 1 converges (to b / (1 − a)): no overflow, no denormals.
#if defined(__AVX512F__)
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-3f);
    __m512 acc[fma_chains];
    for (int i = 0; i < fma_chains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
    for (std::int64_t s = 0; s < steps; ++s)
        for (int i = 0; i < fma_chains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    return sum_chains(acc);
#elif defined(__AVX2__) && defined(__FMA__)
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-3f);
    __m256 acc[fma_chains];
    for (int i = 0; i < fma_chains; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
    for (std::int64_t s = 0; s < steps; ++s)
        for (int i = 0; i < fma_chains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    __m256 sum = acc[0];
    for (int i = 1; i < fma_chains; ++i) sum = _mm256_add_ps(sum, acc[i]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, sum);
    float total = 0;
    for (float x : lanes) total += x;
    return total;
#else
    float acc[fma_chains];
    for (int i = 0; i < fma_chains; ++i) acc[i] = static_cast<float>(i);
    for (std::int64_t s = 0; s < steps; ++s)
        for (int i = 0; i < fma_chains; ++i) acc[i] = acc[i] * 0.999999f + 1e-3f;
    float total = 0;
    for (float x : acc) total += x;
    return total;
#endif
}

// Flops one call of fma_chains_run(steps) performs.
inline double fma_chains_flops(std::int64_t steps) noexcept {
    return 2.0 * fma_lanes * fma_chains * static_cast<double>(steps);
}

inline int bench_threads() noexcept {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// Runs run(steps) once on every thread; returns the number of threads. `sink` receives a value
// depending on all results (keep it observable).
inline int on_every_thread(float (*run)(std::int64_t), std::int64_t steps, volatile float* sink) noexcept {
    int threads = 1;
    float total = 0;
#if defined(_OPENMP)
#pragma omp parallel reduction(+ : total)
    {
#pragma omp single
        threads = omp_get_num_threads();
        total += run(steps);
    }
#else
    total = run(steps);
#endif
    *sink = total;
    return threads;
}

// Every thread runs fma_chains_run(steps) once; returns the flops done by all threads together.
inline double fma_peak_round(std::int64_t steps, volatile float* sink) noexcept {
    return fma_chains_flops(steps) * on_every_thread(fma_chains_run, steps, sink);
}

// bf16 dot-product peak (AVX512-BF16): the same chains with vdpbf16ps, acc = acc + a·b over pairs, 4 flops
// per lane per instruction (two multiply-adds). The denominator for bf16 storage on the bf16 dot path.
#if defined(__AVX512BF16__) && defined(__AVX512F__)
inline constexpr bool has_bf16_dot_peak = true;
inline float bf16_dot_chains_run(std::int64_t steps) noexcept {
    // a·b per pair = 2·(1·2^-20): the chains grow by 2^-19 per step, far from overflow
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3580);
    __m512 acc[fma_chains];
    for (int i = 0; i < fma_chains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
    for (std::int64_t s = 0; s < steps; ++s)
        for (int i = 0; i < fma_chains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    return sum_chains(acc);
}
#else
inline constexpr bool has_bf16_dot_peak = false;
inline float bf16_dot_chains_run(std::int64_t) noexcept { return 0; }
#endif

// Every thread runs bf16_dot_chains_run(steps) once; returns the flops done by all threads together
// (0 without AVX512-BF16).
inline double bf16_dot_peak_round(std::int64_t steps, volatile float* sink) noexcept {
    if (!has_bf16_dot_peak) return 0;
    return 2.0 * fma_chains_flops(steps) * on_every_thread(bf16_dot_chains_run, steps, sink);
}

// AMX bf16 peak (Intel's tile unit, TDPBF16PS): four independent 16×16 float accumulator tiles, each
// instruction 16·16·32 multiply-adds = 16384 flops. The denominator of the bf16 path where it runs on AMX
// (longnet::bf16_amx_tiles()). Needs an AMX target and Linux's permission for the tile state (asked here
// as the library asks it); 0 otherwise.
#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__linux__)
inline bool amx_permitted() noexcept {
    static const bool ok = syscall(SYS_arch_prctl, 0x1023L, 18L) == 0;  // ARCH_REQ_XCOMP_PERM, XTILEDATA
    return ok;
}
inline float amx_chains_run(std::int64_t steps) noexcept {
    struct {
        std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
        std::uint16_t colsb[16] = {};
        std::uint8_t rows[16] = {};
    } cfg;
    for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    __asm__ __volatile__("ldtilecfg %0" ::"m"(cfg));
    alignas(64) static const std::uint16_t zeros[16 * 32] = {};  // bf16 zero operands: the sums stay 0
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, zeros, 64);
    _tile_loadd(5, zeros, 64);
    _tile_loadd(6, zeros, 64);
    _tile_loadd(7, zeros, 64);
    for (std::int64_t s = 0; s < steps; ++s) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    alignas(64) float out[16 * 16];
    _tile_stored(0, out, 64);
    _tile_release();
    return out[0];
}
inline bool has_amx_peak() noexcept { return amx_permitted(); }
#else
inline bool has_amx_peak() noexcept { return false; }
inline float amx_chains_run(std::int64_t) noexcept { return 0; }
#endif

// Every thread runs amx_chains_run(steps / 16) once (a tile instruction does 16× a vector's work); returns
// the flops of all threads together (0 without AMX).
inline double amx_peak_round(std::int64_t steps, volatile float* sink) noexcept {
    if (!has_amx_peak()) return 0;
    const std::int64_t tile_steps = steps / 16;
    return 4.0 * 16384.0 * static_cast<double>(tile_steps) * on_every_thread(amx_chains_run, tile_steps, sink);
}

// Best GFLOP/s of `rounds` timed rounds of `round` (after one warm-up round that also wakes the thread
// pool and lets the clock ramp up).
template <class Round>
double measure_peak_gflops(Round round, int rounds, std::int64_t steps) {
    volatile float sink = 0;
    round(steps, &sink);
    double best = 0;
    for (int r = 0; r < rounds; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const double flops = round(steps, &sink);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (flops / seconds > best) best = flops / seconds;
    }
    return best * 1e-9;
}

inline double measure_fma_peak_gflops(int rounds = 5, std::int64_t steps = std::int64_t(1) << 23) {
    return measure_peak_gflops(fma_peak_round, rounds, steps);
}

// 0 where the CPU target has no AVX512-BF16.
inline double measure_bf16_dot_peak_gflops(int rounds = 5, std::int64_t steps = std::int64_t(1) << 23) {
    return has_bf16_dot_peak ? measure_peak_gflops(bf16_dot_peak_round, rounds, steps) : 0.0;
}

// 0 where the target has no AMX or the tile state is not granted.
inline double measure_amx_peak_gflops(int rounds = 5, std::int64_t steps = std::int64_t(1) << 23) {
    return has_amx_peak() ? measure_peak_gflops(amx_peak_round, rounds, steps) : 0.0;
}

}  // namespace longnet_bench
