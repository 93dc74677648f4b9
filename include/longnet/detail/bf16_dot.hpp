// SPDX-License-Identifier: Apache-2.0
// Kernel body: compiled once per instruction-set path (detail/dispatch.hpp includes it in each path's
// namespace and target region), so no #pragma once; the toggle guard below admits it once per path.
// bf16 dot products for bfloat16 storage (AVX512-BF16: vdpbf16ps; AMX: TDPBF16PS), the forward's QKᵀ and
// PV; the pair packers the backward uses too. The instructions themselves are in bf16_tiles.hpp.
//
// vdpbf16ps multiplies 32 pairs of bf16 and adds each pair's two products into one of 16 float lanes:
// acc[l] += a[2l]·b[2l] + a[2l+1]·b[2l+1], float accumulation. Per instruction that is twice the
// multiply-adds of a float FMA. The operands are packed as pairs (one 32-bit word holds two bf16):
//   Q   [nq_pad][D2]            q[i][2m] | q[i][2m+1] << 16, D2 = ceil(D/2), unscaled (exact bf16 inputs)
//   Kt  [nk_blocks][D2][KB]     the same pairs over d, one word per key: 16 keys per register
//   V   [nk_blocks·KB/2][Dv]    v[2p][c] | v[2p+1][c] << 16: 16 columns × a pair of keys per register
// S = τ·(Q·Kᵀ) in float (τ applied to the float dot, so Q and K enter unrounded); the online softmax
// runs in float as in the fma path; P is then rounded to bf16 (round to nearest even) for PV, as
// flash-attention does in half precision, while the row sum l uses the unrounded float P. So the
// result differs from the float path by the P rounding only: a relative error of at most 2⁻⁹ per weight.
// Zero padding: an odd D pairs its last element with 0 in both Q and K; an odd key count pairs the last
// key with one the row does not see, whose value lanes are masked to 0 (so a NaN or inf there cannot
// reach rows it must not reach: 0·NaN would be NaN).
//
// Used by the forward (forward_branch, the distributed forward) and, through the same packers, by the
// backward (segment_backward.hpp: backward_bf16, backward_amx) when bf16_dot_active<T, Arch>() holds: T is
// bfloat16, the tiles are compiled in (the translation unit targets AVX512-BF16, LONGNET_HAS_BF16_DOT, or
// Arch is the dispatched AVX-512 path, LONGNET_DISPATCH_BF16; config.hpp), and the process-wide switch
// is on (longnet::bf16_dot_products(), isa.hpp: on by default where the products beat the float FMAs;
// it is only ever on where the CPU has AVX512-BF16). amx_dot (below) runs the same layouts on AMX tiles
// where bf16_amx_switch() is on. Everything else keeps the fma path.

#include "longnet/detail/dispatch.hpp"  // first: the per-path passes (includes this file)

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#endif

#include "longnet/config.hpp"
#include "longnet/detail/bf16_tiles.hpp"
#include "longnet/detail/pack.hpp"
#include "longnet/detail/segment_forward.hpp"
#include "longnet/numeric.hpp"
#include "longnet/tensor.hpp"

#if defined(LONGNET_DETAIL_BF16_DOT_BODY) == defined(LONGNET_ISA_TOGGLE)
#ifdef LONGNET_DETAIL_BF16_DOT_BODY
#undef LONGNET_DETAIL_BF16_DOT_BODY
#else
#define LONGNET_DETAIL_BF16_DOT_BODY
#endif

