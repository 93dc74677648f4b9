// SPDX-License-Identifier: Apache-2.0
// Consumer check of longnet/training (built when Eigen and nlohmann/json are available): a tiny LongNet
// decoder, torchscale-initialised, takes AdamW steps on one fixed sequence through longnet::training's
// trainer; its loss must fall, every gradient and parameter stay finite, and the named parameters carry
// torchscale's names; the tokens written as an llm.c shard (longnet/io/token_shards.hpp) read back
// through shard_dataset as the same windows, and the model's perplexity on them (training/perplexity.hpp)
// below the vocabulary size; a passkey document (training/passkey.hpp) holds its key sentence and ends
// its prompt with the question. Exit code 0 only if so. Built a second time through longnet::onednn
// (consumer_training_onednn, LONGNET_CONSUMER_EXPECT_ONEDNN): then the nn GEMMs must be oneDNN's.
#include <longnet/nn/nn.hpp>
#include <longnet/training/training.hpp>
#include <longnet/version.hpp>

#if defined(LONGNET_CONSUMER_EXPECT_ONEDNN) && !LONGNET_NN_GEMM_ONEDNN
#error "consumer_training_onednn: linked longnet::onednn, but longnet/nn/gemm.hpp does not use oneDNN"
#endif

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

int main() {
    namespace nn = longnet::nn;
    namespace tr = longnet::training;
    nn::decoder_config cfg = nn::decoder_config::base(29);
    cfg.embed_dim = 32;
    cfg.heads = 4;
    cfg.ffn_dim = 64;
    cfg.layers = 2;
    cfg.segment_length = {8, 16};
    cfg.dilated_ratio = {1, 2};
    nn::decoder<float> model(cfg);
    tr::torchscale_init(model, 5);
    tr::trainer_options opt;
    opt.schedule.kind = tr::schedule_kind::constant;
    opt.schedule.lr = 1e-2;
    tr::trainer<float> trainer(model, opt);
    std::vector<std::int64_t> tokens;
    for (int i = 0; i < 41; ++i) tokens.push_back((i * 7 + 3) % 29);
    const std::vector<tr::sequence> batch{tr::window(tokens, 0, 40)};
    double first = 0, last = 0;
    bool finite = true;
    for (int s = 0; s < 10; ++s) {
        const tr::step_stats st = trainer.step(batch);
        if (s == 0) first = st.loss;
        last = st.loss;
        finite = finite && std::isfinite(st.loss) && std::isfinite(st.grad_norm);
    }
    for (const auto& p : trainer.named_params())
        for (std::int64_t i = 0; i < p.size(); ++i) finite = finite && std::isfinite(p.data[i]);
    const bool named = trainer.named_params().front().name == "embed_tokens.weight" &&
                       trainer.named_params().back().name == "output_projection.weight";
    std::printf("longnet %s training consumer (%s GEMMs): loss %.4f -> %.4f over 10 AdamW steps, %zu tensors%s\n",
                LONGNET_VERSION_STRING, nn::gemm_backend, first, last, trainer.named_params().size(),
                finite ? "" : ", NON-FINITE values");
    // The same tokens as a shard: the shard dataset's windows are the in-memory ones; perplexity.
    const std::string shard = (std::filesystem::temp_directory_path() /
                               ("longnet_consumer_" + std::to_string(::getpid()) + "_000000.bin")).string();
    longnet::io::write_token_shard(shard, tokens, longnet::io::token_width::u16);
    const tr::shard_dataset shards({shard}, {}, 16, 29);
    const tr::token_dataset memory(tokens, 16, 0.0);
    tr::rng_state a{7}, b{7};
    bool same = true;
    for (int i = 0; i < 5; ++i) same = same && shards.sample(a).inputs == memory.sample(b).inputs;
    tr::perplexity_options popt;
    popt.ctx = 16;
    const tr::perplexity_result ppl = tr::perplexity(model, tokens, popt);
    std::filesystem::remove(shard);
    std::printf("shards: windows %s; perplexity (ctx 16, %llu tokens scored) %.3f +/- %.3f\n", same ? "equal" : "DIFFER",
                static_cast<unsigned long long>(ppl.scored), ppl.ppl(), ppl.ppl_stderr());
    const tr::passkey_document pk = tr::make_passkey_document(600, 4242, 1);
    const bool passkey = pk.text.size() == 600 && pk.text.find(" The pass key is 4242. Remember it. 4242 is the pass key.") == pk.key_offset &&
                         pk.prompt().size() >= tr::passkey_question.size() &&
                         pk.prompt().compare(pk.prompt().size() - tr::passkey_question.size(), std::string::npos, tr::passkey_question) == 0;
    std::printf("passkey document: %s\n", passkey ? "as llama.cpp's" : "WRONG");
    return (finite && named && last < 0.7 * first && same && ppl.ppl() < 29 && passkey) ? 0 : 1;
}
