// SPDX-License-Identifier: Apache-2.0
// No #pragma once and no include guard on purpose: included before each dispatched pass.
// The toggle flip of foreach_isa.hpp (see there): flips LONGNET_DIST_ISA_TOGGLE if the includer defined
// LONGNET_ISA_DIST_TOGGLE_, else LONGNET_ISA_TOGGLE, so the bodies' toggle guards admit them once more;
// nothing if the includer defined LONGNET_ISA_NO_TOGGLE_ (bodies without guards, included only from there).
#if defined(LONGNET_ISA_NO_TOGGLE_)
#elif defined(LONGNET_ISA_DIST_TOGGLE_)
#ifdef LONGNET_DIST_ISA_TOGGLE
#undef LONGNET_DIST_ISA_TOGGLE
#else
#define LONGNET_DIST_ISA_TOGGLE
#endif
#else
#ifdef LONGNET_ISA_TOGGLE
#undef LONGNET_ISA_TOGGLE
#else
#define LONGNET_ISA_TOGGLE
#endif
#endif
