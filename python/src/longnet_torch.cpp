// SPDX-License-Identifier: Apache-2.0
// longnet_torch._C: longnet's dilated attention forward and backward on CPU torch tensors, with autograd.
//
// Only stable parts of the torch C++ API are used: at::Tensor (sizes, strides, dtype, device, data_ptr),
// factory functions, torch::autograd::Function and at::get_num_threads. The Python package
// (longnet_torch/functional.py) validates the arguments first and raises ValueError / TypeError; the
// checks here repeat the ones that protect memory, so a direct call of _C cannot crash either.
//
// Tensors are [B, N, H, D]. longnet reads any B, N, H strides in place; only a head dim that is not
// contiguous (stride(3) != 1 with D > 1) is copied, and input_copies() counts those copies.
// Variable-length batches (issue 22 §4) run through the same forward / backward / autograd function with
// a `batching`: packed [1, total, H, D] with cu_seqlens (longnet/varlen.hpp; Python passes [total, H, D]
// and the binding adds the leading 1), or padded [B, N, H, D] with a [B, N] bool key_padding_mask, true =
// pad (longnet/padding.hpp).

#include <torch/extension.h>
#include <torch/version.h>

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <longnet/backward.hpp>
#include <longnet/dilated_attention.hpp>
#include <longnet/isa.hpp>
#include <longnet/padding.hpp>
#include <longnet/varlen.hpp>
#include <longnet/version.hpp>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::atomic<std::int64_t> g_input_copies{0};

// Every option of one call, as the Python entry point passes it.
struct call_options {
    std::vector<std::int64_t> segment_lengths;
    std::vector<std::int64_t> dilated_ratios;
    bool causal = false;
    std::string offsets = "paper";
    std::string tail = "exact";
    std::optional<double> scale;
    std::string grad_mode = "exact";

    longnet::dilated_options to_longnet() const {
        longnet::dilated_options o = longnet::dilated_options::from_lists(
            std::vector<longnet::index_t>(segment_lengths.begin(), segment_lengths.end()),
            std::vector<longnet::index_t>(dilated_ratios.begin(), dilated_ratios.end()), causal);
        o.offsets = longnet::parse_offset_policy(offsets);
        o.tail = longnet::parse_tail_mode(tail);
        o.scale = scale;
        longnet::validate(o);  // std::invalid_argument naming the bad value -> ValueError
        return o;
    }
};

// Which rows form one sequence: the whole [B, N] batch row (dense), packed sequences (varlen) or the
// real rows of each batch row (padded).
struct batching {
    enum kind_t : int64_t { dense = 0, varlen = 1, padded = 2 };
    kind_t kind = dense;
    std::vector<int64_t> cu_seqlens;  // varlen: B + 1 offsets (checked by longnet::check_cu_seqlens)
    at::Tensor mask;                  // padded: [B, N] contiguous bool CPU tensor, true = pad
};

std::string shape_of(const at::Tensor& t) {
    std::string s = "[";
    for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
    return s + "]";
}

// Device, layout, rank, dtype and shape checks shared by forward and backward.
void check_tensor(const at::Tensor& t, const char* name, const at::Tensor& like) {
    if (!t.defined()) throw std::invalid_argument(std::string("longnet_torch: ") + name + " is an undefined tensor");
    if (!t.device().is_cpu())
        throw std::invalid_argument(std::string("longnet_torch: ") + name + " is on device " + t.device().str() +
                                    "; longnet_torch runs on CPU tensors only (move it with .cpu())");
    if (t.layout() != at::kStrided)
        throw std::invalid_argument(std::string("longnet_torch: ") + name + " must be a dense (strided) tensor");
    if (t.dim() != 4)
        throw std::invalid_argument(std::string("longnet_torch: ") + name + " must have 4 dims [B, N, H, D], got shape " +
                                    shape_of(t));
    if (t.scalar_type() != like.scalar_type())
        throw pybind11::type_error(std::string("longnet_torch: ") + name + " has dtype " +
                                   std::string(c10::toString(t.scalar_type())) + " but q has dtype " +
                                   std::string(c10::toString(like.scalar_type())) + "; all tensors need one dtype");
    if (!t.sizes().equals(like.sizes()))
        throw std::invalid_argument(std::string("longnet_torch: ") + name + " has shape " + shape_of(t) +
                                    " but q has shape " + shape_of(like) + " (all are [B, N, H, D])");
}

