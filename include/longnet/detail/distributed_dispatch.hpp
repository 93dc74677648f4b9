// SPDX-License-Identifier: Apache-2.0
#pragma once
// The distributed kernels (distributed_forward, distributed_backward), once per instruction-set path, as
// detail/dispatch.hpp does for the single-process kernels (see there): each pass puts the bodies in
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
#include "longnet/detail/dispatch.hpp"

// ---- the passes (foreach_isa.hpp), with the distributed bodies' own toggle ----------------------------
#define LONGNET_ISA_DIST_TOGGLE_
#define LONGNET_ISA_BODIES "longnet/detail/distributed_bodies.hpp"
#include "longnet/detail/foreach_isa.hpp"

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
