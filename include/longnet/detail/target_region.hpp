// SPDX-License-Identifier: Apache-2.0
#pragma once
// Target regions: the feature string of each instruction-set target, once, and LONGNET_PUSH_TARGET /
// LONGNET_POP_TARGET, which open and close a region in which every function defined (templates
// included) gets that target: #pragma clang attribute push(...target(...)...) for clang,
// #pragma GCC push_options / target(...) for GCC (Highway's HWY_PUSH_ATTRIBUTES is the model).

// Feature lists of the dispatch targets (x86-64-v3 and x86-64-v4 without the arch= part: an arch
// change would stop the compiler from inlining ordinary functions into the kernels).
#define LONGNET_TARGET_AVX2_FEATURES "avx,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt"
#define LONGNET_TARGET_AVX512_FEATURES \
    "avx,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt,avx512f,avx512cd,avx512bw,avx512dq,avx512vl"
// The bf16 tiles (bf16_tiles.hpp): AVX512-BF16 register tiles, and AMX-BF16.
#define LONGNET_TARGET_BF16_FEATURES "avx,avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16"
#define LONGNET_TARGET_AMX_FEATURES "avx,avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16"

#define LONGNET_DETAIL_PRAGMA_(tokens) _Pragma(#tokens)
#if defined(__clang__)
#define LONGNET_PUSH_TARGET(features) \
    LONGNET_DETAIL_PRAGMA_(clang attribute push(__attribute__((target(features))), apply_to = function))
#define LONGNET_POP_TARGET LONGNET_DETAIL_PRAGMA_(clang attribute pop)
#else
#define LONGNET_PUSH_TARGET(features) \
    LONGNET_DETAIL_PRAGMA_(GCC push_options) LONGNET_DETAIL_PRAGMA_(GCC target(features))
#define LONGNET_POP_TARGET LONGNET_DETAIL_PRAGMA_(GCC pop_options)
#endif
