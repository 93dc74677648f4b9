// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared by the fuzz targets (tests/fuzz/fuzz_*.cpp). FUZZ_CHECK(cond, message): when a reader accepted
// an input, everything it promised must hold; a broken promise prints the message and aborts, which
// libFuzzer reports as a crash (and the replay test as a failure).

#include <cstdio>
#include <cstdlib>
#include <string>

namespace fuzz {
[[noreturn]] inline void check_failed(const char* file, int line, const char* cond, const std::string& message) {
    std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: %s\n", file, line, cond, message.c_str());
    std::abort();
}
}  // namespace fuzz

#define FUZZ_CHECK(cond, message)                                                 \
    do {                                                                          \
        if (!(cond)) ::fuzz::check_failed(__FILE__, __LINE__, #cond, (message)); \
    } while (0)
