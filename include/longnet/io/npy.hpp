// SPDX-License-Identifier: Apache-2.0
#pragma once
// Reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0).
//
//   npy_array a = longnet::io::load_npy("q.npy");     // any supported dtype, converted to native C order
//   npy_array b = longnet::io::load_npy_bytes(p, n);  // the same reader on a file image in memory
//   std::vector<float> q = a.as_float();                // converting copy (or a.values<float>() without copy)
//   longnet::io::save_npy("out.npy", data, {N, H, D});  // atomic: temp file in the same folder + rename
//
// Supported dtypes: float16 ('<f2', stored as longnet::half), float32 ('<f4'), float64 ('<f8'),
// int32 ('<i4'), int64 ('<i8'); big-endian ('>') variants are read and converted to the host order.
// Fortran-order files are transposed to C order on read. Files are always written little-endian,
// C order, version 1.0 (2.0 only if the header would not fit in 64 KiB).
//
// Reading is strict and never trusts the header: every failure throws npy_error naming the file and
// the problem (missing, empty, truncated header, bad magic, unsupported version, malformed header
// dict, unsupported dtype, bad shape, element count × itemsize overflow, data shorter than the
// header claims). The data size is checked against the file size before anything is allocated.
// Bytes after the data are an error too ("trailing bytes"): numpy never writes them, and a file
// longer than its header says usually means the header's shape is wrong.
//
// Limits (checked before anything of that size is allocated; above them: npy_error):
//   header      at most 1 MiB (detail::max_npy_header); numpy writes a few hundred bytes
//   rank        at most 64 dimensions (numpy 2's NPY_MAXDIMS)
//   elements    at most 2^62 (any partial product of the shape), bytes at most 2^63 - 1
//   byte size   exactly the bytes the file holds after the header: the data is allocated only after
//               the header's byte count has been checked against the file's (or image's) size.

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "longnet/io/staged_file.hpp"
#include "longnet/numeric.hpp"

namespace longnet::io {

// Every .npy failure. what() is "npy: <file>: <problem>".
class npy_error : public std::runtime_error {
public:
    npy_error(const std::string& file, const std::string& problem)
        : std::runtime_error("npy: " + file + ": " + problem), file_(file), problem_(problem) {}
    const std::string& file() const noexcept { return file_; }
    const std::string& problem() const noexcept { return problem_; }

private:
    std::string file_, problem_;
};

enum class npy_dtype { float16, float32, float64, int32, int64 };

// "float32", "int64", ...
inline const char* dtype_name(npy_dtype t) noexcept {
    switch (t) {
        case npy_dtype::float16: return "float16";
        case npy_dtype::float32: return "float32";
        case npy_dtype::float64: return "float64";
        case npy_dtype::int32: return "int32";
        case npy_dtype::int64: return "int64";
    }
    return "?";
}
// The little-endian numpy descr: "<f4", "<i8", ...
inline const char* dtype_descr(npy_dtype t) noexcept {
    switch (t) {
        case npy_dtype::float16: return "<f2";
        case npy_dtype::float32: return "<f4";
        case npy_dtype::float64: return "<f8";
        case npy_dtype::int32: return "<i4";
        case npy_dtype::int64: return "<i8";
    }
    return "?";
}
inline std::size_t dtype_size(npy_dtype t) noexcept {
    switch (t) {
        case npy_dtype::float16: return 2;
        case npy_dtype::float32:
        case npy_dtype::int32: return 4;
        case npy_dtype::float64:
        case npy_dtype::int64: return 8;
    }
    return 0;
}

// The npy_dtype a C++ element type is stored as.
template <class T>
struct npy_dtype_of;
template <>
struct npy_dtype_of<half> {
    static constexpr npy_dtype value = npy_dtype::float16;
};
template <>
struct npy_dtype_of<float> {
    static constexpr npy_dtype value = npy_dtype::float32;
};
template <>
struct npy_dtype_of<double> {
    static constexpr npy_dtype value = npy_dtype::float64;
};
template <>
struct npy_dtype_of<std::int32_t> {
    static constexpr npy_dtype value = npy_dtype::int32;
};
template <>
struct npy_dtype_of<std::int64_t> {
    static constexpr npy_dtype value = npy_dtype::int64;
};

// "(100, 4, 16)": shapes in messages look like numpy's.
inline std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    if (shape.size() == 1) s += ",";
    return s + ")";
}

