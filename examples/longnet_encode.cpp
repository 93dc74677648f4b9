// SPDX-License-Identifier: Apache-2.0
// longnet_encode: run a LongNet encoder (torchscale LongNetEncoder, longnet/nn/encoder.hpp) on a batch of
// embeddings: the slide-encoder use (Prov-GigaPath: tile embeddings of whole slides in, encoded tiles out).
//
//   longnet_encode --weights W.safetensors --config C.json --embeddings X.npy [--lengths L.npy | --mask M.npy]
//                  --out Y.npy [--cls-out CLS.npy] [--dtype float|double]
//   longnet_encode (--random-config gigapath | --config C.json) --random-tokens N [--layers L] [--seed S]
//                  [--dtype float|double] [--out Y.npy]
//
// File mode: C.json holds torchscale EncoderConfig fields (encoder_config.hpp; e.g.
// examples/configs/gigapath_slide_encoder.json), W.safetensors the encoder's state_dict (torchscale names,
// load_safetensors.hpp). X is float32 or float64 [B, N, D] (or [N, D]: one sequence, B = 1), D the config's
// encoder_embed_dim: the encoder's input as torchscale's Encoder.forward(token_embeddings=X) takes it. For
// GigaPath that is after the slide model's own patch_embed (1536 -> 768), positional embedding and the
// prepended CLS token: those are LongNetViT's, not the encoder's.
// Padding (optional; without it every row has N real tokens):
//   --lengths L.npy  int32 or int64 [B]: row b's real tokens are positions [0, L[b]) (right padding);
//   --mask M.npy     bool ('|b1'), uint8, int32 or int64 [B, N] (or [N] for [N, D] input), values 0 or 1,
//                    1 = pad (torchscale's key_padding_mask); any pattern: left, right, holes.
// The real tokens of each row are encoded as that sequence alone (no token sees a pad or another row);
// Y is [B, N, D] ([N, D] for [N, D] input) with pad rows 0, float32 (--dtype float, the default: the
// computation runs in float) or float64 (--dtype double: it runs in double). --cls-out writes each row's
// token at position 0 as [B, D]: the CLS token when the embeddings start with one (GigaPath prepends
// its cls_token; its slide embedding is that row after LongNetViT's final LayerNorm, which is not part of
// the encoder and not applied here). Position 0 of a row that is padded there gives a zero row. Outputs
// are written together and atomically (temporary files, then renames): an error leaves none of them.
// Random mode: seeded random weights (nn::random_encoder) for the built-in GigaPath slide encoder
// (--random-config gigapath: the values of examples/configs/gigapath_slide_encoder.json) or a config file,
// one forward over N standard-normal embeddings (B = 1). Prints wall time, tokens/s, the time split, the
// CPU time of the forward (all threads; the average number of cores it got) and the process's peak
// resident memory (getrusage). --layers overrides the layer count, --out saves [1, N, D].
// Exit codes: 0 success, 1 data error (files, shapes, dtypes, values, memory), 2 usage error.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

#include <longnet/allocator.hpp>
#include <longnet/io/npy.hpp>
#include <longnet/io/staged_file.hpp>
#include <longnet/nn/nn.hpp>

#include "cli_common.hpp"
#include "longnet_encode_args.hpp"

