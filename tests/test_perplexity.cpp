// SPDX-License-Identifier: Apache-2.0
// Perplexity (longnet/training/perplexity.hpp) of a tiny random double decoder: PPL equals exp(mean
// cross-entropy) of the full forward (decoder::forward, every row's logits) over the same windows and
// rows, computed here independently (float64, <= 1e-10 relative), for llama.cpp's chunks and for a
// stride; the standard error against its formula; KL divergence 0 against the model's own logits and
// equal to an independent sum against perturbed ones; the shard stream gives the same result; bad
// arguments refused.

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <longnet/io/token_shards.hpp>
#include <longnet/nn/nn.hpp>
#include <longnet/training/perplexity.hpp>

#include "catch.hpp"

namespace nn = longnet::nn;
namespace tr = longnet::training;

namespace {

nn::decoder<double> tiny_model() {
    nn::decoder_config cfg;
    cfg.embed_dim = 16, cfg.heads = 2, cfg.ffn_dim = 24, cfg.layers = 2, cfg.vocab_size = 37;
    cfg.segment_length = {8, 16}, cfg.dilated_ratio = {1, 2};
    return nn::random_decoder<double>(cfg, 11);
}

std::vector<std::int64_t> random_tokens(std::size_t n, std::uint32_t seed) {
    std::mt19937 g(seed);
    std::uniform_int_distribution<std::int64_t> d(0, 36);
    std::vector<std::int64_t> t(n);
    for (auto& x : t) x = d(g);
    return t;
}

// Independent: per scored token, the cross-entropy from the full forward's logits (log-sum-exp in long double).
struct oracle {
    std::vector<double> nll;
    std::vector<std::vector<double>> logits;  // the scored rows
};
oracle full_forward(const nn::decoder<double>& model, const std::vector<std::int64_t>& t, std::size_t ctx,
                    const std::vector<std::size_t>& starts, std::size_t first) {
    oracle o;
    for (std::size_t s : starts) {
        const std::vector<std::int64_t> in(t.begin() + static_cast<std::ptrdiff_t>(s), t.begin() + static_cast<std::ptrdiff_t>(s + ctx));
        const auto z = model.forward(in);
        REQUIRE(static_cast<std::size_t>(z.rows()) == ctx);
        for (std::size_t j = first; j + 1 < ctx; ++j) {
            long double m = -INFINITY, sum = 0;
            for (int v = 0; v < z.cols(); ++v) m = std::max<long double>(m, z(static_cast<long>(j), v));
            for (int v = 0; v < z.cols(); ++v) sum += std::exp(static_cast<long double>(z(static_cast<long>(j), v)) - m);
            o.nll.push_back(static_cast<double>(m + std::log(sum) - z(static_cast<long>(j), t[s + j + 1])));
            std::vector<double> row(static_cast<std::size_t>(z.cols()));
            for (int v = 0; v < z.cols(); ++v) row[static_cast<std::size_t>(v)] = z(static_cast<long>(j), v);
            o.logits.push_back(row);
        }
    }
    return o;
}

}  // namespace

TEST_CASE("perplexity: llama.cpp chunks equal exp(mean cross-entropy) of the full forward", "[perplexity]") {
    const auto model = tiny_model();
    const auto t = random_tokens(150, 1);  // 150 / 32 = 4 windows, the 22-token tail dropped
    tr::perplexity_options opt;
    opt.ctx = 32;
    opt.row_block = 5;  // several blocks per window
    const tr::perplexity_result r = tr::perplexity(model, t, opt);
    const oracle o = full_forward(model, t, 32, {0, 32, 64, 96}, 16);
    REQUIRE(r.windows == 4);
    REQUIRE(r.scored == 4 * (32 - 1 - 16));
    REQUIRE(o.nll.size() == r.scored);
    double sum = 0, sum2 = 0;
    for (double x : o.nll) sum += x, sum2 += x * x;
    const double mean = sum / static_cast<double>(o.nll.size());
    const double ppl = std::exp(mean);
    CHECK(std::abs(r.ppl() - ppl) <= 1e-10 * ppl);
    CHECK(ppl > 20);  // a random model over 37 tokens: near-uniform, so PPL near 37 (not a degenerate 1)
    const double se = ppl * std::sqrt((sum2 / static_cast<double>(o.nll.size()) - mean * mean) / static_cast<double>(o.nll.size() - 1));
    CHECK(std::abs(r.ppl_stderr() - se) <= 1e-8 * se);
    CHECK(r.ppl_stderr() > 0);
}

