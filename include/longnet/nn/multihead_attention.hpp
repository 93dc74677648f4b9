// SPDX-License-Identifier: Apache-2.0
#pragma once
// LongNet multi-head attention (torchscale DilatedAttention with xpos_rel_pos=True, subln=True):
//   q, k, v = x·Wqᵀ + bq, x·Wkᵀ + bk, x·Wvᵀ + bv           [T, H·hd], head h = columns h·hd ..
//   q, k   ← XPos (absolute positions 0 .. T−1, before any row selection; k downscaled)
//   a      = dilated_attention(q, k, v)  (or dense_attention: attention_kind::dense, the drop-in baseline)
//   y      = out_proj( LN_sub(a) )       (inner Sub-LayerNorm over all D = H·hd; none when !config.subln)
// Batch 1: x is one sequence [T, D].
// Training: forward_train saves q, k (rotated), v, the attention output a, its log-sum-exp and the Sub-LN
// statistics and output; backward runs out_proj, Sub-LN, the attention backward kernels (grad_mode exact
// or stop_grad_weights), the transposed XPos rotation and the three projections' backward. The training
// pass computes the attention through an attention_backend (attention_backend.hpp): by default over the
// whole sequence here; the MPI trainer's backend holds one rank's rows of it. Dilated attention with XPos
// uses the anchored form in training too, as the inference forward does (no length limit from XPos):
//   whole sequence: the branches run here, each on q, k decayed for its segment length, merged in
//       branch order (bitwise the inference forward);
//   a slice (rows [first, first + n) of a longer sequence: the MPI trainer's ranks): the held rows are
//       rotated and decayed at their global positions (the anchors are global), the backend runs once
//       per group of branches sharing a segment length on that group's decayed copies, and the groups'
//       (out, lse) merge exactly (lse = logsumexp over the groups, out = Σ exp(lse_g − lse)·out_g);
//   backward (both): per segment-length group, the backend's backward on its decayed copies with the
//       merged out and lse, the decay applied to the group's dq, dk, summed. backward_releasing (activation
//       checkpointing) frees the Sub-LN output after out_proj's backward and, on the whole sequence with
//       the local backend and one branch per segment length, runs each group one head at a time: the
//       decayed copies and the group's gradients are [T, hd] instead of [T, D], the same bits.
//   packed documents (a backend with documents(): nn::document_attention, longnet_train --pack-documents):
//       positions restart at 0 at each document's first token (rotation, anchors and decay, or the centred
//       tables of each document alone); the forward runs the whole-sequence form above on each document's
//       rows, the backward the per-group form with the backend's varlen backward: each document's rows
//       get what the document alone gets.
// Dense attention uses the centred form (coefficients()) while it holds the sequence (float ≈ 66K tokens,
// double ≈ 570K for hd = 64); causal dense attention past that runs the anchored form as one branch of
// segment length T and dilation 1 (anchored_options), non-causal past it is refused (std::overflow_error).
//
// Dilated attention with XPos uses the anchored form (xpos.hpp): q and k are rotated once, then for each
// branch scaled by the decay anchored on that branch's segments, and the branch runs on those copies
// (merged into the output exactly as dilated_attention merges its branches). Same scores as the centred
// form in exact arithmetic, and no overflow at any position. A segment longer than the anchor's limit
// (rotary.segment_limit(): float 66.8K positions at s = 512) runs as blocks with an anchor per key block
// (long_branch_forward / long_branch_backward below: whole sequences and packed documents;
// long_slice_forward / long_slice_backward: a slice of a sequence split across ranks, the keys of each
// block distance shifted between the ranks by the backend).
//
// first_position: the rows are the tokens at absolute positions first_position .. first_position + T − 1
// (rotation angles and anchors use them). It must be a multiple of every segment length: then no
// earlier token is visible to these rows (segments are aligned at position 0), and the result equals
// the rows of the whole sequence's forward. Dense attention needs first_position = 0.

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include "longnet/attention.hpp"
#include "longnet/backward.hpp"
#include "longnet/dilated_attention.hpp"
#include "longnet/nn/attention_backend.hpp"
#include "longnet/nn/common.hpp"
#include "longnet/nn/layer_norm.hpp"
#include "longnet/nn/linear.hpp"
#include "longnet/nn/xpos.hpp"
#include "longnet/options.hpp"

namespace longnet::nn {

struct attention_config {
    index_t embed_dim = 0;
    index_t heads = 1;
    attention_kind kind = attention_kind::dilated;
    dilated_options dilated;  // branches, causal, offsets, tail, scale (dense uses causal and scale only)
    rotary_options rotary;
    double layernorm_eps = 1e-5;
    bool subln = true;        // Sub-LayerNorm inner_attn_ln before out_proj (torchscale subln); false: none

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

// Gradient buffers of one attention block (torchscale names under <prefix>.self_attn.).
template <class T>
struct attention_grad {
    linear_grad<T> q_proj, k_proj, v_proj, out_proj;
    layer_norm_grad<T> inner_attn_ln;
    void set_zero() {
        q_proj.set_zero();
        k_proj.set_zero();
        v_proj.set_zero();
        out_proj.set_zero();
        inner_attn_ln.set_zero();
    }
};

// What multihead_attention::forward_train saves for backward.
template <class T>
struct attention_activations {
    matrix<T> q, k, v;                // [T, D] q, k after XPos (dilated: rotation only, decayed per branch)
    matrix<T> a;                      // [T, D] attention output (Sub-LN input)
    std::vector<accum_t<T>> lse;      // [T, H] merged log-sum-exp
    vector<T> ln_mean, ln_rstd;       // Sub-LN statistics
    matrix<T> a_ln;                   // [T, D] Sub-LN output (out_proj input)
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

    // Receives the keys after the rotation (before the anchored XPos decay, which is per branch) and
    // the values, [T, D] each: what incremental decoding caches.
    using kv_observer = std::function<void(const matrix<T>& keys, const matrix<T>& values)>;

