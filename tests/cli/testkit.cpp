// SPDX-License-Identifier: Apache-2.0
// longnet_cli_testkit: the .npy chores of the command-line tests, in C++ (numpy may be absent).
//
//   compare GOT WANT REL_TOL [DTYPE]  same shape; max |got - want| <= REL_TOL · max |want| over finite
//                                     entries; infinities must match exactly; no NaN; GOT's dtype must be
//                                     DTYPE when given. Exit 0 if so, 1 otherwise (with the numbers).
//   convert IN OUT DTYPE              IN converted to float16, float32 or float64
//   batch2 IN OUT                     shape [2, ...]: two copies of IN
//   info FILE                         prints "<dtype> <shape>", e.g. "float32 (2, 64, 4, 16)"
//   make-bad DIR                      writes malformed and unsuitable inputs into DIR (see below)
//   tokens OUT [ID ...]               writes the ids as an int64 [n] array (no ids: an empty [0] array)
//   values FILE                       prints every value, space-separated (integers as integers)
//   argmax FILE                       prints the arg max of each row of a 2-D array, space-separated
//   mask IN OUT DTYPE                 an integer 0/1 mask IN rewritten as bool ('|b1'), uint8 ('|u1'), int64 or
//                                     float32 (the encoder CLI's masks)
//   lengths IN OUT                    the int32 lengths [B] of a right-padded [B, N] mask IN (1 = pad)
//   first-token IN OUT                [B, N, D] -> [B, D]: each row's token 0
//   row IN OUT B                      [B, ...] -> [...]: batch row B (integers as int64, float32 kept, else float64)
//   left-pad X MASK WANT DIR          a right-padded batch (X [B, N, D], MASK [B, N], expected output WANT
//                                     [B, N, D]) moved to left padding: DIR/x.npy, DIR/mask.npy (uint8),
//                                     DIR/want.npy; pads of x get row b's first token, want's pads stay 0

#include <longnet/io/npy.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace io = longnet::io;

namespace {

int compare(const std::string& got_path, const std::string& want_path, double rel_tol, const std::string& dtype) {
    const io::npy_array got = io::load_npy(got_path);
    const io::npy_array want = io::load_npy(want_path);
    if (!dtype.empty() && dtype != io::dtype_name(got.dtype())) {
        std::printf("FAIL %s: dtype %s, expected %s\n", got_path.c_str(), io::dtype_name(got.dtype()), dtype.c_str());
        return 1;
    }
    if (got.shape() != want.shape()) {
        std::printf("FAIL %s: shape %s, expected %s\n", got_path.c_str(), io::shape_string(got.shape()).c_str(),
                    io::shape_string(want.shape()).c_str());
        return 1;
    }
    const std::vector<double> g = got.as_double(), w = want.as_double();
    double scale = 0, max_err = 0;
    std::size_t worst = 0, infinities = 0;
    for (double x : w)
        if (std::isfinite(x)) scale = std::max(scale, std::fabs(x));
    for (std::size_t i = 0; i < g.size(); ++i) {
        if (std::isnan(g[i]) || std::isnan(w[i])) {
            std::printf("FAIL %s: NaN at flat index %zu (got %g, want %g)\n", got_path.c_str(), i, g[i], w[i]);
            return 1;
        }
        if (std::isinf(w[i]) || std::isinf(g[i])) {
            if (g[i] != w[i]) {
                std::printf("FAIL %s: at flat index %zu got %g, want %g\n", got_path.c_str(), i, g[i], w[i]);
                return 1;
            }
            ++infinities;
            continue;
        }
        const double err = std::fabs(g[i] - w[i]);
        if (err > max_err) {
            max_err = err;
            worst = i;
        }
    }
    const double rel = scale > 0 ? max_err / scale : max_err;
    std::printf("%s %s: %zu values, max |err| %.3e at flat index %zu, max |want| %.3e, relative %.3e (tolerance %.1e), "
                "%zu matching infinities\n",
                rel <= rel_tol ? "OK" : "FAIL", got_path.c_str(), g.size(), max_err, worst, scale, rel, rel_tol, infinities);
    return rel <= rel_tol ? 0 : 1;
}

int convert(const std::string& in, const std::string& out, const std::string& dtype) {
    const io::npy_array a = io::load_npy(in);
    const std::vector<double> d = a.as_double();
    if (dtype == "float64") {
        io::save_npy(out, d, a.shape());
    } else if (dtype == "float32") {
        io::save_npy(out, a.as_float(), a.shape());
    } else if (dtype == "float16") {
        std::vector<longnet::half> h;
        h.reserve(d.size());
        for (double x : d) h.emplace_back(static_cast<float>(x));
        io::save_npy(out, h, a.shape());
    } else {
        std::fprintf(stderr, "testkit: unknown dtype %s\n", dtype.c_str());
        return 2;
    }
    return 0;
}

int batch2(const std::string& in, const std::string& out) {
    const io::npy_array a = io::load_npy(in);
    std::vector<std::int64_t> shape = a.shape();
    shape.insert(shape.begin(), 2);
    const auto twice = [&](auto tag) {
        using T = decltype(tag);
        std::vector<T> v = a.values<T>();
        v.insert(v.end(), v.begin(), v.end());
        io::save_npy(out, v, shape);
    };
    switch (a.dtype()) {
        case io::npy_dtype::float16: twice(longnet::half{}); break;
        case io::npy_dtype::float32: twice(float{}); break;
        case io::npy_dtype::float64: twice(double{}); break;
        case io::npy_dtype::int32: twice(std::int32_t{}); break;
        case io::npy_dtype::int64: twice(std::int64_t{}); break;
    }
    return 0;
}

void write_raw(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f) throw std::runtime_error("cannot write " + path);
}