namespace detail {
// Largest element count accepted in any shape product: 2^62 (bytes are checked separately).
inline constexpr std::uint64_t max_npy_elements = std::uint64_t(1) << 62;
// Largest header accepted on read: numpy writes a few hundred bytes; 1 MiB leaves room for huge ranks.
inline constexpr std::uint64_t max_npy_header = std::uint64_t(1) << 20;

// a·b, or false when it exceeds `limit` (no overflow ever happens).
inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t limit, std::uint64_t& result) noexcept {
    if (a != 0 && b > limit / a) return false;
    result = a * b;
    return result <= limit;
}

// Element count of a shape; throws npy_error on negative dims or a product above max_npy_elements.
inline std::uint64_t element_count(const std::vector<std::int64_t>& shape, const std::string& file) {
    std::uint64_t count = 1;
    for (std::int64_t d : shape) {
        if (d < 0) throw npy_error(file, "shape " + shape_string(shape) + " has a negative dimension");
        if (!checked_mul(count, static_cast<std::uint64_t>(d), max_npy_elements, count))
            throw npy_error(file, "shape " + shape_string(shape) + " has an absurd element count (overflows 2^62)");
    }
    return count;
}

inline bool host_is_little_endian() noexcept {
    const std::uint16_t one = 1;
    unsigned char first;
    std::memcpy(&first, &one, 1);
    return first == 1;
}

inline void byteswap_elements(unsigned char* data, std::size_t count, std::size_t itemsize) noexcept {
    for (std::size_t i = 0; i < count; ++i) std::reverse(data + i * itemsize, data + (i + 1) * itemsize);
}

// Strict parser of the header dict, a Python literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (100, 4, 16), }
// Exactly the three keys, each once; strings in single or double quotes (no escapes); a tuple of
// non-negative integers; True/False. Anything else is "malformed header".
class header_parser {
public:
    header_parser(const std::string& text, const std::string& file) : s_(text), file_(file) {}

    struct result {
        std::string descr;
        bool fortran_order = false;
        std::vector<std::int64_t> shape;
    };

