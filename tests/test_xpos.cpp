// SPDX-License-Identifier: Apache-2.0
// XPos in the training pass: the anchored form (per-branch decay, nn/xpos.hpp) against the centred
// (torchscale) form, rebuilt here from the public pieces, wherever the centred form is finite: float
// <= 3e-6 relative (two different float roundings), double <= 1e-12, both grad modes, both offset
// policies, causal and not; long segments cut into blocks (dilated and dense) against the same; float
// against double past the float range; the decay of packed documents (decay_documents) against each
// document alone.
#include <cstdint>
#include <random>
#include <stdexcept>

#include <longnet/nn/nn.hpp>

#include "catch.hpp"

namespace nn = longnet::nn;
using longnet::index_t;

namespace {

template <class T>
nn::matrix<T> random_matrix(index_t r, index_t c, std::mt19937& rng, double scale = 1.0) {
    std::normal_distribution<double> d(0.0, scale);
    nn::matrix<T> m(r, c);
    for (index_t i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(d(rng));
    return m;
}

template <class T>
double rel(const nn::matrix<T>& got, const nn::matrix<T>& ref) {
    return static_cast<double>((got - ref).cwiseAbs().maxCoeff()) / static_cast<double>(ref.cwiseAbs().maxCoeff());
}

template <class T>
nn::matrix<T> transposed(nn::matrix<T> table) {
    for (index_t i = 0; i < table.rows(); ++i)
        for (index_t c = 1; c < table.cols(); c += 2) table(i, c) = -table(i, c);
    return table;
}

// The centred form: y = Attn(x) and dx, dWq for dy, with q, k scaled by coefficients(T, ..).
template <class T>
void centred(const nn::multihead_attention<T>& attn, const nn::matrix<T>& x, const nn::matrix<T>& dy,
             longnet::grad_mode mode, nn::matrix<T>& y, nn::matrix<T>& dx, nn::matrix<T>& dwq) {
    using A = longnet::accum_t<T>;
    const index_t seq = x.rows(), dim = attn.config.embed_dim, heads = attn.config.heads, hd = attn.config.head_dim();
    nn::matrix<T> q(seq, dim), k(seq, dim), v(seq, dim), a(seq, dim), a_ln(seq, dim);
    nn::vector<T> mean, rstd;
    std::vector<A> lse(static_cast<std::size_t>(seq * heads));
    attn.q_proj.forward(x, q);
    attn.k_proj.forward(x, k);
    attn.v_proj.forward(x, v);
    attn.rotary.apply(q, attn.rotary.coefficients(seq, false));
    attn.rotary.apply(k, attn.rotary.coefficients(seq, true));
    using CT = const T;
    auto view = [&](const nn::matrix<T>& m) { return longnet::make_bnhd<CT>(m.data(), 1, seq, heads, hd); };
    auto mview = [&](nn::matrix<T>& m) { return longnet::make_bnhd<T>(m.data(), 1, seq, heads, hd); };
    longnet::dilated_attention(view(q), view(k), view(v), mview(a), attn.config.dilated,
                               longnet::make_lse_bnh<A>(lse.data(), 1, seq, heads));
    attn.inner_attn_ln.forward_train(a, a_ln, mean, rstd);
    y.resize(seq, dim);
    attn.out_proj.forward(a_ln, y);
    auto g = attn.make_grad();
    nn::matrix<T> d_ln = nn::matrix<T>::Zero(seq, dim), da = nn::matrix<T>::Zero(seq, dim);
    attn.out_proj.backward(a_ln, dy, d_ln, g.out_proj);
    attn.inner_attn_ln.backward(a, d_ln, mean, rstd, da, g.inner_attn_ln);
    nn::matrix<T> dq(seq, dim), dk(seq, dim), dv(seq, dim);
    longnet::dilated_attention_backward(view(q), view(k), view(v), view(a),
                                        longnet::make_lse_bnh<const A>(lse.data(), 1, seq, heads), view(da), mview(dq),
                                        mview(dk), mview(dv), attn.config.dilated, mode);
    attn.rotary.apply(dq, transposed(attn.rotary.coefficients(seq, false)));
    attn.rotary.apply(dk, transposed(attn.rotary.coefficients(seq, true)));
    dx = nn::matrix<T>::Zero(seq, dim);
    attn.q_proj.backward(x, dq, dx, g.q_proj);
    attn.k_proj.backward(x, dk, dx, g.k_proj);
    attn.v_proj.backward(x, dv, dx, g.v_proj);
    dwq = g.q_proj.weight;
}

template <class T>
void check_anchored_equals_centred(double tol) {
    std::mt19937 rng(21);
    for (longnet::grad_mode mode : {longnet::grad_mode::exact, longnet::grad_mode::stop_grad_weights})
        for (longnet::offset_policy offsets : {longnet::offset_policy::paper, longnet::offset_policy::torchscale})
            for (bool causal : {true, false}) {
                nn::attention_config cfg;
                cfg.embed_dim = 16;
                cfg.heads = 2;  // hd = 8
                cfg.kind = nn::attention_kind::dilated;
                cfg.dilated = longnet::dilated_options::from_lists({8, 16, 16, 32}, {1, 2, 4, 4}, causal);
                cfg.dilated.offsets = offsets;
                cfg.rotary.kind = nn::position_encoding::xpos;
                cfg.rotary.scale_base = 16;  // strong decay: factors up to zeta^(±T/32)
                nn::multihead_attention<T> attn(cfg);
                for (auto* l : {&attn.q_proj, &attn.k_proj, &attn.v_proj, &attn.out_proj}) {
                    l->weight = random_matrix<T>(16, 16, rng, 0.3);
                    l->bias = random_matrix<T>(16, 1, rng, 0.1);
                }
                const index_t seq = 75;  // ragged last segments
                const nn::matrix<T> x = random_matrix<T>(seq, 16, rng), dy = random_matrix<T>(seq, 16, rng);
                nn::matrix<T> y_ref, dx_ref, dwq_ref;
                centred(attn, x, dy, mode, y_ref, dx_ref, dwq_ref);
                nn::matrix<T> y(seq, 16), dx = nn::matrix<T>::Zero(seq, 16);
                nn::attention_activations<T> act;
                attn.forward_train(x, y, act);
                auto g = attn.make_grad();
                attn.backward(x, dy, act, dx, g, mode);
                const nn::matrix<T> dwq = g.q_proj.weight;
                INFO("grad mode " << longnet::to_string(mode) << ", offsets " << longnet::to_string(offsets)
                                  << ", causal " << causal);
                CHECK(rel(y, y_ref) <= tol);
                CHECK(rel(dx, dx_ref) <= tol);
                CHECK(rel(dwq, dwq_ref) <= tol);
            }
}

}  // namespace

TEST_CASE("anchored XPos training pass equals the centred form (float)", "[nn][xpos]") {
    check_anchored_equals_centred<float>(3e-6);  // measured up to 1.7e-6 (dWq): the two float roundings differ
}
TEST_CASE("anchored XPos training pass equals the centred form (double)", "[nn][xpos]") {
    check_anchored_equals_centred<double>(1e-12);
}

TEST_CASE("anchored XPos training pass past the centred range: float agrees with double at T = 2^17, one segment of 2^17", "[nn][xpos]") {
    std::mt19937 rng(17);
    nn::attention_config cfg;
    cfg.embed_dim = 8;
    cfg.heads = 1;  // hd = 8; scale base 512: the centred form stops near 66K tokens in float
    cfg.kind = nn::attention_kind::dilated;
    // w = 2^17 > the float anchor's limit (66.8K): float runs that branch as two blocks (P = 66816), double
    // (limit ~580K) as one segment
    cfg.dilated = longnet::dilated_options::from_lists({256, 2048, index_t(1) << 17}, {1, 8, 64}, true);
    cfg.rotary.kind = nn::position_encoding::xpos;
    nn::multihead_attention<double> a64(cfg);
    nn::multihead_attention<float> a32(cfg);
    for (int i = 0; i < 4; ++i) {
        auto& l = i == 0 ? a64.q_proj : i == 1 ? a64.k_proj : i == 2 ? a64.v_proj : a64.out_proj;
        auto& m = i == 0 ? a32.q_proj : i == 1 ? a32.k_proj : i == 2 ? a32.v_proj : a32.out_proj;
        l.weight = random_matrix<double>(8, 8, rng, 0.4);
        l.bias = random_matrix<double>(8, 1, rng, 0.1);
        m.weight = l.weight.cast<float>();
        m.bias = l.bias.cast<float>();
    }
    const index_t seq = index_t(1) << 17;
    const nn::matrix<double> x = random_matrix<double>(seq, 8, rng), dy = random_matrix<double>(seq, 8, rng);
    CHECK_THROWS_AS(a32.rotary.coefficients(seq, false), std::overflow_error);  // the centred form cannot
    REQUIRE(a32.rotary.segment_limit() < seq);
    REQUIRE(a64.rotary.segment_limit() > seq);
    nn::matrix<double> y(seq, 8), dx = nn::matrix<double>::Zero(seq, 8);
    nn::matrix<float> y32(seq, 8), dx32 = nn::matrix<float>::Zero(seq, 8);
    nn::attention_activations<double> act;
    nn::attention_activations<float> act32;
    a64.forward_train(x, y, act);
    a32.forward_train(x.cast<float>(), y32, act32);
    auto g = a64.make_grad();
    auto g32 = a32.make_grad();
    a64.backward(x, dy, act, dx, g);
    a32.backward(x.cast<float>(), dy.cast<float>(), act32, dx32, g32);
    REQUIRE(y32.allFinite());
    REQUIRE(dx32.allFinite());
    CHECK(rel<double>(y32.cast<double>(), y) <= 1e-5);
    CHECK(rel<double>(dx32.cast<double>(), dx) <= 1e-4);
    CHECK(rel<double>(g32.q_proj.weight.cast<double>(), g.q_proj.weight) <= 1e-4);
}

// Long segments (segment longer than rotary.segment_limit(): blocks with per-key-block anchors,
// multihead_attention.hpp). anchor_reach = 6 puts the cut at 12 positions, so branches of w = 32, 64 and
// dense attention over 75 tokens run as blocks (P = 12 for r = 1, 2, 4; some blocks partial) in double
// and must equal the centred form (a model without the cut) to 1e-12: forward, dx, dWq, dWk, dWv, both grad
// modes, both offset policies; dense attention (causal) past the cut runs as one long branch of dilation 1.
TEST_CASE("long segments as blocks equal the centred form (double, short cut)", "[nn][xpos]") {
    std::mt19937 rng(23);
    for (longnet::grad_mode mode : {longnet::grad_mode::exact, longnet::grad_mode::stop_grad_weights})
        for (longnet::offset_policy offsets : {longnet::offset_policy::paper, longnet::offset_policy::torchscale})
            for (nn::attention_kind kind : {nn::attention_kind::dilated, nn::attention_kind::dense}) {
                if (kind == nn::attention_kind::dense && offsets == longnet::offset_policy::torchscale) continue;
                nn::attention_config cfg;
                cfg.embed_dim = 16;
                cfg.heads = 4;  // hd = 4
                cfg.kind = kind;
                cfg.dilated = longnet::dilated_options::from_lists({8, 32, 64, 64}, {1, 2, 2, 4}, true);
                cfg.dilated.offsets = offsets;
                cfg.rotary.kind = nn::position_encoding::xpos;
                cfg.rotary.scale_base = 16;
                nn::multihead_attention<double> plain(cfg);
                for (auto* l : {&plain.q_proj, &plain.k_proj, &plain.v_proj, &plain.out_proj}) {
                    l->weight = random_matrix<double>(16, 16, rng, 0.5);
                    l->bias = random_matrix<double>(16, 1, rng, 0.1);
                }
                nn::multihead_attention<double> cut = plain;
                cut.config.rotary.anchor_reach = cut.rotary.options.anchor_reach = 6;
                REQUIRE(cut.rotary.segment_limit() == 12);
                const index_t seq = 75;
                const nn::matrix<double> x = random_matrix<double>(seq, 16, rng), dy = random_matrix<double>(seq, 16, rng);
                nn::matrix<double> y_ref, dx_ref, dwq_ref;
                if (kind == nn::attention_kind::dilated) {
                    centred(plain, x, dy, mode, y_ref, dx_ref, dwq_ref);
                } else {  // the plain model is the centred form for dense attention
                    y_ref.resize(seq, 16);
                    dx_ref = nn::matrix<double>::Zero(seq, 16);
                    nn::attention_activations<double> act;
                    plain.forward_train(x, y_ref, act);
                    auto g = plain.make_grad();
                    plain.backward(x, dy, act, dx_ref, g, mode);
                    dwq_ref = g.q_proj.weight;
                }
                CHECK_THROWS_AS(cut.rotary.coefficients(seq, false), std::overflow_error);  // the centred form cannot
                nn::matrix<double> y(seq, 16), dx = nn::matrix<double>::Zero(seq, 16);
                nn::attention_activations<double> act;
                cut.forward_train(x, y, act);
                auto g = cut.make_grad();
                cut.backward(x, dy, act, dx, g, mode);
                nn::matrix<double> y_inference(seq, 16);
                cut.forward(x, y_inference);
                INFO("grad mode " << longnet::to_string(mode) << ", offsets " << longnet::to_string(offsets) << ", "
                                  << nn::to_string(kind));
                CHECK(rel(y, y_ref) <= 1e-12);
                CHECK(rel(dx, dx_ref) <= 1e-12);
                CHECK(rel<double>(g.q_proj.weight, dwq_ref) <= 1e-12);
                CHECK(y_inference == y);  // the inference forward runs the same blocks
                // activation checkpointing's backward (per-head path off for long branches): same bits
                nn::attention_activations<double> act2;
                nn::matrix<double> y2(seq, 16), dx2 = nn::matrix<double>::Zero(seq, 16);
                cut.forward_train(x, y2, act2);
                auto g2 = cut.make_grad();
                cut.backward_releasing(x, dy, act2, dx2, g2, mode);
                CHECK(dx2 == dx);
            }
}

TEST_CASE("long segments as blocks: packed documents equal each document alone (double, short cut)", "[nn][xpos]") {
    std::mt19937 rng(29);
    nn::attention_config cfg;
    cfg.embed_dim = 16;
    cfg.heads = 4;
    cfg.dilated = longnet::dilated_options::from_lists({8, 32}, {1, 2}, true);
    cfg.rotary.kind = nn::position_encoding::xpos;
    cfg.rotary.scale_base = 16;
    cfg.rotary.anchor_reach = 6;  // blocks of 12: the 40-token document runs w = 32 as blocks, the 9-token one not
    nn::multihead_attention<double> attn(cfg);
    for (auto* l : {&attn.q_proj, &attn.k_proj, &attn.v_proj, &attn.out_proj}) {
        l->weight = random_matrix<double>(16, 16, rng, 0.5);
        l->bias = random_matrix<double>(16, 1, rng, 0.1);
    }
    const std::vector<std::int64_t> cu{0, 40, 49, 75};
    const index_t seq = 75;
    const nn::matrix<double> x = random_matrix<double>(seq, 16, rng), dy = random_matrix<double>(seq, 16, rng);
    for (longnet::grad_mode mode : {longnet::grad_mode::exact, longnet::grad_mode::stop_grad_weights}) {
        nn::document_attention<double> docs(cu, seq);
        nn::matrix<double> y(seq, 16), dx = nn::matrix<double>::Zero(seq, 16);
        nn::attention_activations<double> act;
        attn.forward_train(x, y, act, docs);
        auto g = attn.make_grad();
        attn.backward(x, dy, act, dx, g, mode, docs);
        nn::matrix<double> dwq = nn::matrix<double>::Zero(16, 16);
        for (std::size_t b = 0; b + 1 < cu.size(); ++b) {
            const index_t s = cu[b], n = cu[b + 1] - cu[b];
            nn::matrix<double> yb(n, 16), dxb = nn::matrix<double>::Zero(n, 16);
            nn::attention_activations<double> ab;
            attn.forward_train(x.middleRows(s, n), yb, ab);
            auto gb = attn.make_grad();
            attn.backward(x.middleRows(s, n), dy.middleRows(s, n), ab, dxb, gb, mode);
            INFO("document " << b << ", grad mode " << longnet::to_string(mode));
            CHECK(rel<double>(y.middleRows(s, n), yb) <= 1e-12);
            CHECK(rel<double>(dx.middleRows(s, n), dxb) <= 1e-12);
            dwq += gb.q_proj.weight;
        }
        CHECK(rel<double>(g.q_proj.weight, dwq) <= 1e-12);
    }
}

TEST_CASE("long segments as blocks: non-causal XPos past the cut is refused, naming the segment", "[nn][xpos]") {
    nn::attention_config cfg;
    cfg.embed_dim = 8;
    cfg.heads = 2;
    cfg.dilated = longnet::dilated_options::from_lists({8, 64}, {1, 2}, false);
    cfg.rotary.kind = nn::position_encoding::xpos;
    cfg.rotary.scale_base = 16;
    cfg.rotary.anchor_reach = 6;
    nn::multihead_attention<double> attn(cfg);
    std::mt19937 rng(3);
    const nn::matrix<double> x = random_matrix<double>(40, 8, rng);
    nn::matrix<double> y(40, 8);
    CHECK_THROWS_WITH(attn.forward(x, y), Catch::Contains("non-causal XPos over a segment of 40 positions"));
}

TEST_CASE("packed documents: decay_documents is bitwise decay() of each document alone", "[nn][xpos]") {
    std::mt19937 rng(9);
    nn::rotary_options opt;
    const nn::rotary_embedding<float> rotary(8, opt);
    const std::vector<index_t> docs{0, 5, 5, 6, 23, 26};  // an empty document, one of length 1, one > 2 segments
    const nn::matrix<float> x = random_matrix<float>(26, 16, rng);
    for (const index_t w : {4, 8}) {
        for (const bool down : {false, true}) {
            nn::matrix<float> packed = x, alone = x;
            rotary.decay_documents(packed, docs, w, down);
            for (std::size_t b = 0; b + 1 < docs.size(); ++b) {
                nn::matrix<float> rows = x.middleRows(docs[b], docs[b + 1] - docs[b]);
                rotary.decay(rows, 0, w, down);
                alone.middleRows(docs[b], docs[b + 1] - docs[b]) = rows;
            }
            CHECK(packed == alone);
            CHECK(packed != x);
        }
    }
}