// Inputs of shape [8, 2, 4] unless named otherwise:
//   good.npy       float32, valid           empty.npy      0 bytes
//   text.npy       not a .npy file          truncated.npy  header fine, data cut short
//   badheader.npy  malformed header dict    version9.npy   format version 9.0
//   int64.npy      valid, dtype int64       rank2.npy      valid float32 [8, 8]
//   other.npy      valid float32 [8, 2, 8]  float64.npy    valid float64 [8, 2, 4]
int make_bad(const std::string& dir) {
    std::vector<float> f(64);
    for (std::size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(i % 7) * 0.25f - 0.5f;
    io::save_npy(dir + "/good.npy", f, {8, 2, 4});
    io::save_npy(dir + "/rank2.npy", f, {8, 8});
    std::vector<float> g(128, 0.5f);
    io::save_npy(dir + "/other.npy", g, {8, 2, 8});
    io::save_npy(dir + "/float64.npy", std::vector<double>(64, 0.25), {8, 2, 4});
    io::save_npy(dir + "/int64.npy", std::vector<std::int64_t>(64, 3), {8, 2, 4});
    write_raw(dir + "/empty.npy", "");
    write_raw(dir + "/text.npy", "this is a text file, not a .npy file\n");
    const std::string good = io::npy_file_bytes(io::npy_dtype::float32, {8, 2, 4}, f.data(), f.size());
    write_raw(dir + "/truncated.npy", good.substr(0, good.size() - 20));
    std::string bad_header = good;
    const std::size_t at = bad_header.find("'shape'");
    bad_header.replace(at, 7, "'shope'");
    write_raw(dir + "/badheader.npy", bad_header);
    std::string v9 = good;
    v9[6] = 9;
    write_raw(dir + "/version9.npy", v9);
    return 0;
}

int info(const std::string& path) {
    const io::npy_array a = io::load_npy(path);
    std::printf("%s %s\n", io::dtype_name(a.dtype()), io::shape_string(a.shape()).c_str());
    return 0;
}

int tokens(const std::string& path, const std::vector<std::string>& ids) {
    std::vector<std::int64_t> t;
    for (const auto& s : ids) t.push_back(std::stoll(s));
    io::save_npy(path, t, {static_cast<std::int64_t>(t.size())});
    return 0;
}

int values(const std::string& path) {
    const io::npy_array a = io::load_npy(path);
    const bool integer = a.dtype() == io::npy_dtype::int64 || a.dtype() == io::npy_dtype::int32;
    const std::vector<double> v = a.as_double();
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (integer) std::printf(i ? " %lld" : "%lld", static_cast<long long>(v[i]));
        else std::printf(i ? " %.17g" : "%.17g", v[i]);
    }
    std::printf("\n");
    return 0;
}

