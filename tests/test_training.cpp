// SPDX-License-Identifier: Apache-2.0
// Training against the torchscale fixture tests/data/train_00 (see tests/data/README.md): the whole
// decoder's gradients in both grad modes (double ~1e-9, float ~1e-3 of each tensor's largest value),
// with and without activation checkpointing; three AdamW steps (clipping, decoupled weight decay on
// matrices only) against params_step3 and losses.npy; the learning-rate schedule; optimizer errors.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <longnet/io/npy.hpp>
#include <longnet/io/safetensors.hpp>
#include <longnet/nn/nn.hpp>
#include <longnet/training/adamw.hpp>
#include <longnet/training/data.hpp>
#include <longnet/training/parameters.hpp>
#include <longnet/training/schedule.hpp>
#include <longnet/training/trainer.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include "catch.hpp"

namespace {

namespace nn = longnet::nn;
namespace tr = longnet::training;

const std::string case_dir = std::string(LONGNET_TEST_DATA_DIR) + "/train_00/";

nlohmann::json params() {
    std::ifstream in(case_dir + "params.json");
    return nlohmann::json::parse(in);
}

nn::model_options fixture_options() {
    nn::model_options o;
    o.angles = nn::angle_precision::float64;  // the fixture computes everything in float64
    return o;
}

template <class T>
nn::decoder<T> fixture_model() {
    const auto cfg = nn::decoder_config::from_json(params().at("decoder_config_all_fields"));
    return nn::load_decoder<T>(case_dir + "model.safetensors", cfg, fixture_options());
}

struct batch {
    std::vector<std::int64_t> inputs, targets;
};
batch fixture_batch() {
    const auto tokens = longnet::io::load_npy(case_dir + "tokens.npy").as_int64();
    return {{tokens.begin(), tokens.end() - 1}, {tokens.begin() + 1, tokens.end()}};
}

// max over elements |a − b| / max |b| for one named tensor.
template <class T>
double tensor_error(const tr::named_tensor<T>& a, const longnet::io::safetensors_file& ref) {
    const std::vector<std::int64_t> shape = a.shape;
    ref.expect(a.name, shape);
    const std::vector<double> b = ref.read<double>(a.name);
    double err = 0, scale = 1e-300;
    for (std::size_t i = 0; i < b.size(); ++i) {
        const double x = static_cast<double>(a.data[i]);
        if (!std::isfinite(x)) return INFINITY;
        err = std::max(err, std::fabs(x - b[i]));
        scale = std::max(scale, std::fabs(b[i]));
    }
    return err / scale;
}

template <class T>
void check_gradients(longnet::grad_mode mode, const std::string& file, double tol, bool checkpoint) {
    auto model = fixture_model<T>();
    const batch b = fixture_batch();
    auto grad = model.make_grad();
    nn::train_options opt;
    opt.mode = mode;
    opt.checkpoint_activations = checkpoint;
    opt.loss_row_block = 40;  // 96 rows: three logit blocks
    const double loss = model.forward_backward(b.inputs, b.targets, grad, opt);
    const double expected_loss = params().at("losses")[0].get<double>();
    CHECK(std::fabs(loss - expected_loss) < (sizeof(T) == 8 ? 1e-11 : 1e-5));
    const longnet::io::safetensors_file ref(case_dir + file);
    const auto grads = tr::named_gradients(grad);
    REQUIRE(grads.size() == ref.size());  // every parameter, nothing else
    double worst = 0;
    for (const auto& g : grads) {
        const double e = tensor_error(g, ref);
        INFO(g.name << " relative error " << e);
        CHECK(e < tol);
        worst = std::max(worst, e);
    }
    WARN(file << (sizeof(T) == 8 ? " double" : " float") << (checkpoint ? " checkpointed" : "")
              << ": worst per-tensor relative error " << worst);
}

}  // namespace

TEST_CASE("train_00: exact gradients of the whole decoder, double", "[training][fixture]") {
    check_gradients<double>(longnet::grad_mode::exact, "grads_exact.safetensors", 1e-9, false);
}
TEST_CASE("train_00: stop_grad_weights gradients (torchscale's autograd), double", "[training][fixture]") {
    check_gradients<double>(longnet::grad_mode::stop_grad_weights, "grads_stop_grad.safetensors", 1e-9, false);
}
TEST_CASE("train_00: exact gradients with activation checkpointing, double", "[training][fixture]") {
    check_gradients<double>(longnet::grad_mode::exact, "grads_exact.safetensors", 1e-9, true);
}
TEST_CASE("train_00: gradients in float, both modes", "[training][fixture]") {
    check_gradients<float>(longnet::grad_mode::exact, "grads_exact.safetensors", 1e-3, false);
    check_gradients<float>(longnet::grad_mode::stop_grad_weights, "grads_stop_grad.safetensors", 1e-3, false);
}

