// SPDX-License-Identifier: Apache-2.0
#pragma once
// Rotary position encodings on q and k of every head, at absolute positions i = 0 .. T−1 of the whole
// sequence (applied before dilated attention selects rows).
//
// XPos (torchscale XPOS, as used by LongNet), interleaved pairs c = 0 .. hd/2 − 1 (elements 2c, 2c+1):
//   zeta_c   = (2c + 0.4·hd) / (1.4·hd)                      (float32, torchscale's `xpos.scale` buffer)
//   theta    = i · inv_freq_c,  inv_freq_c = 10000^(−c/(hd/2))
//   s(i, c)  = zeta_c ^ ((i − ceil(T/2)) / scale_base) for q, 1 / s(i, c) for k
//   y[2c]    = x[2c]·cos θ·s − x[2c+1]·sin θ·s,  y[2c+1] = x[2c+1]·cos θ·s + x[2c]·sin θ·s
// The centring ceil(T/2) cancels in q_i·k_j (which carries zeta^((i−j)/scale_base)).
// Angles: angle_precision::torchscale computes inv_freq and i·inv_freq in float32 as torchscale does,
// then sin/cos in double; angle_precision::float64 does all of it in double. The decay s is always
// computed in double from the float32 zeta.
// RoPE (position_encoding::rope) is the same rotation with s = 1.
//
// Range of the centred form (coefficients()): q and k are scaled separately by
// zeta^(±(i − ceil(T/2))/scale_base), so a long enough sequence overflows T (torchscale has the same
// limit). With hd = 64 and scale_base 512 a float build reaches about 66K tokens, a double build about
// 570K; past that coefficients() throws std::overflow_error instead of producing inf/NaN. Dense
// attention uses this form within that range (past it, causal, the anchored form in blocks).
// RoPE has no such limit.
//
// Anchored form (any position; what dilated attention, its training pass (single process and
// sequence-parallel: the anchors are global positions) and incremental decoding use):
//   q_i ← R(i)·q_i · zeta^((i − a)/s),   k_j ← R(j)·k_j · zeta^(−(j − a)/s)
// for any anchor a shared by the two: the score q_i·k_j still carries exactly zeta^((i − j)/s), so in
// exact arithmetic the scores equal the centred form's (and torchscale's) for every anchor. Dilated
// attention only scores a query against keys of its own segment of one branch, so each branch anchors
// each of its segments on its own: for segment length w the anchor of position i is
//   anchor(i, w) = floor(i / w)·w + min(w/2, reach)
// (the segment's centre; reach = the largest |i − a| whose factor T holds with 1000x headroom: about
// 33K positions in float, 290K in double, for hd = 64 and s = 512). Every factor then stays within
// zeta^(±w/(2s)) whatever the absolute position (paper configuration, w ≤ 32768: within e^(±41), finite
// in float at position 1e9), and rotation() / decay() / decay_factor() compute it. A segment longer than
// 2·reach (segment_limit()) would overflow far into it (decay() throws std::overflow_error): callers cut
// it into blocks of block_length(r) positions, each anchored on its own, and decay the queries onto each
// key block's anchor with decay_shifted() (nn/multihead_attention.hpp, decoding/incremental_decoder.hpp).

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/nn/common.hpp"

namespace longnet::nn {

enum class position_encoding { xpos, rope, none };
enum class angle_precision { torchscale, float64 };

struct rotary_options {
    position_encoding kind = position_encoding::xpos;
    angle_precision angles = angle_precision::torchscale;
    double scale_base = 512;  // XPos: xpos_scale_base
    double theta_base = 10000;
    // XPos: the largest distance from its anchor at which a row is decayed (0: the element type's range
    // with 1000x headroom, rotary_embedding::reach()); a smaller value only moves where the anchored form
    // cuts long segments into blocks and where the centred form stops (the tests run both at short lengths).
    index_t anchor_reach = 0;
};

inline const char* to_string(position_encoding p) noexcept {
    return p == position_encoding::xpos ? "xpos" : p == position_encoding::rope ? "rope" : "none";
}

template <class T>
class rotary_embedding {
    static_assert(is_compute_type<T>::value, "longnet::nn::rotary_embedding: T must be float or double");

public:
    rotary_options options;
    std::vector<float> zeta;  // [hd/2] XPos decay bases (torchscale buffer `xpos.scale`)