int argmax(const std::string& path) {
    const io::npy_array a = io::load_npy(path);
    if (a.ndim() != 2) throw std::runtime_error(path + ": expected a 2-D array");
    const std::vector<double> v = a.as_double();
    const auto rows = static_cast<std::size_t>(a.shape()[0]), cols = static_cast<std::size_t>(a.shape()[1]);
    for (std::size_t r = 0; r < rows; ++r) {
        std::size_t best = 0;
        for (std::size_t c = 1; c < cols; ++c)
            if (v[r * cols + c] > v[r * cols + best]) best = c;
        std::printf(r ? " %zu" : "%zu", best);
    }
    std::printf("\n");
    return 0;
}

// A .npy image of one-byte elements (numpy's '|b1' or '|u1'), which io::save_npy does not write.
void save_bytes_npy(const std::string& path, const char* descr, const std::vector<std::uint8_t>& v,
                    const std::vector<std::int64_t>& shape) {
    std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + io::shape_string(shape) + ", }";
    while ((10 + dict.size() + 1) % 64 != 0) dict += ' ';
    dict += '\n';
    std::string bytes("\x93NUMPY\x01\x00", 8);
    bytes += static_cast<char>(dict.size() & 0xff);
    bytes += static_cast<char>(dict.size() >> 8);
    bytes += dict;
    bytes.append(reinterpret_cast<const char*>(v.data()), v.size());
    write_raw(path, bytes);
}

int mask(const std::string& in, const std::string& out, const std::string& dtype) {
    const io::npy_array a = io::load_npy(in);
    const std::vector<std::int64_t> m = a.as_int64();
    if (dtype == "bool" || dtype == "uint8") save_bytes_npy(out, dtype == "bool" ? "|b1" : "|u1", std::vector<std::uint8_t>(m.begin(), m.end()), a.shape());
    else if (dtype == "int64") io::save_npy(out, m, a.shape());
    else if (dtype == "float32") io::save_npy(out, a.as_float(), a.shape());
    else throw std::runtime_error("mask: unknown dtype " + dtype);
    return 0;
}

int lengths(const std::string& in, const std::string& out) {
    const io::npy_array a = io::load_npy(in);
    if (a.ndim() != 2) throw std::runtime_error(in + ": expected a [B, N] mask");
    const std::vector<std::int64_t> m = a.as_int64();
    const std::int64_t batch = a.shape()[0], seq = a.shape()[1];
    std::vector<std::int32_t> len(static_cast<std::size_t>(batch));
    for (std::int64_t b = 0; b < batch; ++b) {
        std::int64_t n = 0;
        while (n < seq && m[static_cast<std::size_t>(b * seq + n)] == 0) ++n;
        for (std::int64_t i = n; i < seq; ++i)
            if (m[static_cast<std::size_t>(b * seq + i)] == 0) throw std::runtime_error(in + ": row " + std::to_string(b) + " is not right-padded");
        len[static_cast<std::size_t>(b)] = static_cast<std::int32_t>(n);
    }
    io::save_npy(out, len, {batch});
    return 0;
}

int first_token(const std::string& in, const std::string& out) {
    const io::npy_array a = io::load_npy(in);
    if (a.ndim() != 3) throw std::runtime_error(in + ": expected [B, N, D]");
    const std::vector<double> v = a.as_double();
    const std::int64_t batch = a.shape()[0], seq = a.shape()[1], dim = a.shape()[2];
    std::vector<double> first;
    for (std::int64_t b = 0; b < batch; ++b)
        first.insert(first.end(), v.begin() + b * seq * dim, v.begin() + (b * seq + 1) * dim);
    io::save_npy(out, first, {batch, dim});
    return 0;
}

