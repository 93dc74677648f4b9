// SPDX-License-Identifier: Apache-2.0
#pragma once
// keep_freed_memory(): make the C allocator keep large freed blocks for reuse instead of returning them to
// the kernel. A process-wide choice for applications (longnet's own tools and benchmarks make it at
// startup); the library never makes it by itself.
//
// Why: glibc's malloc serves every block over its mmap threshold (at most 32 MB) with a fresh mmap and
// unmaps it on free, so each new activation buffer of a training step or a long forward page-faults all
// its memory in again. On the 2-vCPU KVM guests longnet is measured on, a first touch costs ~2.6 ms per
// MB (100 MB: 0.26 s, more than a 77 GFLOP GEMM of the base model at 8K tokens), and it was a quarter of
// a training step (docs/benchmarks.md). With M_MMAP_MAX = 0 every block comes from the heap, and with a
// trim threshold that never triggers, freed memory is reused by the next allocation. The cost: the
// process keeps its high-water mark of heap memory (peak RSS is unchanged, RSS after the peak does not
// fall).
//
// Users of glibc can get the same without code: GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295.
// MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ in the environment (glibc's own switches) still decide
// when set: that setting is left alone. Elsewhere (another C library) keep_freed_memory() does nothing and
// returns false.

#include <cstdlib>  // defines __GLIBC__ under glibc
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace longnet {

// Returns true when the allocator was told (glibc), false where there is no such control.
inline bool keep_freed_memory() noexcept {
#if defined(__GLIBC__) && defined(M_MMAP_MAX) && defined(M_TRIM_THRESHOLD)
    const bool no_mmap = std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr || mallopt(M_MMAP_MAX, 0) == 1;
    // −1 disables trimming (mallopt(3)); the largest int (2 GiB) would still trim a freed top of the heap
    // above 2 GiB, which a long training step frees every layer (docs/training.md, 1M tokens)
    const bool no_trim = std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr || mallopt(M_TRIM_THRESHOLD, -1) == 1;
    return no_mmap && no_trim;
#else
    return false;
#endif
}

}  // namespace longnet
