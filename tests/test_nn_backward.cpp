// SPDX-License-Identifier: Apache-2.0
// Backward of every longnet::nn layer against central finite differences, in double, on random non-zero
// inputs and parameters: linear, LayerNorm, GELU, embedding, softmax cross-entropy, multi-head dilated
// (and dense) attention with XPos, the Sub-LN feed-forward (several row blocks), the decoder layer and
// the whole decoder (loss over several logit blocks). Each check perturbs entries by ±h and compares
// (L(p+h) − L(p−h)) / 2h with the analytic gradient, where L = Σ y ∘ R for a fixed random R.
// Also: accumulation (+=) semantics, activation checkpointing bitwise, bad-input errors, and the pass on
// two slices of a sequence through an attention backend (forward_backward_sum) against the whole pass.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <longnet/nn/nn.hpp>
#include <longnet/training/parameters.hpp>

#include "catch.hpp"

namespace {

namespace nn = longnet::nn;
using mat = nn::matrix<double>;
using vec = nn::vector<double>;
using longnet::index_t;

std::mt19937_64& rng() {
    static std::mt19937_64 g(20260311);
    return g;
}
// Random, bounded away from zero.
double nonzero(double scale = 1.0) {
    std::uniform_real_distribution<double> u(0.2, 1.0);
    std::bernoulli_distribution sign(0.5);
    return (sign(rng()) ? 1 : -1) * u(rng()) * scale;
}
mat random_matrix(index_t r, index_t c, double scale = 1.0) {
    mat m(r, c);
    for (index_t i = 0; i < m.size(); ++i) m.data()[i] = nonzero(scale);
    return m;
}
vec random_vector(index_t n, double scale = 1.0) {
    vec v(n);
    for (index_t i = 0; i < n; ++i) v[i] = nonzero(scale);
    return v;
}
void randomize_norm(nn::layer_norm<double>& n) {
    for (index_t i = 0; i < n.features(); ++i) n.weight[i] = 1.0 + 0.5 * nonzero(), n.bias[i] = nonzero(0.2);
}
void randomize_linear(nn::linear<double>& l) {
    l.weight = random_matrix(l.out_features(), l.in_features(), 1.0 / std::sqrt(double(l.in_features())));
    if (l.has_bias()) l.bias = random_vector(l.out_features(), 0.1);
}

// Central differences of f at every entry of p[0..n) (or `samples` random entries), compared with
// analytic[0..n): max |fd − analytic| / max(max |analytic|, 1e-3).
double fd_error(const std::function<double()>& f, double* p, index_t n, const double* analytic, int samples = -1,
                double h = 1e-6) {
    double err = 0, scale = 1e-3;
    for (index_t i = 0; i < n; ++i) scale = std::max(scale, std::fabs(analytic[i]));
    std::vector<index_t> idx;
    if (samples < 0 || samples >= n) {
        for (index_t i = 0; i < n; ++i) idx.push_back(i);
    } else {
        std::uniform_int_distribution<index_t> pick(0, n - 1);
        for (int s = 0; s < samples; ++s) idx.push_back(pick(rng()));
    }
    for (index_t i : idx) {
        const double saved = p[i];
        p[i] = saved + h;
        const double up = f();
        p[i] = saved - h;
        const double down = f();
        p[i] = saved;
        err = std::max(err, std::fabs((up - down) / (2 * h) - analytic[i]));
    }
    return err / scale;
}

double dot(const mat& a, const mat& b) { return (a.array() * b.array()).sum(); }

constexpr double tol = 1e-7;

}  // namespace

