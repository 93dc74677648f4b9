// SPDX-License-Identifier: Apache-2.0
// The LongNet encoder against the torchscale fixtures tests/data/encoder_00, 01, 02 (02: post-LN; see
// tests/data/README.md): a padded batch of two sequences (40 and 27 real tokens) in double (vs *_pure64:
// float64 GELU, to 1e-9), double with torchscale's float32 GELU (vs encoder_out.npy) and float; every
// layer's residual stream; left padding and holes; random inputs (padded batch = each sequence alone);
// config parsing and refusals; load and shape errors; the backward (forward_train / backward) against
// central finite differences in double (embeddings and parameters of every kind).

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <longnet/io/npy.hpp>
#include <longnet/io/safetensors.hpp>
#include <longnet/nn/nn.hpp>
#include <nlohmann/json.hpp>

#include "catch.hpp"

namespace {

namespace nn = longnet::nn;

std::string case_dir(const std::string& name) { return std::string(LONGNET_TEST_DATA_DIR) + "/" + name + "/"; }

nlohmann::json params(const std::string& name) {
    std::ifstream in(case_dir(name) + "params.json");
    return nlohmann::json::parse(in);
}

nn::encoder_config fixture_config(const std::string& name) { return nn::encoder_config::from_json(params(name).at("config")); }

std::vector<double> npy(const std::string& name, const std::string& file) {
    return longnet::io::load_npy(case_dir(name) + file).as_double();
}

// The fixture's batch as [B·N, D] rows.
template <class T>
nn::matrix<T> embeddings(const std::string& name, longnet::index_t dim) {
    const auto e = npy(name, "embeddings.npy");
    const auto rows = static_cast<longnet::index_t>(e.size()) / dim;
    nn::matrix<T> m(rows, dim);
    for (longnet::index_t i = 0; i < rows; ++i)
        for (longnet::index_t j = 0; j < dim; ++j) m(i, j) = static_cast<T>(e[static_cast<std::size_t>(i * dim + j)]);
    return m;
}

// The fixture's padding mask [B·N], 1 = pad.
std::vector<std::uint8_t> mask(const std::string& name) {
    const auto m = longnet::io::load_npy(case_dir(name) + "padding_mask.npy").as_int64();
    return std::vector<std::uint8_t>(m.begin(), m.end());
}

template <class T>
std::vector<double> flat(const nn::matrix<T>& m) {
    std::vector<double> v(static_cast<std::size_t>(m.size()));
    for (Eigen::Index i = 0; i < m.rows(); ++i)
        for (Eigen::Index j = 0; j < m.cols(); ++j) v[static_cast<std::size_t>(i * m.cols() + j)] = static_cast<double>(m(i, j));
    return v;
}

// max |a − b| / max |b|
double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double err = 0, scale = 1e-300;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (!std::isfinite(a[i])) return INFINITY;
        err = std::max(err, std::fabs(a[i] - b[i]));
        scale = std::max(scale, std::fabs(b[i]));
    }
    return err / scale;
}

struct fixture_errors {
    double out = 0, states = 0;
};

template <class T>
fixture_errors run_fixture(const std::string& name, const nn::encoder_options& opt, const std::string& suffix) {
    const auto cfg = fixture_config(name);
    const auto model = nn::load_encoder<T>(case_dir(name) + "model.safetensors", cfg, opt);
    const auto x = embeddings<T>(name, cfg.embed_dim);
    const auto m = mask(name);
    const longnet::index_t batch = static_cast<longnet::index_t>(params(name).at("lengths").size());
    std::vector<nn::matrix<T>> states;
    const nn::matrix<T> out = model.forward(x, batch, m, &states);
    fixture_errors e;
    e.out = rel_error(flat(out), npy(name, "encoder_out" + suffix + ".npy"));
    if (suffix == "_pure64") {
        std::vector<double> s;
        for (const auto& st : states) {
            const auto f = flat(st);
            s.insert(s.end(), f.begin(), f.end());
        }
        e.states = rel_error(s, npy(name, "encoder_states_pure64.npy"));
    }
    std::printf("%s %-6s vs encoder_out%s.npy: out %.3e  states %.3e\n", name.c_str(), sizeof(T) == 4 ? "float" : "double",
                suffix.c_str(), e.out, e.states);
    return e;
}

bool all_zero_rows(const nn::matrix<double>& m, const std::vector<std::uint8_t>& pad) {
    for (Eigen::Index i = 0; i < m.rows(); ++i)
        if (pad[static_cast<std::size_t>(i)] && !m.row(i).isZero(0)) return false;
    return true;
}

}  // namespace

