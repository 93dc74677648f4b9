// SPDX-License-Identifier: Apache-2.0
// longnet::nn layers against slow double-precision oracles written here, on random non-zero inputs:
// Linear (also bf16 weights), LayerNorm, GELU, XPos / RoPE, the feed-forward block, the dilated
// multi-head attention layer (torchscale and paper offsets, dense option) and the decoder layer.

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <longnet/nn/nn.hpp>

#include "catch.hpp"

namespace {

namespace nn = longnet::nn;
using longnet::index_t;
using dmat = nn::matrix<double>;

// ---------------------------------------------------------------------------------------------------
// Random data and comparison

dmat random_matrix(index_t rows, index_t cols, std::uint32_t seed, double scale = 1.0) {
    std::mt19937 gen(seed);
    std::normal_distribution<double> normal(0.0, scale);
    dmat m(rows, cols);
    for (index_t i = 0; i < rows; ++i)
        for (index_t j = 0; j < cols; ++j) {
            double v = normal(gen);
            if (v == 0) v = scale;  // non-zero
            m(i, j) = v;
        }
    return m;
}
nn::vector<double> random_vector(index_t n, std::uint32_t seed, double mean = 0, double scale = 1) {
    dmat m = random_matrix(n, 1, seed, scale);
    return m.col(0).array() + mean;
}

template <class T>
nn::matrix<T> to(const dmat& m) {
    return m.cast<T>();
}
template <class T>
dmat widen(const nn::matrix<T>& m) {
    return m.template cast<double>();
}

// max |a − b| / max |b|
double rel_error(const dmat& a, const dmat& b) {
    REQUIRE(a.rows() == b.rows());
    REQUIRE(a.cols() == b.cols());
    if (!a.allFinite()) return INFINITY;
    return (a - b).cwiseAbs().maxCoeff() / std::max(1e-300, b.cwiseAbs().maxCoeff());
}

template <class T>
double tolerance(double float_tol = 2e-5) {
    return std::is_same_v<T, double> ? 1e-12 : float_tol;
}

// ---------------------------------------------------------------------------------------------------
// Oracles (plain loops, double)

dmat linear_ref(const dmat& x, const dmat& w, const nn::vector<double>& b) {
    dmat y(x.rows(), w.rows());
    for (index_t i = 0; i < x.rows(); ++i)
        for (index_t o = 0; o < w.rows(); ++o) {
            double s = b.size() ? b(o) : 0.0;
            for (index_t k = 0; k < x.cols(); ++k) s += x(i, k) * w(o, k);
            y(i, o) = s;
        }
    return y;
}

dmat layer_norm_ref(const dmat& x, const nn::vector<double>& g, const nn::vector<double>& b, double eps) {
    dmat y(x.rows(), x.cols());
    const double n = static_cast<double>(x.cols());
    for (index_t i = 0; i < x.rows(); ++i) {
        double mean = 0, var = 0;
        for (index_t j = 0; j < x.cols(); ++j) mean += x(i, j);
        mean /= n;
        for (index_t j = 0; j < x.cols(); ++j) var += (x(i, j) - mean) * (x(i, j) - mean);
        var /= n;  // biased
        for (index_t j = 0; j < x.cols(); ++j) y(i, j) = (x(i, j) - mean) / std::sqrt(var + eps) * g(j) + b(j);
    }
    return y;
}

dmat gelu_ref(dmat x) {
    for (index_t i = 0; i < x.size(); ++i) x.data()[i] = 0.5 * x.data()[i] * (1.0 + std::erf(x.data()[i] / std::sqrt(2.0)));
    return x;
}

// XPos / RoPE straight from the recipe: pair c of head h at position i.
dmat rotary_ref(const dmat& x, index_t head_dim, bool xpos, bool downscale, bool float32_angles, double scale_base) {
    const index_t T = x.rows(), half = head_dim / 2, heads = x.cols() / head_dim;
    const double centre = std::ceil(static_cast<double>(T) / 2.0);
    dmat y = x;
    for (index_t i = 0; i < T; ++i)
        for (index_t c = 0; c < half; ++c) {
            double theta;
            if (float32_angles) {
                const float inv = 1.0f / std::pow(10000.0f, static_cast<float>(c) / static_cast<float>(half));
                theta = static_cast<double>(static_cast<float>(i) * inv);
            } else {
                theta = static_cast<double>(i) * std::pow(10000.0, -static_cast<double>(c) / static_cast<double>(half));
            }
            double s = 1;
            if (xpos) {
                const float zeta = (static_cast<float>(2 * c) + 0.4f * static_cast<float>(head_dim)) /
                                   (1.4f * static_cast<float>(head_dim));
                s = std::pow(static_cast<double>(zeta), (static_cast<double>(i) - centre) / scale_base);
                if (downscale) s = 1 / s;
            }
            for (index_t h = 0; h < heads; ++h) {
                const double a = x(i, h * head_dim + 2 * c), b = x(i, h * head_dim + 2 * c + 1);
                y(i, h * head_dim + 2 * c) = (a * std::cos(theta) - b * std::sin(theta)) * s;
                y(i, h * head_dim + 2 * c + 1) = (b * std::cos(theta) + a * std::sin(theta)) * s;
            }
        }
    return y;
}

// Dilated attention as one softmax over the multiset union of (branch, key) pairs a query sees;
// dense attention = one branch covering everything.
dmat attention_ref(const dmat& q, const dmat& k, const dmat& v, index_t heads, const longnet::dilated_options& opt,
                   bool dense) {
    const index_t T = q.rows(), hd = q.cols() / heads;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    dmat out = dmat::Zero(T, q.cols());
    for (index_t h = 0; h < heads; ++h)
        for (index_t p = 0; p < T; ++p) {
            std::vector<index_t> keys;
            if (dense) {
                for (index_t j = 0; j <= (opt.causal ? p : T - 1); ++j) keys.push_back(j);
            } else {
                for (const auto& br : opt.branches) {
                    const index_t w = br.segment_length, r = br.dilation;
                    const index_t o = opt.offsets == longnet::offset_policy::paper ? h % r : h / ((heads + r - 1) / r);
                    const index_t g = p / w;
                    const auto selected = [&](index_t j) { return j / w == g && (j - g * w) % r == o; };
                    if (!selected(p)) continue;
                    for (index_t j = g * w; j < std::min(T, (g + 1) * w); ++j)
                        if (selected(j) && (!opt.causal || j <= p)) keys.push_back(j);
                }
            }
            if (keys.empty()) continue;
            std::vector<double> logits;
            double mx = -INFINITY;
            for (index_t j : keys) {
                double s = 0;
                for (index_t d = 0; d < hd; ++d) s += q(p, h * hd + d) * k(j, h * hd + d);
                logits.push_back(s * scale);
                mx = std::max(mx, s * scale);
            }
            double denom = 0;
            for (double& l : logits) denom += (l = std::exp(l - mx));
            for (std::size_t n = 0; n < keys.size(); ++n)
                for (index_t d = 0; d < hd; ++d) out(p, h * hd + d) += logits[n] / denom * v(keys[n], h * hd + d);
        }
    return out;
}

// Random parameters for a layer (float-representable, so float and double layers see the same values).
template <class T, class W>
void randomize_linear(nn::linear<T, W>& l, std::uint32_t seed) {
    const dmat w = random_matrix(l.out_features(), l.in_features(), seed, 1.0 / std::sqrt(static_cast<double>(l.in_features())));
    l.weight = w.cast<float>().cast<W>();
    if (l.has_bias()) l.bias = random_vector(l.out_features(), seed + 1, 0, 0.1).template cast<float>().template cast<T>();
}
template <class T>
void randomize_norm(nn::layer_norm<T>& n, std::uint32_t seed) {
    n.weight = random_vector(n.features(), seed, 1.0, 0.2).template cast<float>().template cast<T>();
    n.bias = random_vector(n.features(), seed + 1, 0, 0.2).template cast<float>().template cast<T>();
}
template <class T, class W>
dmat weight_of(const nn::linear<T, W>& l) {
    return l.weight.template cast<float>().template cast<double>();
}
template <class T, class W>
dmat linear_ref(const dmat& x, const nn::linear<T, W>& l) {
    return linear_ref(x, weight_of(l), l.bias.template cast<double>());
}
template <class T>
dmat layer_norm_ref(const dmat& x, const nn::layer_norm<T>& n) {
    return layer_norm_ref(x, n.weight.template cast<double>(), n.bias.template cast<double>(), n.eps);
}

template <class T, class W>
dmat ffn_ref(const dmat& x, const nn::feed_forward<T, W>& f) {
    return linear_ref(layer_norm_ref(gelu_ref(linear_ref(x, f.fc1)), f.ffn_layernorm), f.fc2);
}

template <class T, class W>
dmat attention_layer_ref(const dmat& x, const nn::multihead_attention<T, W>& a) {
    const auto& c = a.config;
    dmat q = linear_ref(x, a.q_proj), k = linear_ref(x, a.k_proj), v = linear_ref(x, a.v_proj);
    if (c.rotary.kind != nn::position_encoding::none) {
        const bool xpos = c.rotary.kind == nn::position_encoding::xpos;
        const bool f32 = c.rotary.angles == nn::angle_precision::torchscale;
        q = rotary_ref(q, c.head_dim(), xpos, false, f32, c.rotary.scale_base);
        k = rotary_ref(k, c.head_dim(), xpos, true, f32, c.rotary.scale_base);
    }
    const dmat att = attention_ref(q, k, v, c.heads, c.dilated, c.kind == nn::attention_kind::dense);
    return linear_ref(layer_norm_ref(att, a.inner_attn_ln), a.out_proj);
}

nn::attention_config small_attention(nn::attention_kind kind, longnet::offset_policy offsets) {
    nn::attention_config c;
    c.embed_dim = 32;
    c.heads = 4;  // head dim 8
    c.kind = kind;
    c.dilated = longnet::dilated_options::from_lists({8, 16, 32}, {1, 2, 4}, /*causal=*/true);
    c.dilated.offsets = offsets;
    c.rotary.scale_base = 16;  // strong decay: a wrong sign or centring shows
    return c;
}

template <class T, class W>
void randomize_attention(nn::multihead_attention<T, W>& a, std::uint32_t seed) {
    randomize_linear(a.q_proj, seed);
    randomize_linear(a.k_proj, seed + 10);
    randomize_linear(a.v_proj, seed + 20);
    randomize_linear(a.out_proj, seed + 30);
    randomize_norm(a.inner_attn_ln, seed + 40);
}

// ---------------------------------------------------------------------------------------------------

template <class T, class W = T>
void check_linear() {
    nn::linear<T, W> l(13, 7);
    randomize_linear(l, 11);
    const dmat x = random_matrix(21, 13, 12).cast<T>().template cast<double>();
    const nn::matrix<T> y = l(x.cast<T>());
    CHECK(rel_error(widen(y), linear_ref(x, l)) < tolerance<T>(1e-6));
    // a block of rows in, a block of rows out
    nn::matrix<T> big = nn::matrix<T>::Constant(30, 7, T(9));
    const nn::matrix<T> xt = x.cast<T>();
    l.forward(xt.middleRows(3, 10), big.middleRows(5, 10));
    CHECK(rel_error(widen<T>(big.middleRows(5, 10)), linear_ref(x.middleRows(3, 10), l)) < tolerance<T>(1e-6));
    CHECK(big(4, 0) == T(9));
    CHECK(big(15, 0) == T(9));
    // no bias
    nn::linear<T, W> nb(13, 7, false);
    nb.weight = l.weight;
    CHECK(rel_error(widen(nb(xt)), linear_ref(x, weight_of(l), nn::vector<double>())) < tolerance<T>(1e-6));
    // shape errors
    nn::matrix<T> wrong(21, 6);
    CHECK_THROWS_AS(l.forward(xt, wrong), std::invalid_argument);
}

}  // namespace

