// SPDX-License-Identifier: Apache-2.0
// Consumer check of longnet/nn and longnet/decoding (built when Eigen and nlohmann/json are available):
// a small random LongNet decoder generates greedily with the bounded cache, and every step's logits
// must equal the last row of the full forward; a small encoder's padded batch must equal its rows alone.
// Exit code 0 only if so.
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

    // the encoder: a right-padded batch of 2 x 12 embeddings; row 1's 7 real tokens encoded alone must
    // give the same rows, and its pads 0
    nn::encoder_config ecfg;
    ecfg.embed_dim = 16;
    ecfg.heads = 2;
    ecfg.ffn_dim = 32;
    ecfg.layers = 1;
    ecfg.segment_length = {4, 8};
    ecfg.dilated_ratio = {1, 2};
    nn::encoder<double> enc(ecfg);
    for (auto& layer : enc.layers)
        for (auto* lin : {&layer.self_attn.q_proj, &layer.self_attn.k_proj, &layer.self_attn.v_proj, &layer.self_attn.out_proj})
            lin->weight.setRandom();
    const nn::matrix<double> x = nn::matrix<double>::Random(24, 16);
    const std::vector<std::int64_t> lengths{12, 7};
    const nn::matrix<double> out = enc.forward(x, 2, longnet::padding_lengths(lengths));
    const nn::matrix<double> alone = enc.forward(x.middleRows(12, 7));
    const double enc_err = (out.middleRows(12, 7) - alone).cwiseAbs().maxCoeff() + out.bottomRows(5).cwiseAbs().maxCoeff();
    std::printf("longnet %s consumer (encoder): padded row vs alone %.2e\n", LONGNET_VERSION_STRING, enc_err);
    return worst < 1e-4 && state.bytes() <= state.max_bytes() && enc_err == 0 ? 0 : 1;
}