TEST_CASE("linear backward: dx, dW, db against finite differences", "[nn][backward]") {
    nn::linear<double> lin(5, 3);
    randomize_linear(lin);
    mat x = random_matrix(4, 5);
    const mat r = random_matrix(4, 3);
    auto loss = [&] { return dot(lin(x), r); };
    mat dx = mat::Zero(4, 5);
    auto g = lin.make_grad();
    lin.backward(x, r, dx, g);
    CHECK(fd_error(loss, x.data(), x.size(), dx.data()) < tol);
    CHECK(fd_error(loss, lin.weight.data(), lin.weight.size(), g.weight.data()) < tol);
    CHECK(fd_error(loss, lin.bias.data(), lin.bias.size(), g.bias.data()) < tol);

    SECTION("accumulates") {
        mat dx2 = dx;
        auto g2 = g;
        lin.backward(x, r, dx2, g2);
        CHECK((dx2 - 2 * dx).cwiseAbs().maxCoeff() < 1e-14);
        CHECK((g2.weight - 2 * g.weight).cwiseAbs().maxCoeff() < 1e-14);
        CHECK((g2.bias - 2 * g.bias).cwiseAbs().maxCoeff() < 1e-14);
    }
    SECTION("no bias, float weights") {
        nn::linear<double, float> nb(5, 3, false);
        nb.weight = lin.weight.cast<float>();
        mat d = mat::Zero(4, 5);
        auto gn = nb.make_grad();
        nb.backward(x, r, d, gn);
        const mat expected = r * nb.weight.cast<double>();
        CHECK((d - expected).cwiseAbs().maxCoeff() < 1e-12);
        CHECK(gn.bias.size() == 0);
    }
    SECTION("shape errors name the shapes") {
        mat bad = mat::Zero(4, 4);
        CHECK_THROWS_WITH(lin.backward(x, r, bad, g), Catch::Contains("[4, 4]"));
    }
}

TEST_CASE("layer_norm backward against finite differences", "[nn][backward]") {
    nn::layer_norm<double> ln(6);
    randomize_norm(ln);
    mat x = random_matrix(5, 6, 2.0);
    const mat r = random_matrix(5, 6);
    auto loss = [&] { return dot(ln(x), r); };
    mat y(5, 6);
    vec mean, rstd;
    ln.forward_train(x, y, mean, rstd);
    CHECK((y - ln(x)).cwiseAbs().maxCoeff() == 0.0);  // same numbers as forward
    mat dx = mat::Zero(5, 6);
    auto g = ln.make_grad();
    ln.backward(x, r, mean, rstd, dx, g);
    CHECK(fd_error(loss, x.data(), x.size(), dx.data()) < tol);
    CHECK(fd_error(loss, ln.weight.data(), ln.weight.size(), g.weight.data()) < tol);
    CHECK(fd_error(loss, ln.bias.data(), ln.bias.size(), g.bias.data()) < tol);
}

TEST_CASE("gelu backward against finite differences", "[nn][backward]") {
    mat x = random_matrix(3, 7, 3.0);
    const mat r = random_matrix(3, 7);
    auto loss = [&] {
        mat y = x;
        nn::gelu_inplace<double>(y);
        return dot(y, r);
    };
    mat dx = mat::Zero(3, 7);
    nn::gelu_backward<double>(x, r, dx);
    CHECK(fd_error(loss, x.data(), x.size(), dx.data()) < tol);
    mat d = r;
    nn::gelu_backward_inplace<double>(x, d);
    CHECK((d - dx).cwiseAbs().maxCoeff() < 1e-15);
}

// float GELU backward (its own vectorized erf and exp, detail/nn_loops.hpp, on the active ISA path) against
// the double one, over rows long enough for the vector loops and their tails.
TEST_CASE("gelu backward in float against double", "[nn][backward]") {
    const mat x = random_matrix(4, 53, 3.0), r = random_matrix(4, 53);
    mat dx = random_matrix(4, 53);
    const mat dx0 = dx;
    nn::gelu_backward<double>(x, r, dx);
    nn::matrix<float> xf = x.cast<float>(), rf = r.cast<float>(), dxf = dx0.cast<float>();
    nn::gelu_backward<float>(xf, rf, dxf);
    const mat xw = xf.cast<double>(), rw = rf.cast<double>();
    mat ref = dx0.cast<float>().cast<double>();
    nn::gelu_backward<double>(xw, rw, ref);
    CHECK((dxf.cast<double>() - ref).cwiseAbs().maxCoeff() < 2e-6 * (1 + ref.cwiseAbs().maxCoeff()));
    nn::matrix<float> df = rf;
    nn::gelu_backward_inplace<float>(xf, df);
    mat dref = rw;
    nn::gelu_backward_inplace<double>(xw, dref);
    CHECK((df.cast<double>() - dref).cwiseAbs().maxCoeff() < 2e-6 * (1 + dref.cwiseAbs().maxCoeff()));
    CHECK((dx - ref).cwiseAbs().maxCoeff() < 1e-5);  // the float inputs are within float rounding of x
}