void check_dtype(const at::Tensor& q) {
    const auto st = q.scalar_type();
    if (st != at::kFloat && st != at::kDouble && st != at::kBFloat16 && st != at::kHalf)
        throw pybind11::type_error("longnet_torch: dtype " + std::string(c10::toString(st)) +
                                   " is not supported; use float32, float64, bfloat16 or float16");
}

// The head dim must be contiguous for longnet; everything else is read in place.
at::Tensor head_dim_contiguous(const at::Tensor& t) {
    if (t.size(3) <= 1 || t.stride(3) == 1) return t;
    g_input_copies.fetch_add(1, std::memory_order_relaxed);
    return t.contiguous();
}

template <class T>
longnet::tensor_view<T> view_of(const at::Tensor& t) {
    using S = std::remove_const_t<T>;
    auto* ptr = reinterpret_cast<T*>(static_cast<std::conditional_t<std::is_const_v<T>, const void*, void*>>(
        static_cast<S*>(t.data_ptr())));
    return longnet::tensor_view<T>(ptr, {t.size(0), t.size(1), t.size(2), t.size(3)},
                                   {t.stride(0), t.stride(1), t.stride(2)});
}

template <class A>
longnet::lse_view<A> lse_view_of(const at::Tensor& t) {
    using S = std::remove_const_t<A>;
    auto* ptr = static_cast<S*>(t.data_ptr());
    return longnet::lse_view<A>(ptr, {t.size(0), t.size(1), t.size(2)}, {t.stride(0), t.stride(1), t.stride(2)});
}

// Run f<T>() for the longnet storage type of a torch dtype (bf16 and half share longnet's bit layout).
template <class F>
decltype(auto) dispatch(at::ScalarType st, F&& f) {
    switch (st) {
        case at::kFloat: return f(float{});
        case at::kDouble: return f(double{});
        case at::kBFloat16: return f(longnet::bfloat16{});
        case at::kHalf: return f(longnet::half{});
        default: throw pybind11::type_error("longnet_torch: unsupported dtype " + std::string(c10::toString(st)));
    }
}

at::ScalarType lse_dtype(at::ScalarType st) { return st == at::kDouble ? at::kDouble : at::kFloat; }

// longnet's kernels use OpenMP; run them on torch's intra-op thread count (torch.set_num_threads).
struct torch_threads {
    torch_threads() {
#if defined(_OPENMP)
        omp_set_num_threads(static_cast<int>(at::get_num_threads()));
#endif
    }
};

// The padded ops' view of a mask checked by check_mask.
longnet::key_padding_mask mask_of(const batching& bt) {
    return longnet::key_padding_mask(bt.mask.data_ptr<bool>(), static_cast<std::size_t>(bt.mask.numel()));
}

// A padded call's mask must be a [B, N] bool CPU tensor matching q; returned contiguous.
at::Tensor check_mask(const at::Tensor& mask, const at::Tensor& q) {
    if (!mask.defined() || !mask.device().is_cpu() || mask.layout() != at::kStrided)
        throw std::invalid_argument("longnet_torch: key_padding_mask must be a dense CPU tensor");
    if (mask.scalar_type() != at::kBool)
        throw pybind11::type_error("longnet_torch: key_padding_mask has dtype " +
                                   std::string(c10::toString(mask.scalar_type())) +
                                   "; it must be torch.bool (true = pad)");
    if (mask.dim() != 2 || mask.size(0) != q.size(0) || mask.size(1) != q.size(1))
        throw std::invalid_argument("longnet_torch: key_padding_mask has shape " + shape_of(mask) +
                                    " but q has shape " +
                                    shape_of(q) + " (need [B, N] = [" + std::to_string(q.size(0)) + ", " +
                                    std::to_string(q.size(1)) + "])");
    return mask.contiguous();
}

// The batching's own checks, before anything runs (also for empty tensors): std::invalid_argument naming
// the bad value.
void check_batching(const batching& bt, const at::Tensor& q) {
    if (bt.kind == batching::varlen) (void)longnet::check_cu_seqlens(bt.cu_seqlens, q.size(1));
    if (bt.kind == batching::padded) {
        (void)check_mask(bt.mask, q);
        if (!bt.mask.is_contiguous())
            throw std::logic_error("longnet_torch: internal: key_padding_mask not contiguous");
    }
}

