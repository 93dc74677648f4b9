// SPDX-License-Identifier: Apache-2.0
// Incremental decoding (longnet/decoding/): prefill + step against the full forward (row-exact, both
// offset policies, every prompt length that matters, across segment boundaries of every branch) and
// against the torchscale fixture decoder_00; the bounded cache; batches of different lengths; positions
// past 1M (anchored XPos, float vs double); sampling; bad inputs.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <longnet/decoding/decoding.hpp>
#include <longnet/io/npy.hpp>
#include <longnet/nn/nn.hpp>
#include <nlohmann/json.hpp>

#include "catch.hpp"

namespace {

namespace nn = longnet::nn;
namespace dec = longnet::decoding;
using longnet::index_t;

const std::string case_dir = std::string(LONGNET_TEST_DATA_DIR) + "/decoder_00/";

// max |a − b| / max |b| over one row.
template <class A, class B>
double row_error(const A& a, const B& b) {
    double err = 0, scale = 1e-300;
    for (Eigen::Index i = 0; i < b.size(); ++i) {
        const double x = static_cast<double>(a(i)), y = static_cast<double>(b(i));
        if (!std::isfinite(x)) return INFINITY;
        err = std::max(err, std::fabs(x - y));
        scale = std::max(scale, std::fabs(y));
    }
    return err / scale;
}

std::vector<std::int64_t> random_tokens(std::size_t n, std::int64_t vocab, std::uint64_t seed) {
    std::vector<std::int64_t> t(n);
    for (auto& x : t) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x = static_cast<std::int64_t>((seed >> 33) % static_cast<std::uint64_t>(vocab));
    }
    return t;
}

// A small model whose branches do not nest (6 ∤ 16, 20; 20 % 3 != 0) and whose heads cover residues
// unevenly: segment boundaries of every branch fall inside a 70-token sequence.
nn::decoder_config small_config() {
    nn::decoder_config c = nn::decoder_config::base(23);
    c.embed_dim = 32;
    c.heads = 4;  // head dim 8
    c.ffn_dim = 48;
    c.layers = 2;
    c.segment_length = {6, 16, 20};
    c.dilated_ratio = {1, 3, 4};
    c.xpos_scale_base = 32;  // strong XPos decay: a wrong anchor shows
    return c;
}

// Decode `tokens` with a prompt of `prompt` tokens, then one step per remaining token; returns the logits
// of positions prompt − 1 .. N − 1 (row i = position i, rows before prompt − 1 unset) and checks the cache.
template <class T>
nn::matrix<T> decode(const nn::decoder<T>& model, const std::vector<std::int64_t>& tokens, std::size_t prompt) {
    dec::incremental_decoder<T> gen(model);
    auto state = gen.make_state();
    nn::matrix<T> rows = nn::matrix<T>::Constant(static_cast<index_t>(tokens.size()), model.vocab_size(), T(0));
    const std::vector<std::int64_t> head(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(prompt));
    const nn::vector<T> first = gen.prefill(state, head);
    REQUIRE(state.position() == static_cast<index_t>(prompt));
    if (prompt == 0) CHECK(first.size() == 0);
    else rows.row(static_cast<index_t>(prompt) - 1) = first.transpose();
    for (std::size_t p = prompt; p < tokens.size(); ++p) {
        rows.row(static_cast<index_t>(p)) = gen.step(state, tokens[p]).transpose();
        CHECK(state.position() == static_cast<index_t>(p + 1));
        // bounded: no slot holds more than ceil(w/r) rows, allocation within the bound
        for (index_t l = 0; l < state.layers(); ++l)
            for (index_t b = 0; b < state.branch_count(); ++b)
                for (index_t h = 0; h < state.heads(); ++h) CHECK(state.rows(l, b, h) <= state.capacity(b));
        CHECK(state.bytes() <= state.max_bytes());
    }
    return rows;
}

template <class T>
void check_row_exact(const nn::decoder<T>& model, const std::vector<std::int64_t>& tokens, double tol,
                     const std::vector<std::size_t>& prompts) {
    const nn::matrix<T> full = model.forward(tokens);
    for (std::size_t prompt : prompts) {
        const nn::matrix<T> rows = decode(model, tokens, prompt);
        double worst = 0;
        for (std::size_t p = prompt == 0 ? 0 : prompt - 1; p < tokens.size(); ++p)
            worst = std::max(worst, row_error(rows.row(static_cast<index_t>(p)), full.row(static_cast<index_t>(p))));
        INFO("prompt " << prompt << " of " << tokens.size() << ", " << (sizeof(T) == 4 ? "float" : "double") << ", offsets "
                       << longnet::to_string(model.options.offsets) << ", positions " << nn::to_string(model.options.positions));
        CHECK(worst <= tol);
        std::printf("decode vs forward: %-6s %-10s %-5s prompt %2zu: max row error %.2e\n", sizeof(T) == 4 ? "float" : "double",
                    longnet::to_string(model.options.offsets), nn::to_string(model.options.positions), prompt, worst);
    }
}

