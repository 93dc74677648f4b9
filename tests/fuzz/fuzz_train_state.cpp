// SPDX-License-Identifier: Apache-2.0
// Fuzz target: resuming a training run, training::trainer<float>::load_checkpoint(dir, rng) (the
// checkpoint/optimizer-state reader: checkpoint.json + the state .safetensors it names), on a tiny
// decoder (D = 4, F = 8, V = 5, 1 layer).
//
// Input: a 4-byte little-endian length n, n bytes of checkpoint.json, then the bytes of
// "state.safetensors"; both are written to a private folder, which load_checkpoint reads.
// Every input must either throw std::runtime_error (or safetensors_error, one) or restore a state that
// keeps checkpoint.json's promises: a step >= 0 equal to the JSON's, an rng that is exactly the JSON's
// decimal text, a state file inside the run folder, and every parameter equal to the file's values.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <longnet/io/safetensors.hpp>
#include <longnet/nn/decoder.hpp>
#include <longnet/training/trainer.hpp>

#include "fuzz_check.hpp"

namespace {

namespace fs = std::filesystem;
namespace nn = longnet::nn;
namespace tr = longnet::training;

struct fixture {
    fs::path dir;
    nn::decoder<float, float> model;
    std::unique_ptr<tr::trainer<float>> trainer;  // after model: destroyed first
    fixture() : dir(fs::temp_directory_path() / ("longnet_fuzz_train_state_" + std::to_string(::getpid()))) {
        fs::create_directories(dir);
        nn::decoder_config c;
        c.embed_dim = 4;
        c.heads = 2;
        c.ffn_dim = 8;
        c.layers = 1;
        c.vocab_size = 5;
        c.segment_length = {4, 8};
        c.dilated_ratio = {1, 2};
        model = nn::decoder<float, float>(c);
        trainer = std::make_unique<tr::trainer<float>>(model, tr::trainer_options{});
    }
    ~fixture() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

fixture& the_fixture() {
    static fixture f;
    return f;
}

void write(const fs::path& p, const std::uint8_t* data, std::size_t n) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    const std::size_t n = data[0] | (data[1] << 8) | (std::size_t(data[2]) << 16) | (std::size_t(data[3]) << 24);
    if (n > size - 4) return 0;
    fixture& fx = the_fixture();
    write(fx.dir / "checkpoint.json", data + 4, n);
    write(fx.dir / "state.safetensors", data + 4 + n, size - 4 - n);
    tr::rng_state rng;
    nlohmann::json j;
    try {
        j = fx.trainer->load_checkpoint(fx.dir.string(), rng);
    } catch (const std::runtime_error&) {  // safetensors_error is one too
        return 0;
    }
    // Accepted: checkpoint.json is valid JSON holding exactly what was restored.
    const nlohmann::json again = nlohmann::json::parse(data + 4, data + 4 + n);
    const std::string state = again.at("state").get<std::string>();
    FUZZ_CHECK(state.find('/') == std::string::npos && state != "." && state != "..",
               "state file '" + state + "' is not a file in the run folder");
    FUZZ_CHECK(fx.trainer->steps_done() >= 0, "negative step " + std::to_string(fx.trainer->steps_done()));
    FUZZ_CHECK(again.at("step").is_number_integer() && again.at("step").get<std::int64_t>() == fx.trainer->steps_done(),
               "step differs from checkpoint.json's");
    FUZZ_CHECK(again.at("rng").get<std::string>() == std::to_string(rng.state),
               "rng " + std::to_string(rng.state) + " is not checkpoint.json's '" + again.at("rng").get<std::string>() + "'");
    const longnet::io::safetensors_file f((fx.dir / state).string());
    for (const auto& p : fx.trainer->named_params()) {
        const std::vector<float> want = f.read<float>("param." + p.name);
        FUZZ_CHECK(static_cast<std::int64_t>(want.size()) == p.size(), p.name + ": size");
        for (std::size_t i = 0; i < want.size(); ++i)
            FUZZ_CHECK(want[i] == p.data[i] || (want[i] != want[i] && p.data[i] != p.data[i]), p.name + ": value " + std::to_string(i));
    }
    return 0;
}
