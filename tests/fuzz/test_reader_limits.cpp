// SPDX-License-Identifier: Apache-2.0
// The hardening of the readers (issue 14, docs/reliability.md): one test per defect the fuzzing and its
// review found, the stated limits at and just past each bound, the in-memory entry points against the
// file readers, and every seed of tests/fuzz/corpus accepted by its reader (the seeds are valid files).

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <longnet/io/npy.hpp>
#include <longnet/io/safetensors.hpp>
#include <longnet/io/strict_json.hpp>
#include <longnet/nn/decoder_config.hpp>
#include <longnet/nn/load_safetensors.hpp>

#include "catch.hpp"

namespace {

namespace fs = std::filesystem;
using longnet::io::safetensors_error;
using longnet::io::safetensors_file;
using longnet::nn::decoder_config;

const std::string data_dir = LONGNET_TEST_DATA_DIR;
const std::string fuzz_dir = LONGNET_FUZZ_DIR;

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string u64le(std::uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xffu);
    return s;
}
std::string safetensors_image(const std::string& header, const std::string& data = "") {
    return u64le(header.size()) + header + data;
}

// what() of the safetensors_error from_bytes throws; "" when the image is accepted.
std::string safetensors_failure(const std::string& image) {
    try {
        (void)safetensors_file::from_bytes(image.data(), image.size(), "img");
    } catch (const safetensors_error& e) {
        return e.what();
    }
    return "";
}
std::string config_failure(const std::string& text) {
    try {
        (void)decoder_config::from_json_text(text, "cfg.json");
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

std::vector<fs::path> files_in(const std::string& folder) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(folder))
        if (e.is_regular_file()) out.push_back(e.path());
    REQUIRE_FALSE(out.empty());
    return out;
}

