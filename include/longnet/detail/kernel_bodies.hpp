// SPDX-License-Identifier: Apache-2.0
// No #pragma once and no include guard on purpose: included once per instruction-set path.
// The kernel bodies, in dependency order: included by detail/dispatch.hpp once per instruction-set path
// (each body has its own toggle guard).
#include "longnet/detail/segment_forward.hpp"
#include "longnet/detail/pack.hpp"
#include "longnet/detail/bf16_dot.hpp"
#include "longnet/detail/forward_driver.hpp"
#include "longnet/detail/segment_backward.hpp"
#include "longnet/detail/backward_driver.hpp"
