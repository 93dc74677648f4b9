// SPDX-License-Identifier: Apache-2.0
#pragma once
// The command-line parsers of the tools, one entry per tool (tests/fuzz/cli_<tool>.cpp includes the
// tool's command line, examples/longnet_<tool>_args.hpp, and calls its parse function). Each returns 0 when the arguments
// were accepted (after checking what was accepted: FUZZ_CHECK) and 2 when they were refused with the
// tool's usage error (or std::invalid_argument, which the tools report as a usage error too); any
// other exception escapes and is a defect.

namespace fuzz_cli {
int attend(int argc, char** argv);
int demo(int argc, char** argv);
int lm(int argc, char** argv);
int train(int argc, char** argv);        // cli_train.cpp
int distributed(int argc, char** argv);  // cli_distributed.cpp (the parser of longnet_distributed_args.hpp, no MPI)
int encode(int argc, char** argv);       // cli_encode.cpp
}  // namespace fuzz_cli
