// SPDX-License-Identifier: Apache-2.0
#pragma once
// longnet::training umbrella: AdamW, gradient clipping, learning-rate schedule, the training loop
// (trainer), run-folder checkpoints, data (text, token files, the recall and passkey tasks) and torchscale
// initialisation. The backward of every layer lives next to its forward in longnet/nn/ (needs Eigen 3.4
// and nlohmann/json).

#include "longnet/training/adamw.hpp"
#include "longnet/training/checkpoint.hpp"
#include "longnet/training/data.hpp"
#include "longnet/training/init.hpp"
#include "longnet/training/parameters.hpp"
#include "longnet/training/passkey.hpp"
#include "longnet/training/perplexity.hpp"
#include "longnet/training/schedule.hpp"
#include "longnet/training/trainer.hpp"