nn::decoder_config fixture_config() {
    std::ifstream in(case_dir + "params.json");
    return nn::decoder_config::from_json(nlohmann::json::parse(in).at("decoder_config_all_fields"));
}

}  // namespace

TEST_CASE("decoding: step logits equal the full forward's rows (both offset policies, any prompt length)", "[decoding]") {
    const nn::decoder_config cfg = small_config();
    const auto tokens = random_tokens(70, cfg.vocab_size, 11);
    const std::vector<std::size_t> prompts{0, 1, 2, 5, 16, 33, 70};
    for (auto offsets : {longnet::offset_policy::paper, longnet::offset_policy::torchscale}) {
        nn::model_options opt;
        opt.offsets = offsets;
        opt.angles = nn::angle_precision::float64;
        check_row_exact(nn::random_decoder<double>(cfg, 5, opt), tokens, 1e-12, prompts);
        check_row_exact(nn::random_decoder<float>(cfg, 5, opt), tokens, 1e-5, prompts);
    }
    // RoPE and no positions go through the same cache
    for (auto pos : {nn::position_encoding::rope, nn::position_encoding::none}) {
        nn::model_options opt;
        opt.positions = pos;
        check_row_exact(nn::random_decoder<double>(cfg, 6, opt), tokens, 1e-12, {0, 9});
    }
}

TEST_CASE("decoding: decoder_00 step by step matches torchscale's logits", "[decoding][fixture]") {
    const auto tokens = longnet::io::load_npy(case_dir + "tokens.npy").as_int64();
    const auto want64 = longnet::io::load_npy(case_dir + "logits_pure64.npy").as_double();
    const auto want32 = longnet::io::load_npy(case_dir + "logits.npy").as_double();
    const index_t vocab = 97;
    auto reference = [&](const std::vector<double>& flat, index_t p) {
        return Eigen::Map<const Eigen::Matrix<double, 1, Eigen::Dynamic>>(flat.data() + p * vocab, vocab);
    };
    for (std::size_t prompt : {0, 1, 31, 64, 99}) {
        nn::model_options opt64;
        opt64.angles = nn::angle_precision::float64;
        const auto m64 = nn::load_decoder<double>(case_dir + "model.safetensors", fixture_config(), opt64);
        const auto m32 = nn::load_decoder<float>(case_dir + "model.safetensors", fixture_config());
        const nn::matrix<double> r64 = decode(m64, tokens, prompt);
        const nn::matrix<float> r32 = decode(m32, tokens, prompt);
        double e64 = 0, e32 = 0;
        for (std::size_t p = prompt == 0 ? 0 : prompt - 1; p < tokens.size(); ++p) {
            e64 = std::max(e64, row_error(r64.row(static_cast<index_t>(p)), reference(want64, static_cast<index_t>(p))));
            e32 = std::max(e32, row_error(r32.row(static_cast<index_t>(p)), reference(want32, static_cast<index_t>(p))));
        }
        INFO("prompt " << prompt);
        CHECK(e64 < 1e-9);
        CHECK(e32 < 1e-4);
    }
}

