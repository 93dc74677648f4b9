// SPDX-License-Identifier: Apache-2.0
#pragma once
// The attention kernels, once per instruction-set path, and the runtime dispatch between the paths.
//
// The kernel bodies (kernel_bodies.hpp: segment_forward, pack, bf16_dot, forward_driver, segment_backward, backward_driver: everything
// templated on the SIMD architecture) are included here once per path, each time in its own namespace:
//   isa_native   (inline) the code for the translation unit's own target flags, with xsimd's default
//                architecture: the only path of a -march=native build (no dispatch, no cost)
//   isa_avx2     AVX2 + FMA   (LONGNET_DISPATCH_AVX2, config.hpp), in a target region
//   isa_avx512   AVX-512      (LONGNET_DISPATCH_AVX512), in a target region
// A target region (#pragma GCC target / #pragma clang attribute) gives every function defined in it,
// templates included, that target, so a build without -march carries AVX2 and AVX-512 kernels and
// nothing else changes: the code around the kernels (std, Eigen, the user's) keeps the baseline. Every
// standard header the bodies use is included above the regions, so none of it is compiled for a
// region's target. The dispatched paths use the intrinsic ops of simd_x86.hpp (xsimd 8.1 only defines
// the architectures the translation unit targets). Headers of the bodies carry a toggle guard instead of
// #pragma once: LONGNET_ISA_TOGGLE flips before each pass, and a body is admitted once per pass
// (Highway's foreach_target technique).
//
// run_forward, run_backward and run_forward_branch call the path of active_isa() (runtime_isa.hpp):
// the best the CPU runs, chosen at the first call, or the one LONGNET_ISA / longnet::set_simd_isa names.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "longnet/config.hpp"
#include "longnet/detail/bf16_tiles.hpp"
#include "longnet/detail/runtime_isa.hpp"
#include "longnet/detail/simd.hpp"
#include "longnet/detail/simd_x86.hpp"
#include "longnet/detail/target_region.hpp"
#include "longnet/detail/threading.hpp"
#include "longnet/detail/workspace.hpp"
#include "longnet/numeric.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"

// ---- the passes (foreach_isa.hpp) ----------------------------------------------------------------------
// Each path's default architecture of the bodies in its namespace.
namespace longnet::detail {
inline namespace isa_native {
using isa_arch = simd::native;
}  // namespace isa_native
#if LONGNET_DISPATCH_AVX2
namespace isa_avx2 {
using isa_arch = simd::x86_avx2;
}  // namespace isa_avx2
#endif
#if LONGNET_DISPATCH_AVX512
namespace isa_avx512 {
using isa_arch = simd::x86_avx512;
}  // namespace isa_avx512
#endif
}  // namespace longnet::detail
#define LONGNET_ISA_BODIES "longnet/detail/kernel_bodies.hpp"
#include "longnet/detail/foreach_isa.hpp"

// ---- dispatch ------------------------------------------------------------------------------------------
// LONGNET_DETAIL_DISPATCH_(M): M(ns) for the namespace of the active path, e.g. M(isa_avx2).
#if LONGNET_DISPATCH_AVX512
#define LONGNET_DETAIL_CASE_AVX512_(M) \
    if (path == isa_path::avx512) {    \
        M(isa_avx512)                  \
    }
#else
#define LONGNET_DETAIL_CASE_AVX512_(M)
#endif
#if LONGNET_DISPATCH_AVX2
#define LONGNET_DETAIL_CASE_AVX2_(M) \
    if (path == isa_path::avx2) {    \
        M(isa_avx2)                  \
    }
#else
#define LONGNET_DETAIL_CASE_AVX2_(M)
#endif
#define LONGNET_DETAIL_DISPATCH_(M)     \
    const isa_path path = active_isa(); \
    (void)path;                         \
    LONGNET_DETAIL_CASE_AVX512_(M)      \
    LONGNET_DETAIL_CASE_AVX2_(M)        \
    M(isa_native)

namespace longnet::detail {

// The forward (forward_driver.hpp) on the active path.
template <class T>
void run_forward(tensor_view<const T> q, tensor_view<const T> k, tensor_view<const T> v, tensor_view<T> out,
                 const dilated_options& opt, lse_view<accum_t<T>> lse) {
#define LONGNET_DETAIL_CALL_(ns) return ns::forward<T, ns::isa_arch>(q, k, v, out, opt, lse);
    LONGNET_DETAIL_DISPATCH_(LONGNET_DETAIL_CALL_)
#undef LONGNET_DETAIL_CALL_
}

// One branch of the forward merged into out/lse (forward_driver.hpp: forward_branch) on the active path.
template <class T>
void run_forward_branch(const tensor_view<const T>& q, const tensor_view<const T>& k, const tensor_view<const T>& v,
                        const tensor_view<T>& out, const lse_view<accum_t<T>>& lse, const dilated_options& opt,
                        const branch& br, accum_t<T> scale) {
#define LONGNET_DETAIL_CALL_(ns) return ns::forward_branch<T, ns::isa_arch>(q, k, v, out, lse, opt, br, scale);
    LONGNET_DETAIL_DISPATCH_(LONGNET_DETAIL_CALL_)
#undef LONGNET_DETAIL_CALL_
}

// The backward (backward_driver.hpp) on the active path.
template <class T>
void run_backward(tensor_view<const T> q, tensor_view<const T> k, tensor_view<const T> v, tensor_view<const T> out,
                  lse_view<const accum_t<T>> lse, tensor_view<const T> dout, tensor_view<T> dq, tensor_view<T> dk,
                  tensor_view<T> dv, const dilated_options& opt, grad_mode mode) {
#define LONGNET_DETAIL_CALL_(ns) return ns::backward<T, ns::isa_arch>(q, k, v, out, lse, dout, dq, dk, dv, opt, mode);
    LONGNET_DETAIL_DISPATCH_(LONGNET_DETAIL_CALL_)
#undef LONGNET_DETAIL_CALL_
}

}  // namespace longnet::detail