// cu_seqlens as passed from Python: a 1-D int32 or int64 CPU tensor (values are checked by the op).
std::vector<int64_t> cu_seqlens_of(const at::Tensor& cu) {
    if (!cu.defined() || !cu.device().is_cpu() || cu.layout() != at::kStrided || cu.dim() != 1)
        throw std::invalid_argument("longnet_torch: cu_seqlens must be a 1-D CPU tensor of B + 1 offsets, got shape " +
                                    (cu.defined() ? shape_of(cu) : std::string("(undefined)")));
    if (cu.scalar_type() != at::kInt && cu.scalar_type() != at::kLong)
        throw pybind11::type_error("longnet_torch: cu_seqlens has dtype " +
                                   std::string(c10::toString(cu.scalar_type())) +
                                   "; it must be int32 or int64");
    const at::Tensor c = cu.to(at::kLong).contiguous();
    return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// [total, H, D] packed tensors of the Python API (3 dims, checked here; the rest by check_tensor).
void check_packed_dims(const at::Tensor& t, const char* name) {
    if (!t.defined() || t.dim() != 3)
        throw std::invalid_argument(std::string("longnet_torch: ") + name +
                                    " must have 3 dims [total_tokens, H, D] (sequences packed end to end), got shape " +
                                    (t.defined() ? shape_of(t) : std::string("(undefined)")));
}

// Forward: (out [B, N, H, D] contiguous, lse [B, N, H] float32 or float64).
std::tuple<at::Tensor, at::Tensor> forward_impl(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                                                const call_options& co, const batching& bt = {}) {
    check_tensor(q_in, "q", q_in);
    check_dtype(q_in);
    check_tensor(k_in, "k", q_in);
    check_tensor(v_in, "v", q_in);
    check_batching(bt, q_in);
    const longnet::dilated_options opt = co.to_longnet();
    const at::Tensor q = head_dim_contiguous(q_in), k = head_dim_contiguous(k_in), v = head_dim_contiguous(v_in);
    at::Tensor out = at::empty(q.sizes(), q.options().memory_format(at::MemoryFormat::Contiguous));
    at::Tensor lse = at::empty({q.size(0), q.size(1), q.size(2)}, q.options().dtype(lse_dtype(q.scalar_type())));
    if (q.numel() == 0) {
        lse.fill_(-std::numeric_limits<double>::infinity());
        return {out, lse};
    }
    torch_threads threads;
    dispatch(q.scalar_type(), [&](auto tag) {
        using T = decltype(tag);
        using A = longnet::accum_t<T>;
        const auto qv = view_of<const T>(q), kv = view_of<const T>(k), vv = view_of<const T>(v);
        switch (bt.kind) {
            case batching::dense:
                longnet::dilated_attention(qv, kv, vv, view_of<T>(out), opt, lse_view_of<A>(lse));
                break;
            case batching::varlen:
                longnet::dilated_attention_varlen(qv, kv, vv, bt.cu_seqlens, view_of<T>(out), opt, lse_view_of<A>(lse));
                break;
            case batching::padded:
                longnet::dilated_attention_padded(qv, kv, vv, mask_of(bt), view_of<T>(out), opt, lse_view_of<A>(lse));
                break;
        }
    });
    return {out, lse};
}

// Backward of out (dout) through longnet's backward: (dq, dk, dv), contiguous.
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_impl(const at::Tensor& q_in, const at::Tensor& k_in,
                                                             const at::Tensor& v_in, const at::Tensor& out_in,
                                                             const at::Tensor& lse, const at::Tensor& dout_in,
                                                             const call_options& co, const batching& bt = {}) {
    check_tensor(q_in, "q", q_in);
    check_dtype(q_in);
    check_tensor(k_in, "k", q_in);
    check_tensor(v_in, "v", q_in);
    check_tensor(out_in, "out", q_in);
    check_tensor(dout_in, "dout", q_in);
    check_batching(bt, q_in);
    if (!lse.defined() || lse.dim() != 3 || lse.size(0) != q_in.size(0) || lse.size(1) != q_in.size(1) ||
        lse.size(2) != q_in.size(2) || lse.scalar_type() != lse_dtype(q_in.scalar_type()) || !lse.device().is_cpu() ||
        lse.layout() != at::kStrided)
        throw std::invalid_argument("longnet_torch: lse must be the forward's [B, N, H] CPU tensor of dtype " +
                                    std::string(c10::toString(lse_dtype(q_in.scalar_type()))));
    const longnet::dilated_options opt = co.to_longnet();
    const longnet::grad_mode mode = longnet::parse_grad_mode(co.grad_mode);
    const at::Tensor q = head_dim_contiguous(q_in), k = head_dim_contiguous(k_in), v = head_dim_contiguous(v_in),
                     out = head_dim_contiguous(out_in), dout = head_dim_contiguous(dout_in);
    at::Tensor dq = at::empty(q.sizes(), q.options().memory_format(at::MemoryFormat::Contiguous));
    at::Tensor dk = at::empty_like(dq), dv = at::empty_like(dq);
    if (q.numel() == 0) return {dq, dk, dv};
    torch_threads threads;
    dispatch(q.scalar_type(), [&](auto tag) {
        using T = decltype(tag);
        using A = longnet::accum_t<T>;
        const auto qv = view_of<const T>(q), kv = view_of<const T>(k), vv = view_of<const T>(v),
                   ov = view_of<const T>(out), dov = view_of<const T>(dout);
        const auto lv = lse_view_of<const A>(lse);
        const auto dqv = view_of<T>(dq), dkv = view_of<T>(dk), dvv = view_of<T>(dv);
        switch (bt.kind) {
            case batching::dense:
                longnet::dilated_attention_backward(qv, kv, vv, ov, lv, dov, dqv, dkv, dvv, opt, mode);
                break;
            case batching::varlen:
                longnet::dilated_attention_varlen_backward(qv, kv, vv, ov, lv, dov, dqv, dkv, dvv, bt.cu_seqlens, opt,
                                                           mode);
                break;
            case batching::padded:
                longnet::dilated_attention_padded_backward(qv, kv, vv, ov, lv, dov, dqv, dkv, dvv, mask_of(bt), opt,
                                                           mode);
                break;
        }
    });
    return {dq, dk, dv};
}

// Gradient through the LSE output (g = dL/dlse): dS = P ∘ g with P the merged softmax, the same in both
// grad modes (α_i·P_i = P). longnet's exact backward gives it with one extra head-dim column:
// q' = [q, 0], k' = [k, 0], v' = [v, 0] (scores and P unchanged), out' = [out, 1], dout' = [0, -g], so
// Δ' = rowsum(dout' ∘ out') = −g and dS = P ∘ (dout'·v'ᵀ − Δ') = P ∘ g; dv' = Pᵀ·dout' lies in the extra
// column only. Returns (dq, dk) of that part.
std::tuple<at::Tensor, at::Tensor> lse_backward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                const at::Tensor& out, const at::Tensor& lse, const at::Tensor& dlse,
                                                const call_options& co, const batching& bt) {
    const int64_t D = q.size(3);
    auto pad = [&](const at::Tensor& t, double last) {
        at::Tensor p = at::empty({t.size(0), t.size(1), t.size(2), D + 1}, t.options().memory_format(at::MemoryFormat::Contiguous));
        p.narrow(3, 0, D).copy_(t);
        p.narrow(3, D, 1).fill_(last);
        return p;
    };
    at::Tensor dout_p = at::zeros({q.size(0), q.size(1), q.size(2), D + 1}, q.options());
    // uncovered rows (lse = -inf) have P = 0: their g does not matter, keep it finite
    dout_p.narrow(3, D, 1).copy_(at::where(at::isfinite(lse), -dlse, at::zeros_like(dlse)).unsqueeze(3));
    call_options exact = co;
    exact.grad_mode = "exact";
    exact.scale = longnet::effective_scale(co.scale, D);  // D + 1 columns must not change the default scale
    auto [dq_p, dk_p, dv_p] =
        backward_impl(pad(q, 0.0), pad(k, 0.0), pad(v, 0.0), pad(out, 1.0), lse, dout_p, exact, bt);
    (void)dv_p;
    return {dq_p.narrow(3, 0, D), dk_p.narrow(3, 0, D)};
}