TEST_CASE("embedding backward against finite differences (repeated tokens)", "[nn][backward]") {
    mat table = random_matrix(5, 4);
    const std::vector<std::int64_t> tokens{3, 1, 3, 0, 4, 3};
    const mat r = random_matrix(6, 4);
    const double scale = 2.0;
    auto loss = [&] {
        mat x;
        nn::embedding_forward(table, tokens, scale, x);
        return dot(x, r);
    };
    mat d = mat::Zero(5, 4);
    nn::embedding_backward<double>(tokens, scale, r, d);
    CHECK(fd_error(loss, table.data(), table.size(), d.data()) < tol);
    CHECK(d.row(2).cwiseAbs().maxCoeff() == 0.0);  // token 2 unused
    mat x;
    CHECK_THROWS_WITH(nn::embedding_forward(table, std::vector<std::int64_t>{1, 5}, 1.0, x), Catch::Contains("token 5"));
}

TEST_CASE("softmax cross-entropy in float (vectorized rows, tails, chunked sums) against the double formula", "[nn][backward]") {
    // vocabularies: shorter than a SIMD batch, a batch plus a tail, and longer than one 256-batch partial sum
    for (index_t vocab : {index_t(3), index_t(37), index_t(5003)}) {
        const mat zd = random_matrix(6, vocab, 4.0);
        const nn::matrix<float> zf = zd.cast<float>();
        const mat z = zf.cast<double>();  // the oracle sees the float inputs
        std::vector<std::int64_t> targets;
        for (index_t i = 0; i < z.rows(); ++i) targets.push_back((7 * i + 1) % vocab);
        targets[3] = nn::ignore_target;
        double expect = 0;
        mat grad = mat::Zero(z.rows(), vocab);
        for (index_t i = 0; i < z.rows(); ++i) {
            if (targets[std::size_t(i)] == nn::ignore_target) continue;
            const double m = z.row(i).maxCoeff();
            const double lse = m + std::log((z.row(i).array() - m).exp().sum());
            expect += lse - z(i, targets[std::size_t(i)]);
            grad.row(i) = 0.25 * (z.row(i).array() - lse).exp().matrix();
            grad(i, targets[std::size_t(i)]) -= 0.25;
        }
        CHECK(std::fabs(nn::cross_entropy_forward<float>(zf, targets.data()) - expect) < 1e-6 * std::fabs(expect));
        nn::matrix<float> g = zf;
        const double loss = nn::cross_entropy_backward<float>(g, targets.data(), 0.25);
        CHECK(std::fabs(loss - expect) < 1e-6 * std::fabs(expect));
        const double err = (g.cast<double>() - grad).cwiseAbs().maxCoeff() / grad.cwiseAbs().maxCoeff();
        INFO("vocab " << vocab << ": gradient error " << err);
        CHECK(err < 2e-6);
        CHECK(g.row(3).cwiseAbs().maxCoeff() == 0.0f);
    }
}