namespace longnet::detail {
LONGNET_ISA_BEGIN

// Compile time: can T on Arch take the bf16 dot path at all (bfloat16 storage, AVX512-BF16 target,
// AVX-512 arch)? Whether it does is bf16_dot_switch() at run time.
template <class T, class Arch>
constexpr bool use_bf16_dot() noexcept {
#if LONGNET_HAS_BF16_DOT
    return std::is_same<T, bfloat16>::value && simd::prim::is_avx512<Arch>();
#elif LONGNET_DISPATCH_BF16
    return std::is_same<T, bfloat16>::value && std::is_same<Arch, simd::x86_avx512>::value;
#else
    return false;
#endif
}

// Does this forward take the bf16 dot path (read once per forward, so one call never mixes paths)?
template <class T, class Arch>
bool bf16_dot_active() noexcept {
    return use_bf16_dot<T, Arch>() && bf16_dot_switch().load(std::memory_order_relaxed);
}

// Packed sizes (in 32-bit words) of the bf16 layouts above, for kernel_shape<float, Arch>.
template <class Arch>
struct bf16_shape {
    using K = kernel_shape<float, Arch>;
    static index_t pairs(index_t dim) noexcept { return (dim + 1) / 2; }
    // query rows: whole register tiles and whole 16-row AMX groups
    static index_t query_rows(index_t nq) noexcept { return (K::padded_queries(nq) + 15) / 16 * 16; }
    static index_t query_words(index_t nq, index_t dim) noexcept { return query_rows(nq) * pairs(dim); }
    static index_t key_words(index_t nk, index_t dim) noexcept { return K::key_blocks(nk) * pairs(dim) * K::key_block; }
    static index_t value_words(index_t nk, index_t dim) noexcept {
        return K::key_blocks(nk) * K::key_block / 2 * K::padded_dim(dim);
    }
};

inline std::uint32_t bf16_pair(const bfloat16* row, index_t d, index_t dim) noexcept {
    const std::uint32_t lo = row[d].bits;
    const std::uint32_t hi = d + 1 < dim ? row[d + 1].bits : 0u;
    return lo | (hi << 16);
}

// Q[i][m] = pair m of q[b, sel(begin + i), h] for i < n; zero rows up to bf16_shape::query_rows(n). Unscaled.
template <class Arch>
void pack_queries_bf16(const tensor_view<const bfloat16>& q, index_t b, index_t h, const row_selection& sel,
                       index_t begin, index_t n, std::uint32_t* dst) {
    const index_t dim = q.head_dim(), d2 = bf16_shape<Arch>::pairs(dim);
    for (index_t i = 0; i < n; ++i) {
        const bfloat16* src = q.row(b, sel.position(begin + i), h);
        for (index_t m = 0; m < d2; ++m) dst[i * d2 + m] = bf16_pair(src, 2 * m, dim);
    }
    std::fill(dst + n * d2, dst + bf16_shape<Arch>::query_rows(n) * d2, 0u);
}

// Kt[blk][m][j] = pair m of k[b, sel(blk·KB + j), h] for keys < n; zero beyond.
template <class Arch>
void pack_keys_bf16(const tensor_view<const bfloat16>& k, index_t b, index_t h, const row_selection& sel, index_t n,
                    std::uint32_t* dst) {
    using K = kernel_shape<float, Arch>;
    constexpr index_t KB = K::key_block;
    const index_t dim = k.head_dim(), d2 = bf16_shape<Arch>::pairs(dim);
    for (index_t blk = 0; blk < K::key_blocks(n); ++blk) {
        std::uint32_t* out = dst + blk * d2 * KB;
        const index_t j0 = blk * KB, jn = std::min(KB, n - j0);
        for (index_t j = 0; j < jn; ++j) {
            const bfloat16* src = k.row(b, sel.position(j0 + j), h);
            for (index_t m = 0; m < d2; ++m) out[m * KB + j] = bf16_pair(src, 2 * m, dim);
        }
        if (jn < KB)
            for (index_t m = 0; m < d2; ++m) std::fill(out + m * KB + jn, out + m * KB + KB, 0u);
    }
}

// V[p][c] = v[2p][c] | v[2p+1][c] << 16 for keys < n, rows Dv wide; zero up to key_blocks(n)·KB keys.
template <class Arch>
void pack_values_bf16(const tensor_view<const bfloat16>& v, index_t b, index_t h, const row_selection& sel, index_t n,
                      std::uint32_t* dst) {
    using K = kernel_shape<float, Arch>;
    const index_t dim = v.head_dim(), dv = K::padded_dim(dim);
    const index_t pairs_total = K::key_blocks(n) * K::key_block / 2;
    for (index_t p = 0; p < pairs_total; ++p) {
        std::uint32_t* out = dst + p * dv;
        const bfloat16* lo = 2 * p < n ? v.row(b, sel.position(2 * p), h) : nullptr;
        const bfloat16* hi = 2 * p + 1 < n ? v.row(b, sel.position(2 * p + 1), h) : nullptr;
        for (index_t c = 0; c < dim; ++c)
            out[c] = (lo ? std::uint32_t(lo[c].bits) : 0u) | ((hi ? std::uint32_t(hi[c].bits) : 0u) << 16);
        std::fill(out + dim, out + dv, 0u);
    }
}

#if LONGNET_BF16_TILES
// The attend_packed policy (segment_forward.hpp) for the bf16 layouts; needs scratch.p16.
template <class Arch>
struct bf16_dot {
    using K = kernel_shape<float, Arch>;
    using packed = std::uint32_t;
    static_assert(K::width == 16 && K::qk_cols == 32, "bf16_dot: AVX-512 float tiles expected");
    float scale = 1.0f;  // τ, applied to the float dot products
    static const std::uint32_t* query_row(const std::uint32_t* q, index_t i, index_t dim) noexcept {
        return q + i * bf16_shape<Arch>::pairs(dim);
    }
    static const std::uint32_t* key_block(const std::uint32_t* kt, index_t blk, index_t dim) noexcept {
        return kt + blk * bf16_shape<Arch>::pairs(dim) * K::key_block;
    }
    static const std::uint32_t* value_rows(const std::uint32_t* v, index_t j0, index_t dim) noexcept {
        return v + j0 / 2 * K::padded_dim(dim);
    }
    void qk(const std::uint32_t* q, const std::uint32_t* ktb, index_t dim, float* s) const noexcept {
        bf16_tiles::dot_tile<K::qk_rows>(q, bf16_shape<Arch>::pairs(dim), ktb, K::key_block, scale, s, K::key_block);
    }
    // P row i (cols a multiple of 32, zero past the visible keys) rounded to bf16 into scratch.p16
    static void round_p(const float* srow, index_t cols, index_t i, const attend_scratch<float>& scr) noexcept {
        bf16_tiles::round_rows(srow, cols, scr.p16 + i * K::key_block);
    }
    static constexpr index_t key_granule = 2;
    static constexpr index_t group_rows = 0;
    // k0 even (key_granule): P[.][k0] and V pair k0/2 start together
    template <int R>
    static void pv(const attend_scratch<float>& scr, index_t i, const std::uint32_t* vb, index_t dim, index_t k0,
                   index_t k1, float* o) noexcept {
        const index_t dv = K::padded_dim(dim);
        bf16_tiles::pair_rows<R>(scr.p16 + i * K::key_block + k0, K::key_block, vb + k0 / 2 * dv, dv, k1 - k0, o, dv,
                                 dv / 16);
    }
};
#endif

#if LONGNET_AMX_TILES
// The attend_packed policy on Intel's tile unit (bf16_tiles.hpp, AMX): the layouts and the P rounding of
// bf16_dot; S for the whole query block and PV for groups of 16 rows with TDPBF16PS; the causal diagonal's
// last keys of each row with bf16_dot's vdpbf16ps tiles. Head dims a multiple of 32 (whole 64-byte tile
// rows); the caller brackets the call with bf16_tiles::amx_begin() / amx_end().
template <class Arch>
struct amx_dot : bf16_dot<Arch> {
    using K = kernel_shape<float, Arch>;
    static constexpr index_t group_rows = 16, group_key_granule = 32;
    static bool fits(index_t dim) noexcept { return dim % 32 == 0; }
    void scores(const std::uint32_t* q, index_t rows, const std::uint32_t* ktb, index_t cols, index_t dim,
                float* s) const noexcept {
        bf16_tiles::amx_scores(q, bf16_shape<Arch>::pairs(dim), rows, ktb, K::key_block, cols, this->scale, s,
                               K::key_block);
    }
    static void pv_group(const attend_scratch<float>& scr, index_t i, const std::uint32_t* vb, index_t dim, index_t n,
                         float* o) noexcept {
        const index_t dv = K::padded_dim(dim);
        bf16_tiles::amx_pv(scr.p16 + i * K::key_block, K::key_block, vb, dv, n, o, dv, dv);
    }
};
#endif

LONGNET_ISA_END
}  // namespace longnet::detail
#endif  // LONGNET_DETAIL_BF16_DOT_BODY