    result parse() {
        result r;
        bool have_descr = false, have_order = false, have_shape = false;
        skip_space();
        expect('{');
        for (;;) {
            skip_space();
            if (peek() == '}') {
                ++pos_;
                break;
            }
            const std::string key = parse_string();
            skip_space();
            expect(':');
            skip_space();
            if (key == "descr") {
                if (have_descr) fail("duplicate key 'descr'");
                have_descr = true;
                if (peek() == '[')
                    throw npy_error(file_, "unsupported dtype: structured (record) dtypes are not supported");
                if (peek() != '\'' && peek() != '"') fail("'descr' is not a string");
                r.descr = parse_string();
            } else if (key == "fortran_order") {
                if (have_order) fail("duplicate key 'fortran_order'");
                have_order = true;
                r.fortran_order = parse_bool();
            } else if (key == "shape") {
                if (have_shape) fail("duplicate key 'shape'");
                have_shape = true;
                r.shape = parse_shape();
            } else {
                fail("unexpected key '" + key + "' (a .npy header has exactly 'descr', 'fortran_order', 'shape')");
            }
            skip_space();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            if (peek() == '}') {
                ++pos_;
                break;
            }
            fail("expected ',' or '}' after the value of '" + key + "'");
        }
        skip_space();
        if (pos_ != s_.size()) fail("unexpected characters after the closing '}'");
        if (!have_descr) fail("missing key 'descr'");
        if (!have_order) fail("missing key 'fortran_order'");
        if (!have_shape) fail("missing key 'shape'");
        return r;
    }

private:
    [[noreturn]] void fail(const std::string& why) const {
        throw npy_error(file_, "malformed header dict: " + why + " (at offset " + std::to_string(pos_) + " of the header)");
    }
    char peek() const noexcept { return pos_ < s_.size() ? s_[pos_] : '\0'; }
    void skip_space() noexcept {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
    }
    void expect(char c) {
        if (peek() != c || pos_ >= s_.size()) fail(std::string("expected '") + c + "'");
        ++pos_;
    }
    std::string parse_string() {
        const char quote = peek();
        if (quote != '\'' && quote != '"') fail("expected a quoted string");
        ++pos_;
        const std::size_t start = pos_;
        while (pos_ < s_.size() && s_[pos_] != quote) {
            if (s_[pos_] == '\\' || s_[pos_] == '\n') fail("escape or newline inside a string");
            ++pos_;
        }
        if (pos_ >= s_.size()) fail("unterminated string");
        std::string out = s_.substr(start, pos_ - start);
        ++pos_;
        return out;
    }
    bool parse_bool() {
        if (s_.compare(pos_, 4, "True") == 0) {
            pos_ += 4;
            return true;
        }
        if (s_.compare(pos_, 5, "False") == 0) {
            pos_ += 5;
            return false;
        }
        fail("'fortran_order' must be True or False");
    }
    std::int64_t parse_dim() {
        if (peek() == '-') throw npy_error(file_, "bad shape: negative dimension in header");
        if (peek() < '0' || peek() > '9') fail("expected a non-negative integer in 'shape'");
        std::uint64_t v = 0;
        while (peek() >= '0' && peek() <= '9') {
            const auto digit = static_cast<std::uint64_t>(peek() - '0');
            if (v > (max_npy_elements - digit) / 10)
                throw npy_error(file_, "bad shape: dimension too large (above 2^62)");
            v = v * 10 + digit;
            ++pos_;
        }
        if (peek() == 'L') ++pos_;  // Python 2 long suffix, written by old numpy
        return static_cast<std::int64_t>(v);
    }
    std::vector<std::int64_t> parse_shape() {
        if (peek() != '(' && peek() != '[') fail("'shape' is not a tuple");
        const char close = peek() == '(' ? ')' : ']';
        ++pos_;
        std::vector<std::int64_t> shape;
        for (;;) {
            skip_space();
            if (peek() == close) {
                ++pos_;
                break;
            }
            if (shape.size() >= 64) fail("'shape' has more than 64 dimensions");
            shape.push_back(parse_dim());
            skip_space();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            if (peek() == close) {
                ++pos_;
                break;
            }
            fail("expected ',' or the end of 'shape'");
        }
        return shape;
    }

    const std::string& s_;
    const std::string& file_;
    std::size_t pos_ = 0;
};

// descr -> (dtype, needs byte swap). Throws "unsupported dtype '<descr>'".
inline std::pair<npy_dtype, bool> parse_descr(const std::string& descr, const std::string& file) {
    const auto unsupported = [&]() {
        return npy_error(file, "unsupported dtype '" + descr +
                                   "' (supported: float16 '<f2', float32 '<f4', float64 '<f8', int32 '<i4', "
                                   "int64 '<i8', and their big-endian '>' forms)");
    };
    if (descr.size() != 3) throw unsupported();
    const char order = descr[0];
    const std::string kind = descr.substr(1);
    npy_dtype t;
    if (kind == "f2") t = npy_dtype::float16;
    else if (kind == "f4") t = npy_dtype::float32;
    else if (kind == "f8") t = npy_dtype::float64;
    else if (kind == "i4") t = npy_dtype::int32;
    else if (kind == "i8") t = npy_dtype::int64;
    else throw unsupported();
    bool file_little;
    if (order == '<') file_little = true;
    else if (order == '>') file_little = false;
    else if (order == '=') file_little = host_is_little_endian();
    else throw unsupported();
    return {t, file_little != host_is_little_endian()};
}