namespace {

namespace nn = longnet::nn;
namespace io = longnet::io;

using namespace encode_cli;  // usage_text, arguments, parse (longnet_encode_args.hpp)

// Prov-GigaPath's slide encoder (gigapath_slide_enc12l768d); see examples/configs/gigapath_slide_encoder.json.
nn::encoder_config gigapath_config() {
    nn::encoder_config c;
    c.embed_dim = 768;
    c.heads = 16;
    c.ffn_dim = 3072;
    c.layers = 12;
    c.segment_length = {1024, 5792, 32768, 185363, 1048576};
    c.dilated_ratio = {1, 2, 4, 8, 16};
    c.validate();
    return c;
}

nn::encoder_config read_config(const std::string& path) {
    try {
        return nn::encoder_config::from_file(path);
    } catch (const std::invalid_argument& e) {
        throw cli::data_error(e.what());
    }
}

// ---- inputs -------------------------------------------------------------------------------------------

// The batch as the encoder takes it: [B·N, D] rows and the shape to write back.
template <class T>
struct batch_input {
    nn::matrix<T> rows;
    std::int64_t batch = 0, seq = 0;
    bool two_d = false;  // X was [N, D]
};

template <class T>
batch_input<T> read_embeddings(const std::string& path, const nn::encoder_config& cfg) {
    const io::npy_array a = io::load_npy(path);
    const std::string shape = io::shape_string(a.shape());
    if (a.dtype() != io::npy_dtype::float32 && a.dtype() != io::npy_dtype::float64)
        throw cli::data_error("--embeddings " + path + ": expected float32 or float64, got " + io::dtype_name(a.dtype()) +
                              " " + shape);
    if (a.ndim() != 2 && a.ndim() != 3)
        throw cli::data_error("--embeddings " + path + ": expected [B, N, D] or [N, D], got shape " + shape);
    batch_input<T> in;
    in.two_d = a.ndim() == 2;
    in.batch = in.two_d ? 1 : a.shape()[0];
    in.seq = a.shape()[a.ndim() - 2];
    const std::int64_t dim = a.shape().back();
    if (dim != cfg.embed_dim)
        throw cli::data_error("--embeddings " + path + ": shape " + shape + " is " + std::to_string(dim) +
                              " wide but the config's encoder_embed_dim is " + std::to_string(cfg.embed_dim));
    if (in.batch < 1 || in.seq < 1) throw cli::data_error("--embeddings " + path + ": no tokens (shape " + shape + ")");
    in.rows.resize(in.batch * in.seq, dim);
    const auto fill = [&](const auto& v) {
        for (std::size_t i = 0; i < v.size(); ++i) in.rows.data()[i] = static_cast<T>(v[i]);
    };
    if (a.holds<float>()) fill(a.values<float>());
    else fill(a.values<double>());
    if (!in.rows.allFinite()) throw cli::data_error("--embeddings " + path + ": holds NaN or infinite values");
    return in;
}

std::vector<std::int64_t> read_lengths(const std::string& path, std::int64_t batch, std::int64_t seq) {
    const io::npy_array a = io::load_npy(path);
    if (a.dtype() != io::npy_dtype::int32 && a.dtype() != io::npy_dtype::int64)
        throw cli::data_error("--lengths " + path + ": expected int32 or int64, got " + io::dtype_name(a.dtype()));
    if (a.ndim() != 1 || a.shape()[0] != batch)
        throw cli::data_error("--lengths " + path + ": expected shape (" + std::to_string(batch) +
                              ",) (one length per batch row), got " + io::shape_string(a.shape()));
    std::vector<std::int64_t> len = a.as_int64();
    for (std::size_t b = 0; b < len.size(); ++b)
        if (len[b] < 0 || len[b] > seq)
            throw cli::data_error("--lengths " + path + ": lengths[" + std::to_string(b) + "] = " + std::to_string(len[b]) +
                                  " is outside [0, N = " + std::to_string(seq) + "] (N: the embeddings' tokens per row)");
    return len;
}

// A .npy file whose dtype is one byte wide ('|b1' bool, '|u1' uint8), read by widening its data to int32
// in memory and handing the image to io::load_npy_bytes (the library's reader has no 1-byte dtypes): the
// same strict checks of header, shape and size (sizes in its messages are the widened ones). Other dtypes
// are read as they are. max_bytes bounds what is read.
io::npy_array load_npy_widening_bytes(const std::string& path, std::uint64_t max_bytes) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) return io::load_npy(path);  // missing, a folder, ...: named there
    std::ifstream f(path, std::ios::binary);
    std::string image;
    if (f) {
        f.seekg(0, std::ios::end);
        const std::streamoff size = f.tellg();
        if (size > 0 && static_cast<std::uint64_t>(size) > max_bytes)
            throw cli::data_error("--mask " + path + ": " + std::to_string(size) + " bytes is too large for the mask of the embeddings");
        if (size > 0) {
            image.resize(static_cast<std::size_t>(size));
            f.seekg(0);
            f.read(image.data(), size);
            if (!f) image.clear();
        }
    }
    // Preamble: magic (6), version (2), header length (2 for v1, 4 for v2/v3), header.
    const auto byte = [&](std::size_t i) { return static_cast<std::uint64_t>(static_cast<unsigned char>(image[i])); };
    if (image.size() < 12 || image.compare(0, 6, "\x93NUMPY") != 0 || byte(6) < 1 || byte(6) > 3)
        return io::load_npy(path);  // not a .npy image we can widen: the library names the problem
    const std::size_t len_bytes = byte(6) == 1 ? 2 : 4;
    std::uint64_t header_len = byte(8) | (byte(9) << 8);
    if (len_bytes == 4) header_len |= (byte(10) << 16) | (byte(11) << 24);
    const std::uint64_t data_at = 8 + len_bytes + header_len;
    if (data_at > image.size()) return io::load_npy(path);
    const std::size_t header_at = 8 + len_bytes;
    std::string header = image.substr(header_at, static_cast<std::size_t>(header_len));
    std::size_t at = std::string::npos;
    for (const char* d : {"'|b1'", "'|u1'"})
        if (at == std::string::npos) at = header.find(d);
    if (at == std::string::npos) return io::load_npy(path);
    header.replace(at, 5, "'<i4'");  // same length: the header length and data offset stay
    std::string widened = image.substr(0, header_at) + header;
    widened.reserve(widened.size() + 4 * (image.size() - static_cast<std::size_t>(data_at)));
    for (std::size_t i = static_cast<std::size_t>(data_at); i < image.size(); ++i) {
        const char le[4] = {image[i], 0, 0, 0};
        widened.append(le, 4);
    }
    return io::load_npy_bytes(widened.data(), widened.size(), path);
}

