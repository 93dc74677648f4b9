// SPDX-License-Identifier: Apache-2.0
#pragma once
// The distributed kernels (distributed_forward, distributed_backward), once per instruction-set path, as
// detail/kernels.hpp does for the single-process kernels (see there): each pass puts the bodies in
// longnet::detail::<path>::dist_kernels inside the path's target region, with their own toggle
// (LONGNET_DIST_ISA_TOGGLE), and run_dist_forward / run_dist_backward call the active path. Included
// only with <mpi.h> (longnet/distributed.hpp).

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "longnet/options.hpp"
#include "longnet/detail/distributed_common.hpp"
#include "longnet/detail/kernels.hpp"

#define LONGNET_DETAIL_DIST_BODIES_ "longnet/detail/distributed_bodies.hpp"

// ---- pass 1: the translation unit's own target --------------------------------------------------------
#define LONGNET_ISA_BEGIN inline namespace isa_native {
#define LONGNET_ISA_END }
#include LONGNET_DETAIL_DIST_BODIES_
#undef LONGNET_ISA_BEGIN
#undef LONGNET_ISA_END

// ---- pass 2: AVX2 + FMA --------------------------------------------------------------------------------
#if LONGNET_DISPATCH_AVX2
#ifdef LONGNET_DIST_ISA_TOGGLE
#undef LONGNET_DIST_ISA_TOGGLE
#else
#define LONGNET_DIST_ISA_TOGGLE
#endif
#define LONGNET_ISA_BEGIN namespace isa_avx2 {
#define LONGNET_ISA_END }
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt")
#endif
#include LONGNET_DETAIL_DIST_BODIES_
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#undef LONGNET_ISA_BEGIN
#undef LONGNET_ISA_END
#endif

// ---- pass 3: AVX-512 -----------------------------------------------------------------------------------
#if LONGNET_DISPATCH_AVX512
#ifdef LONGNET_DIST_ISA_TOGGLE
#undef LONGNET_DIST_ISA_TOGGLE
#else
#define LONGNET_DIST_ISA_TOGGLE
#endif
#define LONGNET_ISA_BEGIN namespace isa_avx512 {
#define LONGNET_ISA_END }
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt,avx512f,avx512cd,avx512bw,avx512dq,avx512vl"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt,avx512f,avx512cd,avx512bw,avx512dq,avx512vl")
#endif
#include LONGNET_DETAIL_DIST_BODIES_
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#undef LONGNET_ISA_BEGIN
#undef LONGNET_ISA_END
#endif

#undef LONGNET_DETAIL_DIST_BODIES_

namespace longnet::detail {

// The distributed forward (distributed_forward.hpp) on the active path.
template <class T>
void run_dist_forward(tensor_view<const T> q, tensor_view<const T> k, tensor_view<const T> v, tensor_view<T> out,
                      const dilated_options& opt, lse_view<accum_t<T>> lse, MPI_Comm comm,
                      const std::vector<dist::branch_plan>& plans, distributed::comm_stats& st) {
#define LONGNET_DETAIL_CALL_(ns) return ns::dist_kernels::forward<T, ns::isa_arch>(q, k, v, out, opt, lse, comm, plans, st);
    LONGNET_DETAIL_DISPATCH_(LONGNET_DETAIL_CALL_)
#undef LONGNET_DETAIL_CALL_
}

// The distributed backward (distributed_backward.hpp) on the active path.
template <class T>
void run_dist_backward(tensor_view<const T> q, tensor_view<const T> k, tensor_view<const T> v,
                       tensor_view<const T> out, lse_view<const accum_t<T>> lse, tensor_view<const T> dout,
                       tensor_view<T> dq, tensor_view<T> dk, tensor_view<T> dv, const dilated_options& opt,
                       grad_mode mode, MPI_Comm comm, const std::vector<dist::branch_plan>& plans,
                       distributed::comm_stats& st) {
#define LONGNET_DETAIL_CALL_(ns) \
    return ns::dist_kernels::backward<T, ns::isa_arch>(q, k, v, out, lse, dout, dq, dk, dv, opt, mode, comm, plans, st);
    LONGNET_DETAIL_DISPATCH_(LONGNET_DETAIL_CALL_)
#undef LONGNET_DETAIL_CALL_
}

}  // namespace longnet::detail