// what() of the exception `f` throws; "" when it throws nothing.
template <class F>
std::string thrown(F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

struct temp_file {
    std::string path;
    temp_file(const std::string& name, const std::string& bytes)
        : path((fs::temp_directory_path() / ("longnet_limits_" + std::to_string(::getpid()) + "_" + name)).string()) {
        std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    ~temp_file() {
        std::error_code ec;
        fs::remove(path, ec);
    }
};

}  // namespace

// ---- strict JSON -------------------------------------------------------------------------------------

TEST_CASE("strict JSON: duplicate keys, nesting depth, trailing text", "[limits][json]") {
    using longnet::io::parse_strict_json;
    using longnet::io::strict_json_error;
    const auto parse = [](const std::string& s) { return parse_strict_json(s.data(), s.data() + s.size()); };
    CHECK(parse(R"( {"a": 1, "b": {"a": 2}} )").at("b").at("a") == 2);  // same key in different objects: fine
    CHECK_THROWS_AS(parse(R"({"a": 1, "a": 2})"), strict_json_error);
    CHECK_THROWS_AS(parse(R"({"x": [{"k": 1, "k": 1}]})"), strict_json_error);
    CHECK_THROWS_AS(parse(R"({"a": 1} {"a": 2})"), strict_json_error);
    CHECK(parse(nested(64)).is_array());
    try {
        parse(nested(65));
        FAIL("depth 65 accepted");
    } catch (const strict_json_error& e) {
        CHECK(contains(e.what(), "nesting deeper than 64"));
    }
    // A parse error's message is cut, whatever the size of the offending token.
    const std::string long_token = "\"" + std::string(1 << 20, 'x');
    try {
        parse(long_token);
        FAIL("unterminated string accepted");
    } catch (const strict_json_error& e) {
        CHECK(std::strlen(e.what()) < 300);
    }
}

TEST_CASE("describe_json is bounded and does not recurse", "[limits][json]") {
    using longnet::io::describe_json;
    nlohmann::json deep = nlohmann::json::array();
    for (int i = 0; i < 200000; ++i) deep = nlohmann::json::array({std::move(deep)});  // dump() would recurse 200000 deep
    CHECK(describe_json(deep) == "an array of 1 element");
    CHECK(describe_json(nlohmann::json::array({1, 2})) == "an array of 2 elements: [1,2]");
    CHECK(describe_json(nlohmann::json(std::string(10000, 'y'))).size() < 120);
    CHECK(describe_json(nlohmann::json::object({{"a", 1}})) == "an object with 1 key");
    CHECK(describe_json(nlohmann::json(-3)) == "-3");
}

// ---- safetensors ---------------------------------------------------------------------------------------

TEST_CASE("safetensors: from_bytes reads what the file reader reads", "[limits][safetensors]") {
    const std::string path = data_dir + "/decoder_00/model.safetensors";
    const safetensors_file from_file(path);
    const std::string image = read_all(path);
    const safetensors_file from_memory = safetensors_file::from_bytes(image.data(), image.size(), path);
    REQUIRE(from_memory.names() == from_file.names());
    CHECK(from_memory.file_size() == image.size());
    for (const std::string& name : from_file.names()) {
        CHECK(from_memory.tensor(name).shape == from_file.tensor(name).shape);
        CHECK(from_memory.read<double>(name) == from_file.read<double>(name));
    }
    CHECK(contains(safetensors_failure(image.substr(0, image.size() - 1)), "run past the end of the data section"));
}

TEST_CASE("safetensors: deep nesting is refused before any recursive walk (was a stack overflow)", "[limits][safetensors]") {
    // The regression input: 100000 nested arrays as a shape extent. The reader's error message
    // used to dump() the value recursively and overflowed the stack.
    const std::string image = read_all(fuzz_dir + "/regressions/safetensors/deep_nesting_in_shape.safetensors");
    CHECK(contains(safetensors_failure(image), "nesting deeper than 64"));
}

TEST_CASE("safetensors: duplicate tensor names and fields are refused (were: last one silently wins)", "[limits][safetensors]") {
    const std::string dup_name = read_all(fuzz_dir + "/regressions/safetensors/duplicate_tensor_name.safetensors");
    CHECK(contains(safetensors_failure(dup_name), "duplicate key \"w\""));
    const std::string dup_field = read_all(fuzz_dir + "/regressions/safetensors/duplicate_field.safetensors");
    CHECK(contains(safetensors_failure(dup_field), "duplicate key \"shape\""));
}

TEST_CASE("safetensors: rank and tensor-count limits", "[limits][safetensors]") {
    const auto shape_of_rank = [](std::size_t rank) {
        std::string s = "[";
        for (std::size_t i = 0; i < rank; ++i) s += i ? ",1" : "1";
        return s + "]";
    };
    const std::string at_limit = R"({"t":{"dtype":"F32","shape":)" + shape_of_rank(64) + R"(,"data_offsets":[0,4]}})";
    CHECK(safetensors_failure(safetensors_image(at_limit, std::string(4, '\0'))).empty());
    const std::string above = R"({"t":{"dtype":"F32","shape":)" + shape_of_rank(65) + R"(,"data_offsets":[0,4]}})";
    CHECK(contains(safetensors_failure(safetensors_image(above, std::string(4, '\0'))), "65 dimensions (limit 64)"));

    // max_tensors + 1 entries: refused by count, before any entry is looked at.
    std::string many = "{";
    for (std::size_t i = 0; i <= safetensors_file::max_tensors; ++i) many += (i ? ",\"" : "\"") + std::to_string(i) + "\":0";
    many += "}";
    CHECK(contains(safetensors_failure(safetensors_image(many)), "tensors (limit 1048576)"));
}

TEST_CASE("safetensors: sizes past the file and absurd header sizes", "[limits][safetensors]") {
    CHECK(contains(safetensors_failure(u64le(safetensors_file::max_header_size + 1) + "{}"), "is absurd"));
    CHECK(contains(safetensors_failure(u64le(1000) + "{}"), "runs past the end of the file"));
    const std::string past = R"({"t":{"dtype":"F64","shape":[4],"data_offsets":[0,32]}})";
    CHECK(contains(safetensors_failure(safetensors_image(past, std::string(31, '\0'))), "run past the end"));
    const std::string elements = R"({"t":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})";
    CHECK(contains(safetensors_failure(safetensors_image(elements, std::string(8, '\0'))), "more elements than fit in 64 bits"));
    const std::string bytes = R"({"t":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})";
    CHECK(contains(safetensors_failure(safetensors_image(bytes, std::string(8, '\0'))), "byte size overflows 64 bits"));
}

// ---- decoder config -----------------------------------------------------------------------------------

TEST_CASE("decoder config: strict text (trailing data, duplicates, nesting) and messages", "[limits][config]") {
    const auto regression = [](const std::string& name) { return read_all(fuzz_dir + "/regressions/decoder_config/" + name); };
    // Was accepted: the stream reader stopped after the first object and ignored the rest.
    CHECK(contains(config_failure(regression("trailing_garbage.json")), "not valid JSON"));
    // Was accepted with the last value.
    CHECK(contains(config_failure(regression("duplicate_key.json")), "duplicate key \"decoder_layers\""));
    // Was a stack overflow (recursive dump() in the message).
    CHECK(contains(config_failure(regression("deep_nesting_in_value.json")), "nesting deeper than 64"));
    // Was "vocab_size must be >= 1, got -1": the value wrapped.
    CHECK(contains(config_failure(regression("unsigned_wraps_to_minus_one.json")), "vocab_size = 18446744073709551615 is out of range"));
    // Was accepted: a 2^40-wide model.
    CHECK(contains(config_failure(regression("huge_dims.json")), "decoder_embed_dim = 1099511627776 is above the limit 16777216"));
    CHECK(contains(config_failure(R"({"decoder_layers": [1]})"), "decoder_layers must be an integer, got an array of 1 element: [1]"));
    CHECK(contains(config_failure(R"({"segment_length": "[1,2"})"), "is not a list of integers"));
    CHECK(config_failure("{}").empty());  // the defaults (the paper's base model) are valid
}

TEST_CASE("decoder config: limits at and past each bound", "[limits][config]") {
    CHECK(config_failure(R"({"decoder_embed_dim": 16777216, "decoder_attention_heads": 2})").empty());
    CHECK(contains(config_failure(R"({"decoder_ffn_embed_dim": 16777217})"), "above the limit"));
    CHECK(config_failure(R"({"decoder_layers": 65536})").empty());
    CHECK(contains(config_failure(R"({"decoder_layers": 65537})"), "decoder_layers = 65537 is above the limit 65536"));
    CHECK(config_failure(R"({"vocab_size": 2147483648})").empty());
    CHECK(contains(config_failure(R"({"vocab_size": 2147483649})"), "above the limit"));
    CHECK(config_failure(R"({"segment_length": [1099511627776], "dilated_ratio": [1]})").empty());
    CHECK(contains(config_failure(R"({"segment_length": [1099511627777], "dilated_ratio": [1]})"), "above the limit"));
    std::string branches = "[";
    for (int i = 0; i < 65; ++i) branches += i ? ",1" : "1";
    branches += "]";
    CHECK(contains(config_failure(R"({"segment_length": )" + branches + R"(, "dilated_ratio": )" + branches + "}"),
                   "has 65 entries (limit 64)"));
    // The file size limit holds before parsing; from_file and from_json_text agree.
    const temp_file big("big.json", "{" + std::string(decoder_config::max_config_bytes, ' ') + "}");
    CHECK(contains(thrown([&] { decoder_config::from_file(big.path); }), "limit 1048576"));
    const temp_file fixture("fixture.json", read_all(fuzz_dir + "/corpus/decoder_config/fixture_all_fields.json"));
    CHECK(decoder_config::from_file(fixture.path).to_json() ==
          decoder_config::from_json_text(read_all(fixture.path)).to_json());
}

TEST_CASE("load_decoder checks the weight shapes before allocating the model", "[limits][config][safetensors]") {
    const safetensors_file file(data_dir + "/decoder_00/model.safetensors");
    const std::string fixture = read_all(fuzz_dir + "/corpus/decoder_config/fixture_all_fields.json");
    nlohmann::json j = nlohmann::json::parse(fixture);
    CHECK_NOTHROW(longnet::nn::load_decoder<float>(file, decoder_config::from_json(j)));
    // A 2^31-word vocabulary: 2^31 x 64 floats (512 GiB) would have been allocated first.
    j["vocab_size"] = std::int64_t(1) << 31;
    const std::string vocab = thrown([&] { longnet::nn::load_decoder<float>(file, decoder_config::from_json(j)); });
    CHECK(contains(vocab, "embed_tokens.weight"));
    CHECK(contains(vocab, "wrong shape"));
    // 65536 layers: the first missing one is named, nothing is allocated for the others.
    j = nlohmann::json::parse(fixture);
    j["decoder_layers"] = 65536;
    const std::string layers = thrown([&] { longnet::nn::load_decoder<float>(file, decoder_config::from_json(j)); });
    CHECK(contains(layers, "layers.2.self_attn.q_proj.weight"));
    CHECK(contains(layers, "missing tensor"));
    j = nlohmann::json::parse(fixture);
    j["decoder_ffn_embed_dim"] = 1 << 24;
    CHECK(contains(thrown([&] { longnet::nn::load_decoder<float>(file, decoder_config::from_json(j)); }),
                   "layers.0.ffn.fc1.weight"));
}

// ---- npy -------------------------------------------------------------------------------------------------

TEST_CASE("npy: load_npy_bytes reads what load_npy reads", "[limits][npy]") {
    for (const char* rel : {"/decoder_00/tokens.npy", "/decoder_00/logits.npy", "/attn_fwd_00/lse.npy"}) {
        const std::string path = data_dir + rel;
        const std::string image = read_all(path);
        const longnet::io::npy_array a = longnet::io::load_npy(path);
        const longnet::io::npy_array b = longnet::io::load_npy_bytes(image.data(), image.size(), path);
        CHECK(a.shape() == b.shape());
        CHECK(a.dtype() == b.dtype());
        CHECK(std::memcmp(a.data(), b.data(), a.nbytes()) == 0);
        CHECK(contains(thrown([&] { longnet::io::load_npy_bytes(image.data(), image.size() - 1, "x"); }), "truncated data"));
        CHECK(contains(thrown([&] { longnet::io::load_npy_bytes(image.data(), 9, "x"); }), "truncated header"));
    }
}

TEST_CASE("npy: rank and header-size limits", "[limits][npy]") {
    const auto image = [](const std::string& dict, int version) {
        std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(version) + '\0';
        const std::size_t n = dict.size();
        out += static_cast<char>(n & 0xff);
        out += static_cast<char>((n >> 8) & 0xff);
        if (version > 1) {
            out += static_cast<char>((n >> 16) & 0xff);
            out += static_cast<char>((n >> 24) & 0xff);
        }
        return out + dict;
    };
    const auto dims = [](int rank) {
        std::string s = "(";
        for (int i = 0; i < rank; ++i) s += "1,";
        return s + ")";
    };
    const std::string at = "{'descr': '<f4', 'fortran_order': False, 'shape': " + dims(64) + "}";
    const std::string img64 = image(at, 1) + std::string(4, '\0');
    CHECK(longnet::io::load_npy_bytes(img64.data(), img64.size()).ndim() == 64);
    const std::string img65 = image("{'descr': '<f4', 'fortran_order': False, 'shape': " + dims(65) + "}", 1) + std::string(4, '\0');
    CHECK(contains(thrown([&] { longnet::io::load_npy_bytes(img65.data(), img65.size()); }), "more than 64 dimensions"));
    const std::string big_header = image("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}" + std::string(1 << 20, ' '), 2) +
                                   std::string(4, '\0');
    CHECK(contains(thrown([&] { longnet::io::load_npy_bytes(big_header.data(), big_header.size()); }), "limit 1 MiB"));
}

// ---- the seed corpora are valid files ------------------------------------------------------------------

TEST_CASE("every seed of the corpora is accepted by its reader", "[limits][corpus]") {
    for (const fs::path& p : files_in(fuzz_dir + "/corpus/npy")) {
        INFO(p.string());
        CHECK_NOTHROW(longnet::io::load_npy(p.string()));
    }
    for (const fs::path& p : files_in(fuzz_dir + "/corpus/safetensors")) {
        INFO(p.string());
        CHECK_NOTHROW(safetensors_file(p.string()));
    }
    for (const fs::path& p : files_in(fuzz_dir + "/corpus/decoder_config")) {
        INFO(p.string());
        CHECK_NOTHROW(decoder_config::from_file(p.string()));
    }
    for (const fs::path& p : files_in(fuzz_dir + "/corpus/checkpoint")) {  // 4-byte length, config, weights
        INFO(p.string());
        const std::string s = read_all(p.string());
        REQUIRE(s.size() > 4);
        const std::size_t n = static_cast<unsigned char>(s[0]) | (static_cast<std::size_t>(static_cast<unsigned char>(s[1])) << 8);
        const decoder_config cfg = decoder_config::from_json_text(s.substr(4, n));
        const safetensors_file f = safetensors_file::from_bytes(s.data() + 4 + n, s.size() - 4 - n);
        CHECK(longnet::nn::load_decoder<float>(f, cfg).layers.size() == static_cast<std::size_t>(cfg.layers));
    }
}
