// SPDX-License-Identifier: Apache-2.0
#pragma once
// Reading .safetensors files (the Hugging Face tensor container), memory-mapped and validated.
//
// Layout: u64 little-endian header size n; n bytes of UTF-8 JSON
//   {name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
// then the raw little-endian row-major data; offsets are relative to the first byte after the header.
//
// The file is mapped read-only (POSIX mmap) and unmapped when the safetensors_file is destroyed; nothing
// is copied until a tensor is read (read<T>() converts to T). safetensors_file::from_bytes reads an image
// already in memory (a copy is kept). Every malformed input throws longnet::io::safetensors_error naming
// the file, the tensor (if any) and the problem; the reader never reads outside the mapping. Supported
// dtypes: F32, F64, BF16, F16 (others are refused by name).
//
// Limits (each checked before anything of that size is allocated; above them: safetensors_error):
//   header          at most max_header_size = 100 MiB of JSON (the reference reader's limit is 100 MB);
//                   strict JSON (longnet/io/strict_json.hpp): one object, no duplicate keys (tensor names
//                   or fields), nesting at most 64 deep. Parsing holds the JSON tree in memory: a few
//                   times the header's size at worst.
//   tensor count    at most max_tensors = 2^20 entries
//   rank            at most max_rank = 64 dimensions
//   byte size       every tensor's [begin, end) lies inside the data section of the file; element
//                   counts and byte sizes are checked for 64-bit overflow. A tensor read allocates at
//                   most its own bytes' worth of elements, so never more than the file holds.
// Also refused: data_offsets whose span differs from shape x dtype size, overlapping tensors. Gaps
// between tensors and bytes after the last one are allowed (the data section is only addressed
// through data_offsets).
//
// Needs nlohmann/json (header only): link nlohmann_json::nlohmann_json to the target including this.
// Assumes a little-endian host (checked at run time).

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "longnet/io/strict_json.hpp"
#include "longnet/numeric.hpp"

namespace longnet::io {

// A malformed or unreadable .safetensors file, a missing/extra/mis-shaped tensor at model-load time.
class safetensors_error : public std::runtime_error {
public:
    safetensors_error(std::string file, std::string tensor, std::string problem)
        : std::runtime_error(compose(file, tensor, problem)),
          file_(std::move(file)),
          tensor_(std::move(tensor)),
          problem_(std::move(problem)) {}
    const std::string& file() const noexcept { return file_; }
    const std::string& tensor() const noexcept { return tensor_; }  // empty when the whole file is at fault
    const std::string& problem() const noexcept { return problem_; }

private:
    static std::string compose(const std::string& file, const std::string& tensor, const std::string& problem) {
        std::string s = "safetensors: " + file;
        if (!tensor.empty()) s += ": tensor '" + tensor + "'";
        return s + ": " + problem;
    }
    std::string file_, tensor_, problem_;
};

enum class safetensors_dtype { f64, f32, bf16, f16 };

inline const char* to_string(safetensors_dtype t) noexcept {
    switch (t) {
        case safetensors_dtype::f64: return "F64";
        case safetensors_dtype::f32: return "F32";
        case safetensors_dtype::bf16: return "BF16";
        case safetensors_dtype::f16: return "F16";
    }
    return "?";
}
inline std::size_t item_size(safetensors_dtype t) noexcept {
    switch (t) {
        case safetensors_dtype::f64: return 8;
        case safetensors_dtype::f32: return 4;
        default: return 2;
    }
}

// One tensor entry of the header, with a pointer into the mapping.
struct safetensors_tensor {
    std::string name;
    safetensors_dtype dtype = safetensors_dtype::f32;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0, end = 0;  // byte offsets relative to the data section
    const unsigned char* data = nullptr;