TEST_CASE("train_00: the grad modes differ (the fixture's stop_grad gradient is not the exact one)", "[training][fixture]") {
    auto model = fixture_model<double>();
    const batch b = fixture_batch();
    auto g = model.make_grad();
    nn::train_options opt;
    opt.mode = longnet::grad_mode::stop_grad_weights;
    model.forward_backward(b.inputs, b.targets, g, opt);
    const longnet::io::safetensors_file exact(case_dir + "grads_exact.safetensors");
    double worst = 0;
    for (const auto& t : tr::named_gradients(g)) worst = std::max(worst, tensor_error(t, exact));
    CHECK(worst > 1e-4);
}

TEST_CASE("checkpointing: bitwise identical gradients on the fixture, float and double", "[training]") {
    auto run = [](auto tag, bool ck) {
        using T = decltype(tag);
        auto model = fixture_model<T>();
        const batch b = fixture_batch();
        auto g = model.make_grad();
        nn::train_options opt;
        opt.checkpoint_activations = ck;
        model.forward_backward(b.inputs, b.targets, g, opt);
        std::vector<T> flat;
        for (const auto& t : tr::named_gradients(g)) flat.insert(flat.end(), t.data, t.data + t.size());
        return flat;
    };
    CHECK(run(double{}, false) == run(double{}, true));
    CHECK(run(float{}, false) == run(float{}, true));
}

namespace {
template <class T>
void three_adamw_steps(double param_tol, double loss_tol) {
    auto model = fixture_model<T>();
    const batch b = fixture_batch();
    const auto j = params().at("adamw");
    tr::adamw_options o;
    o.beta1 = j.at("betas")[0].get<double>();
    o.beta2 = j.at("betas")[1].get<double>();
    o.eps = j.at("eps").get<double>();
    o.weight_decay = j.at("weight_decay").get<double>();
    const double lr = j.at("lr").get<double>(), clip = j.at("clip_norm").get<double>();
    const int steps = j.at("steps").get<int>();
    REQUIRE(steps == 3);
    auto grad = model.make_grad();
    const auto ps = tr::named_parameters(model);
    const auto gs = tr::named_gradients(grad);
    tr::adamw<T> opt(ps, o);
    const std::vector<double> losses = longnet::io::load_npy(case_dir + "losses.npy").as_double();
    const auto norms = params().at("checks").at("grad_norm_before_clip_per_step");
    for (int s = 0; s < steps; ++s) {
        grad.set_zero();
        const double loss = model.forward_backward(b.inputs, b.targets, grad);
        CHECK(std::fabs(loss - losses[static_cast<std::size_t>(s)]) < loss_tol);
        const double norm = tr::clip_grad_norm(gs, clip);
        CHECK(std::fabs(norm - norms[static_cast<std::size_t>(s)].get<double>()) < 1e3 * loss_tol);
        opt.step(ps, gs, lr);
    }
    CHECK(opt.steps() == 3);
    CHECK(std::fabs(model.loss(b.inputs, b.targets) - losses[3]) < loss_tol);
    const longnet::io::safetensors_file ref(case_dir + "params_step3.safetensors");
    double worst = 0;
    for (const auto& p : ps) {
        const double e = tensor_error(p, ref);
        INFO(p.name << " relative error " << e);
        CHECK(e < param_tol);
        worst = std::max(worst, e);
    }
    WARN("params_step3 " << (sizeof(T) == 8 ? "double" : "float") << ": worst per-tensor relative error " << worst);
}
}  // namespace

TEST_CASE("train_00: three AdamW steps (clip 0.5, weight decay on matrices) match params_step3 and losses", "[training][fixture]") {
    SECTION("double") { three_adamw_steps<double>(1e-9, 1e-10); }
    // float: AdamW divides each gradient entry by its own RMS, so an entry whose gradient is at float
    // rounding level (~1e-6 of the tensor's largest) moves by up to lr in an arbitrary direction: measured
    // 2.3e-4 of the tensor's largest value (layers.1.self_attn.v_proj.weight), against the fixture's
    // suggested ~1e-4. The gradients themselves agree to ~2e-6.
    SECTION("float") { three_adamw_steps<float>(5e-4, 1e-4); }
}