TEST_CASE("softmax cross-entropy: loss and gradient against a plain formula and finite differences", "[nn][backward]") {
    mat z = random_matrix(5, 7, 3.0);
    const std::vector<std::int64_t> targets{6, 0, 3, 3, 1};
    // oracle: −log softmax(z)[target], summed
    auto oracle = [&] {
        double total = 0;
        for (index_t i = 0; i < z.rows(); ++i) {
            double s = 0;
            for (index_t v = 0; v < z.cols(); ++v) s += std::exp(z(i, v));
            total += -std::log(std::exp(z(i, targets[std::size_t(i)])) / s);
        }
        return total;
    };
    CHECK(std::fabs(nn::cross_entropy_forward<double>(z, targets.data()) - oracle()) < 1e-12);
    mat g = z;
    const double loss = nn::cross_entropy_backward<double>(g, targets.data(), 0.5);
    CHECK(std::fabs(loss - oracle()) < 1e-12);
    mat analytic = 2.0 * g;  // grad_scale 0.5
    CHECK(fd_error(oracle, z.data(), z.size(), analytic.data()) < tol);
    const std::vector<std::int64_t> bad{0, 1, 7, 0, 0};
    CHECK_THROWS_WITH(nn::cross_entropy_forward<double>(z, bad.data()), Catch::Contains("target 7 at row 2"));
    const std::vector<std::int64_t> negative{0, 1, -2, 0, 0};
    CHECK_THROWS_WITH(nn::cross_entropy_forward<double>(z, negative.data()), Catch::Contains("target -2 at row 2"));

    SECTION("ignored rows (target -1): no loss, zero gradient") {
        const std::vector<std::int64_t> some{6, nn::ignore_target, 3, nn::ignore_target, 1};
        CHECK(nn::scored_targets(some.data(), 5) == 3);
        mat gz = z;
        const double l = nn::cross_entropy_backward<double>(gz, some.data(), 1.0);
        double expect = 0;
        for (index_t i : {0, 2, 4}) {
            double s = 0;
            for (index_t v = 0; v < z.cols(); ++v) s += std::exp(z(i, v));
            expect += std::log(s) - z(i, some[std::size_t(i)]);
        }
        CHECK(std::fabs(l - expect) < 1e-12);
        CHECK(std::fabs(nn::cross_entropy_forward<double>(z, some.data()) - expect) < 1e-12);
        CHECK(gz.row(1).cwiseAbs().maxCoeff() == 0.0);
        CHECK(gz.row(3).cwiseAbs().maxCoeff() == 0.0);
        CHECK(std::fabs(gz.row(0).sum()) < 1e-15);  // softmax − one-hot sums to 0
    }
}

namespace {
nn::attention_config small_attention(nn::attention_kind kind, nn::position_encoding pos) {
    nn::attention_config c;
    c.embed_dim = 12;
    c.heads = 3;  // hd = 4
    c.kind = kind;
    c.dilated = longnet::dilated_options::from_lists({4, 8, 16}, {1, 2, 4}, true);
    c.dilated.offsets = longnet::offset_policy::torchscale;
    c.rotary.kind = pos;
    c.rotary.scale_base = 16;  // strong XPos decay so its gradient matters
    return c;
}
void randomize_attention(nn::multihead_attention<double>& a) {
    randomize_linear(a.q_proj);
    randomize_linear(a.k_proj);
    randomize_linear(a.v_proj);
    randomize_linear(a.out_proj);
    randomize_norm(a.inner_attn_ln);
}
}  // namespace

TEST_CASE("multihead attention backward (dilated, dense; XPos, RoPE) against finite differences", "[nn][backward]") {
    struct variant {
        nn::attention_kind kind;
        nn::position_encoding pos;
        bool causal;
    };
    for (const variant v : {variant{nn::attention_kind::dilated, nn::position_encoding::xpos, true},
                            variant{nn::attention_kind::dilated, nn::position_encoding::rope, false},
                            variant{nn::attention_kind::dense, nn::position_encoding::xpos, true}}) {
        auto cfg = small_attention(v.kind, v.pos);
        cfg.dilated.causal = v.causal;
        nn::multihead_attention<double> attn(cfg);
        randomize_attention(attn);
        const index_t seq = 21;  // ragged last segments
        mat x = random_matrix(seq, 12);
        const mat r = random_matrix(seq, 12);
        auto loss = [&] {
            mat y(seq, 12);
            nn::attention_activations<double> act;
            attn.forward_train(x, y, act);
            return dot(y, r);
        };
        mat y(seq, 12);
        nn::attention_activations<double> act;
        attn.forward_train(x, y, act);
        CHECK((y - attn(x)).cwiseAbs().maxCoeff() < 1e-12);
        mat dx = mat::Zero(seq, 12);
        auto g = attn.make_grad();
        attn.backward(x, r, act, dx, g);
        INFO("kind " << nn::to_string(v.kind) << ", positions " << nn::to_string(v.pos) << ", causal " << v.causal);
        CHECK(fd_error(loss, x.data(), x.size(), dx.data()) < tol);
        CHECK(fd_error(loss, attn.q_proj.weight.data(), attn.q_proj.weight.size(), g.q_proj.weight.data()) < tol);
        CHECK(fd_error(loss, attn.q_proj.bias.data(), attn.q_proj.bias.size(), g.q_proj.bias.data()) < tol);
        CHECK(fd_error(loss, attn.k_proj.weight.data(), attn.k_proj.weight.size(), g.k_proj.weight.data(), 40) < tol);
        CHECK(fd_error(loss, attn.k_proj.bias.data(), attn.k_proj.bias.size(), g.k_proj.bias.data()) < tol);
        CHECK(fd_error(loss, attn.v_proj.weight.data(), attn.v_proj.weight.size(), g.v_proj.weight.data(), 40) < tol);
        CHECK(fd_error(loss, attn.v_proj.bias.data(), attn.v_proj.bias.size(), g.v_proj.bias.data()) < tol);
        CHECK(fd_error(loss, attn.out_proj.weight.data(), attn.out_proj.weight.size(), g.out_proj.weight.data(), 40) < tol);
        CHECK(fd_error(loss, attn.out_proj.bias.data(), attn.out_proj.bias.size(), g.out_proj.bias.data()) < tol);
        CHECK(fd_error(loss, attn.inner_attn_ln.weight.data(), 12, g.inner_attn_ln.weight.data()) < tol);
        CHECK(fd_error(loss, attn.inner_attn_ln.bias.data(), 12, g.inner_attn_ln.bias.data()) < tol);
    }
}

