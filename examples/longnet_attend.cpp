// SPDX-License-Identifier: Apache-2.0
// longnet_attend: LongNet dilated attention (or dense attention) on .npy files, or a timing run on
// random inputs. See --help. Exit codes: 0 ok, 1 data error, 2 usage error.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <longnet/backward.hpp>
#include <longnet/io/npy.hpp>
#include <longnet/io/staged_file.hpp>
#include <longnet/longnet.hpp>

#include "cli_common.hpp"
#include "longnet_attend_args.hpp"

namespace {

using namespace attend_cli;  // usage_text, arguments, parse_arguments, make_options (longnet_attend_args.hpp)

// Run the chosen op once on contiguous [B, N, H, D] buffers.
template <class T>
void run_op(const arguments& a, const longnet::dilated_options& opt, const std::array<std::int64_t, 4>& dims, const T* q,
            const T* k, const T* v, T* out, longnet::accum_t<T>* lse) {
    const auto view = [&](auto* p) { return longnet::make_bnhd(p, dims[0], dims[1], dims[2], dims[3]); };
    longnet::lse_view<longnet::accum_t<T>> lv;
    if (lse) lv = longnet::make_lse_bnh(lse, dims[0], dims[1], dims[2]);
    if (a.dense) {
        longnet::attention_options d;
        d.causal = opt.causal;
        d.scale = opt.scale;
        longnet::dense_attention(view(q), view(k), view(v), view(out), d, lv);
    } else {
        longnet::dilated_attention(view(q), view(k), view(v), view(out), opt, lv);
    }
}

// The backward of the chosen op once, on contiguous [B, N, H, D] buffers (lse: the forward's).
template <class T>
void run_backward_op(const arguments& a, const longnet::dilated_options& opt, const std::array<std::int64_t, 4>& dims,
                     const T* q, const T* k, const T* v, const T* out, const longnet::accum_t<T>* lse, const T* dout,
                     T* dq, T* dk, T* dv) {
    const auto view = [&](auto* p) { return longnet::make_bnhd(p, dims[0], dims[1], dims[2], dims[3]); };
    const auto lv = longnet::make_lse_bnh(lse, dims[0], dims[1], dims[2]);
    if (a.dense) {
        longnet::attention_options d;
        d.causal = opt.causal;
        d.scale = opt.scale;
        longnet::dense_attention_backward(view(q), view(k), view(v), view(out), lv, view(dout), view(dq), view(dk),
                                          view(dv), d);
    } else {
        longnet::dilated_attention_backward(view(q), view(k), view(v), view(out), lv, view(dout), view(dq), view(dk),
                                            view(dv), opt, a.grad_mode.value_or(longnet::grad_mode::exact));
    }
}

std::vector<std::int64_t> lse_shape_of(const std::vector<std::int64_t>& shape) {
    return std::vector<std::int64_t>(shape.begin(), shape.end() - 1);  // drop D
}

template <class A>
std::vector<float> lse_as_float(const std::vector<A>& lse) {
    return std::vector<float>(lse.begin(), lse.end());
}

// ---- file mode -------------------------------------------------------------------------------------

template <class T>
int compute_files(const arguments& a, const longnet::dilated_options& opt, const longnet::io::npy_array& q,
                  const longnet::io::npy_array& k, const longnet::io::npy_array& v, const longnet::io::npy_array* dout) {
    using A = longnet::accum_t<T>;
    const std::vector<std::int64_t>& shape = q.shape();
    std::array<std::int64_t, 4> dims{1, 1, 1, 1};
    if (shape.size() == 3) dims = {1, shape[0], shape[1], shape[2]};
    else dims = {shape[0], shape[1], shape[2], shape[3]};
    const bool backward = dout != nullptr;
    std::vector<T> out(q.size());
    std::vector<A> lse(a.lse.empty() && !backward ? 0 : static_cast<std::size_t>(dims[0] * dims[1] * dims[2]));
    run_op<T>(a, opt, dims, q.values<T>().data(), k.values<T>().data(), v.values<T>().data(), out.data(),
              lse.empty() ? nullptr : lse.data());
    // Stage every output, then commit them together: an error leaves no output file behind.
    std::vector<longnet::io::staged_file> staged;
    staged.emplace_back(a.out, longnet::io::npy_file_bytes(longnet::io::npy_dtype_of<T>::value, shape, out.data(), out.size()));
    if (backward) {
        std::vector<T> dq(q.size()), dk(q.size()), dv(q.size());
        run_backward_op<T>(a, opt, dims, q.values<T>().data(), k.values<T>().data(), v.values<T>().data(), out.data(),
                           lse.data(), dout->values<T>().data(), dq.data(), dk.data(), dv.data());
        const auto type = longnet::io::npy_dtype_of<T>::value;
        staged.emplace_back(a.dq, longnet::io::npy_file_bytes(type, shape, dq.data(), dq.size()));
        staged.emplace_back(a.dk, longnet::io::npy_file_bytes(type, shape, dk.data(), dk.size()));
        staged.emplace_back(a.dv, longnet::io::npy_file_bytes(type, shape, dv.data(), dv.size()));
    }
    if (!a.lse.empty()) {
        const std::vector<float> lse32 = lse_as_float(lse);
        staged.emplace_back(a.lse, longnet::io::npy_file_bytes(longnet::io::npy_dtype::float32, lse_shape_of(shape),
                                                               lse32.data(), lse32.size()));
    }
    for (auto& s : staged) s.commit();
    return 0;
}

const char* dtype_label(longnet::io::npy_dtype t) { return longnet::io::dtype_name(t); }

int run_files(const arguments& a, const longnet::dilated_options& opt) {
    using longnet::io::npy_dtype;
    const longnet::io::npy_array q = longnet::io::load_npy(a.q);
    const longnet::io::npy_array k = longnet::io::load_npy(a.k);
    const longnet::io::npy_array v = longnet::io::load_npy(a.v);
    const auto describe = [](const char* name, const std::string& path, const longnet::io::npy_array& x) {
        return std::string(name) + " (" + path + ") has shape " + longnet::io::shape_string(x.shape()) + " " +
               dtype_label(x.dtype());
    };
    if (q.ndim() != 3 && q.ndim() != 4)
        throw cli::data_error(describe("q", a.q, q) + "; expected [N, H, D] or [B, N, H, D]");
    const npy_dtype t = q.dtype();
    if (t != npy_dtype::float32 && t != npy_dtype::float64 && t != npy_dtype::float16)
        throw cli::data_error(describe("q", a.q, q) + "; unsupported dtype " + dtype_label(t) +
                              " (expected float32, float64 or float16)");
    const auto same_as_q = [&](const char* name, const std::string& path, const longnet::io::npy_array& x) {
        if (x.shape() != q.shape() || x.dtype() != q.dtype())
            throw cli::data_error(describe(name, path, x) + " but " + describe("q", a.q, q) +
                                  "; q, k and v must have the same shape and dtype");
    };
    same_as_q("k", a.k, k);
    same_as_q("v", a.v, v);
    std::optional<longnet::io::npy_array> dout;
    if (!a.dout.empty()) {
        dout = longnet::io::load_npy(a.dout);
        same_as_q("dout", a.dout, *dout);
    }
    cli::check_writable("--out", a.out);
    if (!a.lse.empty()) cli::check_writable("--lse", a.lse);
    if (dout) {
        cli::check_writable("--dq", a.dq);
        cli::check_writable("--dk", a.dk);
        cli::check_writable("--dv", a.dv);
    }
    const longnet::io::npy_array* g = dout ? &*dout : nullptr;
    switch (t) {
        case npy_dtype::float32: return compute_files<float>(a, opt, q, k, v, g);
        case npy_dtype::float64: return compute_files<double>(a, opt, q, k, v, g);
        case npy_dtype::float16: return compute_files<longnet::half>(a, opt, q, k, v, g);
        default: break;
    }
    throw cli::data_error("unsupported dtype");
}

// ---- random mode -----------------------------------------------------------------------------------

template <class T>
int compute_random(const arguments& a, const longnet::dilated_options& opt, const std::string& dtype) {
    using A = longnet::accum_t<T>;
    const std::vector<std::int64_t>& r = *a.random;
    const std::array<std::int64_t, 4> dims{r[0], r[1], r[2], r[3]};
    const std::uint64_t seed = a.seed.value_or(0);
    const std::int64_t repeat = a.repeat.value_or(3);
    const std::int64_t n = dims[0] * dims[1] * dims[2] * dims[3];  // checked by require_memory
    const std::int64_t rows = dims[0] * dims[1] * dims[2];

    const auto to_t = [](float x) { return T(x); };
    std::vector<T> q(static_cast<std::size_t>(n)), k(q.size()), v(q.size()), out(q.size());
    cli::fill_normal(q.data(), n, seed, 0, to_t);
    cli::fill_normal(k.data(), n, seed, 1, to_t);
    cli::fill_normal(v.data(), n, seed, 2, to_t);
    std::vector<A> lse(a.lse.empty() && !a.backward ? 0 : static_cast<std::size_t>(rows));
    std::vector<T> dout, dq, dk, dv;  // --backward only
    if (a.backward) {
        dout.resize(q.size()), dq.resize(q.size()), dk.resize(q.size()), dv.resize(q.size());
        cli::fill_normal(dout.data(), n, seed, 3, to_t);
    }

    std::vector<double> seconds, backward_seconds;
    for (std::int64_t i = 0; i < repeat; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        run_op<T>(a, opt, dims, q.data(), k.data(), v.data(), out.data(), lse.empty() ? nullptr : lse.data());
        seconds.push_back(cli::seconds_since(t0));
        if (a.backward) {
            const auto t1 = std::chrono::steady_clock::now();
            run_backward_op<T>(a, opt, dims, q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), dq.data(),
                               dk.data(), dv.data());
            backward_seconds.push_back(cli::seconds_since(t1));
        }
    }
    std::vector<double> sorted = seconds;
    std::sort(sorted.begin(), sorted.end());
    const std::size_t m = sorted.size();
    const double median = m % 2 ? sorted[m / 2] : 0.5 * (sorted[m / 2 - 1] + sorted[m / 2]);
    const double flops = a.dense ? longnet::dense_attention_flops(dims[0], dims[1], dims[2], dims[3], opt.causal)
                                 : longnet::dilated_attention_flops(dims[0], dims[1], dims[2], dims[3], opt);
    const double tokens = static_cast<double>(dims[0]) * static_cast<double>(dims[1]);