struct saved_options {
    static void put(AutogradContext* ctx, const call_options& co) {
        ctx->saved_data["segment_lengths"] = co.segment_lengths;
        ctx->saved_data["dilated_ratios"] = co.dilated_ratios;
        ctx->saved_data["causal"] = co.causal;
        ctx->saved_data["offsets"] = co.offsets;
        ctx->saved_data["tail"] = co.tail;
        ctx->saved_data["has_scale"] = co.scale.has_value();
        ctx->saved_data["scale"] = co.scale.value_or(0.0);
        ctx->saved_data["grad_mode"] = co.grad_mode;
    }
    static void put(AutogradContext* ctx, const batching& bt) {
        ctx->saved_data["batching"] = static_cast<int64_t>(bt.kind);
        ctx->saved_data["cu_seqlens"] = bt.cu_seqlens;
        ctx->saved_data["mask"] = bt.mask.defined() ? bt.mask : at::empty({0}, at::kBool);
    }
    static batching get_batching(AutogradContext* ctx) {
        batching bt;
        bt.kind = static_cast<batching::kind_t>(ctx->saved_data["batching"].toInt());
        bt.cu_seqlens = ctx->saved_data["cu_seqlens"].toIntVector();
        if (bt.kind == batching::padded) bt.mask = ctx->saved_data["mask"].toTensor();
        return bt;
    }
    static call_options get(AutogradContext* ctx) {
        call_options co;
        co.segment_lengths = ctx->saved_data["segment_lengths"].toIntVector();
        co.dilated_ratios = ctx->saved_data["dilated_ratios"].toIntVector();
        co.causal = ctx->saved_data["causal"].toBool();
        co.offsets = ctx->saved_data["offsets"].toStringRef();
        co.tail = ctx->saved_data["tail"].toStringRef();
        if (ctx->saved_data["has_scale"].toBool()) co.scale = ctx->saved_data["scale"].toDouble();
        co.grad_mode = ctx->saved_data["grad_mode"].toStringRef();
        return co;
    }
};