TEST_CASE("decoding: the cache holds the current segment only and its size does not grow", "[decoding]") {
    const nn::decoder_config cfg = small_config();
    const auto model = nn::random_decoder<float>(cfg, 3);
    dec::incremental_decoder<float> gen(model);
    auto state = gen.make_state();
    // bound: 2 · layers · heads · Σ ceil(w/r) · hd · sizeof(float) = 2·2·4·(6 + 6 + 5)·8·4
    CHECK(state.max_bytes() == std::size_t(2 * 2 * 4 * (6 + 6 + 5) * 8 * 4));
    CHECK(state.bytes() == 0);
    const auto tokens = random_tokens(400, cfg.vocab_size, 2);
    std::size_t bytes_at_240 = 0;
    for (std::size_t p = 0; p < tokens.size(); ++p) {
        (void)gen.step(state, tokens[p]);
        // rows of (layer, branch, head) = rows the head selects in p's segment, up to p
        for (index_t b = 0; b < state.branch_count(); ++b) {
            const auto br = state.branches()[static_cast<std::size_t>(b)];
            const index_t pos = static_cast<index_t>(p);
            const index_t seen = pos - pos / br.segment_length * br.segment_length + 1;
            for (index_t h = 0; h < state.heads(); ++h) {
                const index_t o = longnet::head_offset(state.offsets(), h, state.heads(), br.dilation);
                const index_t want = seen > o ? (seen - o + br.dilation - 1) / br.dilation : 0;
                CHECK(state.rows(0, b, h) == want);
                CHECK(state.rows(1, b, h) == want);
            }
        }
        if (p + 1 == 240) bytes_at_240 = state.bytes();
    }
    CHECK(bytes_at_240 > 0);
    CHECK(state.bytes() == bytes_at_240);  // allocated once per slot, up to ceil(w/r) rows
    CHECK(state.bytes() == state.max_bytes());  // here every slot has held a full segment
    CHECK(state.bytes() <= state.max_bytes());
    state.clear();
    CHECK(state.position() == 0);
    CHECK(state.rows(0, 0, 0) == 0);
}

TEST_CASE("decoding: a batch of sequences of different lengths equals each sequence alone", "[decoding][batch]") {
    const nn::decoder_config cfg = small_config();
    nn::model_options opt;
    opt.offsets = longnet::offset_policy::paper;
    const auto model = nn::random_decoder<double>(cfg, 9, opt);
    dec::incremental_decoder<double> gen(model);
    const std::vector<std::vector<std::int64_t>> sequences{random_tokens(30, 23, 1), random_tokens(41, 23, 2),
                                                           random_tokens(25, 23, 3)};
    const std::vector<std::size_t> prompt{0, 1, 12};
    std::vector<dec::decoding_state<double>> states;
    for (int i = 0; i < 3; ++i) states.push_back(gen.make_state());
    std::vector<std::vector<std::int64_t>> prompts;
    for (int i = 0; i < 3; ++i)
        prompts.emplace_back(sequences[i].begin(), sequences[i].begin() + static_cast<std::ptrdiff_t>(prompt[i]));
    const nn::matrix<double> first = gen.prefill(states, prompts);
    REQUIRE(first.rows() == 3);
    CHECK(std::isnan(first(0, 0)));  // empty prompt: nothing to predict from
    std::vector<nn::matrix<double>> full;
    for (const auto& s : sequences) full.push_back(model.forward(s));
    CHECK(row_error(first.row(1), full[1].row(0)) < 1e-12);
    CHECK(row_error(first.row(2), full[2].row(11)) < 1e-12);
    // step all three together until the shortest runs out, then the two others, then the last alone
    std::vector<std::size_t> pos(prompt);
    double worst = 0;
    for (;;) {
        std::vector<dec::decoding_state<double>*> active;
        std::vector<std::int64_t> next;
        std::vector<int> which;
        for (int i = 0; i < 3; ++i)
            if (pos[i] < sequences[i].size()) {
                active.push_back(&states[static_cast<std::size_t>(i)]);
                next.push_back(sequences[i][pos[i]]);
                which.push_back(i);
            }
        if (active.empty()) break;
        const nn::matrix<double> logits = gen.step(active, next);
        for (std::size_t j = 0; j < which.size(); ++j) {
            const int i = which[j];
            worst = std::max(worst, row_error(logits.row(static_cast<index_t>(j)), full[i].row(static_cast<index_t>(pos[i]))));
            ++pos[i];
        }
    }
    CHECK(worst < 1e-12);
    // the vector form: all three again from fresh states, one token each
    for (auto& s : states) s.clear();
    const nn::matrix<double> one = gen.step(states, {sequences[0][0], sequences[1][0], sequences[2][0]});
    for (int i = 0; i < 3; ++i) CHECK(row_error(one.row(i), full[i].row(0)) < 1e-12);
}