TEST_CASE("nn::linear against the oracle", "[nn]") {
    check_linear<float>();
    check_linear<double>();
    check_linear<double, float>();
    check_linear<float, Eigen::bfloat16>();  // oracle sees the bf16-rounded weights
}

// nn/gemm.hpp (oneDNN's sgemm in a build that links longnet::onednn, else Eigen) through Linear: operands
// that are column blocks of wider matrices (row stride ≠ columns), accumulation into what is there, and
// empty products, against the double oracle.
template <class T>
void check_linear_strided() {
    nn::linear<T> l(13, 7);
    randomize_linear(l, 21);
    const dmat xw = random_matrix(17, 20, 22), dyw = random_matrix(17, 11, 23);
    const nn::matrix<T> x_wide = xw.cast<T>(), dy_wide = dyw.cast<T>();
    const dmat x = widen<T>(x_wide.middleCols(4, 13)), dy = widen<T>(dy_wide.middleCols(2, 7));
    // forward into a column block: the columns around it stay
    nn::matrix<T> y_wide = nn::matrix<T>::Constant(17, 10, T(5));
    l.forward(x_wide.middleCols(4, 13), y_wide.middleCols(1, 7));
    CHECK(rel_error(widen<T>(y_wide.middleCols(1, 7)), linear_ref(x, l)) < tolerance<T>(1e-6));
    CHECK((y_wide.col(0).array() == T(5)).all());
    CHECK((y_wide.rightCols(2).array() == T(5)).all());
    // backward: dx += dy·W and dW += dyᵀ·x accumulate onto non-zero buffers
    const dmat dx0 = random_matrix(17, 13, 24), dw0 = random_matrix(7, 13, 25);
    nn::matrix<T> dx_wide = nn::matrix<T>::Constant(17, 15, T(-3));
    dx_wide.middleCols(1, 13) = dx0.cast<T>();
    nn::linear_grad<T> g = l.make_grad();
    g.weight = dw0.cast<T>();
    l.backward(x_wide.middleCols(4, 13), dy_wide.middleCols(2, 7), dx_wide.middleCols(1, 13), g);
    const dmat w = weight_of(l);
    CHECK(rel_error(widen<T>(dx_wide.middleCols(1, 13)), widen<T>(dx0.cast<T>()) + dy * w) < tolerance<T>(1e-6));
    CHECK(rel_error(widen<T>(g.weight), widen<T>(dw0.cast<T>()) + dy.transpose() * x) < tolerance<T>(1e-6));
    CHECK((dx_wide.col(0).array() == T(-3)).all());
    CHECK((dx_wide.col(14).array() == T(-3)).all());
    // no rows: nothing to write, the weight gradient keeps what it had
    nn::matrix<T> none_x(0, 13), none_y(0, 7);
    l.forward(none_x, none_y);
    const nn::matrix<T> before = g.weight;
    l.backward(none_x, none_y, none_x, g);
    CHECK(widen<T>(g.weight) == widen<T>(before));
}

