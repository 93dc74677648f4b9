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
        std::fprintf(stderr, "usage: longnet_cli_testkit compare|convert|batch2|info|make-bad|tokens|values|argmax ...\n");
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "testkit: %s\n", e.what());
        return 1;
    }
}