// Batches of up to 11 float sequences (row groups of 8, 2 and 1 in the step's products), float and bf16
// weights: every row of a batched step is bitwise the row of the same sequence stepped alone, and close
// to the full forward. Head dim 20 and widths 40, 72: the 16-lane products and their tails both run.
template <class W>
void check_float_batch(std::uint64_t seed) {
    nn::decoder_config cfg = small_config();
    cfg.vocab_size = 37;
    cfg.embed_dim = 40;
    cfg.heads = 2;
    cfg.ffn_dim = 72;
    const auto model = nn::random_decoder<float, W>(cfg, seed);
    dec::incremental_decoder<float, W> gen(model);
    constexpr std::size_t count = 11, steps = 5;
    std::vector<std::vector<std::int64_t>> sequences, prompts;
    std::vector<dec::decoding_state<float>> batch, alone;
    for (std::size_t i = 0; i < count; ++i) {
        sequences.push_back(random_tokens(2 * i + 1 + steps, 37, 40 + i));
        prompts.emplace_back(sequences[i].begin(), sequences[i].begin() + static_cast<std::ptrdiff_t>(2 * i + 1));
        batch.push_back(gen.make_state());
        alone.push_back(gen.make_state());
    }
    (void)gen.prefill(batch, prompts);
    for (std::size_t i = 0; i < count; ++i) (void)gen.prefill(alone[i], prompts[i]);
    double worst = 0;
    bool same = true;
    for (std::size_t s = 0; s < steps; ++s) {
        std::vector<std::int64_t> next;
        for (std::size_t i = 0; i < count; ++i) next.push_back(sequences[i][2 * i + 1 + s]);
        const nn::matrix<float> rows = gen.step(batch, next);
        for (std::size_t i = 0; i < count; ++i) {
            const nn::vector<float> one = gen.step(alone[i], next[i]);
            same = same && (rows.row(static_cast<index_t>(i)).transpose().array() == one.array()).all();
            const nn::matrix<float> full = model.forward(std::vector<std::int64_t>(
                sequences[i].begin(), sequences[i].begin() + static_cast<std::ptrdiff_t>(2 * i + 2 + s)));
            worst = std::max(worst, row_error(one.transpose(), full.row(full.rows() - 1)));
        }
    }
    CHECK(same);
    CHECK(worst < 1e-5);
    // a copied state continues as the original
    dec::decoding_state<float> copy = alone[10];
    CHECK(copy.bytes() == alone[10].bytes());
    const nn::vector<float> a = gen.step(alone[10], 3), b = gen.step(copy, 3);
    CHECK((a.array() == b.array()).all());
}

TEST_CASE("decoding: float batches equal each sequence alone bitwise (float and bf16 weights)", "[decoding][batch]") {
    check_float_batch<float>(21);
    check_float_batch<Eigen::bfloat16>(22);
}

TEST_CASE("decoding: prefill at a later segment boundary equals the whole sequence's forward", "[decoding]") {
    const nn::decoder_config cfg = small_config();  // lcm(6, 16, 20) = 240
    const auto model = nn::random_decoder<double>(cfg, 4);
    dec::incremental_decoder<double> gen(model);
    const auto history = random_tokens(480, 23, 5), tail = random_tokens(50, 23, 6);
    std::vector<std::int64_t> whole = history;
    whole.insert(whole.end(), tail.begin(), tail.end());
    const nn::matrix<double> full = model.forward(whole);
    auto state = gen.make_state();
    const std::vector<std::int64_t> prompt(tail.begin(), tail.begin() + 20);
    const nn::vector<double> last = gen.prefill(state, prompt, 480);
    CHECK(state.position() == 500);
    CHECK(row_error(last.transpose(), full.row(499)) < 1e-11);
    for (std::size_t p = 20; p < tail.size(); ++p)
        CHECK(row_error(gen.step(state, tail[p]).transpose(), full.row(static_cast<index_t>(480 + p))) < 1e-11);
    // a start that is not a segment boundary of every branch is refused, naming the segment length
    auto other = gen.make_state();
    try {
        (void)gen.prefill(other, prompt, 48);  // multiple of 6 and 16, not of 20
        FAIL("no error");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("segment length 20") != std::string::npos);
    }
}

TEST_CASE("decoding: anchored XPos at positions past 1M: float matches double", "[decoding][xpos]") {
    nn::decoder_config cfg = nn::decoder_config::base(31);
    cfg.embed_dim = 64;
    cfg.heads = 4;  // head dim 16
    cfg.ffn_dim = 64;
    cfg.layers = 2;
    cfg.segment_length = {16, 64, 256};
    cfg.dilated_ratio = {1, 2, 4};
    // the centred form cannot even represent these positions in float
    nn::rotary_embedding<float> centred(16, {});
    CHECK_THROWS_AS(centred.coefficients(1100000, true), std::overflow_error);
    const auto m64 = nn::random_decoder<double>(cfg, 21);
    const auto m32 = nn::random_decoder<float>(cfg, 21);
    dec::incremental_decoder<double> g64(m64);
    dec::incremental_decoder<float> g32(m32);
    const auto tokens = random_tokens(300, 31, 8);
    for (index_t start : {index_t(1) << 20, (index_t(1) << 20) + 256 * 100, index_t(1) << 30}) {
        auto s64 = g64.make_state();
        auto s32 = g32.make_state();
        const std::vector<std::int64_t> prompt(tokens.begin(), tokens.begin() + 200);  // crosses 64-token segments
        double worst = row_error(g32.prefill(s32, prompt, start), g64.prefill(s64, prompt, start));
        for (std::size_t p = 200; p < tokens.size(); ++p) {  // and a 256-token boundary at start + 256
            const nn::vector<float> a = g32.step(s32, tokens[p]);
            const nn::vector<double> b = g64.step(s64, tokens[p]);
            worst = std::max(worst, row_error(a, b));
        }
        INFO("start " << start);
        CHECK(worst < 1e-4);
        std::printf("positions %lld..%lld: float vs double max row error %.2e\n", static_cast<long long>(start),
                    static_cast<long long>(start + 299), worst);
    }
}

