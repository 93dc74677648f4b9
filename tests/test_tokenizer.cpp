// SPDX-License-Identifier: Apache-2.0
// Tokenizers (longnet/text/tokenizer.hpp, text/tokenizer_record.hpp) and the tokenizer record of
// nn::decoder_config. Built twice (tests/CMakeLists.txt):
//   test_tokenizer       without SentencePiece: byte level (encode = the bytes, decode back, encode_file =
//                        the file's bytes across 1 MiB blocks), FNV-1a 64 against published values and a
//                        bytewise reference, the config record (read, written, refused), and load()
//                        refusing with the no-SentencePiece message;
//   test_tokenizer_spm   linked with longnet::sentencepiece (when found), run on the models the fixture
//                        tokenizer_spm_models trains with spm_train (LONGNET_TEST_SPM_DIR): encode and
//                        encode_file equal spm_encode's ids, decode equals spm_decode's text, round trips,
//                        the record's hash is the file's, bad model files throw naming the file.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <longnet/nn/decoder_config.hpp>
#include <longnet/text/tokenizer.hpp>

namespace text = longnet::text;

namespace {

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_all(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
    REQUIRE(out);
}

// A reference FNV-1a 64 written out independently (the definition, one byte at a time).
std::uint64_t fnv_reference(const std::string& s) {
    std::uint64_t h = 14695981039346656037ULL;
    for (unsigned char c : s) {
        h = h ^ c;
        h = h * 1099511628211ULL;
    }
    return h;
}

// Pseudo-random bytes (all 256 values occur).
std::string random_bytes(std::size_t n, std::uint64_t seed) {
    std::string s(n, '\0');
    for (auto& c : s) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        c = static_cast<char>(seed >> 56);
    }
    return s;
}

std::string scratch(const std::string& name) {
#ifdef LONGNET_TEST_WORK_DIR
    return std::string(LONGNET_TEST_WORK_DIR) + "/" + name;
#else
    return name;
#endif
}

}  // namespace

TEST_CASE("FNV-1a 64 matches the published test vectors and a bytewise reference", "[tokenizer]") {
    CHECK(text::fnv1a64("", 0) == 0xcbf29ce484222325ULL);
    CHECK(text::fnv1a64("a", 1) == 0xaf63dc4c8601ec8cULL);
    CHECK(text::fnv1a64("foobar", 6) == 0x85944171f73967e8ULL);
    const std::string bytes = random_bytes(10007, 3);
    CHECK(text::fnv1a64(bytes.data(), bytes.size()) == fnv_reference(bytes));
    // continued in two pieces = in one
    CHECK(text::fnv1a64(bytes.data() + 5000, bytes.size() - 5000, text::fnv1a64(bytes.data(), 5000)) == fnv_reference(bytes));
    CHECK(text::hex64(0xaf63dc4c8601ec8cULL) == "af63dc4c8601ec8c");
    CHECK(text::hex64(15) == "000000000000000f");
}

TEST_CASE("byte-level tokenizer: ids are the bytes, both ways", "[tokenizer]") {
    const text::tokenizer t;
    CHECK(t.byte_level());
    CHECK(t.vocab_size() == 256);
    CHECK(t.eos_id() == -1);  // no end token (longnet_train --pack-documents needs --eos-token)
    const std::string bytes = random_bytes(4099, 7);
    const std::vector<std::int64_t> ids = t.encode(bytes);
    REQUIRE(ids.size() == bytes.size());
    for (std::size_t i = 0; i < ids.size(); ++i) REQUIRE(ids[i] == static_cast<unsigned char>(bytes[i]));
    CHECK(t.decode(ids) == bytes);
    CHECK(t.decode({104, 105, 300, -1, 33}) == "hi<300><-1>!");
}

TEST_CASE("byte-level encode_file streams every byte, across blocks", "[tokenizer]") {
    const std::string bytes = random_bytes((std::size_t(1) << 20) + 12345, 11);  // more than one 1 MiB block
    const std::string path = scratch("tokenizer_bytes.bin");
    write_all(path, bytes);
    REQUIRE(read_all(path) == bytes);
    const text::tokenizer t;
    std::vector<std::int64_t> ids;
    std::size_t calls = 0;
    const std::uint64_t n = t.encode_file(path, [&](const std::int64_t* p, std::size_t k) {
        ids.insert(ids.end(), p, p + k);
        ++calls;
    });
    CHECK(n == bytes.size());
    CHECK(calls == 2);
    REQUIRE(ids.size() == bytes.size());
    for (std::size_t i = 0; i < ids.size(); ++i) REQUIRE(ids[i] == static_cast<unsigned char>(bytes[i]));
    std::remove(path.c_str());
    CHECK_THROWS_WITH(t.encode_file(scratch("no_such_file.txt"), [](const std::int64_t*, std::size_t) {}),
                      Catch::Contains("no_such_file.txt: cannot open the text file"));
}