    rotary_embedding() = default;
    rotary_embedding(index_t head_dim, rotary_options opt) : options(opt), zeta(default_zeta(head_dim)), head_dim_(head_dim) {
        if (head_dim < 2 || head_dim % 2 != 0)
            throw std::invalid_argument("longnet::nn::rotary_embedding: head dim must be even and >= 2, got " +
                                        std::to_string(head_dim));
    }

    index_t head_dim() const noexcept { return head_dim_; }

    // torchscale: (arange(0, hd, 2) + 0.4·hd) / (1.4·hd), in float32.
    static std::vector<float> default_zeta(index_t head_dim) {
        std::vector<float> z(static_cast<std::size_t>(head_dim / 2));
        const float hd = static_cast<float>(head_dim);
        for (std::size_t c = 0; c < z.size(); ++c) z[c] = (static_cast<float>(2 * c) + 0.4f * hd) / (1.4f * hd);
        return z;
    }

    // inv_freq_c = 1 / theta_base^(c / (hd/2)); torchscale mode rounds each step to float32.
    double inverse_frequency(index_t c) const noexcept {
        const index_t half = head_dim_ / 2;
        if (options.angles == angle_precision::torchscale) {
            const float exponent = static_cast<float>(c) / static_cast<float>(half);
            return static_cast<double>(1.0f / std::pow(static_cast<float>(options.theta_base), exponent));
        }
        return 1.0 / std::pow(options.theta_base, static_cast<double>(c) / static_cast<double>(half));
    }

    // The rotation coefficients for a sequence of `seq` tokens: table(i, 2c) = cos θ·s, table(i, 2c+1) =
    // sin θ·s for q; for k (downscale) s is replaced by 1/s.
    matrix<T> coefficients(index_t seq, bool downscale) const { return coefficients(seq, downscale, 0, seq); }
    // Rows first .. first + count − 1 of coefficients(seq, downscale), bitwise the same rows (one rank's
    // share of a sequence split across processes: global positions, the whole sequence's centre).
    matrix<T> coefficients(index_t seq, bool downscale, index_t first, index_t count) const {
        if (first < 0 || count < 0 || first > seq - count)
            throw std::invalid_argument("longnet::nn::rotary_embedding::coefficients: rows [" + std::to_string(first) +
                                        ", " + std::to_string(first + count) + ") are not inside a sequence of " +
                                        std::to_string(seq) + " tokens");
        const index_t half = head_dim_ / 2;
        matrix<T> table(count, head_dim_);
        std::vector<double> inv_freq(static_cast<std::size_t>(half));
        for (index_t c = 0; c < half; ++c) inv_freq[static_cast<std::size_t>(c)] = inverse_frequency(c);
        const index_t centre = (seq + 1) / 2;  // ceil(T/2): torchscale's min_pos = −(T // 2 rounded up)
        const bool xpos = options.kind == position_encoding::xpos;
        const bool f32 = options.angles == angle_precision::torchscale;
        if (xpos) check_range(seq, centre);
        LONGNET_NN_PARALLEL_FOR
        for (index_t r = 0; r < count; ++r) {
            const index_t i = first + r;
            T* row = table.data() + r * head_dim_;
            for (index_t c = 0; c < half; ++c) {
                const double f = inv_freq[static_cast<std::size_t>(c)];
                const double angle = f32 ? static_cast<double>(static_cast<float>(i) * static_cast<float>(f))
                                         : static_cast<double>(i) * f;
                double s = 1;
                if (xpos) {
                    s = std::pow(static_cast<double>(zeta[static_cast<std::size_t>(c)]),
                                 static_cast<double>(i - centre) / options.scale_base);
                    if (downscale) s = 1.0 / s;
                }
                row[2 * c] = static_cast<T>(std::cos(angle) * s);
                row[2 * c + 1] = static_cast<T>(std::sin(angle) * s);
            }
        }
        return table;
    }