int row(const std::string& in, const std::string& out, std::int64_t b) {
    const io::npy_array a = io::load_npy(in);
    if (a.ndim() < 2 || b < 0 || b >= a.shape()[0]) throw std::runtime_error(in + ": no batch row " + std::to_string(b));
    const std::vector<std::int64_t> shape(a.shape().begin() + 1, a.shape().end());
    const std::size_t n = a.size() / static_cast<std::size_t>(a.shape()[0]);
    const auto first = static_cast<std::ptrdiff_t>(n) * b, last = static_cast<std::ptrdiff_t>(n) * (b + 1);
    if (a.dtype() == io::npy_dtype::int32 || a.dtype() == io::npy_dtype::int64) {
        const std::vector<std::int64_t> v = a.as_int64();
        io::save_npy(out, std::vector<std::int64_t>(v.begin() + first, v.begin() + last), shape);
        return 0;
    }
    const std::vector<double> v = a.as_double();
    const std::vector<double> r(v.begin() + first, v.begin() + last);
    if (a.dtype() == io::npy_dtype::float32) io::save_npy(out, std::vector<float>(r.begin(), r.end()), shape);
    else io::save_npy(out, r, shape);
    return 0;
}

int left_pad(const std::string& x_path, const std::string& mask_path, const std::string& want_path, const std::string& dir) {
    const io::npy_array x = io::load_npy(x_path), want = io::load_npy(want_path);
    const std::vector<std::int64_t> m = io::load_npy(mask_path).as_int64();
    const std::int64_t batch = x.shape()[0], seq = x.shape()[1], dim = x.shape()[2];
    const std::vector<float> xv = x.as_float();
    const std::vector<double> wv = want.as_double();
    std::vector<float> xl(xv.size());
    std::vector<double> wl(wv.size(), 0.0);
    std::vector<std::uint8_t> ml(m.size(), 1);
    for (std::int64_t b = 0; b < batch; ++b) {
        std::int64_t n = 0;
        while (n < seq && m[static_cast<std::size_t>(b * seq + n)] == 0) ++n;
        const std::int64_t shift = seq - n;
        for (std::int64_t i = 0; i < seq; ++i) {
            const std::int64_t from = i < shift ? 0 : i - shift;  // pads: a copy of token 0 (must not matter)
            for (std::int64_t j = 0; j < dim; ++j) {
                xl[static_cast<std::size_t>((b * seq + i) * dim + j)] = xv[static_cast<std::size_t>((b * seq + from) * dim + j)];
                if (i >= shift) wl[static_cast<std::size_t>((b * seq + i) * dim + j)] = wv[static_cast<std::size_t>((b * seq + from) * dim + j)];
            }
            if (i >= shift) ml[static_cast<std::size_t>(b * seq + i)] = 0;
        }
    }
    io::save_npy(dir + "/x.npy", xl, x.shape());
    io::save_npy(dir + "/want.npy", wl, want.shape());
    save_bytes_npy(dir + "/mask.npy", "|u1", ml, {batch, seq});
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const std::vector<std::string> a(argv + 1, argv + argc);
        if (a.size() >= 4 && a[0] == "compare") return compare(a[1], a[2], std::stod(a[3]), a.size() > 4 ? a[4] : "");
        if (a.size() == 4 && a[0] == "convert") return convert(a[1], a[2], a[3]);
        if (a.size() == 3 && a[0] == "batch2") return batch2(a[1], a[2]);
        if (a.size() == 2 && a[0] == "info") return info(a[1]);
        if (a.size() == 2 && a[0] == "make-bad") return make_bad(a[1]);
        if (a.size() >= 2 && a[0] == "tokens") return tokens(a[1], std::vector<std::string>(a.begin() + 2, a.end()));
        if (a.size() == 2 && a[0] == "values") return values(a[1]);
        if (a.size() == 2 && a[0] == "argmax") return argmax(a[1]);
        if (a.size() == 4 && a[0] == "mask") return mask(a[1], a[2], a[3]);
        if (a.size() == 3 && a[0] == "lengths") return lengths(a[1], a[2]);
        if (a.size() == 3 && a[0] == "first-token") return first_token(a[1], a[2]);
        if (a.size() == 4 && a[0] == "row") return row(a[1], a[2], std::stoll(a[3]));
        if (a.size() == 5 && a[0] == "left-pad") return left_pad(a[1], a[2], a[3], a[4]);
        std::fprintf(stderr, "usage: longnet_cli_testkit compare|convert|batch2|info|make-bad|tokens|values|argmax|mask|lengths|"
                             "first-token|row|left-pad ...\n");
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "testkit: %s\n", e.what());
        return 1;
    }
}