inline std::string errno_text(int err) { return std::generic_category().message(err); }

// Closes a FILE* on scope exit.
struct file_closer {
    std::FILE* f = nullptr;
    ~file_closer() {
        if (f) std::fclose(f);
    }
};
}  // namespace detail

// An n-dimensional array in C order and host byte order.
class npy_array {
public:
    using storage = std::variant<std::vector<half>, std::vector<float>, std::vector<double>, std::vector<std::int32_t>,
                                 std::vector<std::int64_t>>;

    npy_array() : shape_{0}, data_(std::vector<float>{}) {}

    // From a shape and typed storage; throws npy_error if the element counts differ.
    npy_array(std::vector<std::int64_t> shape, storage values) : shape_(std::move(shape)), data_(std::move(values)) {
        const std::uint64_t n = detail::element_count(shape_, "<memory>");
        if (n != size())
            throw npy_error("<memory>", "shape " + shape_string(shape_) + " needs " + std::to_string(n) +
                                            " elements but " + std::to_string(size()) + " were given");
    }

    // Takes ownership of `values` (C order); throws npy_error if the shape's element count differs.
    template <class T>
    npy_array(std::vector<std::int64_t> shape, std::vector<T> values)
        : npy_array(std::move(shape), storage(std::move(values))) {}

    npy_dtype dtype() const noexcept { return static_cast<npy_dtype>(data_.index()); }
    const std::vector<std::int64_t>& shape() const noexcept { return shape_; }
    std::size_t ndim() const noexcept { return shape_.size(); }
    // Number of elements (product of the shape; 1 for a 0-d array).
    std::size_t size() const noexcept {
        return std::visit([](const auto& v) { return v.size(); }, data_);
    }
    std::size_t itemsize() const noexcept { return dtype_size(dtype()); }
    std::size_t nbytes() const noexcept { return size() * itemsize(); }
    const void* data() const noexcept {
        return std::visit([](const auto& v) { return static_cast<const void*>(v.data()); }, data_);
    }

    template <class T>
    bool holds() const noexcept {
        return std::holds_alternative<std::vector<T>>(data_);
    }
    // The values without conversion; throws npy_error if the dtype is not T's.
    template <class T>
    const std::vector<T>& values() const {
        if (!holds<T>()) throw wrong_type(dtype_name(npy_dtype_of<T>::value));
        return std::get<std::vector<T>>(data_);
    }
    template <class T>
    std::vector<T>& values() {
        if (!holds<T>()) throw wrong_type(dtype_name(npy_dtype_of<T>::value));
        return std::get<std::vector<T>>(data_);
    }

    // Converting copies. Integers convert to floating point (int64 beyond 2^53 rounds).
    std::vector<float> as_float() const { return convert<float>(); }
    std::vector<double> as_double() const { return convert<double>(); }
    // Integers only (float data throws npy_error: no silent truncation).
    std::vector<std::int64_t> as_int64() const {
        if (holds<std::int64_t>()) return std::get<std::vector<std::int64_t>>(data_);
        if (holds<std::int32_t>()) {
            const auto& v = std::get<std::vector<std::int32_t>>(data_);
            return std::vector<std::int64_t>(v.begin(), v.end());
        }
        throw wrong_type("an integer type");
    }

private:
    npy_error wrong_type(const std::string& wanted) const {
        return npy_error("<memory>", std::string("array has dtype ") + dtype_name(dtype()) + ", not " + wanted);
    }
    template <class U>
    std::vector<U> convert() const {
        return std::visit(
            [](const auto& v) {
                using E = typename std::decay_t<decltype(v)>::value_type;
                std::vector<U> out(v.size());
                for (std::size_t i = 0; i < v.size(); ++i) {
                    if constexpr (std::is_same_v<E, half>) out[i] = static_cast<U>(static_cast<float>(v[i]));
                    else out[i] = static_cast<U>(v[i]);
                }
                return out;
            },
            data_);
    }