TEST_CASE("feed-forward backward (GELU, Sub-LN, several row blocks) against finite differences", "[nn][backward]") {
    nn::feed_forward<double> ffn(4, 6);
    randomize_linear(ffn.fc1);
    randomize_linear(ffn.fc2);
    randomize_norm(ffn.ffn_layernorm);
    ffn.row_block = 3;  // 7 rows: blocks of 3, 3, 1
    mat x = random_matrix(7, 4);
    const mat r = random_matrix(7, 4);
    auto loss = [&] { return dot(ffn(x), r); };
    mat y(7, 4);
    nn::feed_forward_activations<double> act;
    ffn.forward_train(x, y, act);
    CHECK((y - ffn(x)).cwiseAbs().maxCoeff() < 1e-13);
    mat dx = mat::Zero(7, 4);
    auto g = ffn.make_grad();
    ffn.backward(x, r, act, dx, g);
    CHECK(fd_error(loss, x.data(), x.size(), dx.data()) < tol);
    CHECK(fd_error(loss, ffn.fc1.weight.data(), ffn.fc1.weight.size(), g.fc1.weight.data()) < tol);
    CHECK(fd_error(loss, ffn.fc1.bias.data(), ffn.fc1.bias.size(), g.fc1.bias.data()) < tol);
    CHECK(fd_error(loss, ffn.fc2.weight.data(), ffn.fc2.weight.size(), g.fc2.weight.data()) < tol);
    CHECK(fd_error(loss, ffn.fc2.bias.data(), ffn.fc2.bias.size(), g.fc2.bias.data()) < tol);
    CHECK(fd_error(loss, ffn.ffn_layernorm.weight.data(), 6, g.ffn_layernorm.weight.data()) < tol);
    CHECK(fd_error(loss, ffn.ffn_layernorm.bias.data(), 6, g.ffn_layernorm.bias.data()) < tol);
}

TEST_CASE("decoder layer backward (residuals, both pre-LNs) against finite differences", "[nn][backward]") {
    nn::decoder_layer<double> layer(small_attention(nn::attention_kind::dilated, nn::position_encoding::xpos), 10);
    randomize_norm(layer.self_attn_layer_norm);
    randomize_attention(layer.self_attn);
    randomize_norm(layer.final_layer_norm);
    randomize_linear(layer.ffn.fc1);
    randomize_linear(layer.ffn.fc2);
    randomize_norm(layer.ffn.ffn_layernorm);
    const index_t seq = 19;
    mat x = random_matrix(seq, 12);
    const mat r = random_matrix(seq, 12);
    auto loss = [&] {
        mat y = x;
        layer.forward(y);
        return dot(y, r);
    };
    mat y = x;
    nn::decoder_layer_activations<double> act;
    layer.forward_train(y, act);
    mat d = r;
    auto g = layer.make_grad();
    layer.backward(d, act, g);
    CHECK(fd_error(loss, x.data(), x.size(), d.data()) < tol);
    CHECK(fd_error(loss, layer.self_attn_layer_norm.weight.data(), 12, g.self_attn_layer_norm.weight.data()) < tol);
    CHECK(fd_error(loss, layer.self_attn_layer_norm.bias.data(), 12, g.self_attn_layer_norm.bias.data()) < tol);
    CHECK(fd_error(loss, layer.final_layer_norm.weight.data(), 12, g.final_layer_norm.weight.data()) < tol);
    CHECK(fd_error(loss, layer.final_layer_norm.bias.data(), 12, g.final_layer_norm.bias.data()) < tol);
    CHECK(fd_error(loss, layer.self_attn.q_proj.weight.data(), 144, g.self_attn.q_proj.weight.data(), 30) < tol);
    CHECK(fd_error(loss, layer.ffn.fc1.weight.data(), 120, g.ffn.fc1.weight.data(), 30) < tol);
}