    // Rotate x [T, H·hd] (every head) in place with a coefficient table from coefficients(T, ...).
    void apply(matrix_ref<T> x, const matrix<T>& table) const {
        if (options.kind == position_encoding::none) return;
        if (x.cols() % head_dim_ != 0 || table.rows() != x.rows() || table.cols() != head_dim_)
            throw std::invalid_argument("longnet::nn::rotary_embedding: input [" + std::to_string(x.rows()) + ", " +
                                        std::to_string(x.cols()) + "] does not fit head dim " +
                                        std::to_string(head_dim_) + " and table rows " + std::to_string(table.rows()));
        const index_t rows = x.rows(), heads = x.cols() / head_dim_, half = head_dim_ / 2;
        LONGNET_NN_PARALLEL_FOR
        for (index_t i = 0; i < rows; ++i) {
            const T* coef = table.data() + i * head_dim_;
            T* r = x.data() + i * x.outerStride();
            for (index_t h = 0; h < heads; ++h) {
                T* p = r + h * head_dim_;
                for (index_t c = 0; c < half; ++c) {
                    const T cs = coef[2 * c], sn = coef[2 * c + 1];
                    const T a = p[2 * c], b = p[2 * c + 1];
                    p[2 * c] = a * cs + (-b) * sn;  // torchscale: x·cos + rotate_every_two(x)·sin
                    p[2 * c + 1] = b * cs + a * sn;
                }
            }
        }
    }
    void apply(matrix_ref<T> x, bool downscale) const {
        if (options.kind == position_encoding::none) return;
        apply(x, coefficients(x.rows(), downscale));
    }

    // Rotation only (s = 1) at absolute positions first .. first + count − 1: table(i, 2c) = cos θ,
    // table(i, 2c+1) = sin θ; use with apply(x, table). The anchored form's decay comes from decay().
    matrix<T> rotation(index_t first, index_t count) const {
        const index_t half = head_dim_ / 2;
        matrix<T> table(count, head_dim_);
        std::vector<double> inv_freq(static_cast<std::size_t>(half));
        for (index_t c = 0; c < half; ++c) inv_freq[static_cast<std::size_t>(c)] = inverse_frequency(c);
        const bool f32 = options.angles == angle_precision::torchscale;
        LONGNET_NN_PARALLEL_FOR
        for (index_t r = 0; r < count; ++r) {
            const index_t i = first + r;
            T* row = table.data() + r * head_dim_;
            for (index_t c = 0; c < half; ++c) {
                const double f = inv_freq[static_cast<std::size_t>(c)];
                const double angle = f32 ? static_cast<double>(static_cast<float>(i) * static_cast<float>(f))
                                         : static_cast<double>(i) * f;
                row[2 * c] = static_cast<T>(std::cos(angle));
                row[2 * c + 1] = static_cast<T>(std::sin(angle));
            }
        }
        return table;
    }

