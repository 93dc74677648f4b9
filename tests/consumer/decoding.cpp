// SPDX-License-Identifier: Apache-2.0
// Consumer check of longnet/nn and longnet/decoding (built when Eigen and nlohmann/json are available):
// a small random LongNet decoder generates greedily with the bounded cache, and every step's logits
// must equal the last row of the full forward. Exit code 0 only if so.
#include <longnet/decoding/decoding.hpp>
#include <longnet/nn/nn.hpp>
#include <longnet/version.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
    namespace nn = longnet::nn;
    nn::decoder_config cfg = nn::decoder_config::base(37);
    cfg.embed_dim = 32;
    cfg.heads = 4;
    cfg.ffn_dim = 64;
    cfg.layers = 2;
    cfg.segment_length = {8, 16};
    cfg.dilated_ratio = {1, 2};
    const auto model = nn::random_decoder<float>(cfg, 1);
    const longnet::decoding::incremental_decoder<float> gen(model);
    auto state = gen.make_state();
    longnet::decoding::sampler greedy({/*temperature=*/0.0, /*top_k=*/0, /*top_p=*/1.0});
    std::vector<std::int64_t> tokens{3, 1, 4, 1, 5};
    nn::vector<float> logits = gen.prefill(state, tokens);
    double worst = 0;
    for (int i = 0; i < 20; ++i) {
        const nn::matrix<float> full = model.forward(tokens);
        const nn::vector<float> want = full.row(full.rows() - 1).transpose();
        worst = std::max(worst, static_cast<double>((logits - want).cwiseAbs().maxCoeff() / want.cwiseAbs().maxCoeff()));
        const std::int64_t next = greedy(logits);
        tokens.push_back(next);
        logits = gen.step(state, next);
    }
    std::printf("longnet %s consumer (decoding): 20 tokens, max row error vs forward %.2e, cache %zu bytes (bound %zu)\n",
                LONGNET_VERSION_STRING, worst, state.bytes(), state.max_bytes());
    return worst < 1e-4 && state.bytes() <= state.max_bytes() ? 0 : 1;
}
