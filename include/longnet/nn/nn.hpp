// SPDX-License-Identifier: Apache-2.0
#pragma once
// longnet::nn umbrella: the LongNet decoder, encoder and their layers (needs Eigen 3.4 and nlohmann/json).

#include "longnet/nn/attention_backend.hpp"
#include "longnet/nn/bf16_attention.hpp"
#include "longnet/nn/common.hpp"
#include "longnet/nn/config_json.hpp"
#include "longnet/nn/cross_entropy.hpp"
#include "longnet/nn/decoder.hpp"
#include "longnet/nn/decoder_config.hpp"
#include "longnet/nn/decoder_layer.hpp"
#include "longnet/nn/embedding.hpp"
#include "longnet/nn/encoder.hpp"
#include "longnet/nn/encoder_config.hpp"
#include "longnet/nn/feed_forward.hpp"
#include "longnet/nn/gelu.hpp"
#include "longnet/nn/layer_norm.hpp"
#include "longnet/nn/linear.hpp"
#include "longnet/nn/load_safetensors.hpp"
#include "longnet/nn/multihead_attention.hpp"
#include "longnet/nn/random_init.hpp"
#include "longnet/nn/xpos.hpp"