TEST_CASE("AdamW: one step against a scalar oracle; decay only on matrices", "[training]") {
    double w[4] = {0.5, -1.5, 2.0, 0.25}, gw[4] = {0.3, -0.2, 0.1, 0.7};
    double bias[2] = {1.0, -1.0}, gb[2] = {-0.4, 0.9};
    std::vector<tr::named_tensor<double>> ps{{"w", w, {2, 2}}, {"b", bias, {2}}};
    std::vector<tr::named_tensor<double>> gs{{"w", gw, {2, 2}}, {"b", gb, {2}}};
    tr::adamw_options o;
    o.beta1 = 0.8, o.beta2 = 0.9, o.eps = 1e-3, o.weight_decay = 0.5;
    tr::adamw<double> opt(ps, o);
    const double lr = 0.1;
    auto oracle = [&](double p, double g, bool decay, int t, double& m, double& v) {
        if (decay) p -= lr * o.weight_decay * p;
        m = o.beta1 * m + (1 - o.beta1) * g;
        v = o.beta2 * v + (1 - o.beta2) * g * g;
        const double mhat = m / (1 - std::pow(o.beta1, t)), vhat = v / (1 - std::pow(o.beta2, t));
        return p - lr * mhat / (std::sqrt(vhat) + o.eps);
    };
    double m[6] = {}, v[6] = {}, expect[6];
    for (int i = 0; i < 4; ++i) expect[i] = w[i];
    expect[4] = bias[0], expect[5] = bias[1];
    for (int t = 1; t <= 2; ++t) {
        for (int i = 0; i < 4; ++i) expect[i] = oracle(expect[i], gw[i], true, t, m[i], v[i]);
        for (int i = 0; i < 2; ++i) expect[4 + i] = oracle(expect[4 + i], gb[i], false, t, m[4 + i], v[4 + i]);
        opt.step(ps, gs, lr);
    }
    for (int i = 0; i < 4; ++i) CHECK(std::fabs(w[i] - expect[i]) < 1e-14);
    for (int i = 0; i < 2; ++i) CHECK(std::fabs(bias[i] - expect[4 + i]) < 1e-14);
}

TEST_CASE("clip_grad_norm: global L2 norm, scaled only above the limit", "[training]") {
    double a[3] = {3, 0, 0}, b[1] = {4};
    std::vector<tr::named_tensor<double>> gs{{"a", a, {3}}, {"b", b, {1}}};
    CHECK(tr::clip_grad_norm(gs, 10.0) == 5.0);
    CHECK(a[0] == 3.0);
    CHECK(tr::clip_grad_norm(gs, 1.0) == 5.0);
    CHECK(std::fabs(a[0] - 3.0 / (5.0 + 1e-6)) < 1e-15);
    CHECK(std::fabs(tr::global_grad_norm(gs) - 5.0 / (5.0 + 1e-6)) < 1e-12);
}

TEST_CASE("learning-rate schedule: linear warm-up, cosine to the floor, constant", "[training]") {
    tr::lr_schedule s;
    s.kind = tr::schedule_kind::cosine;
    s.lr = 1.0;
    s.min_lr = 0.1;
    s.warmup = 4;
    s.total_steps = 14;
    CHECK(s.at(0) == 0.25);
    CHECK(s.at(3) == 1.0);
    CHECK(std::fabs(s.at(4) - 1.0) < 1e-15);
    CHECK(std::fabs(s.at(13) - 0.1) < 1e-15);
    CHECK(std::fabs(s.at(100) - 0.1) < 1e-15);
    CHECK(std::fabs(s.at(8) - (0.1 + 0.45 * (1 + std::cos(3.14159265358979323846 * 4 / 9)))) < 1e-15);
    for (int i = 4; i < 13; ++i) CHECK(s.at(i + 1) <= s.at(i));
    s.kind = tr::schedule_kind::constant;
    CHECK(s.at(9) == 1.0);
    s.min_lr = 2.0;
    CHECK_THROWS_WITH(s.validate(), Catch::Contains("min lr"));
    CHECK_THROWS_WITH(tr::parse_schedule("linear"), Catch::Contains("'linear'"));
}

TEST_CASE("AdamW: bad options and mismatched tensors are refused", "[training]") {
    tr::adamw_options o;
    o.beta2 = 1.0;
    CHECK_THROWS_WITH(o.validate(), Catch::Contains("beta2"));
    o = {};
    o.eps = 0;
    CHECK_THROWS_WITH(o.validate(), Catch::Contains("eps"));
    double w[2] = {1, 2}, g[2] = {1, 1};
    std::vector<tr::named_tensor<double>> ps{{"w", w, {2}}}, gs{{"w", g, {2}}};
    tr::adamw<double> opt(ps, {});
    CHECK_THROWS_WITH(opt.step(ps, gs, -1.0), Catch::Contains("-1"));
    std::vector<tr::named_tensor<double>> none;
    CHECK_THROWS_WITH(opt.step(none, none, 0.1), Catch::Contains("0 parameters"));
}