TEST_CASE("decoder_config records the tokenizer; old configs read as byte level", "[tokenizer]") {
    namespace nn = longnet::nn;
    nn::decoder_config c = nn::decoder_config::base(1000);
    CHECK(c.tokenizer.byte_level());
    CHECK_FALSE(c.to_json().contains("tokenizer"));  // byte level: nothing written, as before
    const nn::decoder_config plain = nn::decoder_config::from_json_text(c.to_json().dump());
    CHECK(plain.tokenizer.byte_level());

    c.tokenizer.kind = text::tokenizer_kind::sentencepiece;
    c.tokenizer.path = "models/spm.model";
    c.tokenizer.fnv1a64 = 0x0123456789abcdefULL;
    c.tokenizer.vocab_size = 800;
    const nlohmann::json j = c.to_json();
    CHECK(j["tokenizer"]["type"] == "sentencepiece");
    CHECK(j["tokenizer"]["fnv1a64"] == "0123456789abcdef");
    const nn::decoder_config back = nn::decoder_config::from_json_text(j.dump());
    CHECK(back.tokenizer.kind == text::tokenizer_kind::sentencepiece);
    CHECK(back.tokenizer.path == "models/spm.model");
    CHECK(back.tokenizer.fnv1a64 == 0x0123456789abcdefULL);
    CHECK(back.tokenizer.vocab_size == 800);
    CHECK(back.tokenizer.same_as(c.tokenizer));
    text::tokenizer_record moved = c.tokenizer;
    moved.path = "elsewhere.model";
    CHECK(moved.same_as(c.tokenizer));  // the hash decides, not the path
    moved.fnv1a64 ^= 1;
    CHECK_FALSE(moved.same_as(c.tokenizer));
    CHECK_FALSE(text::tokenizer_record().same_as(c.tokenizer));
    CHECK(c.tokenizer.describe() == "SentencePiece model 'models/spm.model' (FNV-1a 64 0123456789abcdef, 800 pieces)");

    nlohmann::json byte = j;
    byte["tokenizer"] = {{"type", "byte"}};
    CHECK(nn::decoder_config::from_json_text(byte.dump()).tokenizer.byte_level());

    auto refused = [&](const nlohmann::json& record, const std::string& what) {
        nlohmann::json k = j;
        k["tokenizer"] = record;
        CHECK_THROWS_WITH(nn::decoder_config::from_json_text(k.dump(), "c.json"), Catch::Contains(what));
    };
    refused("spm.model", "tokenizer must be an object");
    refused({{"type", "bpe"}}, "type must be \"byte\" or \"sentencepiece\"");
    refused({{"path", "a"}}, "needs a string \"type\"");
    refused({{"type", "sentencepiece"}, {"fnv1a64", "0123456789abcdef"}, {"vocab_size", 10}}, "needs a string \"path\"");
    refused({{"type", "sentencepiece"}, {"path", "a"}, {"fnv1a64", "0123456789ABCDEF"}, {"vocab_size", 10}}, "16 lowercase hex");
    refused({{"type", "sentencepiece"}, {"path", "a"}, {"fnv1a64", "0123"}, {"vocab_size", 10}}, "16 lowercase hex");
    refused({{"type", "sentencepiece"}, {"path", "a"}, {"fnv1a64", 5}, {"vocab_size", 10}}, "16 lowercase hex");
    refused({{"type", "sentencepiece"}, {"path", "a"}, {"fnv1a64", "0123456789abcdef"}}, "needs an integer \"vocab_size\"");
    refused({{"type", "sentencepiece"}, {"path", "a"}, {"fnv1a64", "0123456789abcdef"}, {"vocab_size", 1001}},
            "the tokenizer's vocab_size 1001 is outside [1, vocab_size = 1000]");
    refused({{"type", "sentencepiece"}, {"path", "a"}, {"fnv1a64", "0123456789abcdef"}, {"vocab_size", 0}}, "is outside [1,");
}

#if !LONGNET_WITH_SENTENCEPIECE

TEST_CASE("without SentencePiece, load() says so", "[tokenizer]") {
    STATIC_REQUIRE_FALSE(text::sentencepiece_available);
    CHECK_THROWS_AS(text::tokenizer::load("spm.model"), text::tokenizer_error);
    CHECK_THROWS_WITH(text::tokenizer::load("spm.model"),
                      "spm.model: this build has no SentencePiece support: install libsentencepiece-dev and rebuild");
}

