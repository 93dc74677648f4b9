// SPDX-License-Identifier: Apache-2.0
// No #pragma once and no include guard on purpose: included once per bodies file.
// The per-ISA passes: includes the bodies file LONGNET_ISA_BODIES once per instruction-set path, each
// time in its own namespace (LONGNET_ISA_BEGIN / LONGNET_ISA_END) and, for the dispatched paths, in its
// target region (target_region.hpp); see dispatch.hpp for the paths. Before each dispatched pass it flips
// the toggle the bodies' guards test: LONGNET_ISA_TOGGLE, or LONGNET_DIST_ISA_TOGGLE where the includer
// defines LONGNET_ISA_DIST_TOGGLE_ (the distributed bodies include the kernel bodies, which must not be
// admitted again), none where it defines LONGNET_ISA_NO_TOGGLE_ (bodies without toggle guards, included
// from one #pragma once header: nn_loops.hpp). Usage (Highway's foreach_target.h is the model):
//   #define LONGNET_ISA_BODIES "longnet/detail/kernel_bodies.hpp"
//   #include "longnet/detail/foreach_isa.hpp"
// The includer has declared each path's isa_arch; LONGNET_ISA_BODIES and LONGNET_ISA_DIST_TOGGLE_ are
// undefined at the end (and LONGNET_ISA_NO_TOGGLE_).

#include "longnet/config.hpp"
#include "longnet/detail/target_region.hpp"

#ifndef LONGNET_ISA_BODIES
#error "define LONGNET_ISA_BODIES (the bodies file) before including foreach_isa.hpp"
#endif

// ---- pass 1: the translation unit's own target --------------------------------------------------------
#define LONGNET_ISA_BEGIN inline namespace isa_native {
#define LONGNET_ISA_END }
#include LONGNET_ISA_BODIES
#undef LONGNET_ISA_BEGIN
#undef LONGNET_ISA_END

// ---- pass 2: AVX2 + FMA --------------------------------------------------------------------------------
#if LONGNET_DISPATCH_AVX2
#include "longnet/detail/foreach_isa_toggle.hpp"
#define LONGNET_ISA_BEGIN namespace isa_avx2 {
#define LONGNET_ISA_END }
LONGNET_PUSH_TARGET(LONGNET_TARGET_AVX2_FEATURES)
#include LONGNET_ISA_BODIES
LONGNET_POP_TARGET
#undef LONGNET_ISA_BEGIN
#undef LONGNET_ISA_END
#endif

// ---- pass 3: AVX-512 -----------------------------------------------------------------------------------
#if LONGNET_DISPATCH_AVX512
#include "longnet/detail/foreach_isa_toggle.hpp"
#define LONGNET_ISA_BEGIN namespace isa_avx512 {
#define LONGNET_ISA_END }
LONGNET_PUSH_TARGET(LONGNET_TARGET_AVX512_FEATURES)
#include LONGNET_ISA_BODIES
LONGNET_POP_TARGET
#undef LONGNET_ISA_BEGIN
#undef LONGNET_ISA_END
#endif

#undef LONGNET_ISA_BODIES
#undef LONGNET_ISA_DIST_TOGGLE_
#undef LONGNET_ISA_NO_TOGGLE_