TEST_CASE("encoder fixtures: double build matches torchscale's float64 encoder to 1e-9", "[encoder]") {
    for (const char* name : {"encoder_00", "encoder_01", "encoder_02"}) {
        const auto e = run_fixture<double>(name, {}, "_pure64");
        CHECK(e.out < 1e-9);
        CHECK(e.states < 1e-9);
    }
}

TEST_CASE("encoder fixtures: torchscale's float32 GELU and a float build", "[encoder]") {
    nn::encoder_options opt;
    opt.gelu_in_float = true;
    for (const char* name : {"encoder_00", "encoder_01", "encoder_02"}) {
        // float32 erf of two libraries differ by ulps: here (4·40 + 2·27 GELU rows) the float32 step
        // brings a double build only from 1.4e-7 to 1.0e-7 of torchscale's float32-GELU output
        const auto e = run_fixture<double>(name, opt, "");
        CHECK(e.out < 1e-6);
        CHECK(e.out > 1e-9);  // and the float32 GELU really is in encoder_out.npy
        const auto f = run_fixture<float>(name, {}, "_pure64");
        CHECK(f.out < 1e-4);
        CHECK(f.states < 1e-4);
    }
}

TEST_CASE("encoder: pads are zero, lengths = mask, one sequence alone = its batch row", "[encoder]") {
    const std::string name = "encoder_00";
    const auto cfg = fixture_config(name);
    const auto model = nn::load_encoder<double>(case_dir(name) + "model.safetensors", cfg);
    const auto x = embeddings<double>(name, cfg.embed_dim);
    const auto pad = mask(name);
    const auto lengths = params(name).at("lengths").get<std::vector<std::int64_t>>();
    const auto batch = static_cast<longnet::index_t>(lengths.size()), seq = x.rows() / batch;
    const nn::matrix<double> out = model.forward(x, batch, pad);
    CHECK(all_zero_rows(out, pad));
    CHECK(model.forward(x, batch, longnet::padding_lengths(lengths)) == out);  // bitwise
    for (longnet::index_t b = 0; b < batch; ++b) {
        const auto n = static_cast<longnet::index_t>(lengths[static_cast<std::size_t>(b)]);
        const nn::matrix<double> alone = model.forward(x.middleRows(b * seq, n));
        CHECK(alone == out.middleRows(b * seq, n));
    }
    // the pads' embeddings are never read: NaN there changes nothing
    nn::matrix<double> poisoned = x;
    for (Eigen::Index i = 0; i < x.rows(); ++i)
        if (pad[static_cast<std::size_t>(i)]) poisoned.row(i).setConstant(std::numeric_limits<double>::quiet_NaN());
    CHECK(model.forward(poisoned, batch, pad) == out);
    // tail_mode::exact drops torchscale's zero padding keys: a different result on the ragged row
    nn::encoder_options exact;
    exact.tail = longnet::tail_mode::exact;
    const auto model_exact = nn::load_encoder<double>(case_dir(name) + "model.safetensors", cfg, exact);
    CHECK(rel_error(flat(model_exact.forward(x, batch, pad)), flat(out)) > 1e-3);
}

TEST_CASE("encoder: left padding and holes give each row's real tokens encoded alone", "[encoder]") {
    const std::string name = "encoder_00";
    const auto cfg = fixture_config(name);
    const auto model = nn::load_encoder<double>(case_dir(name) + "model.safetensors", cfg);
    const auto x = embeddings<double>(name, cfg.embed_dim);
    const auto lengths = params(name).at("lengths").get<std::vector<std::int64_t>>();
    const longnet::index_t batch = 2, seq = x.rows() / batch, n1 = lengths[1];
    const auto expected = npy(name, "encoder_out_pure64.npy");
    // row 1's 27 real tokens: left padded (positions 13..39), then scattered with holes
    for (int layout = 0; layout < 2; ++layout) {
        nn::matrix<double> y = nn::matrix<double>::Constant(x.rows(), x.cols(), 1e30);  // pads: huge values
        std::vector<std::uint8_t> pad(static_cast<std::size_t>(x.rows()), 1);
        y.topRows(seq) = x.topRows(seq);
        std::fill(pad.begin(), pad.begin() + seq, std::uint8_t(0));
        std::vector<longnet::index_t> where;
        for (longnet::index_t i = 0; i < n1; ++i) where.push_back(layout == 0 ? seq - n1 + i : (i * seq) / n1);
        for (longnet::index_t i = 0; i < n1; ++i) {
            y.row(seq + where[static_cast<std::size_t>(i)]) = x.row(seq + i);
            pad[static_cast<std::size_t>(seq + where[static_cast<std::size_t>(i)])] = 0;
        }
        const nn::matrix<double> out = model.forward(y, batch, pad);
        CHECK(all_zero_rows(out, pad));
        double err = 0, scale = 0;
        for (longnet::index_t i = 0; i < n1; ++i)
            for (longnet::index_t j = 0; j < cfg.embed_dim; ++j) {
                const double want = expected[static_cast<std::size_t>((seq + i) * cfg.embed_dim + j)];
                err = std::max(err, std::fabs(out(seq + where[static_cast<std::size_t>(i)], j) - want));
                scale = std::max(scale, std::fabs(want));
            }
        CHECK(err / scale < 1e-9);
    }
}