TEST_CASE("recall task: layout, only the answers scored, no answer near the queries, seeded", "[training]") {
    tr::recall_task task;
    task.seq_len = 96;
    task.pairs = 2;
    task.copies = 3;
    task.queries = 4;
    task.validate();
    tr::rng_state a{9}, b{9};
    const tr::sequence s = task.sample(a), t = task.sample(b);
    CHECK(s.inputs == t.inputs);
    CHECK(s.targets == t.targets);
    REQUIRE(s.inputs.size() == 96);
    int scored = 0;
    for (std::size_t i = 0; i < 96; ++i) {
        if (s.targets[i] == nn::ignore_target) continue;
        ++scored;
        CHECK(i % 8 == 7);
        CHECK(i >= 96 - 32);
        const std::int64_t query = s.inputs[i], answer = s.targets[i];
        CHECK(query < 16);
        CHECK(answer >= 16);
        CHECK(answer < 32);
        bool found = false;
        for (std::size_t p = 0; p < 2; ++p) found = found || (s.inputs[8 * p + 6] == query && s.inputs[8 * p + 7] == answer);
        CHECK(found);
    }
    CHECK(scored == 4);
    for (std::size_t c = 0; c < 3; ++c)
        for (std::size_t p = 0; p < 2; ++p) {
            CHECK(s.inputs[8 * (c * 2 + p) + 6] == s.inputs[8 * p + 6]);  // the same pairs, repeated
            CHECK(s.inputs[8 * (c * 2 + p) + 7] == s.inputs[8 * p + 7]);
        }
    for (std::size_t i = 48; i < 96; ++i)  // after the pairs: filler and query keys only, never a value
        CHECK((s.inputs[i] >= 32 || (s.inputs[i] < 16 && i % 8 == 7)));
    task.seq_len = 60;
    CHECK_THROWS_WITH(task.validate(), Catch::Contains("multiple of 8"));
}

TEST_CASE("load_checkpoint: malformed checkpoint.json refused with the file named (fuzz findings)", "[training]") {
    namespace fs = std::filesystem;
    nn::decoder_config cfg;
    cfg.embed_dim = 8, cfg.heads = 2, cfg.ffn_dim = 8, cfg.layers = 1, cfg.vocab_size = 7;
    cfg.segment_length = {4}, cfg.dilated_ratio = {1};
    auto model = nn::random_decoder<float>(cfg, 3);
    tr::trainer<float> trainer(model, {});
    const fs::path dir = fs::temp_directory_path() / ("longnet_test_ckpt_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    tr::rng_state rng{42};
    trainer.save_checkpoint(dir.string(), rng);
    tr::rng_state back{0};
    CHECK(trainer.load_checkpoint(dir.string(), back).at("step").get<int>() == 0);
    CHECK(back.state == 42);
    const std::string good = R"({"step": 0, "state": "state-0.safetensors", "rng": "42", "dtype": "float32"})";
    const std::vector<std::pair<std::string, std::string>> bad{
        {R"({"step": 0, "state": "state-0.safetensors", "rng": "42", "dtype": 5})", "dtype"},
        {good + R"( {"step": 1})", "not valid JSON"},
        {R"({"step": 0, "state": "state-0.safetensors", "rng": "12abc"})", "rng"},
        {R"({"step": 0, "state": "state-0.safetensors", "rng": "-1"})", "rng"},
        {R"({"step": 18446744073709551615, "state": "state-0.safetensors", "rng": "42"})", "step"},
        {R"({"step": -3, "state": "state-0.safetensors", "rng": "42"})", "step"},
        {R"({"step": 0, "state": "../state-0.safetensors", "rng": "42"})", "plain file name"},
        {R"({"step": 0, "state": "/tmp/x.safetensors", "rng": "42"})", "plain file name"},
        {R"({"step": 0, "state": "state-0.safetensors", "rng": "42", "dtype": "float64"})", "float64"},
        {R"({"step": 0, "rng": "42"})", "expected step, state and rng"},
        {R"([1, 2])", "JSON object"},
    };
    for (const auto& [text, message] : bad) {
        INFO(text);
        std::ofstream(dir / "checkpoint.json", std::ios::trunc) << text;
        CHECK_THROWS_WITH(trainer.load_checkpoint(dir.string(), back), Catch::Contains(message) && Catch::Contains("checkpoint.json"));
    }
    fs::remove_all(dir);
}
