// SPDX-License-Identifier: Apache-2.0
// Writes the seed of fuzz_train_state (tests/fuzz/corpus/train_state/tiny_step0): the tiny decoder's checkpoint.json (state renamed state.safetensors) and
// state file as trainer::save_checkpoint writes them, packed as [u32 length][json][state]. Not built by
// CMake (run it after a change of the parameter names or the state format):
//   g++ -std=c++17 -Iinclude -isystem /usr/include/eigen3 tests/fuzz/make_train_state_seed.cpp -o /tmp/seed &&
//     /tmp/seed tests/fuzz/corpus/train_state/tiny_step0
#include <longnet/training/trainer.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
namespace nn = longnet::nn;
namespace tr = longnet::training;
static std::string slurp(const std::string& p) { std::ifstream in(p, std::ios::binary); return std::string(std::istreambuf_iterator<char>(in), {}); }
int main(int, char** argv) {
    nn::decoder_config c; c.embed_dim = 4; c.heads = 2; c.ffn_dim = 8; c.layers = 1; c.vocab_size = 5; c.segment_length = {4, 8}; c.dilated_ratio = {1, 2};
    nn::decoder<float, float> model(c);
    for (auto& p : tr::named_parameters(model)) for (std::int64_t i = 0; i < p.size(); ++i) p.data[i] = 0.25f * float(i % 7) - 0.5f;
    tr::trainer<float> t(model, tr::trainer_options{});
    tr::rng_state rng{12345};
    std::filesystem::create_directories("/tmp/train_seed");  // scratch folder
    t.save_checkpoint("/tmp/train_seed", rng);
    auto j = nlohmann::json::parse(slurp("/tmp/train_seed/checkpoint.json"));
    const std::string state = slurp("/tmp/train_seed/" + j["state"].get<std::string>());
    j["state"] = "state.safetensors";
    const std::string text = j.dump(1);
    std::string out(4, '\0');
    for (int i = 0; i < 4; ++i) out[i] = char((text.size() >> (8 * i)) & 0xff);
    out += text + state;
    std::ofstream(argv[1], std::ios::binary) << out;
    std::printf("%zu bytes\n", out.size());
}