TEST_CASE("encoder: random batches equal each sequence encoded alone", "[encoder]") {
    const std::string name = "encoder_01";  // embedding LayerNorm and sqrt(D) scale
    const auto cfg = fixture_config(name);
    const auto model = nn::load_encoder<double>(case_dir(name) + "model.safetensors", cfg);
    std::mt19937_64 rng(2201);
    std::normal_distribution<double> normal;
    for (int trial = 0; trial < 3; ++trial) {
        const longnet::index_t batch = 3, seq = 37;
        nn::matrix<double> x(batch * seq, cfg.embed_dim);
        for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
        std::vector<std::uint8_t> pad(static_cast<std::size_t>(batch * seq));
        for (auto& p : pad) p = static_cast<std::uint8_t>(rng() % 3 == 0);
        if (trial == 1) std::fill(pad.begin() + seq, pad.begin() + 2 * seq, std::uint8_t(1));  // a fully padded row
        if (trial == 2) std::fill(pad.begin(), pad.begin() + seq, std::uint8_t(0));           // an unpadded row
        std::vector<nn::matrix<double>> states;
        const nn::matrix<double> out = model.forward(x, batch, pad, &states);
        REQUIRE(states.size() == static_cast<std::size_t>(cfg.layers + 1));
        CHECK(all_zero_rows(out, pad));
        for (const auto& s : states) CHECK(all_zero_rows(s, pad));
        for (longnet::index_t b = 0; b < batch; ++b) {
            std::vector<longnet::index_t> real;
            for (longnet::index_t n = 0; n < seq; ++n)
                if (!pad[static_cast<std::size_t>(b * seq + n)]) real.push_back(b * seq + n);
            nn::matrix<double> xb(static_cast<Eigen::Index>(real.size()), cfg.embed_dim);
            for (std::size_t i = 0; i < real.size(); ++i) xb.row(static_cast<Eigen::Index>(i)) = x.row(real[i]);
            if (real.empty()) continue;
            const nn::matrix<double> alone = model.forward(xb);
            CHECK(alone.allFinite());
            for (std::size_t i = 0; i < real.size(); ++i)
                CHECK(alone.row(static_cast<Eigen::Index>(i)) == out.row(real[i]));
        }
    }
}

TEST_CASE("random_encoder: seeded, reproducible, the fixtures' parameter scheme", "[encoder]") {
    for (const std::string name : {"encoder_01", "encoder_02"}) {  // embedding LayerNorm; post-LN
        const auto cfg = fixture_config(name);
        const auto a = nn::random_encoder<double>(cfg, 7);
        const auto b = nn::random_encoder<double>(cfg, 7);
        const auto c = nn::random_encoder<double>(cfg, 8);
        const auto x = embeddings<double>(name, cfg.embed_dim);
        const nn::matrix<double> ya = a.forward(x);
        CHECK(ya.allFinite());
        CHECK(ya == b.forward(x));
        CHECK((ya - c.forward(x)).cwiseAbs().maxCoeff() > 1e-3);
        for (const auto* norm : {&a.layernorm_embedding, &a.final_norm, &a.layers.back().final_layer_norm}) {
            CHECK(norm->weight.minCoeff() >= 0.5);
            CHECK(norm->weight.maxCoeff() <= 1.5);
            CHECK(norm->bias.cwiseAbs().maxCoeff() > 0);
        }
        const auto& fc1 = a.layers.front().ffn.fc1.weight;  // N(0, 1/fan_in): variance about 1/D
        const double var = fc1.squaredNorm() / static_cast<double>(fc1.size());
        CHECK(var * static_cast<double>(cfg.embed_dim) > 0.8);
        CHECK(var * static_cast<double>(cfg.embed_dim) < 1.2);
    }
}