struct DilatedAttentionFunction : public torch::autograd::Function<DilatedAttentionFunction> {
    static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const call_options& co, const batching& bt) {
        auto [out, lse] = forward_impl(q, k, v, co, bt);
        ctx->set_materialize_grads(false);  // an unused output (often lse) gets no zero gradient buffer
        ctx->save_for_backward({q, k, v, out, lse});
        saved_options::put(ctx, co);
        saved_options::put(ctx, bt);
        return {out, lse};
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        if (torch::autograd::GradMode::is_enabled())
            throw std::runtime_error(
                "longnet_torch: dilated_attention supports first derivatives only (backward with create_graph=True "
                "would need the backward's own gradient)");
        const variable_list saved = ctx->get_saved_variables();
        const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &lse = saved[4];
        const call_options co = saved_options::get(ctx);
        const batching bt = saved_options::get_batching(ctx);
        const at::Tensor& dout = grads[0];
        const at::Tensor& dlse = grads[1];
        at::Tensor dq, dk, dv;
        if (dout.defined()) {
            std::tie(dq, dk, dv) = backward_impl(q, k, v, out, lse, dout, co, bt);
        } else {
            dq = at::zeros(q.sizes(), q.options());
            dk = at::zeros(q.sizes(), q.options());
            dv = at::zeros(q.sizes(), q.options());
        }
        if (dlse.defined()) {
            auto [dq_l, dk_l] = lse_backward(q, k, v, out, lse, dlse, co, bt);
            dq.add_(dq_l);
            dk.add_(dk_l);
        }
        return {dq, dk, dv, at::Tensor(), at::Tensor()};
    }
};