std::vector<std::uint8_t> read_mask(const std::string& path, std::int64_t batch, std::int64_t seq, bool two_d) {
    const auto entries = static_cast<std::uint64_t>(batch * seq);
    const io::npy_array a = load_npy_widening_bytes(path, (std::uint64_t(1) << 21) + 8 * entries);
    if (a.dtype() != io::npy_dtype::int32 && a.dtype() != io::npy_dtype::int64)
        throw cli::data_error("--mask " + path + ": expected bool, uint8, int32 or int64 (1 = pad), got " +
                              io::dtype_name(a.dtype()));
    const std::vector<std::int64_t> want{batch, seq};
    const bool fits = a.shape() == want || (two_d && a.shape() == std::vector<std::int64_t>{seq});
    if (!fits)
        throw cli::data_error("--mask " + path + ": shape " + io::shape_string(a.shape()) + " does not match the embeddings' [B, N] = " +
                              io::shape_string(want));
    const std::vector<std::int64_t> v = a.as_int64();
    std::vector<std::uint8_t> m(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (v[i] != 0 && v[i] != 1)
            throw cli::data_error("--mask " + path + ": entry [" + std::to_string(i / static_cast<std::size_t>(seq)) + ", " +
                                  std::to_string(i % static_cast<std::size_t>(seq)) + "] = " + std::to_string(v[i]) +
                                  " (a mask holds 0 = token, 1 = pad)");
        m[i] = static_cast<std::uint8_t>(v[i]);
    }
    return m;
}

template <class T>
nn::encoder<T> load_model(const std::string& weights, const nn::encoder_config& cfg) {
    try {
        return nn::load_encoder<T>(weights, cfg);
    } catch (const std::invalid_argument& e) {
        throw cli::data_error(e.what());
    }
}

template <class T>
int run_files(const arguments& a) {
    const nn::encoder_config cfg = read_config(a.config);
    const batch_input<T> in = read_embeddings<T>(a.embeddings, cfg);
    std::vector<std::int64_t> lengths;
    std::vector<std::uint8_t> mask;
    if (!a.lengths.empty()) lengths = read_lengths(a.lengths, in.batch, in.seq);
    if (!a.mask.empty()) mask = read_mask(a.mask, in.batch, in.seq, in.two_d);
    cli::check_writable("--out", a.out);
    if (!a.cls_out.empty()) cli::check_writable("--cls-out", a.cls_out);
    const nn::encoder<T> model = load_model<T>(a.weights, cfg);

    const auto start = std::chrono::steady_clock::now();
    nn::matrix<T> y;
    if (!mask.empty()) y = model.forward(in.rows, in.batch, longnet::key_padding_mask(mask));
    else if (!lengths.empty()) y = model.forward(in.rows, in.batch, longnet::padding_lengths(lengths));
    else if (in.batch == 1) y = model.forward(in.rows);
    else {
        const std::vector<std::int64_t> full(static_cast<std::size_t>(in.batch), in.seq);  // no padding
        y = model.forward(in.rows, in.batch, longnet::padding_lengths(full));
    }
    const double seconds = cli::seconds_since(start);
    if (!y.allFinite()) throw cli::data_error("the encoder produced non-finite values (check the weights)");

    const auto type = io::npy_dtype_of<T>::value;
    const std::int64_t dim = cfg.embed_dim;
    const std::vector<std::int64_t> shape = in.two_d ? std::vector<std::int64_t>{in.seq, dim}
                                                     : std::vector<std::int64_t>{in.batch, in.seq, dim};
    std::vector<io::staged_file> staged;  // all outputs or none
    staged.emplace_back(a.out, io::npy_file_bytes(type, shape, y.data(), static_cast<std::size_t>(y.size())));
    if (!a.cls_out.empty()) {
        nn::matrix<T> cls(in.batch, dim);
        for (std::int64_t b = 0; b < in.batch; ++b) cls.row(b) = y.row(b * in.seq);
        staged.emplace_back(a.cls_out, io::npy_file_bytes(type, {in.batch, dim}, cls.data(), static_cast<std::size_t>(cls.size())));
    }
    for (auto& s : staged) s.commit();
    std::fprintf(stderr, "longnet_encode: %lld x %lld tokens, %lld layers, %s, in %.3f s -> %s\n",
                 static_cast<long long>(in.batch), static_cast<long long>(in.seq), static_cast<long long>(cfg.layers),
                 std::is_same_v<T, float> ? "float" : "double", seconds, a.out.c_str());
    return 0;
}