TEST_CASE("anchored XPos: the float forward runs past 66K tokens and matches double", "[decoding][xpos]") {
    nn::decoder_config cfg = nn::decoder_config::base(11);
    cfg.embed_dim = 16;
    cfg.heads = 2;
    cfg.ffn_dim = 16;
    cfg.layers = 1;
    cfg.segment_length = {16, 64};
    cfg.dilated_ratio = {1, 4};
    const auto m64 = nn::random_decoder<double>(cfg, 2);
    const auto m32 = nn::random_decoder<float>(cfg, 2);
    const auto tokens = random_tokens(70000, 11, 3);  // the centred form overflows float past ~66K
    const nn::matrix<float> h32 = m32.forward_hidden(tokens);
    const nn::matrix<double> h64 = m64.forward_hidden(tokens);
    const nn::matrix<float> a = m32.project(h32.bottomRows(64));
    const nn::matrix<double> b = m64.project(h64.bottomRows(64));
    double worst = 0;
    for (index_t i = 0; i < 64; ++i) worst = std::max(worst, row_error(a.row(i), b.row(i)));
    CHECK(worst < 1e-4);
    // and the decoder agrees with that forward at the end of the sequence
    dec::incremental_decoder<double> gen(m64);
    auto state = gen.make_state();
    const std::vector<std::int64_t> last(tokens.end() - 48, tokens.end());  // 69952 is a multiple of 64
    const std::vector<std::int64_t> head(last.begin(), last.begin() + 10);
    (void)gen.prefill(state, head, 69952);
    for (std::size_t p = 10; p < last.size(); ++p)
        CHECK(row_error(gen.step(state, last[p]).transpose(), b.row(static_cast<index_t>(16 + p))) < 1e-11);
}

TEST_CASE("decoding: greedy generation equals argmax of the full forward, token by token", "[decoding]") {
    const nn::decoder_config cfg = small_config();
    const auto model = nn::random_decoder<double>(cfg, 12);
    dec::incremental_decoder<double> gen(model);
    auto state = gen.make_state();
    std::vector<std::int64_t> seq = random_tokens(7, 23, 4);
    dec::sampler greedy({0.0, 0, 1.0});
    nn::vector<double> logits = gen.prefill(state, seq);
    for (int i = 0; i < 25; ++i) {
        const std::int64_t next = greedy(logits);
        // oracle: recompute everything, take the arg max of the last row
        const nn::matrix<double> full = model.forward(seq);
        Eigen::Index want = 0;
        full.row(full.rows() - 1).maxCoeff(&want);
        CHECK(next == want);
        seq.push_back(next);
        logits = gen.step(state, next);
    }
}