TEST_CASE("encoder config: torchscale fields, postprocessing and refusals", "[encoder]") {
    const auto base = params("encoder_00").at("config");
    const auto cfg = nn::encoder_config::from_json(base);
    CHECK(cfg.embed_dim == 32);
    CHECK(cfg.heads == 4);
    CHECK(cfg.ffn_dim == 64);
    CHECK(cfg.layers == 2);
    CHECK(cfg.segment_length == std::vector<longnet::index_t>{8, 16});
    CHECK(cfg.dilated_ratio == std::vector<longnet::index_t>{1, 2});
    CHECK(nn::encoder_config::from_json(cfg.to_json()).to_json() == cfg.to_json());
    auto with = [&](const char* field, nlohmann::json value) {
        auto j = base;
        j[field] = value;
        return j;
    };
    // torchscale's string lists, and Sub-LN forcing the pre-LN encoder
    CHECK(nn::encoder_config::from_json(with("segment_length", "[8,16]")).segment_length == cfg.segment_length);
    CHECK_NOTHROW(nn::encoder_config::from_json(with("encoder_normalize_before", false)));
    auto refuses = [&](const nlohmann::json& j, const std::string& needle) {
        try {
            nn::encoder_config::from_json(j);
            FAIL("accepted " << j.dump());
        } catch (const std::invalid_argument& e) {
            INFO(e.what());
            CHECK(std::string(e.what()).find(needle) != std::string::npos);
        }
    };
    // torchscale's post-LN encoder: no Sub-LN, encoder_normalize_before false
    auto post = with("subln", false);
    post["encoder_normalize_before"] = false;
    const auto post_cfg = nn::encoder_config::from_json(post);
    CHECK((!post_cfg.subln && !post_cfg.normalize_before && !post_cfg.has_layer_norm()));
    CHECK(nn::encoder_config::from_json(post_cfg.to_json()).to_json() == post_cfg.to_json());
    CHECK(nn::encoder_config::from_json(with("encoder_normalize_before", false)).normalize_before);  // Sub-LN forces pre-LN
    auto bad = cfg;
    bad.normalize_before = false;
    CHECK_THROWS_WITH(bad.validate(), Catch::Contains("encoder_normalize_before false needs subln false"));
    refuses(with("deepnorm", true), "deepnorm");
    refuses(with("xpos_rel_pos", true), "xpos_rel_pos");
    refuses(with("multiway", true), "multiway");
    refuses(with("vocab_size", 100), "vocab_size = 100");
    refuses(with("moe_freq", 2), "moe_freq");
    refuses(with("activation_fn", "relu"), "activation_fn");
    refuses(with("encoder_attention_heads", 5), "encoder_attention_heads 5");
    refuses(with("dilated_ratio", nlohmann::json::array({1})), "dilated_ratio 1");
    refuses(with("segment_length", nlohmann::json::array({8, 0})), "segment_length entries must be >= 1, got 0");
    refuses(with("encoder_layers", 1.5), "encoder_layers must be an integer");
    auto no_segments = base;
    no_segments.erase("segment_length");
    refuses(no_segments, "segment_length and dilated_ratio are required");
    auto features_only = with("vocab_size", 100);
    features_only["no_output_layer"] = true;
    CHECK_NOTHROW(nn::encoder_config::from_json(features_only));
    CHECK_THROWS_AS(nn::encoder_config::from_json_text("{\"encoder_layers\": 2,}"), std::invalid_argument);
}

