// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the .safetensors reader (longnet/io/safetensors.hpp) on arbitrary bytes: the 8-byte
// header size, the header JSON, dtypes, shapes, data_offsets, overlaps, sizes past the end of the file.
//
// Every input must either throw safetensors_error or give a file that keeps the header's promises,
// checked against an independent reading of the bytes (plain nlohmann::json, no limits): the same
// tensor names, dtypes, shapes and offsets as the JSON; each tensor's [begin, end) inside the data
// section and exactly numel x itemsize bytes; no two non-empty tensors overlap; rank and count within
// the stated limits; every element read back (read<float>, read<double>) is the value of the file's
// bytes; the metadata is the JSON's.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <longnet/io/safetensors.hpp>

#include "fuzz_check.hpp"

namespace {

using longnet::io::safetensors_dtype;
using longnet::io::safetensors_file;
using longnet::io::safetensors_tensor;

// The element's value from the file's bytes, in double (exact for every supported dtype).
double file_value(safetensors_dtype t, const std::uint8_t* p) {
    switch (t) {
        case safetensors_dtype::f64: {
            double v;
            std::memcpy(&v, p, 8);
            return v;
        }
        case safetensors_dtype::f32: {
            float v;
            std::memcpy(&v, p, 4);
            return v;
        }
        case safetensors_dtype::bf16: {
            const std::uint32_t bits = std::uint32_t(p[0] | (p[1] << 8)) << 16;  // bf16 = top half of a float
            float v;
            std::memcpy(&v, &bits, 4);
            return v;
        }
        case safetensors_dtype::f16: {
            const unsigned h = p[0] | (p[1] << 8);
            const unsigned sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
            double v;
            if (exponent == 0) v = std::ldexp(mantissa, -24);
            else if (exponent == 31) v = mantissa ? NAN : INFINITY;
            else v = std::ldexp(mantissa + 1024, static_cast<int>(exponent) - 25);
            return sign ? -v : v;
        }
    }
    return 0;
}

bool same_value(double want, double got) { return (std::isnan(want) && std::isnan(got)) || want == got; }

void check_accepted(const std::uint8_t* data, std::size_t size, const safetensors_file& f) {
    FUZZ_CHECK(size >= 8, "accepted a file shorter than 8 bytes");
    std::uint64_t header_size;
    std::memcpy(&header_size, data, 8);
    FUZZ_CHECK(header_size <= safetensors_file::max_header_size && header_size <= size - 8, "header size out of range");
    const std::uint64_t data_size = size - 8 - header_size;
    const std::uint8_t* section = data + 8 + header_size;
    FUZZ_CHECK(f.file_size() == size, "file_size");

    // The header through a plain parser: duplicates keep the last value there, so compare counts too.
    const char* text = reinterpret_cast<const char*>(data + 8);
    const nlohmann::json header = nlohmann::json::parse(text, text + header_size);  // must not throw: accepted
    FUZZ_CHECK(header.is_object(), "header is not an object");
    std::size_t entries = 0;
    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__") {
            FUZZ_CHECK(it.value().size() == f.metadata().size(), "metadata count");
            for (auto m = it.value().begin(); m != it.value().end(); ++m)
                FUZZ_CHECK(f.metadata().at(m.key()) == m.value().get<std::string>(), "metadata value of " + m.key());
            continue;
        }
        ++entries;
        FUZZ_CHECK(f.contains(it.key()), "tensor '" + it.key() + "' of the header is missing");
        const safetensors_tensor& t = f.tensor(it.key());
        const nlohmann::json& e = it.value();
        FUZZ_CHECK(e.at("dtype").get<std::string>() == longnet::io::to_string(t.dtype), "dtype of " + t.name);
        FUZZ_CHECK(e.at("shape").size() == t.shape.size(), "rank of " + t.name);
        for (std::size_t d = 0; d < t.shape.size(); ++d)
            FUZZ_CHECK(e.at("shape")[d].get<std::int64_t>() == t.shape[d] && t.shape[d] >= 0, "shape of " + t.name);
        FUZZ_CHECK(e.at("data_offsets")[0].get<std::uint64_t>() == t.begin &&
                       e.at("data_offsets")[1].get<std::uint64_t>() == t.end,
                   "data_offsets of " + t.name);
    }
    FUZZ_CHECK(entries == f.size(), "tensor count " + std::to_string(f.size()) + " != header entries " + std::to_string(entries));
    FUZZ_CHECK(f.size() <= safetensors_file::max_tensors, "tensor count above the limit");

    std::vector<const safetensors_tensor*> order;
    for (const auto& kv : f.tensors()) {
        const safetensors_tensor& t = kv.second;
        FUZZ_CHECK(t.name == kv.first, "name");
        FUZZ_CHECK(t.shape.size() <= safetensors_file::max_rank, "rank above the limit");
        FUZZ_CHECK(t.begin <= t.end && t.end <= data_size,
                   t.name + ": [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + ") outside the data section of " +
                       std::to_string(data_size) + " bytes");
        const std::size_t item = longnet::io::item_size(t.dtype);
        const auto numel = static_cast<std::uint64_t>(t.numel());
        FUZZ_CHECK(numel * item == t.end - t.begin, t.name + ": numel x itemsize != end - begin");
        if (t.end > t.begin) order.push_back(&t);
        if (numel == 0) continue;
        FUZZ_CHECK(std::memcmp(t.data, section + t.begin, t.end - t.begin) == 0, t.name + ": data pointer is not at begin");
        const std::vector<double> as_double = f.read<double>(t.name);
        const std::vector<float> as_float = f.read<float>(t.name);
        FUZZ_CHECK(as_double.size() == numel && as_float.size() == numel, t.name + ": read size");
        for (std::uint64_t i = 0; i < numel; ++i) {
            const double want = file_value(t.dtype, section + t.begin + i * item);
            FUZZ_CHECK(same_value(want, as_double[i]), t.name + ": read<double> element " + std::to_string(i));
            FUZZ_CHECK(same_value(static_cast<float>(want), as_float[i]), t.name + ": read<float> element " + std::to_string(i));
        }
    }
    std::sort(order.begin(), order.end(), [](const safetensors_tensor* a, const safetensors_tensor* b) { return a->begin < b->begin; });
    for (std::size_t i = 1; i < order.size(); ++i)
        FUZZ_CHECK(order[i]->begin >= order[i - 1]->end, "tensors '" + order[i - 1]->name + "' and '" + order[i]->name + "' overlap");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    safetensors_file f;
    try {
        f = safetensors_file::from_bytes(data, size, "<fuzz>");
    } catch (const longnet::io::safetensors_error& e) {
        FUZZ_CHECK(e.file() == "<fuzz>", std::string("message does not name the file: ") + e.what());
        return 0;
    }
    check_accepted(data, size, f);  // outside the try: an accepted file's reads must not throw
    return 0;
}
