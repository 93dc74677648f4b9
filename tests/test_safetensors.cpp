// SPDX-License-Identifier: Apache-2.0
// longnet::io::safetensors_file: valid files (every dtype, metadata, empty tensors, the decoder fixture)
// and one corrupted file per error class, written to a temporary folder. Each must throw
// safetensors_error naming the file, the tensor where there is one, and the problem.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <longnet/io/safetensors.hpp>

#include "catch.hpp"

namespace {

namespace fs = std::filesystem;
using longnet::io::safetensors_error;
using longnet::io::safetensors_file;

struct temp_folder {
    fs::path path;
    temp_folder() {
        path = fs::temp_directory_path() / ("longnet_test_safetensors_" + std::to_string(::getpid()));
        fs::create_directories(path);
    }
    ~temp_folder() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

const temp_folder& folder() {
    static temp_folder f;
    return f;
}

std::string write_bytes(const std::string& name, const std::string& bytes) {
    const std::string p = (folder().path / name).string();
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
}

std::string u64le(std::uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xffu);
    return s;
}

// A file with this header text (space-padded to a multiple of 8) and data section.
std::string write_file(const std::string& name, std::string header, const std::string& data) {
    while (header.size() % 8) header += ' ';
    return write_bytes(name, u64le(header.size()) + header + data);
}

template <class T>
std::string bytes_of(const std::vector<T>& v) {
    std::string s(v.size() * sizeof(T), '\0');
    std::memcpy(s.data(), v.data(), s.size());
    return s;
}

// The safetensors_error of opening the file ("" if it opened).
struct failure {
    bool thrown = false;
    std::string what, tensor, file;
};
failure open_failure(const std::string& path) {
    failure f;
    try {
        safetensors_file file(path);
    } catch (const safetensors_error& e) {
        f.thrown = true;
        f.what = e.what();
        f.tensor = e.tensor();
        f.file = e.file();
    }
    return f;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A two-tensor header around the entry of tensor "w" (the other, "a", is valid: 2 floats at [0, 8)).
std::string header_with(const std::string& w_entry) {
    return R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "w": )" + w_entry + "}";
}

void check_bad_entry(const std::string& name, const std::string& w_entry, const std::string& problem) {
    const std::string path = write_file(name + ".safetensors", header_with(w_entry), std::string(24, '\0'));
    const failure f = open_failure(path);
    INFO(name << ": " << f.what);
    CHECK(f.thrown);
    CHECK(f.tensor == "w");
    CHECK(f.file == path);
    CHECK(contains(f.what, problem));
}

}  // namespace