TEST_CASE("encoder: bad shapes and checkpoints are refused with the value", "[encoder]") {
    const std::string name = "encoder_00";
    const auto cfg = fixture_config(name);
    const auto model = nn::load_encoder<double>(case_dir(name) + "model.safetensors", cfg);
    const auto x = embeddings<double>(name, cfg.embed_dim);
    auto throws_with = [](auto&& f, const std::string& needle) {
        try {
            f();
            FAIL("no exception");
        } catch (const std::exception& e) {
            INFO(e.what());
            CHECK(std::string(e.what()).find(needle) != std::string::npos);
        }
    };
    const nn::matrix<double> narrow = nn::matrix<double>::Ones(4, 31);
    throws_with([&] { model.forward(narrow); }, "31 wide");
    std::vector<std::uint8_t> pad(static_cast<std::size_t>(x.rows()), 0);
    throws_with([&] { model.forward(x, 3, pad); }, "batch of 3");
    throws_with([&] { model.forward(x, 0, pad); }, "batch of 0");
    std::vector<std::uint8_t> short_mask(10, 0);
    throws_with([&] { model.forward(x, 2, short_mask); }, "key_padding_mask has 10 entries");
    std::vector<std::int64_t> lengths{40, 41};
    throws_with([&] { model.forward(x, 2, longnet::padding_lengths(lengths)); }, "lengths[1] = 41");
    // checkpoint / config mismatches name the tensor
    auto ln_emb = cfg;
    ln_emb.layernorm_embedding = true;
    throws_with([&] { nn::load_encoder<double>(case_dir(name) + "model.safetensors", ln_emb); }, "layernorm_embedding.weight");
    throws_with([&] { nn::load_encoder<double>(case_dir("encoder_01") + "model.safetensors", cfg); },
                "layernorm_embedding");  // an unexpected tensor
    throws_with([&] { nn::load_encoder<double>(case_dir("encoder_02") + "model.safetensors", cfg); },
                "layers.0.self_attn.inner_attn_ln.weight");  // a post-LN checkpoint has no Sub-LNs
    auto wide = cfg;
    wide.ffn_dim = 128;
    throws_with([&] { nn::load_encoder<double>(case_dir(name) + "model.safetensors", wide); }, "layers.0.ffn.fc1.weight");
    auto deep = cfg;
    deep.layers = 3;
    throws_with([&] { nn::load_encoder<double>(case_dir(name) + "model.safetensors", deep); }, "layers.2.");
}

TEST_CASE("encoder backward: central finite differences (double), exact and stop_grad_weights", "[encoder]") {
    for (const char* name : {"encoder_00", "encoder_01", "encoder_02"}) {
        const auto cfg = fixture_config(name);
        auto model = nn::load_encoder<double>(case_dir(name) + "model.safetensors", cfg);
        const longnet::index_t rows = 27;  // ragged: torchscale's zero-padded tails in both branches
        nn::matrix<double> x = embeddings<double>(name, cfg.embed_dim).topRows(rows);
        std::mt19937_64 rng(2203);
        std::normal_distribution<double> normal;
        nn::matrix<double> r(rows, cfg.embed_dim);  // loss = Σ out ∘ r
        for (Eigen::Index i = 0; i < r.size(); ++i) r.data()[i] = normal(rng);
        auto loss = [&] { return (model.forward(x).array() * r.array()).sum(); };

        nn::encoder_activations<double> act;
        const nn::matrix<double> out = model.forward_train(x, act);
        CHECK(rel_error(flat(out), flat(model.forward(x))) < 1e-14);
        auto grad = model.make_grad();
        const nn::matrix<double> dx = model.backward(r, act, grad);
        auto stop_grad = model.make_grad();
        const nn::matrix<double> dx_stop = model.backward(r, act, stop_grad, longnet::grad_mode::stop_grad_weights);
        CHECK(rel_error(flat(dx_stop), flat(dx)) > 1e-6);  // the merge weights' gradient is there

        // (L(p + h) − L(p − h)) / 2h at every entry of p[0..n) (or every step-th)
        const double h = 1e-5;
        auto fd_error = [&](double* p, Eigen::Index n, const double* analytic, Eigen::Index step) {
            double err = 0, scale = 1e-3;
            for (Eigen::Index i = 0; i < n; i += step) {
                const double keep = p[i];
                p[i] = keep + h;
                const double up = loss();
                p[i] = keep - h;
                const double down = loss();
                p[i] = keep;
                err = std::max(err, std::fabs((up - down) / (2 * h) - analytic[i]));
                scale = std::max(scale, std::fabs(analytic[i]));
            }
            return err / scale;
        };
        const double e_x = fd_error(x.data(), x.size(), dx.data(), 5);
        auto& l0 = model.layers[0];
        auto& g0 = grad.layers[0];
        const double e_q = fd_error(l0.self_attn.q_proj.weight.data(), l0.self_attn.q_proj.weight.size(),
                                    g0.self_attn.q_proj.weight.data(), 13);
        const double e_v = fd_error(l0.self_attn.v_proj.bias.data(), l0.self_attn.v_proj.bias.size(),
                                    g0.self_attn.v_proj.bias.data(), 1);
        const double e_fc1 = fd_error(model.layers[1].ffn.fc1.weight.data(), model.layers[1].ffn.fc1.weight.size(),
                                      grad.layers[1].ffn.fc1.weight.data(), 23);
        const double e_ln = fd_error(l0.self_attn_layer_norm.weight.data(), cfg.embed_dim,
                                     g0.self_attn_layer_norm.weight.data(), 1);
        const double e_out = fd_error(model.final_norm.bias.data(), cfg.embed_dim, grad.layer_norm.bias.data(), 1);
        double e_emb = 0;
        if (cfg.layernorm_embedding)
            e_emb = fd_error(model.layernorm_embedding.weight.data(), cfg.embed_dim, grad.layernorm_embedding.weight.data(), 1);
        std::printf("%s backward vs finite differences: embeddings %.2e  q_proj %.2e  v_proj.bias %.2e  fc1 %.2e  "
                    "self_attn_layer_norm %.2e  layer_norm %.2e  layernorm_embedding %.2e\n",
                    name, e_x, e_q, e_v, e_fc1, e_ln, e_out, e_emb);
        for (double e : {e_x, e_q, e_v, e_fc1, e_ln, e_out, e_emb}) CHECK(e < 1e-6);

        // accumulation: a second backward adds the same again
        const nn::matrix<double> dx2 = model.backward(r, act, grad);
        CHECK(dx2 == dx);
        CHECK(rel_error(flat(nn::matrix<double>(grad.layers.back().ffn.fc2.weight)),
                        flat(nn::matrix<double>(2 * stop_grad.layers.back().ffn.fc2.weight))) < 1e-14);  // last fc2: no attention after it
        CHECK_THROWS_AS(model.backward(r.topRows(5), act, grad), std::invalid_argument);
    }
}

