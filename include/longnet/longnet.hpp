// SPDX-License-Identifier: Apache-2.0
#pragma once
// Umbrella header: the only include a user needs.

#include "longnet/attention.hpp"
#include "longnet/config.hpp"
#include "longnet/dilated_attention.hpp"
#include "longnet/isa.hpp"
#include "longnet/numeric.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"
#include "longnet/version.hpp"
#include "longnet/backward.hpp"
#include "longnet/varlen.hpp"
#include "longnet/padding.hpp"