TEST_CASE("decoding: bad inputs are refused with the value named", "[decoding][errors]") {
    const nn::decoder_config cfg = small_config();
    const auto model = nn::random_decoder<float>(cfg, 1);
    dec::incremental_decoder<float> gen(model);
    auto message = [](auto&& f) -> std::string {
        try {
            f();
        } catch (const std::exception& e) {
            return e.what();
        }
        return "";
    };
    auto state = gen.make_state();
    std::string m = message([&] { (void)gen.prefill(state, {1, 2, 23}); });
    CHECK(m.find("token 23 at position 2") != std::string::npos);
    CHECK(m.find("[0, 23)") != std::string::npos);
    CHECK(state.position() == 0);  // nothing happened
    CHECK_THROWS_AS(gen.prefill(state, {-1}), std::out_of_range);
    (void)gen.prefill(state, {1, 2, 3});
    m = message([&] { (void)gen.step(state, 99); });
    CHECK(m.find("token 99 at position 3") != std::string::npos);
    CHECK(state.position() == 3);
    m = message([&] { (void)gen.prefill(state, {4}); });
    CHECK(m.find("at position 3, not 0") != std::string::npos);
    // a state of another model
    nn::decoder_config other = cfg;
    other.layers = 3;
    const auto model3 = nn::random_decoder<float>(other, 1);
    dec::incremental_decoder<float> gen3(model3);
    auto state3 = gen3.make_state();
    m = message([&] { (void)gen.step(state3, 1); });
    CHECK(m.find("not made for this model") != std::string::npos);
    // batches
    std::vector<dec::decoding_state<float>> states(2, gen.make_state());
    m = message([&] { (void)gen.step(states, {1}); });
    CHECK(m.find("2 states but 1 tokens") != std::string::npos);
    m = message([&] { (void)gen.step(std::vector<dec::decoding_state<float>*>{&states[0], &states[0]}, {1, 2}); });
    CHECK(m.find("same state") != std::string::npos);
    // dense attention has no bounded cache
    nn::model_options dense;
    dense.attention = nn::attention_kind::dense;
    const auto dense_model = nn::random_decoder<float>(cfg, 1, dense);
    m = message([&] { dec::incremental_decoder<float> g(dense_model); });
    CHECK(m.find("dilated attention") != std::string::npos);
    m = message([&] { (void)gen.prefill(states[0], {1}, -16); });
    CHECK(m.find("negative") != std::string::npos);
}

TEST_CASE("sampling: greedy, temperature, top-k, top-p, seeds", "[decoding][sampling]") {
    const std::vector<double> logits{std::log(0.05), std::log(0.5), std::log(0.15), std::log(0.3)};  // p = .05 .5 .15 .3
    // greedy: arg max, lowest id among ties, no randomness
    dec::sampler greedy({0.0, 0, 1.0}, 1);
    CHECK(greedy(logits) == 1);
    CHECK(greedy(std::vector<float>{1.f, 3.f, 3.f, 2.f}) == 1);
    // top-k 1 is greedy whatever the temperature
    dec::sampler k1({5.0, 1, 1.0}, 2);
    for (int i = 0; i < 50; ++i) CHECK(k1(logits) == 1);

    auto frequencies = [&](dec::sampling_options o, std::uint64_t seed, int draws) {
        dec::sampler s(o, seed);
        std::vector<double> f(logits.size(), 0.0);
        for (int i = 0; i < draws; ++i) f[static_cast<std::size_t>(s(logits))] += 1.0 / draws;
        return f;
    };
    // temperature 1: the softmax itself (20000 draws: standard error ≤ 0.0036)
    auto f = frequencies({1.0, 0, 1.0}, 7, 20000);
    const std::vector<double> p{0.05, 0.5, 0.15, 0.3};
    for (std::size_t i = 0; i < p.size(); ++i) CHECK(std::fabs(f[i] - p[i]) < 0.015);
    // temperature 2: p^(1/2) renormalised
    f = frequencies({2.0, 0, 1.0}, 8, 20000);
    double z = 0;
    for (double x : p) z += std::sqrt(x);
    for (std::size_t i = 0; i < p.size(); ++i) CHECK(std::fabs(f[i] - std::sqrt(p[i]) / z) < 0.015);
    // top-k 2: only ids 1 and 3, in ratio .5 : .3
    f = frequencies({1.0, 2, 1.0}, 9, 20000);
    CHECK(f[0] == 0);
    CHECK(f[2] == 0);
    CHECK(std::fabs(f[1] - 0.5 / 0.8) < 0.015);
    // top-p 0.79: {1, 3} (.8) suffice; top-p 0.81 needs id 2 as well
    f = frequencies({1.0, 0, 0.79}, 10, 5000);
    CHECK(f[0] == 0);
    CHECK(f[2] == 0);
    f = frequencies({1.0, 0, 0.81}, 10, 5000);
    CHECK(f[0] == 0);
    CHECK(f[2] > 0);
    // a tiny top-p keeps the most likely id only
    f = frequencies({1.0, 0, 1e-9}, 11, 200);
    CHECK(f[0] + f[2] + f[3] == 0);
    // seeds: the same seed gives the same stream, another seed another one
    auto stream = [&](std::uint64_t seed) {
        dec::sampler s({1.0, 0, 1.0}, seed);
        std::vector<std::int64_t> out;
        for (int i = 0; i < 64; ++i) out.push_back(s(logits));
        return out;
    };
    CHECK(stream(42) == stream(42));
    CHECK(stream(42) != stream(43));
    // a known stream: the generator is the library's own, so this holds on every platform
    dec::sampler fixed({1.0, 0, 1.0}, 0);
    CHECK(fixed.uniform() == Approx(0.8833108082136426).epsilon(1e-15));
}

