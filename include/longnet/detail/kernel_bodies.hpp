// SPDX-License-Identifier: Apache-2.0
// No #pragma once and no include guard on purpose: included once per instruction-set path.
// The kernel bodies, in dependency order: included by detail/kernels.hpp once per instruction-set path
// (each body has its own toggle guard).
#include "longnet/detail/segment_kernel.hpp"
#include "longnet/detail/pack.hpp"
#include "longnet/detail/bf16_dot.hpp"
#include "longnet/detail/forward.hpp"
#include "longnet/detail/backward_kernel.hpp"
#include "longnet/detail/backward.hpp"