TEST_CASE("perplexity: stride windows, KL divergence, the shard stream", "[perplexity]") {
    const auto model = tiny_model();
    const auto t = random_tokens(100, 2);
    tr::perplexity_options opt;
    opt.ctx = 24;
    opt.stride = 10;  // windows at 0, 10, ..., ceil((100 - 24) / 10) = 8 of them; rows 13 .. 22 scored
    std::vector<float> base;
    opt.scored_logits = &base;
    const tr::perplexity_result r = tr::perplexity(model, t, opt);
    std::vector<std::size_t> starts;
    for (std::size_t i = 0; i < 8; ++i) starts.push_back(10 * i);
    const oracle o = full_forward(model, t, 24, starts, 13);
    REQUIRE(r.windows == 8);
    REQUIRE(r.scored == 80);
    double sum = 0;
    for (double x : o.nll) sum += x;
    CHECK(std::abs(r.ppl() - std::exp(sum / 80)) <= 1e-10 * r.ppl());
    REQUIRE(base.size() == 80 * 37);

    // KL against its own logits (rounded to float): ~0; against perturbed logits: the independent sum.
    tr::perplexity_options k = opt;
    k.scored_logits = nullptr;
    std::mt19937 g(3);
    std::normal_distribution<float> noise(0.0f, 0.5f);
    std::vector<float> perturbed(base.size());
    for (std::size_t i = 0; i < base.size(); ++i) perturbed[i] = static_cast<float>(o.logits[i / 37][i % 37]) + noise(g);
    k.kl_base = perturbed.data();
    k.kl_base_rows = 80;
    const tr::perplexity_result kr = tr::perplexity(model, t, k);
    double kl = 0;
    for (std::size_t row = 0; row < 80; ++row) {
        double mb = -INFINITY, m = -INFINITY, sb = 0, s = 0;
        for (int v = 0; v < 37; ++v) mb = std::max<double>(mb, perturbed[row * 37 + static_cast<std::size_t>(v)]), m = std::max(m, o.logits[row][static_cast<std::size_t>(v)]);
        for (int v = 0; v < 37; ++v) sb += std::exp(perturbed[row * 37 + static_cast<std::size_t>(v)] - mb), s += std::exp(o.logits[row][static_cast<std::size_t>(v)] - m);
        for (int v = 0; v < 37; ++v) {
            const double lpb = perturbed[row * 37 + static_cast<std::size_t>(v)] - mb - std::log(sb);
            const double lp = o.logits[row][static_cast<std::size_t>(v)] - m - std::log(s);
            kl += std::exp(lpb) * (lpb - lp);
        }
    }
    CHECK(kr.has_kl);
    CHECK(kr.kl_mean() > 0.01);
    CHECK(std::abs(kr.kl_mean() - kl / 80) <= 1e-10 * kr.kl_mean());
    k.kl_base = base.data();
    CHECK(tr::perplexity(model, t, k).kl_mean() < 1e-12);
    k.kl_base_rows = 79;
    CHECK_THROWS_WITH(tr::perplexity(model, t, k), Catch::Contains("79 rows"));

    // The same tokens as shards: the same numbers.
    const auto dir = std::filesystem::temp_directory_path() / ("longnet_test_ppl_" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(dir);
    longnet::io::write_token_shard((dir / "val_000000.bin").string(), std::vector<std::int64_t>(t.begin(), t.begin() + 45),
                                   longnet::io::token_width::u16);
    longnet::io::write_token_shard((dir / "val_000001.bin").string(), std::vector<std::int64_t>(t.begin() + 45, t.end()),
                                   longnet::io::token_width::u32);
    {
        longnet::io::token_shard_stream stream(longnet::io::glob_token_shards((dir / "val_*.bin").string()));
        tr::perplexity_options s = opt;
        s.scored_logits = nullptr;
        const tr::perplexity_result sr = tr::perplexity(model, stream, s);
        CHECK(sr.nll_sum == r.nll_sum);
        CHECK(sr.scored == r.scored);
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("perplexity: plans and refusals", "[perplexity]") {
    CHECK_THROWS_WITH(tr::plan_perplexity(63, 32, 0), Catch::Contains("need at least 2 x ctx = 64"));
    CHECK(tr::plan_perplexity(64, 32, 0).starts.size() == 2);
    CHECK_THROWS_WITH(tr::plan_perplexity(100, 32, 32), Catch::Contains("stride 32 must be below the context 32"));
    CHECK_THROWS_WITH(tr::plan_perplexity(100, 1, 0), Catch::Contains("at least 2"));
    const auto p = tr::plan_perplexity(44, 32, 4);  // ceil(12 / 4) = 3 windows: 0, 4, 8 (llama.cpp's count)
    CHECK(p.starts == std::vector<std::uint64_t>{0, 4, 8});
    CHECK(p.first_row == 27);
    const auto model = tiny_model();
    std::vector<std::int64_t> t = random_tokens(64, 4);
    t[40] = 37;
    tr::perplexity_options opt;
    opt.ctx = 32;
    CHECK_THROWS_WITH(tr::perplexity(model, t, opt), Catch::Contains("37"));
}
