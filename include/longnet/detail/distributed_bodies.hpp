// SPDX-License-Identifier: Apache-2.0
// No #pragma once and no include guard on purpose: included once per instruction-set path.
// The distributed kernel bodies, in dependency order: included by detail/distributed_dispatch.hpp once per
// instruction-set path (each body has its own toggle guard).
#include "longnet/detail/distributed_forward.hpp"
#include "longnet/detail/distributed_backward.hpp"