    std::string json = "{\"op\":\"" + std::string(a.dense ? "dense" : "dilated") + "\"";
    json += ",\"B\":" + std::to_string(dims[0]) + ",\"N\":" + std::to_string(dims[1]) + ",\"H\":" + std::to_string(dims[2]) +
            ",\"D\":" + std::to_string(dims[3]);
    json += ",\"dtype\":\"" + dtype + "\"";
    if (a.segments) {
        json += ",\"segments\":[" + cli::join(*a.segments) + "]";
        json += ",\"dilations\":[" + cli::join(*a.dilations) + "]";
    }
    json += std::string(",\"causal\":") + (opt.causal ? "true" : "false");
    if (!a.dense) {
        json += std::string(",\"offsets\":\"") + longnet::to_string(opt.offsets) + "\"";
        json += std::string(",\"tail\":\"") + longnet::to_string(opt.tail) + "\"";
    }
    json += ",\"scale\":" + cli::json_number(longnet::effective_scale(opt.scale, dims[3]));
    json += ",\"threads\":" + std::to_string(cli::max_threads());
    json += ",\"simd\":\"" + std::string(longnet::simd_isa()) + "\"";
    // true: a build without -march whose kernels were picked at run time (LONGNET_ISA, isa.hpp)
    json += std::string(",\"dispatch\":") + (LONGNET_DISPATCH ? "true" : "false");
    if (dtype == "bfloat16") {
        json += std::string(",\"bf16_dot\":") + (longnet::bf16_dot_products() ? "true" : "false");
        // AMX tiles for the bf16 dot products (head dims a multiple of 32; isa.hpp)
        json += std::string(",\"bf16_amx\":") +
                (longnet::bf16_dot_products() && longnet::bf16_amx_tiles() && dims[3] % 32 == 0 ? "true" : "false");
    }
    json += ",\"seed\":" + std::to_string(seed);
    json += ",\"repeat\":" + std::to_string(repeat);
    json += ",\"seconds\":" + cli::json_number(median);
    json += ",\"min_seconds\":" + cli::json_number(sorted.front());
    json += ",\"max_seconds\":" + cli::json_number(sorted.back());
    json += ",\"tokens_per_second\":" + cli::json_number(median > 0 ? tokens / median : std::numeric_limits<double>::infinity());
    json += ",\"flops\":" + cli::json_number(flops);
    json += ",\"gflops\":" + cli::json_number(median > 0 ? flops / median * 1e-9 : std::numeric_limits<double>::infinity());
    if (a.backward) {
        std::sort(backward_seconds.begin(), backward_seconds.end());
        const std::size_t mb = backward_seconds.size();
        const double backward_median =
            mb % 2 ? backward_seconds[mb / 2] : 0.5 * (backward_seconds[mb / 2 - 1] + backward_seconds[mb / 2]);
        json += std::string(",\"grad_mode\":\"") + longnet::to_string(a.grad_mode.value_or(longnet::grad_mode::exact)) + "\"";
        json += ",\"forward_seconds\":" + cli::json_number(median);
        json += ",\"backward_seconds\":" + cli::json_number(backward_median);
        json += ",\"backward_ratio\":" + cli::json_number(median > 0 ? backward_median / median : 0.0);
        json += ",\"backward_gflops\":" +
                cli::json_number(backward_median > 0 ? 2.5 * flops / backward_median * 1e-9
                                                     : std::numeric_limits<double>::infinity());
    }
    json += "}";