namespace {
nn::decoder_config tiny_config() {
    nn::decoder_config c;
    c.embed_dim = 8;
    c.heads = 2;
    c.ffn_dim = 12;
    c.layers = 2;
    c.vocab_size = 11;
    c.segment_length = {4, 8};
    c.dilated_ratio = {1, 2};
    c.xpos_scale_base = 32;
    return c;
}
std::vector<std::int64_t> random_tokens(index_t n, index_t vocab) {
    std::uniform_int_distribution<std::int64_t> pick(0, vocab - 1);
    std::vector<std::int64_t> t(static_cast<std::size_t>(n));
    for (auto& e : t) e = pick(rng());
    return t;
}
}  // namespace

TEST_CASE("decoder forward_backward: every parameter against finite differences of the loss", "[nn][backward]") {
    nn::model_options mo;
    mo.angles = nn::angle_precision::float64;
    auto model = nn::random_decoder<double>(tiny_config(), 77, mo);
    const auto tokens = random_tokens(18, 11);
    const std::vector<std::int64_t> inputs(tokens.begin(), tokens.end() - 1), targets(tokens.begin() + 1, tokens.end());
    nn::train_options opt;
    opt.loss_row_block = 5;  // 17 rows: four logit blocks
    auto grad = model.make_grad();
    const double loss = model.forward_backward(inputs, targets, grad, opt);
    CHECK(std::fabs(loss - model.loss(inputs, targets)) < 1e-12);
    CHECK(std::fabs(loss - model.loss(inputs, targets, 3)) < 1e-12);
    auto params = longnet::training::named_parameters(model);
    auto grads = longnet::training::named_gradients(grad);
    REQUIRE(params.size() == grads.size());
    auto f = [&] { return model.loss(inputs, targets); };
    for (std::size_t i = 0; i < params.size(); ++i) {
        INFO(params[i].name);
        REQUIRE(params[i].name == grads[i].name);
        REQUIRE(params[i].shape == grads[i].shape);
        CHECK(fd_error(f, params[i].data, params[i].size(), grads[i].data, 12) < 1e-6);
    }

    SECTION("checkpoint_activations gives bitwise the same gradients") {
        nn::train_options ck = opt;
        ck.checkpoint_activations = true;
        auto grad_ck = model.make_grad();
        const double loss_ck = model.forward_backward(inputs, targets, grad_ck, ck);
        CHECK(loss_ck == loss);
        auto gc = longnet::training::named_gradients(grad_ck);
        for (std::size_t i = 0; i < grads.size(); ++i) {
            INFO(grads[i].name);
            CHECK(std::equal(grads[i].data, grads[i].data + grads[i].size(), gc[i].data));
        }
    }
    SECTION("loss_weight scales, gradients accumulate") {
        auto g2 = model.make_grad();
        model.forward_backward(inputs, targets, g2, opt, 0.25);
        model.forward_backward(inputs, targets, g2, opt, 0.75);
        auto gg = longnet::training::named_gradients(g2);
        for (std::size_t i = 0; i < grads.size(); ++i)
            for (std::int64_t j = 0; j < grads[i].size(); ++j)
                REQUIRE(std::fabs(gg[i].data[j] - grads[i].data[j]) <= 1e-14 + 1e-12 * std::fabs(grads[i].data[j]));
    }
    SECTION("ignored targets: mean over the scored positions only, gradients still exact") {
        auto some = targets;
        for (std::size_t i = 0; i < some.size(); i += 3) some[i] = nn::ignore_target;
        auto g = model.make_grad();
        const double l = model.forward_backward(inputs, some, g, opt);
        CHECK(std::fabs(l - model.loss(inputs, some)) < 1e-12);
        auto gp = longnet::training::named_gradients(g);
        auto fs = [&] { return model.loss(inputs, some); };
        for (std::size_t i : {std::size_t(0), gp.size() - 1, std::size_t(5)}) {
            INFO(params[i].name);
            CHECK(fd_error(fs, params[i].data, params[i].size(), gp[i].data, 12) < 1e-6);
        }
        CHECK_THROWS_WITH(model.forward_backward(inputs, std::vector<std::int64_t>(inputs.size(), nn::ignore_target), g),
                          Catch::Contains("nothing to score"));
    }
    SECTION("bad input") {
        auto g = model.make_grad();
        CHECK_THROWS_WITH(model.forward_backward(inputs, std::vector<std::int64_t>(3, 0), g),
                          Catch::Contains("17 input tokens and 3 targets"));
        auto bad = targets;
        bad[4] = 11;
        CHECK_THROWS_WITH(model.forward_backward(inputs, bad, g), Catch::Contains("target 11 at row 4"));
    }
}