TEST_CASE("nn::linear on column blocks, accumulating, and with no rows (the nn GEMM backend)", "[nn]") {
    INFO("nn GEMM backend: " << nn::gemm_backend);
    check_linear_strided<float>();
    check_linear_strided<double>();
}

TEST_CASE("nn::layer_norm against the oracle (biased variance, eps, gain, bias)", "[nn]") {
    auto run = [](auto tag, double eps, double offset) {
        using T = decltype(tag);
        nn::layer_norm<T> n(37, eps);
        randomize_norm(n, 5);
        const dmat x = (random_matrix(19, 37, 6, 3.0).array() + offset).matrix().cast<T>().template cast<double>();
        const nn::matrix<T> y = n(x.cast<T>());
        CHECK(rel_error(widen(y), layer_norm_ref(x, n)) < tolerance<T>(2e-6));
        nn::matrix<T> inplace = x.cast<T>();
        n.forward_inplace(inplace);
        CHECK(widen(inplace) == widen(y));
    };
    run(float{}, 1e-5, 0.0);
    run(double{}, 1e-5, 0.0);
    run(double{}, 0.5, 0.0);   // eps matters
    run(float{}, 1e-5, 50.0);  // large mean: two-pass variance
    // a constant row normalises to the bias
    nn::layer_norm<double> n(4, 1e-5);
    n.bias << 1, 2, 3, 4;
    const dmat y = n(dmat::Constant(2, 4, 3.0));
    CHECK(y(1, 3) == 4.0);
}

