// SPDX-License-Identifier: Apache-2.0
// The float loops of nn/ and training/ that run on the runtime ISA dispatch (detail/nn_loops.hpp): GELU
// forward and backward, LayerNorm's rows and parameter sums, the cross-entropy's row max, Σ exp and
// softmax, AdamW's update, through their public entry points, against double oracles written here. Built
// twice: test_nn_loops (the build's flags: the native path) and test_nn_loops_dispatch (no -march, run
// once per path this CPU has with LONGNET_ISA set, tests/CMakeLists.txt), so the AVX2 and AVX-512 code a
// build without -march runs is checked too. Lengths cover a tail shorter than a register, exact
// multiples and long rows.

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <longnet/isa.hpp>
#include <longnet/nn/cross_entropy.hpp>
#include <longnet/nn/gelu.hpp>
#include <longnet/nn/layer_norm.hpp>
#include <longnet/training/adamw.hpp>

#include "catch.hpp"

namespace nn = longnet::nn;
using longnet::index_t;
using dmat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using fmat = nn::matrix<float>;

namespace {

fmat random_float(index_t rows, index_t cols, double scale, std::uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<double> u(-scale, scale);
    fmat m(rows, cols);
    for (index_t i = 0; i < rows; ++i)
        for (index_t j = 0; j < cols; ++j) m(i, j) = static_cast<float>(u(gen));
    return m;
}

dmat widen(const fmat& m) { return m.cast<double>(); }

// max |a − b| / max |b|
double rel_error(const dmat& a, const dmat& b) { return (a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff(); }

double gelu_ref(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double gelu_derivative_ref(double x) {
    return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
}

const std::vector<index_t> widths = {1, 7, 16, 33, 768, 3079};

}  // namespace

TEST_CASE("nn loops: the path in force is the one LONGNET_ISA names", "[nn][dispatch]") {
    using longnet::detail::isa_path;
    const char* env = std::getenv("LONGNET_ISA");
    INFO("path " << longnet::simd_isa());
    const isa_path active = longnet::detail::active_isa();
    if (env != nullptr && *env != '\0') {
        const std::string want = env;
        CHECK(active == (want == "avx512" ? isa_path::avx512 : want == "avx2" ? isa_path::avx2 : isa_path::native));
    } else {
        CHECK(longnet::detail::isa_compiled(active));
    }
}

TEST_CASE("nn loops: GELU forward and backward in float against erf in double", "[nn][dispatch]") {
    for (index_t n : widths) {
        INFO("width " << n << ", path " << longnet::simd_isa());
        const fmat x = random_float(3, n, 6.0, 11 + static_cast<std::uint32_t>(n));
        const fmat dy = random_float(3, n, 1.0, 12 + static_cast<std::uint32_t>(n));
        const fmat d0 = random_float(3, n, 1.0, 13 + static_cast<std::uint32_t>(n));
        dmat y_ref(3, n), d_ref(3, n), dip_ref(3, n);
        for (index_t i = 0; i < 3; ++i)
            for (index_t j = 0; j < n; ++j) {
                const double xv = x(i, j), g = gelu_derivative_ref(xv);
                y_ref(i, j) = gelu_ref(xv);
                d_ref(i, j) = d0(i, j) + double(dy(i, j)) * g;
                dip_ref(i, j) = double(dy(i, j)) * g;
            }
        fmat y = x;
        nn::gelu_inplace<float>(y);
        CHECK(rel_error(widen(y), y_ref) < 2e-6);
        fmat d = d0;
        nn::gelu_backward<float>(x, dy, d);
        CHECK(rel_error(widen(d), d_ref) < 2e-6);
        fmat dip = dy;
        nn::gelu_backward_inplace<float>(x, dip);
        CHECK(rel_error(widen(dip), dip_ref) < 2e-6);
    }
}

TEST_CASE("nn loops: LayerNorm rows and parameter sums in float against double", "[nn][dispatch]") {
    for (index_t n : widths) {
        if (n == 1) continue;  // a one-feature row normalizes to its bias
        INFO("width " << n << ", path " << longnet::simd_isa());
        const index_t rows = 5;
        nn::layer_norm<float> ln(n, 1e-5);
        ln.weight = random_float(1, n, 1.0, 21).row(0).transpose();
        ln.bias = random_float(1, n, 1.0, 22).row(0).transpose();
        const fmat x = random_float(rows, n, 3.0, 23 + static_cast<std::uint32_t>(n));
        const fmat dy = random_float(rows, n, 1.0, 24 + static_cast<std::uint32_t>(n));
        const fmat dx0 = random_float(rows, n, 1.0, 25 + static_cast<std::uint32_t>(n));
        dmat y_ref(rows, n), dx_ref = widen(dx0);
        Eigen::VectorXd dw_ref = Eigen::VectorXd::Zero(n), db_ref = Eigen::VectorXd::Zero(n);
        for (index_t i = 0; i < rows; ++i) {
            const Eigen::RowVectorXd xi = x.row(i).cast<double>();
            const double mean = xi.mean(), var = (xi.array() - mean).square().mean(), rs = 1 / std::sqrt(var + 1e-5);
            const Eigen::RowVectorXd xhat = (xi.array() - mean) * rs;
            const Eigen::RowVectorXd w = ln.weight.cast<double>().transpose(), b = ln.bias.cast<double>().transpose();
            y_ref.row(i) = xhat.cwiseProduct(w) + b;
            const Eigen::RowVectorXd g = dy.row(i).cast<double>().cwiseProduct(w);
            dx_ref.row(i) += (rs * (g.array() - g.mean() - xhat.array() * g.cwiseProduct(xhat).mean())).matrix();
            dw_ref += dy.row(i).cast<double>().cwiseProduct(xhat).transpose();
            db_ref += dy.row(i).cast<double>().transpose();
        }
        fmat y(rows, n);
        nn::vector<float> mean, rstd;
        ln.forward_train(x, y, mean, rstd);
        CHECK(rel_error(widen(y), y_ref) < 2e-6);
        fmat dx = dx0;
        auto grad = ln.make_grad();
        ln.backward(x, dy, mean, rstd, dx, grad);
        CHECK(rel_error(widen(dx), dx_ref) < 1e-5);
        CHECK((grad.weight.cast<double>() - dw_ref).cwiseAbs().maxCoeff() / dw_ref.cwiseAbs().maxCoeff() < 1e-5);
        CHECK((grad.bias.cast<double>() - db_ref).cwiseAbs().maxCoeff() / db_ref.cwiseAbs().maxCoeff() < 1e-5);
    }
}

TEST_CASE("nn loops: softmax cross-entropy rows in float against double", "[nn][dispatch]") {
    // 4099: more than one block of 256 register-rows of a 16-lane sum, plus a tail
    for (index_t vocab : {index_t(3), index_t(16), index_t(37), index_t(4099), index_t(5003)}) {
        INFO("vocabulary " << vocab << ", path " << longnet::simd_isa());
        const index_t rows = 5;
        fmat z = random_float(rows, vocab, 8.0, 31 + static_cast<std::uint32_t>(vocab));
        z(1, 0) = 70.0f;  // one row whose other logits sit ~60-80 below its max
        std::vector<std::int64_t> targets;
        for (index_t i = 0; i < rows; ++i) targets.push_back((5 * i + 2) % vocab);
        targets[2] = nn::ignore_target;
        double expect = 0;
        dmat grad = dmat::Zero(rows, vocab);
        const double scale = 0.3;
        for (index_t i = 0; i < rows; ++i) {
            if (targets[std::size_t(i)] == nn::ignore_target) continue;
            const Eigen::RowVectorXd zi = z.row(i).cast<double>();
            const double m = zi.maxCoeff(), lse = m + std::log((zi.array() - m).exp().sum());
            expect += lse - zi(targets[std::size_t(i)]);
            grad.row(i) = scale * (zi.array() - lse).exp().matrix();
            grad(i, targets[std::size_t(i)]) -= scale;
        }
        CHECK(std::fabs(nn::cross_entropy_forward<float>(z, targets.data()) - expect) < 1e-6 * std::fabs(expect));
        fmat g = z;
        CHECK(std::fabs(nn::cross_entropy_backward<float>(g, targets.data(), scale) - expect) < 1e-6 * std::fabs(expect));
        CHECK((widen(g) - grad).cwiseAbs().maxCoeff() < 2e-6 * scale);
        CHECK(g.row(2).cwiseAbs().maxCoeff() == 0.0f);
    }
}

TEST_CASE("nn loops: an AdamW step in float against the update in double", "[nn][dispatch]") {
    for (index_t n : {index_t(7), index_t(16), index_t(4096 + 37)}) {
        INFO("size " << n << ", path " << longnet::simd_isa());
        fmat w = random_float(1, n, 1.0, 41), g = random_float(1, n, 0.1, 42);
        std::vector<longnet::training::named_tensor<float>> params{{"w", w.data(), {1, n}}}, grads{{"w", g.data(), {1, n}}};
        longnet::training::adamw_options opt;
        longnet::training::adamw<float> adam(params, opt);
        const double lr = 1e-2;
        const fmat w0 = w;
        adam.step(params, grads, lr);  // moments were zero: m = (1 − β1)·g, v = (1 − β2)·g²
        dmat expect(1, n);
        for (index_t j = 0; j < n; ++j) {
            const double gj = g(0, j), m = (1 - opt.beta1) * gj, v = (1 - opt.beta2) * gj * gj;
            const double p = double(w0(0, j)) * (1 - lr * opt.weight_decay);
            expect(0, j) = p - (lr / (1 - opt.beta1)) * m / (std::sqrt(v) / std::sqrt(1 - opt.beta2) + opt.eps);
        }
        CHECK(rel_error(widen(w), expect) < 1e-6);
        CHECK(widen(w) != widen(w0));
    }
}
