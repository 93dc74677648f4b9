// SPDX-License-Identifier: Apache-2.0
// No #pragma once and no guard on purpose: included once per instruction-set path by nn_loops.hpp (see
// there), in that path's namespace and target region.
// The elementwise and row-reduction loops of nn/ and training/ (GELU, LayerNorm, the cross-entropy's rows,
// AdamW) as plain scalar
// code that the compiler vectorizes for the region's target: no xsimd here (xsimd 8.1 picks its
// architecture from the translation unit's macros, which a target region does not set). Reductions go
// through lane_sum (fixed lanes, so they vectorize without reassociation flags). AdamW's square roots
// use the path's sqrt_block (nn_loops.hpp: std::sqrt sets errno, which keeps the compiler from
// vectorizing it).

namespace longnet::detail::nn_loops {
LONGNET_ISA_BEGIN

// exp(a) for a <= 0 in float: xsimd's float exp (the same reduction k = round(a/ln 2), r = a − k·ln 2 in
// two parts, the same polynomial), 2^k from the exponent bits; a below −87 is taken as −87 (≈ 1.6e−38).
inline float exp_nonpositive(float a) noexcept {
    a = a < -87.0f ? -87.0f : a;
    const float k = (a * 1.44269504f + 12582912.0f) - 12582912.0f;  // round to nearest (the shifter trick)
    float r = a - k * 0.693359375f;                                   // ln 2, high part
    r = r - k * -2.12194440e-4f;                                      // ln 2, low part
    const float y = 0.5f + r * (0.166662768f + r * (0.0416654013f + r * (0.00839556288f + r * 0.00139977958f)));
    const float e = 1.0f + (y * (r * r) + r);
    const std::int32_t bits = (static_cast<std::int32_t>(k) + 127) * (std::int32_t(1) << 23);
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

// erf(x) in float: xsimd 8.1's (boost.simd's) method and coefficients: x·P(x²) below 2/3, else
// 1 − exp(−x²)·Q(x/(1+x) − 0.4) with the sign of x; both computed, one selected (no branch).
inline float erf_float(float x) noexcept {
    const float ax = std::fabs(x), x2 = x * x;
    const float r1 =
        x * (1.12837911f +
             x2 * (-0.376125276f + x2 * (0.112821832f + x2 * (-0.0267801061f + x2 * (0.00501329312f + x2 * -0.000609520532f)))));
    const float a = ax < 10.0f ? ax : 10.0f;  // erf(10) = 1 in float; keeps infinities out of a / (1 + a)
    const float z = a / (1.0f + a) - 0.4f;
    const float q =
        0.539284408f +
        z * (-1.13703561f +
             z * (0.160370469f +
                  z * (0.384356916f +
                       z * (0.142050847f +
                            z * (0.156276464f +
                                 z * (-1.36451399f + z * (3.26076579f + z * (-6.40948725f + z * (6.70290899f + z * -2.62829995f)))))))));
    float r2 = 1.0f - exp_nonpositive(-a * a) * q;
    r2 = x < 0.0f ? -r2 : r2;
    return ax < 2.0f / 3.0f ? r1 : r2;
}

inline float gelu_float(float x) noexcept { return 0.5f * x * (1.0f + erf_float(x * 0.707106781f)); }
inline float gelu_derivative_float(float x) noexcept {
    return 0.5f * (1.0f + erf_float(x * 0.707106781f)) + x * exp_nonpositive(-0.5f * x * x) * 0.398942280f;
}

// ---- GELU rows (float) ----------------------------------------------------------------------------------
inline void gelu_row(float* r, index_t n) noexcept {
    for (index_t j = 0; j < n; ++j) r[j] = gelu_float(r[j]);
}
// d += dy ∘ gelu'(x)
inline void gelu_backward_row(const float* x, const float* dy, float* d, index_t n) noexcept {
    for (index_t j = 0; j < n; ++j) d[j] += dy[j] * gelu_derivative_float(x[j]);
}
// d ← d ∘ gelu'(x)
inline void gelu_backward_inplace_row(const float* x, float* d, index_t n) noexcept {
    for (index_t j = 0; j < n; ++j) d[j] *= gelu_derivative_float(x[j]);
}

// Σ_{j<n} f(j): lanes of one 64-byte register, folded pairwise at the end, then the tail.
template <class T, class F>
inline T lane_sum(index_t n, F f) noexcept {
    constexpr int lanes = 64 / static_cast<int>(sizeof(T));
    T acc[lanes] = {};
    index_t j = 0;
    for (; j + lanes <= n; j += lanes)
        for (int l = 0; l < lanes; ++l) acc[l] += f(j + l);
    T tail = 0;
    for (; j < n; ++j) tail += f(j);
    for (int w = lanes / 2; w > 0; w /= 2)
        for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
    return acc[0] + tail;
}

// ---- LayerNorm rows -------------------------------------------------------------------------------------
// One row of the forward: y = (x − mean)·rstd·w + b (y may be x); returns mean and rstd.
template <class T>
inline void layer_norm_row(const T* x, T* y, const T* w, const T* b, index_t n, T eps, T& mean_out, T& rstd_out) noexcept {
    const T inv_n = T(1) / static_cast<T>(n);
    const T mean = lane_sum<T>(n, [x](index_t j) { return x[j]; }) * inv_n;
    const T var = lane_sum<T>(n, [x, mean](index_t j) {
                      const T c = x[j] - mean;
                      return c * c;
                  }) * inv_n;  // biased variance
    const T rs = T(1) / std::sqrt(var + eps);
    mean_out = mean;
    rstd_out = rs;
    if (y == x) {
        for (index_t j = 0; j < n; ++j) y[j] = (y[j] - mean) * rs * w[j] + b[j];
    } else {
        for (index_t j = 0; j < n; ++j) y[j] = (x[j] - mean) * rs * w[j] + b[j];
    }
}

// One row of the backward: d += rstd·(g − mean(g) − x̂·mean(g ∘ x̂)), g = dy ∘ w, x̂ = (x − mu)·rstd.
template <class T>
inline void layer_norm_backward_row(const T* x, const T* dy, const T* w, T mu, T rs, T* d, index_t n) noexcept {
    const T inv_n = T(1) / static_cast<T>(n);
    const T mean_g = lane_sum<T>(n, [dy, w](index_t j) { return dy[j] * w[j]; }) * inv_n;
    const T mean_gx = lane_sum<T>(n, [x, dy, w, mu, rs](index_t j) { return dy[j] * w[j] * ((x[j] - mu) * rs); }) * inv_n;
    for (index_t j = 0; j < n; ++j) d[j] += rs * (dy[j] * w[j] - mean_g - (x[j] - mu) * rs * mean_gx);
}

// One row's share of the parameter gradients: dw += dy ∘ x̂, db += dy.
template <class T>
inline void layer_norm_param_row(const T* x, const T* dy, T mu, T rs, T* dw, T* db, index_t n) noexcept {
    for (index_t j = 0; j < n; ++j) {
        dw[j] += dy[j] * ((x[j] - mu) * rs);
        db[j] += dy[j];
    }
}

// ---- Cross-entropy rows (float logits) -------------------------------------------------------------------
// The max of a row (n >= 1).
inline float ce_row_max(const float* z, index_t n) noexcept {
    constexpr int lanes = 16;
    float m = z[0];
    index_t j = 0;
    if (n >= lanes) {
        float acc[lanes];
        for (int l = 0; l < lanes; ++l) acc[l] = z[l];
        for (j = lanes; j + lanes <= n; j += lanes)
            for (int l = 0; l < lanes; ++l) acc[l] = acc[l] > z[j + l] ? acc[l] : z[j + l];
        for (int l = 0; l < lanes; ++l) m = m > acc[l] ? m : acc[l];
    }
    for (; j < n; ++j) m = m > z[j] ? m : z[j];
    return m;
}
// Σ_j exp(z[j] − shift) for shift >= max(z): lane sums in float over blocks of 256 lane-rows (4096 terms),
// each block's lanes added in double, as the xsimd path of nn/cross_entropy.hpp bounds its float sums.
inline double ce_row_sum_exp(const float* z, index_t n, float shift) noexcept {
    constexpr int lanes = 16;
    double sum = 0;
    index_t j = 0;
    while (j + lanes <= n) {
        const index_t end = std::min<index_t>(j + 256 * lanes, n - (n - j) % lanes);
        float acc[lanes] = {};
        for (; j < end; j += lanes)
            for (int l = 0; l < lanes; ++l) acc[l] += exp_nonpositive(z[j + l] - shift);
        for (int l = 0; l < lanes; ++l) sum += static_cast<double>(acc[l]);
    }
    for (; j < n; ++j) sum += static_cast<double>(exp_nonpositive(z[j] - shift));
    return sum;
}
// z[j] <- exp(z[j] − shift)·scale (shift >= max(z): the softmax's log-sum-exp).
inline void ce_softmax_scaled_row(float* z, index_t n, float shift, float scale) noexcept {
    for (index_t j = 0; j < n; ++j) z[j] = exp_nonpositive(z[j] - shift) * scale;
}

// ---- AdamW ----------------------------------------------------------------------------------------------
// The update of n values (adamw.hpp), in double arithmetic, blocks of sqrt_block's 16 values.
template <class T>
inline void adamw_update(T* x, const T* d, T* m, T* v, std::int64_t n, const adamw_coefficients& c) noexcept {
    const T decay = static_cast<T>(c.decay);
    const double b1 = c.beta1, b2 = c.beta2, step_size = c.step_size, bias2_sqrt = c.bias2_sqrt, eps = c.eps;
    std::int64_t i = 0;
    double s[16], q[16];
    for (; i + 16 <= n; i += 16) {
        for (int l = 0; l < 16; ++l) {
            const std::int64_t k = i + l;
            x[k] *= decay;
            m[k] = static_cast<T>(b1 * m[k] + (1 - b1) * d[k]);
            v[k] = static_cast<T>(b2 * v[k] + (1 - b2) * static_cast<double>(d[k]) * d[k]);
            s[l] = static_cast<double>(v[k]);
            q[l] = step_size * m[k];
        }
        sqrt_block(s);
        for (int l = 0; l < 16; ++l) s[l] = q[l] / (s[l] / bias2_sqrt + eps);
        for (int l = 0; l < 16; ++l) x[i + l] = static_cast<T>(x[i + l] - s[l]);
    }
    for (; i < n; ++i) {
        x[i] *= decay;
        m[i] = static_cast<T>(b1 * m[i] + (1 - b1) * d[i]);
        v[i] = static_cast<T>(b2 * v[i] + (1 - b2) * static_cast<double>(d[i]) * d[i]);
        x[i] = static_cast<T>(x[i] - step_size * m[i] / (std::sqrt(static_cast<double>(v[i])) / bias2_sqrt + eps));
    }
}

LONGNET_ISA_END
}  // namespace longnet::detail::nn_loops