TEST_CASE("nn::gelu is the exact erf GELU", "[nn]") {
    const dmat x = random_matrix(9, 33, 3, 3.0);
    nn::matrix<double> d = x;
    nn::gelu_inplace<double>(d);
    CHECK(rel_error(d, gelu_ref(x)) < 1e-15);
    nn::matrix<float> f = x.cast<float>();
    nn::gelu_inplace<float>(f);
    CHECK(rel_error(widen(f), gelu_ref(x.cast<float>().cast<double>())) < 1e-6);
    // not the tanh approximation: at x = 1 they differ in the 4th digit
    CHECK(nn::gelu(1.0) == Approx(0.8413447460685429).epsilon(1e-15));
    // evaluate_in_float rounds like float
    nn::matrix<double> g = x;
    nn::gelu_inplace<double>(g, true);
    CHECK(rel_error(g, gelu_ref(x)) < 1e-6);
    CHECK(rel_error(g, gelu_ref(x)) > 0);
}

TEST_CASE("nn::rotary_embedding: XPos and RoPE against the recipe", "[nn][xpos]") {
    for (index_t T : {1, 2, 9, 40}) {
        for (bool downscale : {false, true})
            for (auto angles : {nn::angle_precision::float64, nn::angle_precision::torchscale})
                for (auto kind : {nn::position_encoding::xpos, nn::position_encoding::rope}) {
                    nn::rotary_options o;
                    o.kind = kind;
                    o.angles = angles;
                    o.scale_base = 8;
                    nn::rotary_embedding<double> rd(8, o);
                    nn::rotary_embedding<float> rf(8, o);
                    const dmat x = random_matrix(T, 24, static_cast<std::uint32_t>(T) + 1);  // 3 heads of 8
                    const dmat want = rotary_ref(x, 8, kind == nn::position_encoding::xpos, downscale,
                                                 angles == nn::angle_precision::torchscale, 8);
                    nn::matrix<double> d = x;
                    rd.apply(d, downscale);
                    nn::matrix<float> f = x.cast<float>();
                    rf.apply(f, downscale);
                    INFO("T " << T << " downscale " << downscale << " kind " << nn::to_string(kind));
                    CHECK(rel_error(d, want) < 1e-13);
                    CHECK(rel_error(widen(f), want) < 1e-5);
                }
    }
    // XPos scores depend on i − j only: shifting the whole sequence (another centre) keeps q_i·k_j
    nn::rotary_options o;
    o.angles = nn::angle_precision::float64;
    o.scale_base = 8;
    nn::rotary_embedding<double> r(8, o);
    const dmat qrow = random_matrix(1, 8, 1), krow = random_matrix(1, 8, 2);
    auto score = [&](index_t T, index_t i, index_t j) {
        dmat q = dmat::Zero(T, 8), k = dmat::Zero(T, 8);
        q.row(i) = qrow;
        k.row(j) = krow;
        nn::matrix<double> qq = q, kk = k;
        r.apply(qq, false);
        r.apply(kk, true);
        return qq.row(i).dot(kk.row(j));
    };
    CHECK(score(20, 9, 4) == Approx(score(33, 9, 4)).epsilon(1e-12));
    CHECK(score(20, 9, 4) == Approx(score(20, 15, 10)).epsilon(1e-12));
    CHECK(score(20, 9, 4) != Approx(score(20, 9, 2)).epsilon(1e-6));
    // bad head dims
    CHECK_THROWS_AS(nn::rotary_embedding<double>(7, o), std::invalid_argument);
}