    std::int64_t numel() const noexcept {
        std::int64_t n = 1;
        for (auto e : shape) n *= e;  // validated at open: no overflow
        return n;
    }
    std::string shape_string() const {
        std::string s = "[";
        for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
        return s + "]";
    }
};

namespace safetensors_detail {

// RAII read-only mapping of a whole file.
class mapped_file {
public:
    mapped_file() = default;
    explicit mapped_file(const std::string& path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw safetensors_error(path, "", std::string("cannot open: ") + std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            const int e = errno;
            ::close(fd);
            throw safetensors_error(path, "", std::string("cannot stat: ") + std::strerror(e));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd);
            throw safetensors_error(path, "", "not a regular file");
        }
        size_ = static_cast<std::size_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                const int e = errno;
                ::close(fd);
                throw safetensors_error(path, "", std::string("cannot mmap: ") + std::strerror(e));
            }
            data_ = static_cast<const unsigned char*>(p);
        }
        ::close(fd);  // the mapping stays valid
    }
    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;
    mapped_file(mapped_file&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    mapped_file& operator=(mapped_file&& o) noexcept {
        if (this != &o) {
            unmap();
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    ~mapped_file() { unmap(); }
    const unsigned char* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

private:
    void unmap() noexcept {
        if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
        data_ = nullptr;
    }
    const unsigned char* data_ = nullptr;
    std::size_t size_ = 0;
};

inline bool host_is_little_endian() noexcept {
    const std::uint16_t one = 1;
    unsigned char b;
    std::memcpy(&b, &one, 1);
    return b == 1;
}

template <class T>
inline T load_le(const unsigned char* p) noexcept {
    T v;
    std::memcpy(&v, p, sizeof v);  // unaligned-safe
    return v;
}

// Element i of a tensor as float/double (the widest exact intermediate for the source dtype).
template <class A>
inline A element(const safetensors_tensor& t, std::int64_t i) noexcept {
    const unsigned char* p = t.data + static_cast<std::size_t>(i) * item_size(t.dtype);
    switch (t.dtype) {
        case safetensors_dtype::f64: return static_cast<A>(load_le<double>(p));
        case safetensors_dtype::f32: return static_cast<A>(load_le<float>(p));
        case safetensors_dtype::bf16: return static_cast<A>(bfloat16::to_float(load_le<std::uint16_t>(p)));
        case safetensors_dtype::f16: return static_cast<A>(half::to_float(load_le<std::uint16_t>(p)));
    }
    return A(0);
}

}  // namespace safetensors_detail

class safetensors_file {
public:
    // Hard limit of the header size (the reference implementation uses 100 MB too).
    static constexpr std::uint64_t max_header_size = 100u * 1024u * 1024u;
    // Most tensors one header may list, and most dimensions of one tensor.
    static constexpr std::size_t max_tensors = std::size_t(1) << 20;
    static constexpr std::size_t max_rank = 64;

    safetensors_file() = default;
    explicit safetensors_file(std::string path) : path_(std::move(path)) {
        if (!safetensors_detail::host_is_little_endian())
            throw safetensors_error(path_, "", "this reader needs a little-endian host");
        map_ = safetensors_detail::mapped_file(path_);
        base_ = map_.data();
        size_ = map_.size();
        parse();
    }

    // A .safetensors image in memory (copied); `name` stands for the file name in messages.
    static safetensors_file from_bytes(const void* data, std::size_t size, std::string name = "<memory>") {
        if (!safetensors_detail::host_is_little_endian())
            throw safetensors_error(name, "", "this reader needs a little-endian host");
        safetensors_file f;
        f.path_ = std::move(name);
        const auto* bytes = static_cast<const unsigned char*>(data);
        if (size > 0) f.owned_.assign(bytes, bytes + size);
        f.base_ = f.owned_.data();
        f.size_ = f.owned_.size();
        f.parse();
        return f;
    }

    const std::string& path() const noexcept { return path_; }
    std::size_t file_size() const noexcept { return size_; }
    bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
    std::size_t size() const noexcept { return tensors_.size(); }
    const std::map<std::string, safetensors_tensor>& tensors() const noexcept { return tensors_; }
    const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
    std::vector<std::string> names() const {
        std::vector<std::string> n;
        for (const auto& kv : tensors_) n.push_back(kv.first);
        return n;
    }

    const safetensors_tensor& tensor(const std::string& name) const {
        auto it = tensors_.find(name);
        if (it == tensors_.end()) throw safetensors_error(path_, name, "missing tensor");
        return it->second;
    }

    // Throws unless the tensor exists with exactly this shape (the message says expected vs got).
    const safetensors_tensor& expect(const std::string& name, const std::vector<std::int64_t>& shape) const {
        const safetensors_tensor& t = tensor(name);
        if (t.shape != shape) {
            safetensors_tensor want;
            want.shape = shape;
            throw safetensors_error(path_, name, "wrong shape: expected " + want.shape_string() + ", got " +
                                                     t.shape_string());
        }
        return t;
    }

    // Convert the tensor's elements into out[0 .. numel). T: float, double, longnet::bfloat16,
    // longnet::half, or any type constructible from float (e.g. Eigen::bfloat16). BF16 → bfloat16-like
    // targets and same-type reads are exact.
    template <class T>
    void read_into(const std::string& name, T* out, std::int64_t count) const {
        const safetensors_tensor& t = tensor(name);
        if (count != t.numel())
            throw safetensors_error(path_, name, "read of " + std::to_string(count) + " elements but the tensor has " +
                                                     std::to_string(t.numel()));
        for (std::int64_t i = 0; i < count; ++i) {
            if constexpr (std::is_same_v<T, double>) out[i] = safetensors_detail::element<double>(t, i);
            else if constexpr (std::is_same_v<T, float>) out[i] = safetensors_detail::element<float>(t, i);
            else out[i] = T(safetensors_detail::element<float>(t, i));
        }
    }
    template <class T>
    std::vector<T> read(const std::string& name) const {
        const safetensors_tensor& t = tensor(name);
        std::vector<T> v(static_cast<std::size_t>(t.numel()));
        read_into(name, v.data(), t.numel());
        return v;
    }

private:
    [[noreturn]] void fail(const std::string& tensor, const std::string& problem) const {
        throw safetensors_error(path_, tensor, problem);
    }

    static bool parse_dtype(const std::string& s, safetensors_dtype& out) {
        if (s == "F32") out = safetensors_dtype::f32;
        else if (s == "F64") out = safetensors_dtype::f64;
        else if (s == "BF16") out = safetensors_dtype::bf16;
        else if (s == "F16") out = safetensors_dtype::f16;
        else return false;
        return true;
    }

    // A JSON value that must be a non-negative integer fitting in u64.
    std::uint64_t non_negative(const nlohmann::json& j, const std::string& tensor, const char* what) const {
        if (j.is_number_unsigned()) return j.get<std::uint64_t>();
        if (j.is_number_integer()) {
            const auto v = j.get<std::int64_t>();
            if (v < 0) fail(tensor, std::string(what) + " has a negative value " + std::to_string(v));
            return static_cast<std::uint64_t>(v);
        }
        fail(tensor, std::string(what) + " must hold non-negative integers, got " + describe_json(j));
    }

    void parse() {
        const std::size_t file_size = size_;
        if (file_size < 8)
            fail("", "file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header size");
        const auto header_size = safetensors_detail::load_le<std::uint64_t>(base_);
        if (header_size > max_header_size)
            fail("", "header size " + std::to_string(header_size) + " is absurd (limit " +
                         std::to_string(max_header_size) + " bytes)");
        if (header_size > file_size - 8)
            fail("", "header size " + std::to_string(header_size) + " runs past the end of the file (" +
                         std::to_string(file_size) + " bytes)");
        const char* text = reinterpret_cast<const char*>(base_ + 8);
        nlohmann::json header;
        try {
            header = parse_strict_json(text, text + header_size);
        } catch (const strict_json_error& e) {
            fail("", std::string("header is not valid JSON: ") + e.what());
        }
        if (!header.is_object()) fail("", std::string("header must be a JSON object, got ") + header.type_name());
        const std::size_t entries = header.size() - (header.contains("__metadata__") ? 1 : 0);
        if (entries > max_tensors)
            fail("", "header lists " + std::to_string(entries) + " tensors (limit " + std::to_string(max_tensors) + ")");

        const std::uint64_t data_size = file_size - 8 - header_size;
        const unsigned char* data = base_ + 8 + header_size;

        for (auto it = header.begin(); it != header.end(); ++it) {
            const std::string& name = it.key();
            const nlohmann::json& entry = it.value();
            if (name == "__metadata__") {
                if (!entry.is_object()) fail(name, "__metadata__ must be an object of strings");
                for (auto m = entry.begin(); m != entry.end(); ++m) {
                    if (!m.value().is_string()) fail(name, "__metadata__ value of '" + m.key() + "' is not a string");
                    metadata_[m.key()] = m.value().get<std::string>();
                }
                continue;
            }
            if (!entry.is_object()) fail(name, std::string("entry must be an object, got ") + entry.type_name());
            safetensors_tensor t;
            t.name = name;
            // dtype
            auto d = entry.find("dtype");
            if (d == entry.end()) fail(name, "missing field 'dtype'");
            if (!d->is_string()) fail(name, "field 'dtype' must be a string, got " + describe_json(*d));
            if (!parse_dtype(d->get<std::string>(), t.dtype))
                fail(name, "unsupported dtype '" + d->get<std::string>().substr(0, 32) + "' (supported: F32, F64, BF16, F16)");
            // shape
            auto s = entry.find("shape");
            if (s == entry.end()) fail(name, "missing field 'shape'");
            if (!s->is_array()) fail(name, "field 'shape' must be an array, got " + describe_json(*s));
            if (s->size() > max_rank)
                fail(name, "shape has " + std::to_string(s->size()) + " dimensions (limit " + std::to_string(max_rank) + ")");
            std::uint64_t elements = 1;
            for (const auto& e : *s) {
                const std::uint64_t extent = non_negative(e, name, "shape");
                if (extent > static_cast<std::uint64_t>(INT64_MAX) ||
                    __builtin_mul_overflow(elements, extent, &elements) || elements > static_cast<std::uint64_t>(INT64_MAX))
                    fail(name, "shape " + describe_json(*s) + " has more elements than fit in 64 bits");
                t.shape.push_back(static_cast<std::int64_t>(extent));
            }
            std::uint64_t bytes = 0;
            if (__builtin_mul_overflow(elements, static_cast<std::uint64_t>(item_size(t.dtype)), &bytes))
                fail(name, "shape " + describe_json(*s) + " is too large: byte size overflows 64 bits");
            // data_offsets
            auto o = entry.find("data_offsets");
            if (o == entry.end()) fail(name, "missing field 'data_offsets'");
            if (!o->is_array() || o->size() != 2)
                fail(name, "field 'data_offsets' must be an array [begin, end], got " + describe_json(*o));
            t.begin = non_negative((*o)[0], name, "data_offsets");
            t.end = non_negative((*o)[1], name, "data_offsets");
            if (t.end < t.begin)
                fail(name, "data_offsets end " + std::to_string(t.end) + " < begin " + std::to_string(t.begin));
            if (t.end > data_size)
                fail(name, "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                               ") run past the end of the data section (" + std::to_string(data_size) + " bytes)");
            if (t.end - t.begin != bytes)
                fail(name, "data_offsets span " + std::to_string(t.end - t.begin) + " bytes but shape " +
                               t.shape_string() + " of " + to_string(t.dtype) + " needs " + std::to_string(bytes));
            t.data = data + t.begin;
            tensors_.emplace(name, std::move(t));
        }

        // Ordered by offset, the byte ranges may not overlap (empty tensors overlap nothing).
        std::vector<const safetensors_tensor*> order;
        for (const auto& kv : tensors_)
            if (kv.second.end > kv.second.begin) order.push_back(&kv.second);
        std::sort(order.begin(), order.end(), [](const safetensors_tensor* a, const safetensors_tensor* b) {
            return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
        });
        for (std::size_t i = 1; i < order.size(); ++i)
            if (order[i]->begin < order[i - 1]->end)
                fail(order[i]->name, "data_offsets [" + std::to_string(order[i]->begin) + ", " +
                                         std::to_string(order[i]->end) + ") overlap tensor '" + order[i - 1]->name +
                                         "' [" + std::to_string(order[i - 1]->begin) + ", " +
                                         std::to_string(order[i - 1]->end) + ")");
    }

    std::string path_;
    safetensors_detail::mapped_file map_;     // the file, when read from one
    std::vector<unsigned char> owned_;        // the image, when read from memory (from_bytes)
    const unsigned char* base_ = nullptr;     // first byte of the file image (map_ or owned_)
    std::size_t size_ = 0;
    std::map<std::string, safetensors_tensor> tensors_;
    std::map<std::string, std::string> metadata_;
};

}  // namespace longnet::io