template <class T>
int run_random(const arguments& a) {
    nn::encoder_config cfg = a.config.empty() ? gigapath_config() : read_config(a.config);
    if (a.layers >= 0) cfg.layers = a.layers;
    if (!a.out.empty()) cli::check_writable("--out", a.out);
    const std::int64_t n = a.random_tokens;
    // x, the layer's h and y, q, k, v, the attention output and an FFN block ([N, D] each, about)
    const auto act = cli::mul(static_cast<std::uint64_t>(n), static_cast<std::uint64_t>(cfg.embed_dim) * 10 * sizeof(T));
    cli::require_memory(act, "activations of " + std::to_string(n) + " tokens");

    auto t0 = std::chrono::steady_clock::now();
    const nn::encoder<T> model = nn::random_encoder<T>(cfg, a.seed);
    nn::matrix<T> x(n, cfg.embed_dim);
    cli::fill_normal(x.data(), x.size(), a.seed, 1, [](float v) { return static_cast<T>(v); });
    std::fprintf(stderr, "longnet_encode: %s, %lld layers, dim %lld, %lld heads, FFN %lld, segments %s, dilations %s "
                         "(%.1f M parameters, random in %.1f s); %lld tokens, %s, %d threads\n",
                 a.config.empty() ? "GigaPath slide encoder" : a.config.c_str(), static_cast<long long>(cfg.layers),
                 static_cast<long long>(cfg.embed_dim), static_cast<long long>(cfg.heads), static_cast<long long>(cfg.ffn_dim),
                 cli::join(cfg.segment_length).c_str(), cli::join(cfg.dilated_ratio).c_str(),
                 static_cast<double>(model.parameter_count()) / 1e6, cli::seconds_since(t0), static_cast<long long>(n),
                 std::is_same_v<T, float> ? "float" : "double", cli::max_threads());

    const auto start = std::chrono::steady_clock::now();
    const double cpu0 = cli::process_cpu_seconds();
    nn::forward_profile profile;
    const nn::matrix<T> y = model.forward(x, nullptr, &profile);
    const double seconds = cli::seconds_since(start), cpu = cli::process_cpu_seconds() - cpu0;
    if (!y.allFinite()) throw cli::data_error("the forward produced non-finite values");
    if (!a.out.empty()) io::save_npy(a.out, y.data(), {1, n, cfg.embed_dim});
    const double total = std::max(profile.total(), 1e-12);
    std::printf("longnet_encode: %lld tokens x %lld layers in %.2f s = %.1f tokens/s | attention %.2f s (%.0f%%), "
                "dense %.2f s (%.0f%%), norms %.2f s (%.0f%%), other %.2f s (%.0f%%) | CPU %.2f s (%.2f cores) | peak RSS %s\n",
                static_cast<long long>(n), static_cast<long long>(cfg.layers), seconds, static_cast<double>(n) / seconds,
                profile.attention, 100 * profile.attention / total, profile.dense, 100 * profile.dense / total, profile.norms,
                100 * profile.norms / total, profile.other, 100 * profile.other / total, cpu, cpu / std::max(seconds, 1e-12),
                cli::human_bytes(static_cast<double>(cli::peak_rss_bytes())).c_str());
    return 0;
}

int run(int argc, char** argv) {
    const arguments a = parse(argc, argv);
    const bool dbl = a.dtype == "double";
    if (a.random_tokens > 0) return dbl ? run_random<double>(a) : run_random<float>(a);
    return dbl ? run_files<double>(a) : run_files<float>(a);
}

}  // namespace

int main(int argc, char** argv) {
    longnet::keep_freed_memory();  // long forwards free and reallocate large buffers (longnet/allocator.hpp)
    return cli::main_guard({"longnet_encode", "error: ", nullptr}, [&] { return run(argc, argv); });
}