    // Largest distance from its anchor at which zeta^(±distance/s) fits T with 1000x headroom (or
    // options.anchor_reach when smaller).
    index_t reach() const noexcept {
        double log_zeta = 0;
        for (float z : zeta) log_zeta = std::max(log_zeta, std::fabs(std::log(static_cast<double>(z))));
        const double limit = std::log(static_cast<double>(std::numeric_limits<T>::max())) - std::log(1000.0);
        const index_t range = log_zeta > 0 ? static_cast<index_t>(std::min(limit / log_zeta * options.scale_base, 1e15))
                                           : std::numeric_limits<index_t>::max() / 4;
        return options.anchor_reach > 0 ? std::min(options.anchor_reach, range) : range;
    }
    // The longest segment whose rows all lie within reach() of its anchor (2·reach(): about 66.8K
    // positions in float for hd = 64 and s = 512). multihead_attention runs a longer segment as blocks of
    // at most this length (each block anchored on its own, the queries' anchors moved back to each key
    // block's: see decay_shifted()), so no length is refused because of XPos.
    index_t segment_limit() const noexcept { return 2 * reach(); }
    // The block length P of a long segment (longer than segment_limit()) in a branch of dilation r: the
    // largest multiple of r within the limit (so each block holds whole dilation steps and selects, per
    // head, the rows the segment selects). std::overflow_error when r itself exceeds the limit.
    index_t block_length(index_t dilation) const {
        const index_t P = dilation > 0 ? segment_limit() / dilation * dilation : 0;
        if (P < 1)
            throw std::overflow_error("longnet::nn::rotary_embedding: dilation " + std::to_string(dilation) +
                                      " is longer than the XPos block limit " + std::to_string(segment_limit()) + " of " +
                                      (sizeof(T) == 4 ? "float" : "double") +
                                      " (a block holds whole dilation steps); use a larger xpos_scale_base, a double "
                                      "build or RoPE");
        return P;
    }
    // The anchor of `position` in a branch of segment length w (see the header comment).
    index_t anchor(index_t position, index_t segment_length) const noexcept {
        return position / segment_length * segment_length + std::min(segment_length / 2, reach());
    }
    // zeta_c^(offset/s) (q) or its inverse (k, downscale) for a row `offset` = i − anchor positions away
    // from its anchor. decay() and the decoder's cache use this one expression, so they agree bitwise.
    T decay_factor(index_t offset, index_t c, bool downscale) const {
        const double s = std::pow(static_cast<double>(zeta[static_cast<std::size_t>(c)]),
                                  static_cast<double>(offset) / options.scale_base);
        return static_cast<T>(downscale ? 1.0 / s : s);
    }
    // Throws std::overflow_error when a row `offset` positions from its anchor would overflow T.
    void check_decay_range(index_t offset, index_t segment_length) const {
        if (std::abs(offset) <= reach()) return;
        throw std::overflow_error("longnet::nn::rotary_embedding: XPos decay zeta^(" + std::to_string(offset) + "/" +
                                  std::to_string(options.scale_base) + ") overflows " + (sizeof(T) == 4 ? "float" : "double") +
                                  " in a branch of segment length " + std::to_string(segment_length) +
                                  " (position " + std::to_string(offset) + " from its segment's anchor; the limit is " +
                                  std::to_string(reach()) + "); use a double build, a larger xpos_scale_base, " +
                                  "shorter segments or RoPE");
    }
    // Throws std::overflow_error when some row of a sequence of `seq` tokens would overflow T in the
    // anchored decay of a branch with segment length w (a segment, clipped to the sequence, longer than
    // about 2·reach()): what decay() on every row of the sequence would throw, checkable by each holder of
    // a slice before any of them starts.
    void check_decay(index_t seq, index_t segment_length) const {
        if (options.kind != position_encoding::xpos || seq < 1 || segment_length < 1) return;
        const index_t a = anchor(0, segment_length);
        check_decay_range(-a, segment_length);
        check_decay_range(std::min(segment_length, seq) - 1 - a, segment_length);
    }
    // Multiply every head's pair c of x [rows, H·hd] (row r at absolute position first + r) by the
    // anchored XPos decay of a branch with segment length w: zeta_c^(±(i − anchor(i, w))/s).
    void decay(matrix_ref<T> x, index_t first, index_t segment_length, bool downscale) const {
        if (!decays(x, segment_length)) return;
        const index_t rows = x.rows();
        // factors by in-segment index u = i mod w (shared by all segments); only the u that occur
        const index_t u_first = first % segment_length;
        const index_t span = std::min(segment_length, rows + u_first);  // u in [u_lo, span) or all of [0, w)
        const index_t u_lo = rows + u_first > segment_length ? 0 : u_first;
        scale_rows(x, segment_length, u_lo, span, downscale, [&](index_t r) { return (first + r) % segment_length; });
    }
    // The queries' side of a block pair `shift` positions apart (shift: a positive multiple of the block
    // length P): row r of x, at position first + r and in-block index u = (first + r) mod P, is multiplied
    // by zeta_c^((u − anchor(0, P) + shift)/s), i.e. decay(x, first, P, false) with the anchor moved `shift`
    // positions back, onto the anchor of the key block the rows are scored against. Every factor is at
    // most zeta^((shift − P/2)/s) < 1, so nothing overflows; far blocks underflow towards 0, the true
    // factor's own limit (SPEC §10).
    void decay_shifted(matrix_ref<T> x, index_t first, index_t block_length, index_t shift) const {
        if (!decays(x, block_length)) return;
        if (shift < block_length || shift % block_length != 0)
            throw std::invalid_argument("longnet::nn::rotary_embedding::decay_shifted: shift " + std::to_string(shift) +
                                        " is not a positive multiple of the block length " + std::to_string(block_length));
        const index_t u_first = first % block_length, rows = x.rows();
        const index_t span = std::min(block_length, rows + u_first), u_lo = rows + u_first > block_length ? 0 : u_first;
        scale_rows(x, block_length, u_lo, span, false, [&](index_t r) { return (first + r) % block_length; }, shift);
    }
    // decay() of packed documents: rows [documents[b], documents[b + 1]) of x are one document, its first
    // row at position 0 (documents: cu_seqlens over x's rows, checked by the caller). Bitwise decay() of
    // each document's rows alone; the factors are computed once for all documents.
    void decay_documents(matrix_ref<T> x, const std::vector<index_t>& documents, index_t segment_length, bool downscale) const {
        if (!decays(x, segment_length)) return;
        std::vector<index_t> u(static_cast<std::size_t>(x.rows()));  // each row's in-segment index
        index_t longest = 0;
        for (std::size_t b = 0; b + 1 < documents.size(); ++b) {
            longest = std::max(longest, documents[b + 1] - documents[b]);
            for (index_t r = documents[b]; r < documents[b + 1]; ++r)
                u[static_cast<std::size_t>(r)] = (r - documents[b]) % segment_length;
        }
        scale_rows(x, segment_length, 0, std::min(segment_length, longest), downscale,
                   [&](index_t r) { return u[static_cast<std::size_t>(r)]; });
    }