TEST_CASE("safetensors: a valid file with every dtype, metadata and an empty tensor", "[safetensors]") {
    const std::vector<float> f32{1.5f, -2.25f, 3.0f, 1e-3f, 7.0f, -0.0f};
    const std::vector<double> f64{0.1, -1e300};
    const std::vector<std::uint16_t> bf16{longnet::bfloat16(1.5f).bits, longnet::bfloat16(-3.0f).bits, 0x3f81};
    const std::vector<std::uint16_t> f16{longnet::half(0.5f).bits, longnet::half(-65504.0f).bits};
    std::string data = bytes_of(f32);  // [0, 24)
    data += bytes_of(f64);             // [24, 40)
    data += bytes_of(bf16);            // [40, 46)
    data += bytes_of(f16);             // [46, 50)
    const std::string header = R"({"__metadata__": {"format": "pt"},
        "m": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "d": {"dtype": "F64", "shape": [2], "data_offsets": [24, 40]},
        "b": {"dtype": "BF16", "shape": [3], "data_offsets": [40, 46]},
        "h": {"dtype": "F16", "shape": [1, 2], "data_offsets": [46, 50]},
        "e": {"dtype": "F32", "shape": [0, 4], "data_offsets": [50, 50]},
        "s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}})";
    // "s" (a scalar) shares bytes with "m": an overlap, so drop it for the valid file
    std::string valid = header;
    valid.replace(valid.find(",\n        \"s\""), std::string::npos, "}");
    const std::string path = write_file("valid.safetensors", valid, data);
    safetensors_file file(path);
    CHECK(file.size() == 5);
    CHECK(file.metadata().at("format") == "pt");
    CHECK(file.tensor("m").shape == std::vector<std::int64_t>{2, 3});
    CHECK(file.read<float>("m") == f32);
    CHECK(file.read<double>("m")[3] == static_cast<double>(1e-3f));
    CHECK(file.read<double>("d") == f64);
    CHECK(file.read<float>("b") == std::vector<float>{1.5f, -3.0f, longnet::bfloat16::to_float(0x3f81)});
    CHECK(file.read<float>("h") == std::vector<float>{0.5f, -65504.0f});
    CHECK(file.read<float>("e").empty());
    CHECK(file.tensor("e").numel() == 0);
    // a moved file keeps its mapping
    safetensors_file moved = std::move(file);
    CHECK(moved.read<float>("m") == f32);
    // missing tensor at read time
    CHECK_THROWS_AS(moved.tensor("nope"), safetensors_error);
    CHECK_THROWS_AS(moved.expect("m", {3, 2}), safetensors_error);
    try {
        moved.expect("m", {3, 2});
    } catch (const safetensors_error& e) {
        CHECK(contains(e.what(), "expected [3, 2], got [2, 3]"));
        CHECK(e.tensor() == "m");
    }
    // the overlapping scalar is refused
    const failure f = open_failure(write_file("overlap_scalar.safetensors", header, data));
    CHECK(f.thrown);
    CHECK(contains(f.what, "overlap"));
}

TEST_CASE("safetensors: the decoder fixture reads completely", "[safetensors]") {
    safetensors_file file(std::string(LONGNET_TEST_DATA_DIR) + "/decoder_00/model.safetensors");
    CHECK(file.size() == 2 + 2 * 21 + 2);  // embed + output, 21 per layer (incl. xpos.scale), final LayerNorm
    std::int64_t elements = 0;
    bool finite = true;
    for (const auto& kv : file.tensors()) {
        const auto v = file.read<float>(kv.first);
        for (float x : v) finite = finite && std::isfinite(x);
        elements += static_cast<std::int64_t>(v.size());
    }
    CHECK(finite);
    CHECK(elements * 4 == static_cast<std::int64_t>(file.file_size()) - 8 - 4456);
    CHECK(file.metadata().count("format") == 1);
}

TEST_CASE("safetensors: file-level errors", "[safetensors]") {
    {
        const failure f = open_failure((folder().path / "does_not_exist.safetensors").string());
        CHECK(f.thrown);
        CHECK(contains(f.what, "cannot open"));
    }
    {
        const failure f = open_failure(write_bytes("empty.safetensors", ""));
        CHECK(f.thrown);
        CHECK(contains(f.what, "shorter than the 8-byte header size"));
    }
    {
        const failure f = open_failure(write_bytes("short.safetensors", "\x08\0\0\0\0"));
        CHECK(f.thrown);
        CHECK(contains(f.what, "shorter than the 8-byte header size"));
    }
    {
        const failure f = open_failure(write_bytes("past_eof.safetensors", u64le(64) + "{}      "));
        INFO(f.what);
        CHECK(f.thrown);
        CHECK(contains(f.what, "runs past the end of the file"));
    }
    {
        const failure f = open_failure(write_bytes("absurd.safetensors", u64le(std::uint64_t(1) << 62) + "{}      "));
        INFO(f.what);
        CHECK(f.thrown);
        CHECK(contains(f.what, "absurd"));
    }
    {
        const failure f = open_failure(write_bytes("huge.safetensors", u64le(~std::uint64_t(0)) + "{}      "));
        CHECK(f.thrown);
    }
    {
        const failure f = open_failure(write_file("not_json.safetensors", "{\"a\": {\"dtype\": ", ""));
        INFO(f.what);
        CHECK(f.thrown);
        CHECK(contains(f.what, "not valid JSON"));
        CHECK(f.tensor.empty());
    }
    {
        const failure f = open_failure(write_file("binary.safetensors", std::string("\xff\xfe\x00\x01", 4), ""));
        CHECK(f.thrown);
        CHECK(contains(f.what, "not valid JSON"));
    }
    {
        const failure f = open_failure(write_file("array.safetensors", "[1, 2, 3]", ""));
        INFO(f.what);
        CHECK(f.thrown);
        CHECK(contains(f.what, "must be a JSON object"));
    }
    {
        const failure f = open_failure(write_file("metadata.safetensors", R"({"__metadata__": {"k": 5}})", ""));
        CHECK(f.thrown);
        CHECK(contains(f.what, "not a string"));
    }
    {  // a folder is not a file
        const failure f = open_failure(folder().path.string());
        CHECK(f.thrown);
    }
}