    std::vector<std::int64_t> shape_;
    storage data_;  // variant index == npy_dtype value
};

namespace detail {
// The bytes of a .npy image, read front to back: a FILE* ...
struct npy_file_source {
    std::FILE* f;
    bool read(void* dst, std::size_t n) { return std::fread(dst, 1, n, f) == n; }
};
// ... or a buffer in memory.
struct npy_memory_source {
    const unsigned char* data;
    std::size_t size, pos = 0;
    bool read(void* dst, std::size_t n) {
        if (n > size - pos) return false;
        std::memcpy(dst, data + pos, n);
        pos += n;
        return true;
    }
};

// The reader proper: `file_size` bytes from `source`; `path` names them in messages.
template <class Source>
npy_array read_npy(Source& source, std::uint64_t file_size, const std::string& path);
}  // namespace detail

// Read a .npy file. Throws npy_error (naming the file and the problem) on any failure.
inline npy_array load_npy(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (st.type() == fs::file_type::not_found) throw npy_error(path, "no such file");
    if (ec) throw npy_error(path, "cannot access: " + ec.message());
    if (fs::is_directory(st)) throw npy_error(path, "is a directory, not a .npy file");

    if (!fs::is_regular_file(st)) throw npy_error(path, "not a regular file");
    const std::uintmax_t size_or_error = fs::file_size(path, ec);
    if (ec) throw npy_error(path, "cannot determine the file size: " + ec.message());
    const auto file_size = static_cast<std::uint64_t>(size_or_error);
    detail::file_closer fc{std::fopen(path.c_str(), "rb")};
    if (!fc.f) throw npy_error(path, "cannot open: " + detail::errno_text(errno));
    detail::npy_file_source source{fc.f};
    return detail::read_npy(source, file_size, path);
}

// Read a .npy image of `size` bytes at `data` (what load_npy reads from a file); `name` stands for
// the file name in messages. Throws npy_error exactly as load_npy does.
inline npy_array load_npy_bytes(const void* data, std::size_t size, const std::string& name = "<memory>") {
    detail::npy_memory_source source{static_cast<const unsigned char*>(data), size};
    return detail::read_npy(source, size, name);
}

