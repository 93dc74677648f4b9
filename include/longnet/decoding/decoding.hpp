// SPDX-License-Identifier: Apache-2.0
#pragma once
// longnet::decoding umbrella: generation with a LongNet decoder (needs Eigen 3.4 and nlohmann/json, as
// longnet/nn/ does).
//   state.hpp                the bounded cache of one sequence
//   incremental_decoder.hpp  prefill(tokens) and step(token) -> logits, one sequence or a batch
//   sampling.hpp             greedy, temperature, top-k, top-p, seeded

#include "longnet/decoding/incremental_decoder.hpp"
#include "longnet/decoding/sampling.hpp"
#include "longnet/decoding/state.hpp"