    std::vector<longnet::io::staged_file> staged;
    const std::vector<std::int64_t> shape(dims.begin(), dims.end());
    if (!a.out.empty()) {
        if constexpr (std::is_same_v<T, longnet::bfloat16>) {
            std::vector<float> out32(out.size());
            for (std::size_t i = 0; i < out.size(); ++i) out32[i] = static_cast<float>(out[i]);
            staged.emplace_back(a.out, longnet::io::npy_file_bytes(longnet::io::npy_dtype::float32, shape, out32.data(),
                                                                   out32.size()));
        } else {
            staged.emplace_back(a.out, longnet::io::npy_file_bytes(longnet::io::npy_dtype_of<T>::value, shape, out.data(),
                                                                   out.size()));
        }
    }
    if (!a.lse.empty()) {
        const std::vector<float> lse32 = lse_as_float(lse);
        staged.emplace_back(a.lse, longnet::io::npy_file_bytes(longnet::io::npy_dtype::float32, lse_shape_of(shape),
                                                               lse32.data(), lse32.size()));
    }
    for (auto& s : staged) s.commit();
    std::printf("%s\n", json.c_str());
    std::fflush(stdout);
    return 0;
}

int run_random(const arguments& a, const longnet::dilated_options& opt) {
    const std::string dtype = a.dtype.value_or("float32");
    const std::uint64_t item = dtype == "float64" ? 8 : dtype == "float32" ? 4 : 2;
    const std::uint64_t acc = dtype == "float64" ? 8 : 4;
    const std::vector<std::int64_t>& r = *a.random;
    // q, k, v, out in the element type, lse in the accumulator type, and a float32 copy on writing.
    std::optional<std::uint64_t> n = std::uint64_t(1);
    for (std::int64_t x : r) n = n ? cli::mul(*n, static_cast<std::uint64_t>(x)) : std::nullopt;
    std::optional<std::uint64_t> bytes = n ? cli::mul(*n, (a.backward ? 8 : 4) * item) : std::nullopt;  // + dout, dq, dk, dv
    if (bytes && n && !a.out.empty()) bytes = cli::add(*bytes, *n * item);  // n·item cannot overflow here
    if (bytes && (!a.lse.empty() || a.backward)) {
        const auto rows = n ? cli::mul(*n / static_cast<std::uint64_t>(r[3]), acc + 4) : std::nullopt;
        bytes = rows ? cli::add(*bytes, *rows) : std::nullopt;
    }
    cli::require_memory(bytes, "--random " + cli::join(r) + " (" + dtype + ")");
    if (!a.out.empty()) cli::check_writable("--out", a.out);
    if (!a.lse.empty()) cli::check_writable("--lse", a.lse);
    if (dtype == "float64") return compute_random<double>(a, opt, dtype);
    if (dtype == "bfloat16") return compute_random<longnet::bfloat16>(a, opt, dtype);
    if (dtype == "float16") return compute_random<longnet::half>(a, opt, dtype);
    return compute_random<float>(a, opt, dtype);
}

int run(int argc, char** argv) {
    const arguments a = parse_arguments(argc, argv);
    if (a.help) {
        std::fputs(usage_text, stdout);
        return 0;
    }
    const longnet::dilated_options opt = make_options(a);
    // std::invalid_argument from the library's validation -> exit 2
    if (!a.dense) longnet::validate(opt);
    else longnet::validate(longnet::attention_options{opt.causal, opt.scale});
    return a.random ? run_random(a, opt) : run_files(a, opt);
}

}  // namespace

int main(int argc, char** argv) {
    return cli::main_guard({"longnet_attend", "error: "}, [&] { return run(argc, argv); });
}