TEST_CASE("safetensors: tensor entry errors name the tensor", "[safetensors]") {
    check_bad_entry("entry_not_object", R"([1, 2])", "entry must be an object");
    check_bad_entry("no_dtype", R"({"shape": [2], "data_offsets": [8, 16]})", "missing field 'dtype'");
    check_bad_entry("no_shape", R"({"dtype": "F32", "data_offsets": [8, 16]})", "missing field 'shape'");
    check_bad_entry("no_offsets", R"({"dtype": "F32", "shape": [2]})", "missing field 'data_offsets'");
    check_bad_entry("dtype_type", R"({"dtype": 32, "shape": [2], "data_offsets": [8, 16]})", "'dtype' must be a string");
    check_bad_entry("shape_type", R"({"dtype": "F32", "shape": "2", "data_offsets": [8, 16]})", "'shape' must be an array");
    check_bad_entry("shape_negative", R"({"dtype": "F32", "shape": [-2], "data_offsets": [8, 16]})", "negative");
    check_bad_entry("shape_float", R"({"dtype": "F32", "shape": [2.5], "data_offsets": [8, 16]})", "non-negative integers");
    check_bad_entry("offsets_type", R"({"dtype": "F32", "shape": [2], "data_offsets": "8"})", "[begin, end]");
    check_bad_entry("offsets_one", R"({"dtype": "F32", "shape": [2], "data_offsets": [8]})", "[begin, end]");
    check_bad_entry("offsets_string", R"({"dtype": "F32", "shape": [2], "data_offsets": ["8", "16"]})", "non-negative integers");
    check_bad_entry("unknown_dtype", R"({"dtype": "I8", "shape": [8], "data_offsets": [8, 16]})", "unsupported dtype 'I8'");
    check_bad_entry("past_end", R"({"dtype": "F32", "shape": [6], "data_offsets": [8, 32]})", "past the end of the data section");
    check_bad_entry("past_end_huge", R"({"dtype": "F32", "shape": [2], "data_offsets": [18446744073709551608, 18446744073709551615]})",
                    "past the end");
    check_bad_entry("end_before_begin", R"({"dtype": "F32", "shape": [2], "data_offsets": [16, 8]})", "< begin");
    check_bad_entry("size_mismatch", R"({"dtype": "F32", "shape": [3], "data_offsets": [8, 16]})", "needs 12");
    check_bad_entry("size_mismatch_bf16", R"({"dtype": "BF16", "shape": [2], "data_offsets": [8, 16]})", "needs 4");
    check_bad_entry("shape_overflow", R"({"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [8, 16]})",
                    "more elements than fit");
    check_bad_entry("bytes_overflow", R"({"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [8, 16]})",
                    "overflows");
    check_bad_entry("overlap", R"({"dtype": "F32", "shape": [2], "data_offsets": [4, 12]})", "overlap tensor 'a'");
    // "w" first in the data, "a" overlapping it: the later one (by offset) is named
    {
        const std::string path = write_file("overlap_order.safetensors",
                                            R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                                "a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                                            std::string(16, '\0'));
        const failure f = open_failure(path);
        CHECK(f.thrown);
        CHECK(f.tensor == "a");
        CHECK(contains(f.what, "overlap tensor 'w'"));
    }
}