TEST_CASE("nn::rotary_embedding: XPos range limit is an error, not inf/NaN", "[nn][xpos]") {
    nn::rotary_options o;  // torchscale defaults: scale base 512
    nn::rotary_embedding<float> f(64, o);
    nn::rotary_embedding<double> d(64, o);
    const nn::matrix<float> ok = f.coefficients(65536, true);  // the paper's 64K tokens fit in float
    CHECK(ok.allFinite());
    CHECK(ok.cwiseAbs().maxCoeff() > 1e30f);
    CHECK(f.coefficients(65536, false).allFinite());
    CHECK_THROWS_AS(f.coefficients(80000, false), std::overflow_error);
    CHECK(d.coefficients(80000, true).allFinite());
    CHECK_THROWS_AS(d.coefficients(600000, true), std::overflow_error);
    o.kind = nn::position_encoding::rope;  // no decay, no limit
    CHECK(nn::rotary_embedding<float>(64, o).coefficients(200000, true).allFinite());
}

TEST_CASE("nn::feed_forward against the oracle (fc1, GELU, Sub-LN, fc2; row blocks)", "[nn]") {
    auto run = [](auto tag, index_t block) {
        using T = decltype(tag);
        nn::feed_forward<T> f(16, 40);
        f.row_block = block;
        randomize_linear(f.fc1, 1);
        randomize_linear(f.fc2, 3);
        randomize_norm(f.ffn_layernorm, 5);
        const dmat x = random_matrix(23, 16, 7).cast<T>().template cast<double>();
        const nn::matrix<T> y = f(x.cast<T>());
        INFO("block " << block);
        CHECK(rel_error(widen(y), ffn_ref(x, f)) < tolerance<T>(1e-5));
    };
    for (index_t block : {1, 5, 23, 4096}) {
        run(float{}, block);
        run(double{}, block);
    }
}

