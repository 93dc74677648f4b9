// SPDX-License-Identifier: Apache-2.0
#pragma once
// The model flags of the tools that run a LongNet decoder (longnet_lm's three modes, longnet_train),
// read in one place: which model (--weights, --config, --random-config), its size overrides (--layers,
// --vocab), its types (--dtype, --weights-dtype), its numerics (--attention, --offsets, --angles) and
// --seed. A tool says which of them it takes (model_flag_set); the others stay unknown flags there.
//
// To add a flag every model tool shares: a field in model_flags, a bit in model_flag_set, a branch in
// model_flags::read. A tool's own flags stay in its parse loop, which asks model_flags::read first.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <longnet/nn/nn.hpp>
#include <longnet/options.hpp>

#include "cli_common.hpp"

namespace cli {

// The model flags a tool takes (each off until the tool turns it on), and their tool-specific limits.
struct model_flag_set {
    bool weights = false, config = false, random_config = false, seed = false, vocab = false, layers = false;
    bool dtype = false, weights_dtype = false, attention = false, offsets = false, angles = false;
    std::int64_t min_layers = 0;              // --layers in [min_layers, 1000]
    std::vector<std::string> random_configs;  // checked as --random-config is read; empty: by the tool
};

// The parsed model flags. The tool sets the defaults that differ (seed, vocab) before reading.
struct model_flags {
    std::string weights, config, random_config;
    std::string dtype = "float", weights_dtype = "float";
    std::int64_t layers = -1, vocab = 0;
    std::uint64_t seed = 0;
    longnet::nn::model_options options;

    // Reads `flag` (and its value from r) when it is one of the model flags `takes` names; false otherwise.
    bool read(arg_reader& r, const std::string& flag, const model_flag_set& takes) {
        namespace nn = longnet::nn;
        const std::string& f = flag;
        if (f == "--weights" && takes.weights) weights = r.value(f);
        else if (f == "--config" && takes.config) config = r.value(f);
        else if (f == "--random-config" && takes.random_config) {
            random_config = r.value(f);
            const auto& names = takes.random_configs;
            if (!names.empty() && std::find(names.begin(), names.end(), random_config) == names.end())
                throw usage_error("--random-config: expected " + alternatives(names) + ", got '" + random_config + "'");
        } else if (f == "--seed" && takes.seed) seed = parse_uint64(f, r.value(f));
        else if (f == "--vocab" && takes.vocab) vocab = parse_int(f, r.value(f), 1, std::int64_t(1) << 31);
        else if (f == "--layers" && takes.layers) layers = parse_int(f, r.value(f), takes.min_layers, 1000);
        else if (f == "--dtype" && takes.dtype) {
            dtype = r.value(f);
            if (dtype != "float" && dtype != "double") throw usage_error("--dtype: expected float or double, got '" + dtype + "'");
        } else if (f == "--weights-dtype" && takes.weights_dtype) {
            weights_dtype = r.value(f);
            if (weights_dtype != "float" && weights_dtype != "bf16")
                throw usage_error("--weights-dtype: expected float or bf16, got '" + weights_dtype + "'");
        } else if (f == "--attention" && takes.attention) {
            const std::string v = r.value(f);
            if (v == "dilated") options.attention = nn::attention_kind::dilated;
            else if (v == "dense") options.attention = nn::attention_kind::dense;
            else throw usage_error("--attention: expected dilated or dense, got '" + v + "'");
        } else if (f == "--offsets" && takes.offsets) {
            options.offsets = longnet::parse_offset_policy(r.value(f));  // std::invalid_argument: exit 2
        } else if (f == "--angles" && takes.angles) {
            const std::string v = r.value(f);
            if (v == "torchscale") options.angles = nn::angle_precision::torchscale;
            else if (v == "float64") options.angles = nn::angle_precision::float64;
            else throw usage_error("--angles: expected torchscale or float64, got '" + v + "'");
        } else {
            return false;
        }
        return true;
    }

private:
    // "a, b or c"
    static std::string alternatives(const std::vector<std::string>& names) {
        std::string s;
        for (std::size_t i = 0; i < names.size(); ++i) s += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
        return s;
    }
};

}  // namespace cli