call_options make_options(std::vector<int64_t> segment_lengths, std::vector<int64_t> dilated_ratios, bool causal,
                          std::string offsets, std::string tail, std::optional<double> scale, std::string grad_mode) {
    call_options co;
    co.segment_lengths = std::move(segment_lengths);
    co.dilated_ratios = std::move(dilated_ratios);
    co.causal = causal;
    co.offsets = std::move(offsets);
    co.tail = std::move(tail);
    co.scale = scale;
    co.grad_mode = std::move(grad_mode);
    (void)longnet::parse_grad_mode(co.grad_mode);  // ValueError now, not at backward time
    return co;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    namespace py = pybind11;
    m.doc() = "longnet_torch._C: longnet's dilated attention kernels (use longnet_torch.dilated_attention)";
    m.def(
        "dilated_attention",
        [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, std::vector<int64_t> segment_lengths,
           std::vector<int64_t> dilated_ratios, bool causal, std::string offsets, std::string tail,
           std::optional<double> scale, std::string grad_mode, std::optional<at::Tensor> key_padding_mask) {
            const call_options co = make_options(std::move(segment_lengths), std::move(dilated_ratios), causal,
                                                 std::move(offsets), std::move(tail), scale, std::move(grad_mode));
            batching bt;
            if (key_padding_mask) {
                check_tensor(q, "q", q);
                bt.kind = batching::padded;
                bt.mask = check_mask(*key_padding_mask, q);
            }
            py::gil_scoped_release no_gil;
            variable_list r = DilatedAttentionFunction::apply(q, k, v, co, bt);
            return std::make_tuple(r[0], r[1]);
        },
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("segment_lengths"), py::arg("dilated_ratios"),
        py::arg("causal"), py::arg("offsets"), py::arg("tail"), py::arg("scale"), py::arg("grad_mode"),
        py::arg("key_padding_mask") = py::none(),
        "Differentiable dilated attention: returns (out, lse). key_padding_mask: [B, N] bool, true = pad.");
    m.def(
        "dilated_attention_varlen",
        [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cu_seqlens,
           std::vector<int64_t> segment_lengths, std::vector<int64_t> dilated_ratios, bool causal, std::string offsets,
           std::string tail, std::optional<double> scale, std::string grad_mode) {
            const call_options co = make_options(std::move(segment_lengths), std::move(dilated_ratios), causal,
                                                 std::move(offsets), std::move(tail), scale, std::move(grad_mode));
            check_packed_dims(q, "q");
            check_packed_dims(k, "k");
            check_packed_dims(v, "v");
            batching bt;
            bt.kind = batching::varlen;
            bt.cu_seqlens = cu_seqlens_of(cu_seqlens);
            py::gil_scoped_release no_gil;
            variable_list r = DilatedAttentionFunction::apply(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), co, bt);
            return std::make_tuple(r[0].squeeze(0), r[1].squeeze(0));
        },
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("cu_seqlens"), py::arg("segment_lengths"),
        py::arg("dilated_ratios"), py::arg("causal"), py::arg("offsets"), py::arg("tail"), py::arg("scale"),
        py::arg("grad_mode"),
        "Differentiable packed variable-length dilated attention on [total, H, D]: returns (out, lse [total, H]).");
    m.def(
        "forward",
        [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, std::vector<int64_t> segment_lengths,
           std::vector<int64_t> dilated_ratios, bool causal, std::string offsets, std::string tail,
           std::optional<double> scale) {
            const call_options co = make_options(std::move(segment_lengths), std::move(dilated_ratios), causal,
                                                 std::move(offsets), std::move(tail), scale, "exact");
            py::gil_scoped_release no_gil;
            return forward_impl(q, k, v, co);
        },
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("segment_lengths"), py::arg("dilated_ratios"),
        py::arg("causal"), py::arg("offsets"), py::arg("tail"), py::arg("scale"),
        "Forward only, no autograd: returns (out, lse).");
    m.def(
        "backward",
        [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
           const at::Tensor& dout, std::vector<int64_t> segment_lengths, std::vector<int64_t> dilated_ratios,
           bool causal, std::string offsets, std::string tail, std::optional<double> scale, std::string grad_mode) {
            const call_options co = make_options(std::move(segment_lengths), std::move(dilated_ratios), causal,
                                                 std::move(offsets), std::move(tail), scale, std::move(grad_mode));
            py::gil_scoped_release no_gil;
            return backward_impl(q, k, v, out, lse, dout, co);
        },
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"), py::arg("dout"),
        py::arg("segment_lengths"), py::arg("dilated_ratios"), py::arg("causal"), py::arg("offsets"), py::arg("tail"),
        py::arg("scale"), py::arg("grad_mode"), "Backward of out only, no autograd: returns (dq, dk, dv).");
    m.def("input_copies", [] { return g_input_copies.load(); },
          "How many inputs were copied because their head dim was not contiguous (stride(3) != 1).");
    m.def("simd_isa", [] { return std::string(longnet::simd_isa()); },
          "The instruction set longnet's kernels were compiled for in this module.");
    m.attr("longnet_version") = std::string(LONGNET_VERSION_STRING);
    m.attr("torch_version_built") = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                                    "." + std::to_string(TORCH_VERSION_PATCH);
}