namespace {
// An attention backend that holds rows [first, first + n) of a sequence of `total` rows, for a first
// row that is a multiple of every segment length: no earlier row is visible to these rows, so the
// local op on them is their attention over the whole sequence. Counts the calls it serves.
struct aligned_slice final : nn::attention_backend<double> {
    using base = nn::attention_backend<double>;
    index_t first = 0, total = 0;
    int forwards = 0, backwards = 0;
    nn::row_slice slice(index_t) const override { return {first, total}; }
    void forward(nn::attention_kind kind, const longnet::dilated_options& opt, longnet::tensor_view<const double> q,
                 longnet::tensor_view<const double> k, longnet::tensor_view<const double> v,
                 longnet::tensor_view<double> out, longnet::lse_view<double> lse) override {
        ++forwards;
        base::forward(kind, opt, q, k, v, out, lse);
    }
    void backward(nn::attention_kind kind, const longnet::dilated_options& opt, longnet::tensor_view<const double> q,
                  longnet::tensor_view<const double> k, longnet::tensor_view<const double> v,
                  longnet::tensor_view<const double> out, longnet::lse_view<const double> lse,
                  longnet::tensor_view<const double> dout, longnet::tensor_view<double> dq, longnet::tensor_view<double> dk,
                  longnet::tensor_view<double> dv, longnet::grad_mode mode) override {
        ++backwards;
        base::backward(kind, opt, q, k, v, out, lse, dout, dq, dk, dv, mode);
    }
};
}  // namespace

TEST_CASE("decoder forward_backward_sum: a sequence in two slices through an attention backend is the whole pass",
          "[nn][backward]") {
    auto model = nn::random_decoder<double>(tiny_config(), 78);  // segments 4, 8
    const index_t n = 8, total = 2 * n;
    const auto inputs = random_tokens(total, 11);
    auto targets = random_tokens(total, 11);
    targets[3] = targets[10] = nn::ignore_target;
    const index_t scored = nn::scored_targets(targets.data(), total);
    REQUIRE(scored == total - 2);
    for (const bool checkpointing : {false, true})
        for (const auto mode : {longnet::grad_mode::exact, longnet::grad_mode::stop_grad_weights}) {
            INFO("checkpointing " << checkpointing << ", " << longnet::to_string(mode));
            nn::train_options opt;
            opt.loss_row_block = 3;
            opt.checkpoint_activations = checkpointing;
            opt.mode = mode;
            auto whole = model.make_grad();
            const double loss = model.forward_backward(inputs, targets, whole, opt, 0.5);
            auto gw = longnet::training::named_gradients(whole);

            auto sliced = model.make_grad();
            double sum = 0;
            for (index_t part = 0; part < 2; ++part) {  // XPos rotates each slice's rows at their global positions
                aligned_slice backend;
                backend.first = part * n, backend.total = total;
                const auto first = static_cast<std::ptrdiff_t>(part * n);
                const std::vector<std::int64_t> in(inputs.begin() + first, inputs.begin() + first + n),
                    tg(targets.begin() + first, targets.begin() + first + n);
                sum += model.forward_backward_sum(in, tg, scored, sliced, opt, 0.5, nullptr, backend);
                // every layer's attention ran through it, once per segment length (anchored XPos on a slice)
                CHECK(backend.forwards == (checkpointing ? 8 : 4));
                CHECK(backend.backwards == 4);
            }
            CHECK(std::fabs(sum / static_cast<double>(scored) - loss) <= 1e-13 * std::fabs(loss));
            auto gs = longnet::training::named_gradients(sliced);
            for (std::size_t i = 0; i < gw.size(); ++i) {
                INFO(gw[i].name);
                double diff = 0, scale = 0;
                for (std::int64_t j = 0; j < gw[i].size(); ++j) {
                    diff = std::max(diff, std::fabs(gw[i].data[j] - gs[i].data[j]));
                    scale = std::max(scale, std::fabs(gw[i].data[j]));
                }
                CHECK(scale > 0);
                CHECK(diff <= 1e-12 * scale);
            }

            // the supplied count divides: twice the count, exactly half of every gradient, the same sum
            auto twice = model.make_grad();
            CHECK(model.forward_backward_sum(inputs, targets, 2 * scored, twice, opt, 0.5) / static_cast<double>(scored) == loss);
            auto gt = longnet::training::named_gradients(twice);
            bool halved = true;
            for (std::size_t i = 0; i < gw.size(); ++i)
                for (std::int64_t j = 0; j < gw[i].size(); ++j) halved = halved && gt[i].data[j] * 2 == gw[i].data[j];
            CHECK(halved);
            CHECK_THROWS_WITH(model.forward_backward_sum(inputs, targets, 0, twice), Catch::Contains("0 scored"));
        }
}