TEST_CASE("encoder backward on a padded batch equals each sequence's backward", "[encoder]") {
    const std::string name = "encoder_01";
    const auto cfg = fixture_config(name);
    const auto model = nn::load_encoder<double>(case_dir(name) + "model.safetensors", cfg);
    const auto x = embeddings<double>(name, cfg.embed_dim);
    auto pad = mask(name);
    pad[3] = 1;  // a hole in row 0 too
    const longnet::index_t batch = 2, seq = x.rows() / batch;
    std::mt19937_64 rng(2204);
    std::normal_distribution<double> normal;
    nn::matrix<double> r(x.rows(), x.cols());
    for (Eigen::Index i = 0; i < r.size(); ++i) r.data()[i] = normal(rng);
    nn::encoder_batch_activations<double> act;
    const nn::matrix<double> out = model.forward_train(x, batch, pad, act);
    CHECK(out == model.forward(x, batch, pad));
    auto grad = model.make_grad();
    nn::matrix<double> d_out = r;
    for (Eigen::Index i = 0; i < r.rows(); ++i)
        if (pad[static_cast<std::size_t>(i)]) d_out.row(i).setConstant(std::numeric_limits<double>::quiet_NaN());
    const nn::matrix<double> dx = model.backward(d_out, act, grad);  // NaN on pads: never read
    CHECK(all_zero_rows(dx, pad));
    CHECK(dx.allFinite());
    auto sum = model.make_grad();
    for (longnet::index_t b = 0; b < batch; ++b) {
        std::vector<Eigen::Index> real;
        for (longnet::index_t n = 0; n < seq; ++n)
            if (!pad[static_cast<std::size_t>(b * seq + n)]) real.push_back(b * seq + n);
        nn::matrix<double> xb(static_cast<Eigen::Index>(real.size()), x.cols()), rb(xb.rows(), x.cols());
        for (std::size_t i = 0; i < real.size(); ++i) {
            xb.row(static_cast<Eigen::Index>(i)) = x.row(real[i]);
            rb.row(static_cast<Eigen::Index>(i)) = r.row(real[i]);
        }
        nn::encoder_activations<double> a;
        model.forward_train(xb, a);
        const nn::matrix<double> d = model.backward(rb, a, sum);
        for (std::size_t i = 0; i < real.size(); ++i) CHECK(d.row(static_cast<Eigen::Index>(i)) == dx.row(real[i]));
    }
    CHECK(grad.layers[0].self_attn.q_proj.weight == sum.layers[0].self_attn.q_proj.weight);
    CHECK(grad.layernorm_embedding.weight == sum.layernorm_embedding.weight);
    CHECK(grad.layer_norm.bias == sum.layer_norm.bias);
    CHECK_THROWS_AS(model.backward(d_out.topRows(10), act, grad), std::invalid_argument);
}
