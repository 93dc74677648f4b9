// SPDX-License-Identifier: Apache-2.0
#pragma once
// LongNet multi-head attention (torchscale DilatedAttention with xpos_rel_pos=True, subln=True):
//   q, k, v = x·Wqᵀ + bq, x·Wkᵀ + bk, x·Wvᵀ + bv           [T, H·hd], head h = columns h·hd ..
//   q, k   ← XPos (absolute positions 0 .. T−1, before any row selection; k downscaled)
//   a      = dilated_attention(q, k, v)  (or dense_attention: attention_kind::dense, the drop-in baseline)
//   y      = out_proj( LN_sub(a) )       (inner Sub-LayerNorm over all D = H·hd)
// Batch 1: x is one sequence [T, D].

#include <stdexcept>
#include <string>

#include "longnet/attention.hpp"
#include "longnet/dilated_attention.hpp"
#include "longnet/nn/common.hpp"
#include "longnet/nn/layer_norm.hpp"
#include "longnet/nn/linear.hpp"
#include "longnet/nn/xpos.hpp"
#include "longnet/options.hpp"

namespace longnet::nn {

enum class attention_kind { dilated, dense };

inline const char* to_string(attention_kind k) noexcept { return k == attention_kind::dilated ? "dilated" : "dense"; }

struct attention_config {
    index_t embed_dim = 0;
    index_t heads = 1;
    attention_kind kind = attention_kind::dilated;
    dilated_options dilated;  // branches, causal, offsets, tail, scale (dense uses causal and scale only)
    rotary_options rotary;
    double layernorm_eps = 1e-5;

    index_t head_dim() const noexcept { return heads > 0 ? embed_dim / heads : 0; }
    void validate() const {
        if (embed_dim < 1 || heads < 1 || embed_dim % heads != 0)
            throw std::invalid_argument("longnet::nn::attention: embed dim " + std::to_string(embed_dim) +
                                        " must be a positive multiple of the head count " + std::to_string(heads));
        if (rotary.kind != position_encoding::none && head_dim() % 2 != 0)
            throw std::invalid_argument("longnet::nn::attention: head dim " + std::to_string(head_dim()) +
                                        " must be even for rotary/XPos positions");
        if (kind == attention_kind::dilated) longnet::validate(dilated);
    }
};

template <class T, class W = T>
class multihead_attention {
public:
    attention_config config;
    linear<T, W> q_proj, k_proj, v_proj, out_proj;
    layer_norm<T> inner_attn_ln;
    rotary_embedding<T> rotary;

    multihead_attention() = default;
    explicit multihead_attention(const attention_config& cfg)
        : config(cfg),
          q_proj(cfg.embed_dim, cfg.embed_dim),
          k_proj(cfg.embed_dim, cfg.embed_dim),
          v_proj(cfg.embed_dim, cfg.embed_dim),
          out_proj(cfg.embed_dim, cfg.embed_dim),
          inner_attn_ln(cfg.embed_dim, cfg.layernorm_eps) {
        cfg.validate();
        if (cfg.rotary.kind != position_encoding::none) rotary = rotary_embedding<T>(cfg.head_dim(), cfg.rotary);
    }

    index_t embed_dim() const noexcept { return config.embed_dim; }

    // y = Attn(x); x, y [T, D], may not alias.
    void forward(const_matrix_ref<T> x, matrix_ref<T> y, forward_profile* profile = nullptr) const {
        const index_t seq = x.rows(), dim = config.embed_dim, heads = config.heads, hd = config.head_dim();
        if (x.cols() != dim || y.rows() != seq || y.cols() != dim)
            throw std::invalid_argument("longnet::nn::multihead_attention: input [" + std::to_string(x.rows()) + ", " +
                                        std::to_string(x.cols()) + "] / output do not fit embed dim " +
                                        std::to_string(dim));
        matrix<T> q(seq, dim), k(seq, dim), v(seq, dim);
        {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::dense));
            q_proj.forward(x, q);
            k_proj.forward(x, k);
            v_proj.forward(x, v);
        }
        if (config.rotary.kind != position_encoding::none) {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::other));
            rotary.apply(q, rotary.coefficients(seq, false));
            rotary.apply(k, rotary.coefficients(seq, true));
        }
        matrix<T> a(seq, dim);
        {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::attention));
            using CT = const T;
            auto qv = make_bnhd<CT>(q.data(), 1, seq, heads, hd);
            auto kv = make_bnhd<CT>(k.data(), 1, seq, heads, hd);
            auto vv = make_bnhd<CT>(v.data(), 1, seq, heads, hd);
            auto ov = make_bnhd<T>(a.data(), 1, seq, heads, hd);
            if (config.kind == attention_kind::dilated) {
                dilated_attention(qv, kv, vv, ov, config.dilated);
            } else {
                attention_options dense;
                dense.causal = config.dilated.causal;
                dense.scale = config.dilated.scale;
                dense_attention(qv, kv, vv, ov, dense);
            }
        }
        {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::norms));
            inner_attn_ln.forward(a, a);
        }
        {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::dense));
            out_proj.forward(a, y);
        }
    }
    matrix<T> operator()(const_matrix_ref<T> x) const {
        matrix<T> y(x.rows(), embed_dim());
        forward(x, y);
        return y;
    }
};

}  // namespace longnet::nn