template <class Source>
npy_array detail::read_npy(Source& source, std::uint64_t file_size, const std::string& path) {
    if (file_size == 0) throw npy_error(path, "empty file (0 bytes), not a .npy file");

    const auto read_exact = [&](void* dst, std::size_t n, const char* what) {
        if (n > 0 && !source.read(dst, n)) throw npy_error(path, std::string("read error in ") + what);
    };

    // Preamble: 6-byte magic, 2 version bytes, then a 2- (v1) or 4-byte (v2, v3) little-endian length.
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    unsigned char pre[12] = {};
    const std::size_t magic_have = static_cast<std::size_t>(std::min<std::uint64_t>(file_size, 6));
    read_exact(pre, magic_have, "magic");
    if (magic_have < 6 || std::memcmp(pre, magic, 6) != 0) {
        if (std::memcmp(pre, magic, magic_have) == 0)
            throw npy_error(path, "truncated header (" + std::to_string(file_size) + " bytes, shorter than the magic)");
        throw npy_error(path, "bad magic: not a .npy file (expected \\x93NUMPY)");
    }
    if (file_size < 10) throw npy_error(path, "truncated header (" + std::to_string(file_size) + " bytes)");
    read_exact(pre + 6, 2, "version");
    const int major = pre[6], minor = pre[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0)
        throw npy_error(path, "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                                  " (supported: 1.0, 2.0, 3.0)");
    const std::size_t len_bytes = major == 1 ? 2 : 4;
    const std::uint64_t preamble = 8 + len_bytes;
    if (file_size < preamble) throw npy_error(path, "truncated header (" + std::to_string(file_size) + " bytes)");
    read_exact(pre + 8, len_bytes, "header length");
    std::uint64_t header_len = pre[8] | (std::uint64_t(pre[9]) << 8);
    if (major != 1) header_len |= (std::uint64_t(pre[10]) << 16) | (std::uint64_t(pre[11]) << 24);
    if (header_len > file_size - preamble)
        throw npy_error(path, "truncated header: it claims " + std::to_string(header_len) + " bytes but the file has " +
                                  std::to_string(file_size - preamble) + " after the preamble");
    if (header_len > detail::max_npy_header)
        throw npy_error(path, "header length " + std::to_string(header_len) + " is absurd (limit 1 MiB)");
    std::string header(static_cast<std::size_t>(header_len), '\0');
    read_exact(header.data(), header.size(), "header");
    for (char c : header)
        if (c == '\0') throw npy_error(path, "malformed header dict: contains a NUL byte");

    const detail::header_parser::result h = detail::header_parser(header, path).parse();
    const std::pair<npy_dtype, bool> parsed = detail::parse_descr(h.descr, path);
    const npy_dtype type = parsed.first;
    const bool swap = parsed.second;  // file byte order differs from the host's
    const std::uint64_t count = detail::element_count(h.shape, path);
    std::uint64_t nbytes = 0;
    if (!detail::checked_mul(count, dtype_size(type), std::numeric_limits<std::uint64_t>::max() / 2, nbytes) ||
        nbytes > static_cast<std::uint64_t>(std::numeric_limits<std::ptrdiff_t>::max()))
        throw npy_error(path, "shape " + shape_string(h.shape) + " times itemsize " + std::to_string(dtype_size(type)) +
                                  " overflows 64-bit byte counts");
    const std::uint64_t available = file_size - preamble - header_len;
    if (nbytes > available)
        throw npy_error(path, "truncated data: header says shape " + shape_string(h.shape) + " " + dtype_name(type) +
                                  " = " + std::to_string(nbytes) + " bytes, but the file has only " +
                                  std::to_string(available) + " bytes of data");
    if (nbytes < available)
        throw npy_error(path, "trailing bytes: header says shape " + shape_string(h.shape) + " " + dtype_name(type) +
                                  " = " + std::to_string(nbytes) + " bytes, but the file has " +
                                  std::to_string(available) + " bytes of data");

    npy_array::storage values;
    const auto n = static_cast<std::size_t>(count);
    const auto fill = [&](auto tag) {
        using E = decltype(tag);
        std::vector<E> v(n);
        read_exact(v.data(), n * sizeof(E), "data");
        auto* bytes = reinterpret_cast<unsigned char*>(v.data());
        if (swap) detail::byteswap_elements(bytes, n, sizeof(E));
        if (h.fortran_order && h.shape.size() > 1) {
            // Fortran order: the first index is fastest. Walk C order with an odometer, tracking the
            // Fortran offset incrementally.
            const std::size_t rank = h.shape.size();
            std::vector<std::uint64_t> fstride(rank), index(rank, 0);
            std::uint64_t s = 1;
            for (std::size_t i = 0; i < rank; ++i) {
                fstride[i] = s;
                s *= static_cast<std::uint64_t>(h.shape[i]);
            }
            std::vector<E> c(n);
            std::uint64_t f = 0;
            for (std::size_t lin = 0; lin < n; ++lin) {
                c[lin] = v[static_cast<std::size_t>(f)];
                for (std::size_t d = rank; d-- > 0;) {  // increment the C-order multi-index
                    ++index[d];
                    f += fstride[d];
                    if (index[d] < static_cast<std::uint64_t>(h.shape[d])) break;
                    f -= fstride[d] * index[d];
                    index[d] = 0;
                }
            }
            v.swap(c);
        }
        values = std::move(v);
    };
    switch (type) {
        case npy_dtype::float16: fill(half{}); break;
        case npy_dtype::float32: fill(float{}); break;
        case npy_dtype::float64: fill(double{}); break;
        case npy_dtype::int32: fill(std::int32_t{}); break;
        case npy_dtype::int64: fill(std::int64_t{}); break;
    }
    return npy_array(h.shape, std::move(values));
}

// The full byte image of a .npy file (v1, or v2 for a header above 64 KiB) holding `count` elements of
// `type` in host order at `data`, C order, shape `shape`.
inline std::string npy_file_bytes(npy_dtype type, const std::vector<std::int64_t>& shape, const void* data,
                                  std::size_t count) {
    if (detail::element_count(shape, "<memory>") != count)
        throw npy_error("<memory>", "shape " + shape_string(shape) + " does not hold " + std::to_string(count) + " elements");
    std::string dict = std::string("{'descr': '") + dtype_descr(type) + "', 'fortran_order': False, 'shape': " +
                       shape_string(shape) + ", }";
    // Pad with spaces and a final newline so that the data starts at a multiple of 64 bytes.
    int version = 1;
    std::size_t preamble = 10;
    std::size_t total = preamble + dict.size() + 1;
    if (total - preamble > 65535 - 64) {
        version = 2;
        preamble = 12;
        total = preamble + dict.size() + 1;
    }
    const std::size_t padded = (total + 63) / 64 * 64;
    dict.append(padded - total, ' ');
    dict.push_back('\n');
    const std::size_t item = dtype_size(type);
    std::string out;
    out.reserve(padded + count * item);
    out.append("\x93NUMPY", 6);
    out.push_back(static_cast<char>(version));
    out.push_back('\0');
    const std::size_t hl = dict.size();
    out.push_back(static_cast<char>(hl & 0xff));
    out.push_back(static_cast<char>((hl >> 8) & 0xff));
    if (version == 2) {
        out.push_back(static_cast<char>((hl >> 16) & 0xff));
        out.push_back(static_cast<char>((hl >> 24) & 0xff));
    }
    out += dict;
    const std::size_t data_start = out.size();
    out.append(static_cast<const char*>(data), count * item);
    if (!detail::host_is_little_endian())
        detail::byteswap_elements(reinterpret_cast<unsigned char*>(&out[data_start]), count, item);
    return out;
}

namespace detail {
// The bytes of a .npy file written atomically (io::staged_file); its write_error reported as npy_error.
inline void write_npy_file(const std::string& path, const std::string& bytes) {
    try {
        staged_file(path, bytes).commit();
    } catch (const write_error& e) {
        throw npy_error(e.file(), e.problem());
    }
}
}  // namespace detail

// Write `count` = product(shape) values of T (half, float, double, int32_t, int64_t) as a .npy file,
// atomically. Throws npy_error.
template <class T>
void save_npy(const std::string& path, const T* data, const std::vector<std::int64_t>& shape) {
    const std::uint64_t n = detail::element_count(shape, path);
    detail::write_npy_file(path, npy_file_bytes(npy_dtype_of<T>::value, shape, data, static_cast<std::size_t>(n)));
}
template <class T>
void save_npy(const std::string& path, const std::vector<T>& values, const std::vector<std::int64_t>& shape) {
    if (detail::element_count(shape, path) != values.size())
        throw npy_error(path, "shape " + shape_string(shape) + " does not hold " + std::to_string(values.size()) +
                                  " values");
    save_npy(path, values.data(), shape);
}
inline void save_npy(const std::string& path, const npy_array& a) {
    detail::write_npy_file(path, npy_file_bytes(a.dtype(), a.shape(), a.data(), a.size()));
}

}  // namespace longnet::io