#else

namespace {

const std::string spm_dir = LONGNET_TEST_SPM_DIR;

std::vector<std::string> lines_of(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    std::string line;
    while (std::getline(in, line)) out.push_back(line);
    return out;
}

std::string squeeze_spaces(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
        out += c;
    }
    if (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
}

std::vector<std::int64_t> ids_of(const std::string& line) {
    std::vector<std::int64_t> out;
    std::istringstream in(line);
    std::int64_t v = 0;
    while (in >> v) out.push_back(v);
    return out;
}

}  // namespace

TEST_CASE("SentencePiece: encode and encode_file give spm_encode's ids, decode spm_decode's text", "[tokenizer][sentencepiece]") {
    STATIC_REQUIRE(text::sentencepiece_available);
    const std::string model = spm_dir + "/tok.model";
    const text::tokenizer t = text::tokenizer::load(model);
    CHECK_FALSE(t.byte_level());
    CHECK(t.vocab_size() == 300);  // spm_train --vocab_size=300
    CHECK(t.eos_id() == 2);  // spm_train's default --eos_id (unk 0, bos 1, eos 2)
    CHECK(t.record().path == model);
    CHECK(t.record().fnv1a64 == fnv_reference(read_all(model)));

    const std::vector<std::string> lines = lines_of(read_all(spm_dir + "/text.txt"));
    const std::vector<std::string> reference = lines_of(read_all(spm_dir + "/ids.txt"));      // spm_encode, one line per line
    const std::vector<std::string> decoded = lines_of(read_all(spm_dir + "/decoded.txt"));    // spm_decode of those
    REQUIRE(lines.size() > 20);
    REQUIRE(reference.size() == lines.size());
    REQUIRE(decoded.size() == lines.size());
    std::vector<std::int64_t> all;
    std::size_t nonempty = 0, round_trips = 0;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const std::vector<std::int64_t> ids = t.encode(lines[i]);
        REQUIRE(ids == ids_of(reference[i]));
        CHECK(t.decode(ids) == decoded[i]);
        for (std::int64_t id : ids) REQUIRE((id >= 0 && id < t.vocab_size()));
        all.insert(all.end(), ids.begin(), ids.end());
        nonempty += !ids.empty();
        // a line of ASCII words the model knows every letter of comes back with its whitespace normalised as
        // SentencePiece does by default (runs of spaces made one, leading and trailing ones dropped)
        if (!ids.empty() && std::find(ids.begin(), ids.end(), 0) == ids.end()) {  // 0: <unk>
            CHECK(t.decode(ids) == squeeze_spaces(lines[i]));
            ++round_trips;
        }
    }
    CHECK(nonempty > 10);
    CHECK(round_trips > 5);
    std::vector<std::int64_t> streamed;
    const std::uint64_t n = t.encode_file(spm_dir + "/text.txt", [&](const std::int64_t* p, std::size_t k) {
        streamed.insert(streamed.end(), p, p + k);
    });
    CHECK(n == all.size());
    CHECK(streamed == all);
    // ids outside the tokenizer's vocabulary (a larger model vocabulary) print as <id>
    const std::vector<std::int64_t> hello = t.encode("the License");
    std::vector<std::int64_t> mixed = hello;
    mixed.push_back(300);
    mixed.insert(mixed.end(), hello.begin(), hello.end());
    CHECK(t.decode(mixed) == t.decode(hello) + "<300>" + t.decode(hello));
    // a second model is a different tokenizer
    const text::tokenizer other = text::tokenizer::load(spm_dir + "/tok2.model");
    CHECK_FALSE(other.record().same_as(t.record()));
    CHECK(other.vocab_size() == 250);
}

TEST_CASE("SentencePiece: bad model files throw naming the file", "[tokenizer][sentencepiece]") {
    const std::string garbage = scratch("tokenizer_garbage.model"), empty = scratch("tokenizer_empty.model");
    write_all(garbage, random_bytes(3000, 5));
    write_all(empty, "");
    CHECK_THROWS_WITH(text::tokenizer::load(garbage), Catch::Contains("tokenizer_garbage.model: not a SentencePiece model"));
    CHECK_THROWS_WITH(text::tokenizer::load(empty), Catch::Contains("tokenizer_empty.model: not a SentencePiece model"));
    CHECK_THROWS_WITH(text::tokenizer::load(scratch("no_such.model")), Catch::Contains("no_such.model: cannot open"));
    CHECK_THROWS_WITH(text::tokenizer::load(spm_dir), Catch::Contains("is a folder"));
    std::remove(garbage.c_str());
    std::remove(empty.c_str());
}

#endif