TEST_CASE("nn::multihead_attention against the oracle (dilated and dense, XPos, Sub-LN)", "[nn][attention]") {
    auto run = [](auto tag, nn::attention_kind kind, longnet::offset_policy offsets, nn::position_encoding pos,
                  index_t T) {
        using T_ = decltype(tag);
        nn::attention_config cfg = small_attention(kind, offsets);
        cfg.rotary.kind = pos;
        cfg.rotary.angles = nn::angle_precision::float64;
        nn::multihead_attention<T_> a(cfg);
        randomize_attention(a, 100);
        const dmat x = random_matrix(T, 32, 101).cast<T_>().template cast<double>();
        nn::forward_profile profile;
        nn::matrix<T_> y(T, 32);
        a.forward(x.cast<T_>(), y, &profile);
        INFO("kind " << nn::to_string(kind) << " offsets " << longnet::to_string(offsets) << " pos "
                     << nn::to_string(pos) << " T " << T << " " << sizeof(T_));
        CHECK(rel_error(widen(y), attention_layer_ref(x, a)) < tolerance<T_>(3e-5));
        CHECK(profile.attention > 0);
        CHECK(profile.dense > 0);
        CHECK(profile.norms > 0);
    };
    for (index_t T : {1, 31, 77})
        for (auto kind : {nn::attention_kind::dilated, nn::attention_kind::dense})
            for (auto offsets : {longnet::offset_policy::torchscale, longnet::offset_policy::paper}) {
                run(double{}, kind, offsets, nn::position_encoding::xpos, T);
                run(float{}, kind, offsets, nn::position_encoding::xpos, T);
            }
    run(double{}, nn::attention_kind::dilated, longnet::offset_policy::torchscale, nn::position_encoding::rope, 50);
    run(double{}, nn::attention_kind::dilated, longnet::offset_policy::torchscale, nn::position_encoding::none, 50);
}

TEST_CASE("nn::multihead_attention: rotation happens on absolute positions before row selection", "[nn][attention]") {
    // The same rows fed at other absolute positions give other outputs: positions are the sequence's.
    nn::attention_config cfg = small_attention(nn::attention_kind::dilated, longnet::offset_policy::torchscale);
    cfg.rotary.kind = nn::position_encoding::rope;
    nn::multihead_attention<double> a(cfg);
    randomize_attention(a, 7);
    const dmat x = random_matrix(64, 32, 8);
    const dmat y = a(x);
    CHECK(rel_error(y, attention_layer_ref(x, a)) < 1e-12);
    // RoPE scores are relative, so a tail that starts on a segment boundary of every branch (row 32)
    // reproduces itself alone; a tail starting at row 36 does not: segments are cut at absolute positions
    const dmat aligned = a(dmat(x.bottomRows(32)));
    CHECK(rel_error(aligned, dmat(y.bottomRows(32))) < 1e-6);  // float32 angles: i·inv_freq rounds
    const dmat shifted = a(dmat(x.bottomRows(28)));
    CHECK(rel_error(shifted, dmat(y.bottomRows(28))) > 1e-3);
}

TEST_CASE("nn::decoder_layer against the oracle (pre-LN, residuals)", "[nn]") {
    auto run = [](auto tag) {
        using T = decltype(tag);
        nn::attention_config cfg = small_attention(nn::attention_kind::dilated, longnet::offset_policy::torchscale);
        cfg.rotary.angles = nn::angle_precision::float64;
        nn::decoder_layer<T> layer(cfg, 48);
        randomize_norm(layer.self_attn_layer_norm, 1);
        randomize_attention(layer.self_attn, 3);
        randomize_norm(layer.final_layer_norm, 50);
        randomize_linear(layer.ffn.fc1, 60);
        randomize_linear(layer.ffn.fc2, 70);
        randomize_norm(layer.ffn.ffn_layernorm, 80);
        const dmat x = random_matrix(45, 32, 9).cast<T>().template cast<double>();
        dmat want = x + attention_layer_ref(layer_norm_ref(x, layer.self_attn_layer_norm), layer.self_attn);
        want = want + ffn_ref(layer_norm_ref(want, layer.final_layer_norm), layer.ffn);
        nn::matrix<T> got = x.cast<T>();
        layer.forward(got);
        CHECK(rel_error(widen(got), want) < tolerance<T>(3e-5));
    };
    run(float{});
    run(double{});
}