    // Largest |log s(i, c)| over the sequence; throws std::overflow_error when T cannot hold s and 1/s
    // with 1000x headroom for the values they multiply.
    void check_range(index_t seq, index_t centre) const {
        const double distance = static_cast<double>(std::max(centre, seq - 1 - centre));
        if (!centred_fits(seq))
            throw std::overflow_error("longnet::nn::rotary_embedding: XPos scale zeta^(" + std::to_string(distance) + "/" +
                                      std::to_string(options.scale_base) + ") overflows " +
                                      (sizeof(T) == 4 ? "float" : "double") + " for a sequence of " +
                                      std::to_string(seq) + " tokens; this centred form (one scale per row, spanning the "
                                      "whole sequence) cannot be exact past this length: use the anchored form (dilated "
                                      "or causal dense attention in multihead_attention, no length limit), a double "
                                      "build, a larger xpos_scale_base or RoPE");
    }

    // Whether the centred form (coefficients(seq, ...)) holds a sequence of seq tokens in T.
    // (Every row within reach() of the centre ceil(T/2).)
    bool centred_fits(index_t seq) const {
        const index_t centre = (seq + 1) / 2;
        return std::max(centre, seq - 1 - centre) <= reach();
    }

private:
    // Whether decay() has anything to do on x (XPos, rows); std::invalid_argument for a bad segment length
    // or x that does not fit the head dim.
    bool decays(const matrix_ref<T>& x, index_t segment_length) const {
        if (options.kind != position_encoding::xpos) return false;
        if (segment_length < 1 || x.cols() % head_dim_ != 0)
            throw std::invalid_argument("longnet::nn::rotary_embedding::decay: segment length " + std::to_string(segment_length) +
                                        ", input columns " + std::to_string(x.cols()) + ", head dim " + std::to_string(head_dim_));
        return x.rows() > 0;
    }
    // Row r of x times the decay factors of in-segment index u_of(r), which lies in [u_lo, span).
    // shift > 0 (decay_shifted: queries, every offset positive) needs no range check.
    template <class Index>
    void scale_rows(matrix_ref<T>& x, index_t segment_length, index_t u_lo, index_t span, bool downscale,
                    const Index& u_of, index_t shift = 0) const {
        const index_t rows = x.rows(), heads = x.cols() / head_dim_, half = head_dim_ / 2;
        const index_t a = anchor(0, segment_length);
        if (shift == 0) {
            check_decay_range(u_lo - a, segment_length);
            check_decay_range(span - 1 - a, segment_length);
        }
        matrix<T> table(span - u_lo, half);
        LONGNET_NN_PARALLEL_FOR
        for (index_t u = u_lo; u < span; ++u)
            for (index_t c = 0; c < half; ++c) table(u - u_lo, c) = decay_factor(u - a + shift, c, downscale);
        LONGNET_NN_PARALLEL_FOR
        for (index_t r = 0; r < rows; ++r) {
            const T* f = table.data() + (u_of(r) - u_lo) * half;
            T* row = x.data() + r * x.outerStride();
            for (index_t h = 0; h < heads; ++h)
                for (index_t c = 0; c < half; ++c) {
                    row[h * head_dim_ + 2 * c] *= f[c];
                    row[h * head_dim_ + 2 * c + 1] *= f[c];
                }
        }
    }

    index_t head_dim_ = 0;
};

}  // namespace longnet::nn