TEST_CASE("sampling: bad options and logits are refused with the value named", "[decoding][sampling][errors]") {
    auto message = [](dec::sampling_options o) -> std::string {
        try {
            dec::sampler s(o);
        } catch (const std::invalid_argument& e) {
            return e.what();
        }
        return "";
    };
    CHECK(message({1.0, 0, 0.0}).find("top_p must be in (0, 1], got 0") != std::string::npos);
    CHECK(message({1.0, 0, 1.5}).find("got 1.5") != std::string::npos);
    CHECK(message({1.0, 0, std::nan("")}).find("top_p") != std::string::npos);
    CHECK(message({-1.0, 0, 1.0}).find("temperature") != std::string::npos);
    CHECK(message({INFINITY, 0, 1.0}).find("temperature") != std::string::npos);
    CHECK(message({1.0, -3, 1.0}).find("top_k must be >= 0 (0: off), got -3") != std::string::npos);
    dec::sampler s({1.0, 0, 1.0});
    auto error = [&](std::vector<float> logits) -> std::string {
        try {
            (void)s(logits);
        } catch (const std::invalid_argument& e) {
            return e.what();
        }
        return "";
    };
    CHECK(error({}).find("no logits") != std::string::npos);
    CHECK(error({1.f, NAN}).find("logit 1 is NaN") != std::string::npos);
    const float inf = std::numeric_limits<float>::infinity();
    CHECK(error({-inf, -inf}).find("-inf") != std::string::npos);
    dec::sampler g({0.0, 0, 1.0});
    CHECK(g(std::vector<float>{-inf, 2.f, inf}) == 2);  // greedy takes +inf as the maximum
}

TEST_CASE("anchored XPos: scores equal the centred form's at any position (double oracle)", "[decoding][xpos]") {
    // oracle: q_i·k_j with the rotation at absolute positions and the decay zeta_c^((i − j)/s) applied
    // once per pair, in double: what the centred form computes wherever it is finite
    nn::rotary_options o;
    o.angles = nn::angle_precision::float64;
    const index_t hd = 16, half = hd / 2;
    nn::rotary_embedding<double> rd(hd, o);
    nn::rotary_embedding<float> rf(hd, o);
    nn::matrix<double> q0(1, hd), k0(1, hd);
    for (index_t c = 0; c < hd; ++c) {
        q0(0, c) = std::sin(1.7 * static_cast<double>(c) + 0.3);
        k0(0, c) = std::cos(0.9 * static_cast<double>(c) - 0.2) + 0.1;
    }
    auto oracle = [&](index_t i, index_t j) {
        nn::matrix<double> q = q0, k = k0;
        rd.apply(q, rd.rotation(i, 1));
        rd.apply(k, rd.rotation(j, 1));
        double s = 0;
        for (index_t c = 0; c < half; ++c)
            s += (q(0, 2 * c) * k(0, 2 * c) + q(0, 2 * c + 1) * k(0, 2 * c + 1)) *
                 std::pow(static_cast<double>(rd.zeta[static_cast<std::size_t>(c)]), static_cast<double>(i - j) / 512.0);
        return s;
    };
    const double norm = q0.norm() * k0.norm();
    for (index_t w : {index_t(64), index_t(2048), index_t(32768)}) {
        for (index_t g : {index_t(0), index_t(3), index_t(1) << 15, (index_t(1) << 30) / w}) {
            const index_t start = g * w;
            for (auto [di, dj] : {std::pair<index_t, index_t>{w - 1, 0}, {w / 2, w / 2 - 1}, {w - 1, w - 1}, {5, 2}}) {
                const index_t i = start + di, j = start + dj;
                const double want = oracle(i, j);
                nn::matrix<double> qd = q0, kd = k0;
                rd.apply(qd, rd.rotation(i, 1));
                rd.apply(kd, rd.rotation(j, 1));
                rd.decay(qd, i, w, false);
                rd.decay(kd, j, w, true);
                nn::matrix<float> qf = q0.cast<float>(), kf = k0.cast<float>();
                rf.apply(qf, rf.rotation(i, 1));
                rf.apply(kf, rf.rotation(j, 1));
                rf.decay(qf, i, w, false);
                rf.decay(kf, j, w, true);
                const double got_d = qd.row(0).dot(kd.row(0));
                const double got_f = qf.row(0).cast<double>().dot(kf.row(0).cast<double>());
                INFO("w " << w << " i " << i << " j " << j);
                CHECK(std::fabs(got_d - want) <= 1e-12 * norm);
                CHECK(std::fabs(got_f - want) <= 1e-5 * norm);
                CHECK(std::isfinite(qf.sum() + kf.sum()));
            }
        }
    }
    // a segment longer than twice the float reach (~33K positions) overflows far into it: an error, not inf
    const index_t w = 200000;
    nn::matrix<float> kf = k0.cast<float>();
    CHECK_NOTHROW(rf.decay(kf, 1000, w, true));
    CHECK_THROWS_AS(rf.decay(kf, 150000, w, true), std::overflow_error);
    nn::matrix<double> kd = k0;
    CHECK_NOTHROW(rd.decay(kd, 150000, w, true));  // double reaches ~290K
}

