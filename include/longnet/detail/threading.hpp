// SPDX-License-Identifier: Apache-2.0
#pragma once
// The only place that knows about OpenMP. Serial when compiled without it.

#include <algorithm>
#include <exception>
#include <memory>

#include "longnet/config.hpp"
#include "longnet/tensor.hpp"

#if LONGNET_HAS_OPENMP
#include <omp.h>
#endif

namespace longnet::detail {

inline int max_threads() noexcept {
#if LONGNET_HAS_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// Run body(state, t) for t in [0, n), dynamically scheduled; each thread builds its own state once
// with make_state(). The first exception thrown by any task is rethrown on the caller's thread.
// Results must not depend on which thread ran a task (the kernels guarantee that).
template <class MakeState, class Body>
void parallel_tasks(index_t n, MakeState&& make_state, Body&& body) {
    if (n <= 0) return;
    using State = decltype(make_state());
#if LONGNET_HAS_OPENMP
    std::exception_ptr error;
    int failed_flag = 0;
    const int threads = static_cast<int>(std::min<index_t>(n, omp_get_max_threads()));
#pragma omp parallel num_threads(threads)
    {
        // every thread must reach the worksharing loop, even if its state could not be built
        std::unique_ptr<State> state;
        try {
            state.reset(new State(make_state()));
        } catch (...) {
#pragma omp critical(longnet_error)
            if (!error) error = std::current_exception();
#pragma omp atomic write
            failed_flag = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (index_t t = 0; t < n; ++t) {
            int failed;
#pragma omp atomic read
            failed = failed_flag;
            if (failed || !state) continue;  // an earlier task threw: skip the rest
            try {
                body(*state, t);
            } catch (...) {
#pragma omp critical(longnet_error)
                if (!error) error = std::current_exception();
#pragma omp atomic write
                failed_flag = 1;
            }
        }
    }
    if (error) std::rethrow_exception(error);
#else
    State state = make_state();
    for (index_t t = 0; t < n; ++t) body(state, t);
#endif
}

}  // namespace longnet::detail
