// SPDX-License-Identifier: Apache-2.0
// Kernel body: compiled once per instruction-set path (detail/dispatch.hpp includes it in each path's
// namespace and target region), so no #pragma once; the toggle guard below admits it once per path.
// The dilation gather: copy the selected rows of one (b, h) slice into the packed formats of
// segment_forward.hpp, converting storage (float, double, bfloat16, half) to the accumulator type.
// A selection is a CuTe-style layout: rows first, first + stride, ..., first + (count − 1)·stride.

#include "longnet/detail/dispatch.hpp"  // first: the per-path passes (includes this file)

#include <algorithm>

#include "longnet/detail/segment_forward.hpp"
#include "longnet/numeric.hpp"
#include "longnet/tensor.hpp"

#if defined(LONGNET_DETAIL_PACK_BODY) == defined(LONGNET_ISA_TOGGLE)
#ifdef LONGNET_DETAIL_PACK_BODY
#undef LONGNET_DETAIL_PACK_BODY
#else
#define LONGNET_DETAIL_PACK_BODY
#endif

namespace longnet::detail {
LONGNET_ISA_BEGIN

struct row_selection {
    index_t first = 0;   // sequence position of selected row 0
    index_t stride = 1;  // distance between selected rows (the dilation)
    index_t count = 0;   // number of selected rows
    index_t position(index_t i) const noexcept { return first + i * stride; }
};

// Q[i][d] = scale · q[b, sel(begin + i), h, d] for i < n; zero rows up to padded_queries(n).
template <class A, class Arch, class T>
void pack_queries(const tensor_view<const T>& q, index_t b, index_t h, const row_selection& sel, index_t begin,
                  index_t n, A scale, A* dst) {
    using K = kernel_shape<A, Arch>;
    const index_t dim = q.head_dim();
    for (index_t i = 0; i < n; ++i) {
        const T* src = q.row(b, sel.position(begin + i), h);
        A* out = dst + i * dim;
        for (index_t d = 0; d < dim; ++d) out[d] = scale * to_accum<A>(src[d]);
    }
    std::fill(dst + n * dim, dst + K::padded_queries(n) * dim, A(0));
}

// Kt[blk][d][j] = k[b, sel(blk·KB + j), h, d] for keys < n; zero beyond.
template <class A, class Arch, class T>
void pack_keys(const tensor_view<const T>& k, index_t b, index_t h, const row_selection& sel, index_t n, A* dst) {
    using K = kernel_shape<A, Arch>;
    constexpr index_t KB = K::key_block;
    const index_t dim = k.head_dim();
    const index_t blocks = K::key_blocks(n);
    for (index_t blk = 0; blk < blocks; ++blk) {
        A* out = dst + blk * dim * KB;
        const index_t j0 = blk * KB, jn = std::min(KB, n - j0);
        for (index_t j = 0; j < jn; ++j) {
            const T* src = k.row(b, sel.position(j0 + j), h);
            for (index_t d = 0; d < dim; ++d) out[d * KB + j] = to_accum<A>(src[d]);
        }
        if (jn < KB)
            for (index_t d = 0; d < dim; ++d) std::fill(out + d * KB + jn, out + d * KB + KB, A(0));
    }
}

// V[j][d] = v[b, sel(j), h, d] for keys < n, rows Dv = padded_dim(D) wide; zero up to key_blocks(n)·KB.
template <class A, class Arch, class T>
void pack_values(const tensor_view<const T>& v, index_t b, index_t h, const row_selection& sel, index_t n, A* dst) {
    using K = kernel_shape<A, Arch>;
    const index_t dim = v.head_dim(), dv = K::padded_dim(dim);
    for (index_t j = 0; j < n; ++j) {
        const T* src = v.row(b, sel.position(j), h);
        A* out = dst + j * dv;
        for (index_t d = 0; d < dim; ++d) out[d] = to_accum<A>(src[d]);
        std::fill(out + dim, out + dv, A(0));
    }
    std::fill(dst + n * dv, dst + K::key_blocks(n) * K::key_block * dv, A(0));
}

LONGNET_ISA_END
}  // namespace longnet::detail
#endif  // LONGNET_DETAIL_PACK_BODY