// nn::train_options::gradients_ready (the bucketed data-parallel all-reduce relies on it): called with
// head_gradients, layers L−1 … 0, embedding_gradients, in that order; at each call the buffers it names
// already hold their values at the end of the pass (a snapshot then equals the final buffer bitwise),
// also when the pass adds to non-zero buffers; the same gradients as without the hook.
TEST_CASE("decoder forward_backward_sum: gradients_ready names buffers that are final", "[nn][backward]") {
    auto model = nn::random_decoder<double>(tiny_config(), 79);
    const index_t layers = static_cast<index_t>(model.layers.size());
    REQUIRE(layers >= 2);
    const auto inputs = random_tokens(16, 11), targets = random_tokens(16, 11);
    for (const bool checkpointing : {false, true}) {
        INFO("checkpointing " << checkpointing);
        nn::train_options opt;
        opt.loss_row_block = 5;
        opt.checkpoint_activations = checkpointing;
        auto plain = model.make_grad();
        model.forward_backward(inputs, targets, plain, opt);
        model.forward_backward(inputs, targets, plain, opt);  // two passes: the second adds

        auto grad = model.make_grad();
        model.forward_backward(inputs, targets, grad, opt);
        const auto named = longnet::training::named_gradients(grad);
        // the hook's group of each named tensor, by its name
        const auto group_of = [&](const std::string& name) -> index_t {
            if (name.rfind("embed_tokens.", 0) == 0) return nn::train_options::embedding_gradients;
            if (name.rfind("layers.", 0) == 0) return static_cast<index_t>(std::stoll(name.substr(7)));
            return nn::train_options::head_gradients;
        };
        std::vector<index_t> calls;
        std::vector<std::vector<double>> snapshot(named.size());
        opt.gradients_ready = [&](index_t which) {
            calls.push_back(which);
            for (std::size_t i = 0; i < named.size(); ++i)
                if (group_of(named[i].name) == which) snapshot[i].assign(named[i].data, named[i].data + named[i].size());
        };
        model.forward_backward(inputs, targets, grad, opt);
        std::vector<index_t> expected{nn::train_options::head_gradients};
        for (index_t l = layers; l-- > 0;) expected.push_back(l);
        expected.push_back(nn::train_options::embedding_gradients);
        CHECK(calls == expected);
        const auto want = longnet::training::named_gradients(plain);
        for (std::size_t i = 0; i < named.size(); ++i) {
            INFO(named[i].name);
            REQUIRE(snapshot[i].size() == static_cast<std::size_t>(named[i].size()));
            CHECK(std::equal(snapshot[i].begin(), snapshot[i].end(), named[i].data));  // final when announced
            CHECK(std::equal(want[i].data, want[i].data + want[i].size(), named[i].data));  // as without the hook
        }
    }
}