// A segment longer than the XPos anchor's limit runs as blocks (nn/xpos.hpp block_length): the forward's
// pieces and the decoder's per-key-block query factors. anchor_reach = 5 cuts at 10 positions, so in double
// every branch of small_config but w = 6 runs as blocks (P = 9 for r = 3, 8 for r = 4), and the steps must
// equal the forward of the same model without the cut (no blocks) to 1e-12. In float with scale base 1
// (reach ~65 positions) a 200-position segment runs as blocks and matches double; a dilation longer than
// a block is refused when the decoder is made.
TEST_CASE("decoding: a segment longer than the XPos anchor's limit runs as blocks", "[decoding][xpos]") {
    const nn::decoder_config cfg = small_config();
    const auto tokens = random_tokens(70, cfg.vocab_size, 12);
    for (auto offsets : {longnet::offset_policy::paper, longnet::offset_policy::torchscale}) {
        nn::model_options opt;
        opt.offsets = offsets;
        opt.angles = nn::angle_precision::float64;
        const auto plain = nn::random_decoder<double>(cfg, 7, opt);
        auto cut = plain;
        for (auto& layer : cut.layers) layer.self_attn.config.rotary.anchor_reach = layer.self_attn.rotary.options.anchor_reach = 5;
        REQUIRE(cut.layers.front().self_attn.rotary.segment_limit() == 10);
        const nn::matrix<double> full = plain.forward(tokens);
        const nn::matrix<double> blocks = cut.forward(tokens);
        double forward_worst = 0;
        for (index_t p = 0; p < full.rows(); ++p) forward_worst = std::max(forward_worst, row_error(blocks.row(p), full.row(p)));
        CHECK(forward_worst <= 1e-12);
        for (std::size_t prompt : {std::size_t(0), std::size_t(1), std::size_t(13), std::size_t(40)}) {
            const nn::matrix<double> rows = decode(cut, tokens, prompt);
            double worst = 0;
            for (std::size_t p = prompt == 0 ? 0 : prompt - 1; p < tokens.size(); ++p)
                worst = std::max(worst, row_error(rows.row(static_cast<index_t>(p)), full.row(static_cast<index_t>(p))));
            INFO("prompt " << prompt << ", offsets " << longnet::to_string(offsets));
            CHECK(worst <= 1e-12);
        }
    }
    nn::decoder_config big = small_config();
    big.segment_length = {200};
    big.dilated_ratio = {2};
    big.xpos_scale_base = 1;  // float reach ~65 positions: blocks of 130
    const auto m32 = nn::random_decoder<float>(big, 2);
    const auto m64 = nn::random_decoder<double>(big, 2);
    REQUIRE(m32.layers.front().self_attn.rotary.segment_limit() < 200);
    REQUIRE(m64.layers.front().self_attn.rotary.segment_limit() > 200);
    const auto long_tokens = random_tokens(230, 23, 9);
    const nn::matrix<double> ref = m64.forward(long_tokens);
    const nn::matrix<float> rows = decode(m32, long_tokens, 150);
    double worst = 0;
    for (std::size_t p = 149; p < long_tokens.size(); ++p)
        worst = std::max(worst, row_error(rows.row(static_cast<index_t>(p)), ref.row(static_cast<index_t>(p))));
    CHECK(worst <= 1e-4);
    big.dilated_ratio = {200};  // one row per segment, longer than a block
    const auto wide = nn::random_decoder<float>(big, 2);
    CHECK_THROWS_WITH(dec::incremental_decoder<float>(wide), Catch::Contains("dilation 200 is longer than the XPos block limit"));
}