    // y = Attn(x); x, y [T, D], may not alias. first_position: see the header comment.
    void forward(const_matrix_ref<T> x, matrix_ref<T> y, forward_profile* profile = nullptr, index_t first_position = 0,
                 const kv_observer& observe = {}) const {
        const index_t seq = x.rows(), dim = config.embed_dim, heads = config.heads, hd = config.head_dim();
        if (x.cols() != dim || y.rows() != seq || y.cols() != dim)
            throw std::invalid_argument("longnet::nn::multihead_attention: input [" + std::to_string(x.rows()) + ", " +
                                        std::to_string(x.cols()) + "] / output do not fit embed dim " +
                                        std::to_string(dim));
        check_first_position(first_position);
        const bool anchored = anchored_form(seq);
        matrix<T> q(seq, dim), k(seq, dim), v(seq, dim);
        {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::dense));
            q_proj.forward(x, q);
            k_proj.forward(x, k);
            v_proj.forward(x, v);
        }
        if (config.rotary.kind != position_encoding::none) {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::other));
            if (anchored || config.kind == attention_kind::dilated) {  // rotation only; XPos decay per branch below
                const matrix<T> table = rotary.rotation(first_position, seq);
                rotary.apply(q, table);
                rotary.apply(k, table);
            } else {
                rotary.apply(q, rotary.coefficients(seq, false));
                rotary.apply(k, rotary.coefficients(seq, true));
            }
        }
        if (observe) observe(k, v);
        matrix<T> a(seq, dim);
        {
            detail::scoped_timer t(detail::slot(profile, &forward_profile::attention));
            using CT = const T;
            auto qv = make_bnhd<CT>(q.data(), 1, seq, heads, hd);
            auto kv = make_bnhd<CT>(k.data(), 1, seq, heads, hd);
            auto vv = make_bnhd<CT>(v.data(), 1, seq, heads, hd);
            auto ov = make_bnhd<T>(a.data(), 1, seq, heads, hd);
            if (anchored) {
                anchored_dilated_attention(q, k, vv, ov, first_position, anchored_options(seq));
            } else if (config.kind == attention_kind::dilated) {
                dilated_attention(qv, kv, vv, ov, config.dilated);
            } else {
                dense_attention(qv, kv, vv, ov, attention_backend<T>::dense_options(config.dilated));
            }
        }
        if (config.subln) {
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

    attention_grad<T> make_grad() const {
        return {q_proj.make_grad(), k_proj.make_grad(), v_proj.make_grad(), out_proj.make_grad(), inner_attn_ln.make_grad()};
    }

    // Training forward: y = Attn(x), saving what backward needs in act. x, y [T, D], may not alias.
    // attention: the whole sequence here (default), or these rows of a longer one (attention_backend.hpp;
    // the rows are rotated, and XPos-decayed, at their positions in it). XPos: see the header comment.
    void forward_train(const_matrix_ref<T> x, matrix_ref<T> y, attention_activations<T>& act,
                       attention_backend<T>& attention = local_attention<T>()) const {
        const index_t seq = x.rows(), dim = config.embed_dim, heads = config.heads, hd = config.head_dim();
        if (x.cols() != dim || y.rows() != seq || y.cols() != dim)
            throw std::invalid_argument("longnet::nn::multihead_attention::forward_train: input [" +
                                        std::to_string(x.rows()) + ", " + std::to_string(x.cols()) +
                                        "] / output do not fit embed dim " + std::to_string(dim));
        act.q.resize(seq, dim);
        act.k.resize(seq, dim);
        act.v.resize(seq, dim);
        act.a.resize(seq, dim);
        act.a_ln.resize(seq, dim);
        act.lse.assign(static_cast<std::size_t>(seq * heads), accum_t<T>(0));
        q_proj.forward(x, act.q);
        k_proj.forward(x, act.k);
        v_proj.forward(x, act.v);
        const row_slice rows = attention.slice(seq);
        const std::vector<index_t>* docs = attention.documents();
        if (docs && !whole_sequence(rows, seq))
            throw std::invalid_argument("longnet::nn::multihead_attention: packed documents need the whole sequence in one pass");
        const bool anchored = anchored_form(rows.total);
        const dilated_options opt = anchored_options(rows.total);
        if (anchored && !whole_sequence(rows, seq)) check_slice(opt, rows.total);  // (the trainer checked it first)
        if (anchored) {  // rotation only; act.q, act.k are saved before the per-branch decay
            const matrix<T> table = rotation_table(rows, seq, docs);
            rotary.apply(act.q, table);
            rotary.apply(act.k, table);
        } else if (config.rotary.kind != position_encoding::none) {
            rotary.apply(act.q, coefficient_table(rows, seq, false, docs));
            rotary.apply(act.k, coefficient_table(rows, seq, true, docs));
        }
        using CT = const T;
        auto qv = make_bnhd<CT>(act.q.data(), 1, seq, heads, hd);
        auto kv = make_bnhd<CT>(act.k.data(), 1, seq, heads, hd);
        auto vv = make_bnhd<CT>(act.v.data(), 1, seq, heads, hd);
        auto ov = make_bnhd<T>(act.a.data(), 1, seq, heads, hd);
        auto lv = make_lse_bnh<accum_t<T>>(act.lse.data(), 1, seq, heads);
        if (anchored && docs)  // each document alone: the whole-sequence form on its rows
            for (std::size_t b = 0; b + 1 < docs->size(); ++b) {
                const index_t s = (*docs)[b], n = (*docs)[b + 1] - s;
                const lse_view<accum_t<T>> ld = make_lse_bnh<accum_t<T>>(act.lse.data() + s * heads, 1, n, heads);
                anchored_dilated_attention(act.q.middleRows(s, n), act.k.middleRows(s, n),
                                           make_bnhd<CT>(act.v.data() + s * dim, 1, n, heads, hd),
                                           make_bnhd<T>(act.a.data() + s * dim, 1, n, heads, hd), 0, opt, &ld);
            }
        else if (anchored && whole_sequence(rows, seq) && (!attention.own_precision() || has_long_branch(opt, seq)))
            anchored_dilated_attention(act.q, act.k, vv, ov, 0, opt, &lv);  // (long branches: the local blocks)
        else if (anchored)
            anchored_slice_attention(attention, act.q, act.k, act.v, vv, ov, lv, rows, opt);
        else
            attention.forward(config.kind, config.dilated, qv, kv, vv, ov, lv);
        if (config.subln)
            inner_attn_ln.forward_train(act.a, act.a_ln, act.ln_mean, act.ln_rstd);
        else
            act.a_ln = act.a;
        out_proj.forward(act.a_ln, y);
    }

    // Backward of forward_train(x, ...): dx += ∂/∂x (dx [T, D]), grad += parameter gradients. attention:
    // the forward's backend.
    void backward(const_matrix_ref<T> x, const_matrix_ref<T> dy, const attention_activations<T>& act,
                  matrix_ref<T> dx, attention_grad<T>& grad, grad_mode mode = grad_mode::exact,
                  attention_backend<T>& attention = local_attention<T>()) const {
        backward_impl(x, dy, act, dx, grad, mode, attention);
    }
    // backward for activation checkpointing: the same bits with less memory at the training pass's peak
    // (see the top of this file); act.a_ln is freed.
    void backward_releasing(const_matrix_ref<T> x, const_matrix_ref<T> dy, attention_activations<T>& act,
                            matrix_ref<T> dx, attention_grad<T>& grad, grad_mode mode = grad_mode::exact,
                            attention_backend<T>& attention = local_attention<T>()) const {
        backward_impl(x, dy, act, dx, grad, mode, attention);
    }

private:
    // Act: attention_activations<T>, const (kept) or not (released as the pass goes).
    template <class Act>
    void backward_impl(const_matrix_ref<T> x, const_matrix_ref<T> dy, Act& act, matrix_ref<T> dx,
                       attention_grad<T>& grad, grad_mode mode, attention_backend<T>& attention) const {
        constexpr bool release = !std::is_const_v<Act>;
        const index_t seq = x.rows(), dim = config.embed_dim, heads = config.heads, hd = config.head_dim();
        if (x.cols() != dim || dy.rows() != seq || dy.cols() != dim || dx.rows() != seq || dx.cols() != dim ||
            act.a.rows() != seq)
            throw std::invalid_argument("longnet::nn::multihead_attention::backward: x, dy, dx or the saved "
                                        "activations do not fit [" + std::to_string(seq) + ", " + std::to_string(dim) + "]");
        matrix<T> d_ln = matrix<T>::Zero(seq, dim);
        out_proj.backward(act.a_ln, dy, d_ln, grad.out_proj);
        if constexpr (release) act.a_ln = matrix<T>{};
        matrix<T> da = matrix<T>::Zero(seq, dim);
        if (config.subln)
            inner_attn_ln.backward(act.a, d_ln, act.ln_mean, act.ln_rstd, da, grad.inner_attn_ln);
        else
            da.swap(d_ln);
        d_ln.resize(0, 0);
        matrix<T> dq(seq, dim), dk(seq, dim), dv(seq, dim);  // overwritten by the kernels
        using CT = const T;
        auto qv = make_bnhd<CT>(act.q.data(), 1, seq, heads, hd);
        auto kv = make_bnhd<CT>(act.k.data(), 1, seq, heads, hd);
        auto vv = make_bnhd<CT>(act.v.data(), 1, seq, heads, hd);
        auto ov = make_bnhd<CT>(act.a.data(), 1, seq, heads, hd);
        auto dov = make_bnhd<CT>(da.data(), 1, seq, heads, hd);
        auto lv = make_lse_bnh<const accum_t<T>>(act.lse.data(), 1, seq, heads);
        auto dqv = make_bnhd<T>(dq.data(), 1, seq, heads, hd);
        auto dkv = make_bnhd<T>(dk.data(), 1, seq, heads, hd);
        auto dvv = make_bnhd<T>(dv.data(), 1, seq, heads, hd);
        const row_slice rows = attention.slice(seq);
        const std::vector<index_t>* docs = attention.documents();
        const bool anchored = anchored_form(rows.total);
        const dilated_options opt = anchored_options(rows.total);
        if (anchored && release && per_head_backward(attention, rows, seq, docs, opt))
            anchored_backward_per_head(act, da, dq, dk, dv, mode, opt);
        else if (anchored)
            anchored_dilated_attention_backward(attention, act, vv, ov, lv, dov, da, dq, dk, dv, mode, rows, docs, opt);
        else
            attention.backward(config.kind, config.dilated, qv, kv, vv, ov, lv, dov, dqv, dkv, dvv, mode);
        if (anchored) {  // the rotation's transpose (the decay was applied per group above)
            const matrix<T> table = transposed_coefficients(rotation_table(rows, seq, docs));
            rotary.apply(dq, table);
            rotary.apply(dk, table);
        } else if (config.rotary.kind != position_encoding::none) {  // XPos backward: the rotation's transpose
            rotary.apply(dq, transposed_coefficients(coefficient_table(rows, seq, false, docs)));
            rotary.apply(dk, transposed_coefficients(coefficient_table(rows, seq, true, docs)));
        }
        q_proj.backward(x, dq, dx, grad.q_proj);
        k_proj.backward(x, dk, dx, grad.k_proj);
        v_proj.backward(x, dv, dx, grad.v_proj);
    }

public:
    // Throws std::invalid_argument unless first_position is 0, or (dilated) a multiple of every segment length.
    void check_first_position(index_t first_position) const {
        if (first_position == 0) return;
        if (first_position < 0 || config.kind != attention_kind::dilated)
            throw std::invalid_argument("longnet::nn::multihead_attention: first position " + std::to_string(first_position) +
                                        (first_position < 0 ? " is negative" : " needs dilated attention (dense sees every earlier token)"));
        for (const branch& br : config.dilated.branches)
            if (first_position % br.segment_length != 0)
                throw std::invalid_argument("longnet::nn::multihead_attention: first position " + std::to_string(first_position) +
                                            " is not a multiple of segment length " + std::to_string(br.segment_length) +
                                            ": earlier tokens would be visible");
    }

private:
    // Dilated attention with the anchored XPos decay: each branch of opt on its own decayed copies of q and
    // k, merged into out through the running log-sum-exp in branch order (as dilated_attention does); a
    // long branch (long_branch()) as blocks (long_branch_forward). lse_out (optional): the merged
    // log-sum-exp, for the training pass.
    void anchored_dilated_attention(const_matrix_ref<T> q, const_matrix_ref<T> k, const tensor_view<const T>& vv,
                                    const tensor_view<T>& ov, index_t first_position, const dilated_options& opt,
                                    const lse_view<accum_t<T>>* lse_out = nullptr) const {
        using A = accum_t<T>;
        const index_t seq = q.rows(), heads = config.heads, hd = config.head_dim();
        if (seq == 0) return;
        std::vector<A> lse_buffer(lse_out ? 0 : static_cast<std::size_t>(seq * heads));
        const lse_view<A> lse = lse_out ? *lse_out : lse_view<A>(lse_buffer.data(), 1, seq, heads);
        longnet::detail::init_output<T, A>(ov, lse);
        const A scale = static_cast<A>(effective_scale(opt.scale, hd));
        matrix<T> qb, kb;
        index_t decayed_for = 0;  // segment length the copies are decayed for
        for (const branch& br : opt.branches) {
            if (long_branch(br, seq, opt)) {
                long_branch_forward(q, k, vv, ov, lse, opt, br, scale);
                continue;
            }
            if (br.segment_length != decayed_for) {  // (counted as attention time)
                qb = q;
                kb = k;
                rotary.decay(qb, first_position, br.segment_length, false);
                rotary.decay(kb, first_position, br.segment_length, true);
                decayed_for = br.segment_length;
            }
            using CT = const T;
            longnet::detail::run_forward_branch<T>(
                make_bnhd<CT>(qb.data(), 1, seq, heads, hd), make_bnhd<CT>(kb.data(), 1, seq, heads, hd), vv, ov, lse,
                opt, br, scale);
        }
    }

    // Long segments (SPEC §10's finer anchor). A branch (w, r) whose segment, clipped to the sequence, is
    // longer than rotary.segment_limit() (float, hd 64, s 512: 66.8K positions) cannot give every row of a
    // segment one anchor within reach. Each segment is cut into blocks of P positions (block_length: a
    // multiple of r, at most the limit; blocks start at the segment's first row, the last may be shorter).
    // A query in block b scores the keys of blocks b − m, m = 0 .. b; for each m:
    //   keys: decayed per block on the block's own anchor (decay(k, 0, P, true));
    //   queries: m = 0 decayed likewise, and block b against block b itself is causal attention with
    //       segment length P and dilation r; m ≥ 1 decayed with the anchor moved back m·P positions
    //       (decay_shifted: onto the key block's anchor), and block b against block b − m is non-causal
    //       attention with segment length P and dilation r on the queries' rows [mP, n) shifted onto the
    //       keys' rows [0, n − mP).
    // Every score carries exactly zeta^((i − j)/s), every factor stays ≤ zeta^(−P/(2s)), far blocks'
    // query factors underflow towards 0 (the true factor's own limit), and the pieces merge exactly
    // (lse = logsumexp, out = Σ exp(lse_m − lse)·out_m): the branch's softmax over all its keys. P is a
    // multiple of r, so block-relative row offsets select exactly the rows the segment selects for each
    // head. The queries of piece m ≥ 1 are padded with zero rows to a whole number of blocks so the last
    // (partial) query block still sees its whole key block; the padding's outputs are dropped (and in the
    // backward it carries dout = 0, lse = 0, so it adds nothing to dk, dv). Causal only: non-causal XPos
    // scores grow as zeta^(−(j − i)/s) for keys after the query, which overflows in exact arithmetic.
    bool long_branch(const branch& br, index_t seq, const dilated_options& opt) const {
        if (std::min(br.segment_length, seq) <= rotary.segment_limit()) return false;
        if (!opt.causal)
            throw std::overflow_error(
                "longnet::nn::multihead_attention: non-causal XPos over a segment of " +
                std::to_string(std::min(br.segment_length, seq)) + " positions: scores of keys after the query grow as "
                "zeta^(-(j - i)/scale_base) and overflow " + std::string(sizeof(T) == 4 ? "float" : "double") +
                " (the longest segment that holds is " + std::to_string(rotary.segment_limit()) +
                "); use causal attention, shorter segments, a larger xpos_scale_base or RoPE");
        return true;
    }
    index_t block_length(const branch& br) const { return rotary.block_length(br.dilation); }
    // The options of one block piece: branch (P, r), causal (m = 0) or not (m ≥ 1), no padding keys.
    static dilated_options piece_options(const dilated_options& opt, const branch& piece, bool causal) {
        dilated_options o = opt;
        o.branches = {piece};
        o.causal = causal;
        o.tail = tail_mode::exact;
        return o;
    }

    // The long branch br of the rows q, k (rotated, not decayed), v merged into (ov, lse) (see above).
    void long_branch_forward(const_matrix_ref<T> q, const_matrix_ref<T> k, const tensor_view<const T>& vv,
                             const tensor_view<T>& ov, const lse_view<accum_t<T>>& lse, const dilated_options& opt,
                             const branch& br, accum_t<T> scale) const {
        using A = accum_t<T>;
        using CT = const T;
        using varlen_views::rows;
        const index_t seq = q.rows(), dim = config.embed_dim, heads = config.heads, hd = config.head_dim();
        const index_t w = br.segment_length, P = block_length(br);
        const branch piece{P, br.dilation};
        const dilated_options diagonal = piece_options(opt, piece, true), off_diagonal = piece_options(opt, piece, false);
        for (index_t S = 0; S < seq; S += w) {
            const index_t n = std::min(w, seq - S), blocks = (n + P - 1) / P;
            matrix<T> qd = q.middleRows(S, n), kd = k.middleRows(S, n);
            rotary.decay(qd, 0, P, false);
            rotary.decay(kd, 0, P, true);
            longnet::detail::run_forward_branch<T>(make_bnhd<CT>(qd.data(), 1, n, heads, hd),
                                                   make_bnhd<CT>(kd.data(), 1, n, heads, hd), rows(vv, S, n),
                                                   rows(ov, S, n), rows(lse, S, n), diagonal, piece, scale);
            matrix<T> qs, og;
            std::vector<A> lg;
            for (index_t m = 1; m < blocks; ++m) {
                const index_t len = (blocks - m) * P, nq = n - m * P;
                shifted_queries(q, S, n, P, m, qs);
                og.resize(len, dim);
                lg.assign(static_cast<std::size_t>(len * heads), A(0));
                const tensor_view<T> ogv = make_bnhd<T>(og.data(), 1, len, heads, hd);
                const lse_view<A> lgv(lg.data(), 1, len, heads);
                longnet::detail::init_output<T, A>(ogv, lgv);
                longnet::detail::run_forward_branch<T>(make_bnhd<CT>(qs.data(), 1, len, heads, hd),
                                                       make_bnhd<CT>(kd.data(), 1, len, heads, hd), rows(vv, S, len),
                                                       ogv, lgv, off_diagonal, piece, scale);
                LONGNET_NN_PARALLEL_FOR
                for (index_t i = 0; i < nq; ++i)
                    for (index_t h = 0; h < heads; ++h)
                        merge_group(ov.row(0, S + m * P + i, h), lse(0, S + m * P + i, h), og.data() + i * dim + h * hd,
                                    lgv(0, i, h), hd);
            }
        }
    }
    // qs = the queries of piece m of the segment at rows [S, S + n): rows S + m·P .. of q decayed onto the
    // key blocks' anchors, padded with zero rows to (blocks − m)·P rows.
    void shifted_queries(const_matrix_ref<T> q, index_t S, index_t n, index_t P, index_t m, matrix<T>& qs) const {
        const index_t blocks = (n + P - 1) / P, len = (blocks - m) * P, nq = n - m * P;
        qs.resize(len, config.embed_dim);
        qs.topRows(nq) = q.middleRows(S + m * P, nq);
        qs.bottomRows(len - nq).setZero();
        rotary.decay_shifted(qs.topRows(nq), 0, P, m * P);
    }

    // The backward of long_branch_forward over rows [s0, s0 + N) of the pass (one sequence: the whole pass or
    // one packed document), accumulated into dq, dk, dv (before the rotation's transpose). Each piece runs
    // the kernels' exact backward with the merged lse; out is the merged output (grad_mode::exact) or the
    // branch's own output recomputed here (stop_grad_weights: the branch's merge weight held constant, its
    // pieces' weights inside it differentiated, as torchscale's autograd treats the branch).
    void long_branch_backward(const attention_activations<T>& act, const matrix<T>& da, const lse_view<const accum_t<T>>& lv,
                              matrix<T>& dq, matrix<T>& dk, matrix<T>& dv, grad_mode mode, const dilated_options& opt,
                              const branch& br, index_t s0, index_t N) const {
        using A = accum_t<T>;
        using CT = const T;
        using varlen_views::rows;
        const index_t dim = config.embed_dim, heads = config.heads, hd = config.head_dim();
        const index_t w = br.segment_length, P = block_length(br);
        const branch piece{P, br.dilation};
        const dilated_options diagonal = piece_options(opt, piece, true), off_diagonal = piece_options(opt, piece, false);
        const auto q = act.q.middleRows(s0, N), k = act.k.middleRows(s0, N);
        const tensor_view<CT> vv = make_bnhd<CT>(act.v.data() + s0 * dim, 1, N, heads, hd);
        const lse_view<CT> lse = rows(lv, s0, N);
        const auto dout = da.middleRows(s0, N);
        matrix<T> own;  // out: merged (exact) or the branch's own (stop_grad_weights)
        if (mode == grad_mode::stop_grad_weights) {
            own.resize(N, dim);
            std::vector<A> own_lse(static_cast<std::size_t>(N * heads));
            const tensor_view<T> ownv = make_bnhd<T>(own.data(), 1, N, heads, hd);
            const lse_view<A> own_lv(own_lse.data(), 1, N, heads);
            longnet::detail::init_output<T, A>(ownv, own_lv);
            long_branch_forward(q, k, vv, ownv, own_lv, opt, br, static_cast<A>(effective_scale(opt.scale, hd)));
        }
        const const_matrix_ref<T> out = mode == grad_mode::stop_grad_weights ? const_matrix_ref<T>(own)
                                                                              : const_matrix_ref<T>(act.a.middleRows(s0, N));
        matrix<T> qs, os, dos, dqs, dks, dvs;
        std::vector<A> ls;
        const auto backward_piece = [&](const T* qp, const T* kp, index_t v_row, const T* op, const A* lp, const T* dop,
                                        T* dqp, T* dkp, T* dvp, index_t count, const dilated_options& piece_opt) {
            longnet::dilated_attention_backward(
                make_bnhd<CT>(qp, 1, count, heads, hd), make_bnhd<CT>(kp, 1, count, heads, hd), rows(vv, v_row, count),
                make_bnhd<CT>(op, 1, count, heads, hd), lse_view<CT>(lp, {1, count, heads}, {count * heads, heads, 1}),
                make_bnhd<CT>(dop, 1, count, heads, hd), make_bnhd<T>(dqp, 1, count, heads, hd),
                make_bnhd<T>(dkp, 1, count, heads, hd), make_bnhd<T>(dvp, 1, count, heads, hd), piece_opt, grad_mode::exact);
        };
        const auto lse_row = [&](index_t row) { return &lse(0, row, 0); };  // lse rows are [H] contiguous
        for (index_t S = 0; S < N; S += w) {
            const index_t n = std::min(w, N - S), blocks = (n + P - 1) / P;
            matrix<T> kd = k.middleRows(S, n), dkd(n, dim), dvd(n, dim);
            rotary.decay(kd, 0, P, true);
            {  // m = 0 (the queries' copies freed before the pieces' scratch exists)
                matrix<T> qd = q.middleRows(S, n), dqd(n, dim);
                rotary.decay(qd, 0, P, false);
                backward_piece(qd.data(), kd.data(), S, out.data() + S * dim, lse_row(S), dout.data() + S * dim, dqd.data(),
                               dkd.data(), dvd.data(), n, diagonal);
                rotary.decay(dqd, 0, P, false);
                dq.middleRows(s0 + S, n) += dqd;
            }
            // m >= 1: the whole query blocks straight from out, lse, dout; a partial last query block padded
            // to P rows (its key block is whole)
            for (index_t m = 1; m < blocks; ++m) {
                const index_t len = (blocks - m) * P, nq = n - m * P, whole = nq / P * P, part = nq - whole;
                shifted_queries(q, S, n, P, m, qs);
                dqs.resize(len, dim);
                dks.resize(len, dim);
                dvs.resize(len, dim);
                const index_t row = S + m * P;  // the pieces' first query row in the sequence
                if (whole > 0)
                    backward_piece(qs.data(), kd.data(), S, out.data() + row * dim, lse_row(row), dout.data() + row * dim,
                                   dqs.data(), dks.data(), dvs.data(), whole, off_diagonal);
                if (part > 0) {
                    os = matrix<T>::Zero(P, dim);
                    os.topRows(part) = out.middleRows(row + whole, part);
                    dos = matrix<T>::Zero(P, dim);
                    dos.topRows(part) = dout.middleRows(row + whole, part);
                    ls.assign(static_cast<std::size_t>(P * heads), A(0));  // padding rows: lse 0 (finite), dout 0
                    std::copy(lse_row(row + whole), lse_row(row + whole) + part * heads, ls.begin());
                    backward_piece(qs.data() + whole * dim, kd.data() + whole * dim, S + whole, os.data(), ls.data(),
                                   dos.data(), dqs.data() + whole * dim, dks.data() + whole * dim, dvs.data() + whole * dim, P,
                                   off_diagonal);
                }
                rotary.decay_shifted(dqs.topRows(nq), 0, P, m * P);
                dq.middleRows(s0 + row, nq) += dqs.topRows(nq);
                dkd.topRows(len) += dks;
                dvd.topRows(len) += dvs;
            }
            rotary.decay(dkd, 0, P, true);
            dk.middleRows(s0 + S, n) += dkd;
            dv.middleRows(s0 + S, n) += dvd;
        }
    }

    // A long branch on a slice of a sequence of `total` rows (a sequence split across ranks): the pieces
    // run as whole sequences of P-blocks over rows shifted along the sequence (long_slice_forward), so P
    // must also divide every segment's length (gcd(w, total)): the largest multiple of r within the limit
    // doing so, or std::overflow_error naming the branch.
    index_t slice_block_length(const branch& br, index_t total) const {
        const index_t limit = rotary.segment_limit(), r = br.dilation, g = std::gcd(br.segment_length, total);
        if (g % r == 0)
            for (index_t k = std::min(limit / r, g / r); k >= 1; --k)
                if ((g / r) % k == 0) return k * r;
        throw std::overflow_error(
            "longnet::nn::multihead_attention: a segment of " + std::to_string(std::min(br.segment_length, total)) +
            " positions (branch w = " + std::to_string(br.segment_length) + ", r = " + std::to_string(br.dilation) +
            ") is longer than the XPos anchor's limit " + std::to_string(limit) + " in " +
            std::string(sizeof(T) == 4 ? "float" : "double") + "; split across ranks it runs as blocks that divide both w and "
            "the sequence length " + std::to_string(total) + " (gcd " + std::to_string(g) + ") in whole dilation steps, "
            "and none fits the limit: use lengths with a larger common power of two, one rank per sequence, a larger "
            "xpos_scale_base or RoPE");
    }

public:
    // Throws (std::overflow_error naming the branch) unless a slice of a sequence of `total` rows can run
    // this attention's XPos: a long segment (longer than the anchor's limit) needs causal attention and a
    // block length dividing gcd(w, total) (slice_block_length). The MPI trainer calls it on every rank
    // before any collective.
    void check_slice(index_t total) const {
        if (anchored_form(total)) check_slice(anchored_options(total), total);
    }
    // The branches the block pieces of long segments run on a slice of `total` rows ((P, r) per long
    // branch; empty when none is long): what the trainer plans with the distributed op's checks too.
    std::vector<branch> slice_block_branches(index_t total) const {
        std::vector<branch> pieces;
        if (!anchored_form(total)) return pieces;
        const dilated_options opt = anchored_options(total);
        for (const branch& br : opt.branches)
            if (long_branch(br, total, opt)) pieces.push_back({slice_block_length(br, total), br.dilation});
        return pieces;
    }

private:
    void check_slice(const dilated_options& opt, index_t total) const {
        for (const branch& br : opt.branches)
            if (long_branch(br, total, opt)) (void)slice_block_length(br, total);
    }

    // The anchored form on a slice of the sequence (the held rows at global positions rows.first ..): per
    // group of branches sharing a segment length w, the backend's attention on q, k decayed for w at the
    // rows' global positions, giving (out_g, lse_g); the groups merge into ov, lv exactly, in the order
    // their segment lengths first appear among the branches; then each long branch's pieces
    // (long_slice_forward).
    void anchored_slice_attention(attention_backend<T>& attention, const matrix<T>& q, const matrix<T>& k,
                                  const matrix<T>& v, const tensor_view<const T>& vv, const tensor_view<T>& ov,
                                  const lse_view<accum_t<T>>& lv, const row_slice& rows, const dilated_options& opt) const {
        using A = accum_t<T>;
        const index_t seq = q.rows(), dim = config.embed_dim, heads = config.heads, hd = config.head_dim();
        const index_t first = rows.first;
        longnet::detail::init_output<T, A>(ov, lv);
        matrix<T> qb, kb, og(seq, dim);  // (no early return without rows: a backend may be collective)
        std::vector<A> lg(static_cast<std::size_t>(seq * heads));
        using CT = const T;
        std::vector<branch> long_ones;
        for (dilated_options group : segment_groups(opt)) {
            const auto split = std::stable_partition(group.branches.begin(), group.branches.end(),
                                                     [&](const branch& br) { return !long_branch(br, rows.total, opt); });
            long_ones.insert(long_ones.end(), split, group.branches.end());
            group.branches.erase(split, group.branches.end());
            if (group.branches.empty()) continue;
            const index_t w = group.branches.front().segment_length;
            qb = q;
            kb = k;
            rotary.decay(qb, first, w, false);
            rotary.decay(kb, first, w, true);
            const lse_view<A> lgv(lg.data(), 1, seq, heads);
            attention.forward(attention_kind::dilated, group, make_bnhd<CT>(qb.data(), 1, seq, heads, hd),
                              make_bnhd<CT>(kb.data(), 1, seq, heads, hd), vv, make_bnhd<T>(og.data(), 1, seq, heads, hd), lgv);
            LONGNET_NN_PARALLEL_FOR
            for (index_t i = 0; i < seq; ++i)
                for (index_t h = 0; h < heads; ++h)
                    merge_group(ov.row(0, i, h), lv(0, i, h), og.data() + i * dim + h * hd, lgv(0, i, h), hd);
        }
        for (const branch& br : long_ones) long_slice_forward(attention, q, k, v, ov, lv, rows, opt, br);
    }

    // A long branch on a slice (rows.first .. of rows.total; see long_branch_forward for the blocks): the
    // whole sequence's pieces through the backend. Keys decayed per block at their global positions (P
    // divides w, so blocks align with segments); piece m ≥ 1 is one non-causal call with segment length P
    // over the held queries (decayed onto the anchor mP back) and the keys and values of the rows mP
    // earlier (attention.shifted_rows); rows less than mP into their segment have no key block m back:
    // their piece output is dropped. Merged into (ov, lv).
    void long_slice_forward(attention_backend<T>& attention, const matrix<T>& q, const matrix<T>& k, const matrix<T>& v,
                            const tensor_view<T>& ov, const lse_view<accum_t<T>>& lv, const row_slice& rows,
                            const dilated_options& opt, const branch& br) const {
        using A = accum_t<T>;
        using CT = const T;
        const index_t seq = q.rows(), dim = config.embed_dim, heads = config.heads, hd = config.head_dim();
        const index_t first = rows.first, w = br.segment_length, P = slice_block_length(br, rows.total);
        const index_t blocks = std::min(w, rows.total) / P;
        const branch piece{P, br.dilation};
        const dilated_options diagonal = piece_options(opt, piece, true), off_diagonal = piece_options(opt, piece, false);
        matrix<T> qs, kb = k, ks, vs, og(seq, dim);
        std::vector<A> lg(static_cast<std::size_t>(seq * heads));
        const lse_view<A> lgv(lg.data(), 1, seq, heads);
        rotary.decay(kb, first, P, true);
        for (index_t m = 0; m < blocks; ++m) {
            const index_t shift = m * P;
            qs = q;
            if (m == 0) {
                rotary.decay(qs, first, P, false);
            } else {
                rotary.decay_shifted(qs, first, P, shift);
                attention.shifted_rows(kb, shift, ks);
                attention.shifted_rows(v, shift, vs);
            }
            const matrix<T>& kp = m == 0 ? kb : ks;
            const matrix<T>& vp = m == 0 ? v : vs;
            attention.forward(attention_kind::dilated, m == 0 ? diagonal : off_diagonal,
                              make_bnhd<CT>(qs.data(), 1, seq, heads, hd), make_bnhd<CT>(kp.data(), 1, seq, heads, hd),
                              make_bnhd<CT>(vp.data(), 1, seq, heads, hd), make_bnhd<T>(og.data(), 1, seq, heads, hd), lgv);
            LONGNET_NN_PARALLEL_FOR
            for (index_t i = 0; i < seq; ++i)
                if ((first + i) % w >= shift)
                    for (index_t h = 0; h < heads; ++h)
                        merge_group(ov.row(0, i, h), lv(0, i, h), og.data() + i * dim + h * hd, lgv(0, i, h), hd);
        }
    }

    // The backward of long_slice_forward, accumulated into dq, dk, dv (before the rotation's transpose):
    // each piece's backend backward in the exact form with the merged lse and, as out, the merged output
    // (grad_mode::exact) or the branch's own (stop_grad_weights, recomputed), as long_branch_backward.
    // The rows a piece drops carry q = 0, dout = 0 and lse = 0 into it, so they add nothing to dk, dv;
    // dk, dv of the shifted keys go back to their rows' holders (attention.add_shifted_back).
    void long_slice_backward(attention_backend<T>& attention, const attention_activations<T>& act, const matrix<T>& da,
                             const lse_view<const accum_t<T>>& lv, matrix<T>& dq, matrix<T>& dk, matrix<T>& dv, grad_mode mode,
                             const row_slice& rows, const dilated_options& opt, const branch& br) const {
        using A = accum_t<T>;
        using CT = const T;
        const index_t seq = act.q.rows(), dim = config.embed_dim, heads = config.heads, hd = config.head_dim();
        const index_t first = rows.first, w = br.segment_length, P = slice_block_length(br, rows.total);
        const index_t blocks = std::min(w, rows.total) / P;
        const branch piece{P, br.dilation};
        const dilated_options diagonal = piece_options(opt, piece, true), off_diagonal = piece_options(opt, piece, false);
        matrix<T> own;
        if (mode == grad_mode::stop_grad_weights) {
            own.resize(seq, dim);
            std::vector<A> own_lse(static_cast<std::size_t>(seq * heads));
            const tensor_view<T> ownv = make_bnhd<T>(own.data(), 1, seq, heads, hd);
            const lse_view<A> own_lv(own_lse.data(), 1, seq, heads);
            longnet::detail::init_output<T, A>(ownv, own_lv);
            long_slice_forward(attention, act.q, act.k, act.v, ownv, own_lv, rows, opt, br);
        }
        const matrix<T>& out = mode == grad_mode::stop_grad_weights ? own : act.a;
        matrix<T> qs, kb = act.k, ks, vs, dos, dqs(seq, dim), dks(seq, dim), dvs(seq, dim), dk_blocks = matrix<T>::Zero(seq, dim);
        std::vector<A> ls(static_cast<std::size_t>(seq * heads));
        rotary.decay(kb, first, P, true);
        for (index_t m = 0; m < blocks; ++m) {
            const index_t shift = m * P;
            qs = act.q;
            dos = da;
            for (index_t i = 0; i < seq; ++i)
                for (index_t h = 0; h < heads; ++h) ls[static_cast<std::size_t>(i * heads + h)] = lv(0, i, h);
            if (m == 0) {
                rotary.decay(qs, first, P, false);
            } else {
                rotary.decay_shifted(qs, first, P, shift);
                attention.shifted_rows(kb, shift, ks);
                attention.shifted_rows(act.v, shift, vs);
                for (index_t i = 0; i < seq; ++i)
                    if ((first + i) % w < shift) {
                        qs.row(i).setZero();
                        dos.row(i).setZero();
                        for (index_t h = 0; h < heads; ++h) ls[static_cast<std::size_t>(i * heads + h)] = A(0);
                    }
            }
            const matrix<T>& kp = m == 0 ? kb : ks;
            const matrix<T>& vp = m == 0 ? act.v : vs;
            attention.backward(attention_kind::dilated, m == 0 ? diagonal : off_diagonal,
                               make_bnhd<CT>(qs.data(), 1, seq, heads, hd), make_bnhd<CT>(kp.data(), 1, seq, heads, hd),
                               make_bnhd<CT>(vp.data(), 1, seq, heads, hd), make_bnhd<CT>(out.data(), 1, seq, heads, hd),
                               lse_view<CT>(ls.data(), 1, seq, heads), make_bnhd<CT>(dos.data(), 1, seq, heads, hd),
                               make_bnhd<T>(dqs.data(), 1, seq, heads, hd), make_bnhd<T>(dks.data(), 1, seq, heads, hd),
                               make_bnhd<T>(dvs.data(), 1, seq, heads, hd), grad_mode::exact);
            if (m == 0) {
                rotary.decay(dqs, first, P, false);
                dk_blocks += dks;
                dv += dvs;
            } else {
                rotary.decay_shifted(dqs, first, P, shift);
                attention.add_shifted_back(dks, shift, dk_blocks);
                attention.add_shifted_back(dvs, shift, dv);
            }
            dq += dqs;
        }
        rotary.decay(dk_blocks, first, P, true);
        dk += dk_blocks;
    }

    // Merge one group's row (o, l) into the running (out, lse): lse' = logaddexp(lse, l), out = out·exp(lse
    // − lse') + o·exp(l − lse'), as the kernels merge their branches. A row the group does not reach (l =
    // −inf) is left alone; the first group to reach a row sets it.
    static void merge_group(T* out, accum_t<T>& lse, const T* o, accum_t<T> l, index_t dim) noexcept {
        using A = accum_t<T>;
        constexpr A neg_inf = -std::numeric_limits<A>::infinity();
        if (l == neg_inf) return;
        const A old = lse;
        if (old == neg_inf) {
            std::copy(o, o + dim, out);
            lse = l;
            return;
        }
        const A hi = std::max(old, l);
        const A merged = hi + std::log1p(std::exp(-std::fabs(old - l)));
        const A w_old = std::exp(old - merged), w_new = std::exp(l - merged);
        for (index_t d = 0; d < dim; ++d) out[d] = static_cast<T>(w_old * static_cast<A>(out[d]) + w_new * static_cast<A>(o[d]));
        lse = std::isnan(l) ? l : merged;
    }

    // The branches of opt grouped by segment length (one dilated_options each, the branches of one w in
    // their order), groups in the order their w first appears.
    static std::vector<dilated_options> segment_groups(const dilated_options& opt) {
        std::vector<dilated_options> groups;
        for (const branch& br : opt.branches) {
            const index_t w = br.segment_length;
            auto it = std::find_if(groups.begin(), groups.end(),
                                   [w](const dilated_options& g) { return g.branches.front().segment_length == w; });
            if (it == groups.end()) {
                groups.push_back(opt);
                groups.back().branches.clear();
                it = groups.end() - 1;
            }
            it->branches.push_back(br);
        }
        return groups;
    }

    // Backward of the anchored form (the held rows at global positions rows.first ..): per group of
    // branches sharing a segment length w, the backend's backward on q, k decayed for w with the merged
    // output and lse (so each group's share of the exact or stop_grad_weights gradient); d(q·s)/dq = s, so
    // the same decay turns dqb, dkb into the group's share of dq, dk (still before the rotation's
    // transpose). A long branch (whole sequence or packed documents) runs long_branch_backward, one
    // sequence at a time. dq, dk, dv are overwritten. The local backend runs dilated_attention_backward.
    void anchored_dilated_attention_backward(attention_backend<T>& attention, const attention_activations<T>& act,
                                             const tensor_view<const T>& vv, const tensor_view<const T>& ov,
                                             const lse_view<const accum_t<T>>& lv, const tensor_view<const T>& dov,
                                             const matrix<T>& da, matrix<T>& dq, matrix<T>& dk, matrix<T>& dv,
                                             grad_mode mode, const row_slice& rows, const std::vector<index_t>* docs,
                                             const dilated_options& opt) const {
        const index_t seq = act.q.rows(), dim = config.embed_dim, heads = config.heads, hd = config.head_dim();
        const index_t first = rows.first;
        dq.setZero();
        dk.setZero();
        dv.setZero();
        std::vector<dilated_options> groups = segment_groups(opt);
        const bool whole = whole_sequence(rows, seq);
        // long branches first: their scratch is gone before the groups' exists
        for (dilated_options& group : groups) {
            const auto split = std::stable_partition(group.branches.begin(), group.branches.end(), [&](const branch& br) {
                return !long_branch(br, !whole ? rows.total : docs ? longest_document(*docs) : seq, opt);
            });
            for (auto it = split; it != group.branches.end(); ++it) {
                if (!whole) {
                    long_slice_backward(attention, act, da, lv, dq, dk, dv, mode, rows, opt, *it);
                    continue;
                }
                if (!docs) {
                    long_branch_backward(act, da, lv, dq, dk, dv, mode, opt, *it, 0, seq);
                    continue;
                }
                for (std::size_t b = 0; b + 1 < docs->size(); ++b)
                    if ((*docs)[b + 1] > (*docs)[b])
                        long_branch_backward(act, da, lv, dq, dk, dv, mode, opt, *it, (*docs)[b], (*docs)[b + 1] - (*docs)[b]);
            }
            group.branches.erase(split, group.branches.end());
        }
        matrix<T> qb, kb, dqb, dkb, dvb;
        using CT = const T;
        for (const dilated_options& group : groups) {
            if (group.branches.empty()) continue;
            const index_t w = group.branches.front().segment_length;
            qb = act.q;
            kb = act.k;
            dqb.resize(seq, dim);
            dkb.resize(seq, dim);
            dvb.resize(seq, dim);
            decay_rows(qb, first, w, false, docs);
            decay_rows(kb, first, w, true, docs);
            attention.backward(attention_kind::dilated, group, make_bnhd<CT>(qb.data(), 1, seq, heads, hd),
                               make_bnhd<CT>(kb.data(), 1, seq, heads, hd), vv, ov, lv, dov,
                               make_bnhd<T>(dqb.data(), 1, seq, heads, hd), make_bnhd<T>(dkb.data(), 1, seq, heads, hd),
                               make_bnhd<T>(dvb.data(), 1, seq, heads, hd), mode);
            decay_rows(dqb, first, w, false, docs);
            decay_rows(dkb, first, w, true, docs);
            dq += dqb;
            dk += dkb;
            dv += dvb;
        }
    }

    // Whether the anchored backward may run one head at a time: the whole sequence with the local backend
    // (dilated_attention_backward itself), no documents, one branch per segment length and w a multiple
    // of r (so a view starting at head h's offset row o < r selects, with offset 0, exactly the rows the
    // whole call selects for head h: o + k·w + m·r, grouped in the same segments).
    bool per_head_backward(const attention_backend<T>& attention, const row_slice& rows, index_t seq,
                           const std::vector<index_t>* docs, const dilated_options& opt) const {
        if (docs || !whole_sequence(rows, seq) || typeid(attention) != typeid(attention_backend<T>)) return false;
        for (const branch& br : opt.branches) {
            if (br.segment_length % br.dilation != 0 || long_branch(br, seq, opt)) return false;
            for (const branch& other : opt.branches)
                if (&other != &br && other.segment_length == br.segment_length) return false;
        }
        return true;
    }

    // anchored_dilated_attention_backward on the whole sequence, one head at a time (per_head_backward):
    // head h's columns of q, k are copied, decayed for the group's w, and the kernel runs on [T − o, 1, hd]
    // views starting at the head's offset row o (rows before it are selected by no segment of this head:
    // their gradient is zero). Every element of dq, dk, dv gets the same terms in the same order (0 + the
    // groups' shares in group order) as in the all-heads form; scratch 5 × [T, hd] instead of 5 × [T, D].
    void anchored_backward_per_head(const attention_activations<T>& act, const matrix<T>& da, matrix<T>& dq,
                                    matrix<T>& dk, matrix<T>& dv, grad_mode mode, const dilated_options& opt) const {
        using A = accum_t<T>;
        using CT = const T;
        const index_t seq = act.q.rows(), dim = config.embed_dim, heads = config.heads, hd = config.head_dim();
        dq.setZero();
        dk.setZero();
        dv.setZero();
        matrix<T> qb(seq, hd), kb(seq, hd), dqb(seq, hd), dkb(seq, hd), dvb(seq, hd);
        const auto column_view = [&](const T* data, index_t o, index_t h) {  // head h of a [T, D] matrix, rows o ..
            return tensor_view<CT>(data + o * dim + h * hd, {1, seq - o, 1, hd}, {(seq - o) * dim, dim, hd});
        };
        for (const dilated_options& group : segment_groups(opt)) {
            const branch& br = group.branches.front();
            const index_t w = br.segment_length;
            for (index_t h = 0; h < heads; ++h) {
                const index_t o = std::min(seq, head_offset(group.offsets, h, heads, br.dilation));
                qb = act.q.middleCols(h * hd, hd);
                kb = act.k.middleCols(h * hd, hd);
                rotary.decay(qb, 0, w, false);
                rotary.decay(kb, 0, w, true);
                dqb.setZero();
                dkb.setZero();
                dvb.setZero();
                if (o < seq) {
                    const index_t n = seq - o;
                    dilated_options head_group = group;
                    head_group.offsets = offset_policy::paper;  // one head: offset 0 under either policy
                    longnet::dilated_attention_backward(
                        make_bnhd<CT>(qb.data() + o * hd, 1, n, 1, hd), make_bnhd<CT>(kb.data() + o * hd, 1, n, 1, hd),
                        column_view(act.v.data(), o, h), column_view(act.a.data(), o, h),
                        lse_view<const A>(act.lse.data() + o * heads + h, {1, n, 1}, {n * heads, heads, 1}),
                        column_view(da.data(), o, h), make_bnhd<T>(dqb.data() + o * hd, 1, n, 1, hd),
                        make_bnhd<T>(dkb.data() + o * hd, 1, n, 1, hd), make_bnhd<T>(dvb.data() + o * hd, 1, n, 1, hd),
                        head_group, mode);
                }
                rotary.decay(dqb, 0, w, false);
                rotary.decay(dkb, 0, w, true);
                dq.middleCols(h * hd, hd) += dqb;
                dk.middleCols(h * hd, hd) += dkb;
                dv.middleCols(h * hd, hd) += dvb;
            }
        }
    }

    // Positions of the pass's rows: rows.first .. (a slice: global positions), or restarting at 0 at each
    // document (packed documents). The rotation table (anchored form) and the centred coefficient tables
    // (each document's centre its own), and the anchored decay of segment length w.
    matrix<T> rotation_table(const row_slice& rows, index_t seq, const std::vector<index_t>* docs) const {
        if (!docs) return rotary.rotation(rows.first, seq);
        return per_document(*docs, [&](index_t n) { return rotary.rotation(0, n); });
    }
    matrix<T> coefficient_table(const row_slice& rows, index_t seq, bool downscale, const std::vector<index_t>* docs) const {
        if (!docs) return rotary.coefficients(rows.total, downscale, rows.first, seq);
        return per_document(*docs, [&](index_t n) { return rotary.coefficients(n, downscale); });
    }
    void decay_rows(matrix<T>& x, index_t first, index_t w, bool downscale, const std::vector<index_t>* docs) const {
        if (docs)
            rotary.decay_documents(x, *docs, w, downscale);
        else
            rotary.decay(x, first, w, downscale);
    }
    // The tables of each document alone (table(n): n rows), stacked.
    template <class Table>
    matrix<T> per_document(const std::vector<index_t>& docs, const Table& table) const {
        matrix<T> all(docs.back(), config.head_dim());
        for (std::size_t b = 0; b + 1 < docs.size(); ++b) {
            const index_t n = docs[b + 1] - docs[b];
            if (n > 0) all.middleRows(docs[b], n) = table(n);
        }
        return all;
    }

    // The anchored XPos form runs whenever the attention is dilated with XPos (the whole sequence or a
    // slice of it), and for causal dense attention with XPos on a sequence (total rows; packed documents:
    // all of them) past the centred form's range; otherwise (dense within it, RoPE, none) the coefficient
    // tables. Non-causal dense attention past that range keeps the centred form, which refuses it.
    bool anchored_form(index_t total) const {
        if (config.rotary.kind != position_encoding::xpos) return false;
        if (config.kind == attention_kind::dilated) return true;
        return config.dilated.causal && !rotary.centred_fits(total);
    }
    // The branches the anchored form runs: the dilated branches, or (dense) one causal branch of segment
    // length `total`, dilation 1: every earlier token of the sequence (each document's, packed).
    dilated_options anchored_options(index_t total) const {
        if (config.kind == attention_kind::dilated) return config.dilated;
        dilated_options dense;
        dense.branches = {{std::max<index_t>(total, 1), 1}};
        dense.causal = config.dilated.causal;
        dense.scale = config.dilated.scale;
        return dense;
    }
    bool has_long_branch(const dilated_options& opt, index_t seq) const {
        return std::any_of(opt.branches.begin(), opt.branches.end(), [&](const branch& br) { return long_branch(br, seq, opt); });
    }
    static index_t longest_document(const std::vector<index_t>& docs) noexcept {
        index_t n = 0;
        for (std::size_t b = 0; b + 1 < docs.size(); ++b) n = std::max(n, docs[b + 1] - docs[b]);
        return n;
    }
    // The pass holds the whole sequence (local attention, or one rank per sequence).
    static bool whole_sequence(const row_slice& rows, index_t seq) noexcept { return rows.first == 0 && rows.total == seq; }

    // The transposed rotation's coefficient table: same cos·s, negated sin·s.
    static matrix<T> transposed_coefficients(matrix<T> table) {
        for (index_t i = 0; i < table.rows(); ++i)
            for (index_t c = 1; c < table.cols(); c += 2) table(i, c) = -table(i, c);
        return table;
    }
};

}  // namespace longnet::nn
