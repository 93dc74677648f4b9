// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the llm.c token-shard reader (longnet/io/token_shards.hpp, parse_token_shard) on
// arbitrary bytes.
//
// Every input must either throw token_shard_error naming the file, or be a shard whose header keeps
// its promises, checked against an independent reading of the bytes: magic 20240520 (version 1,
// uint16) or 20240801 (version 1 or 7, uint32), a non-negative count, file size exactly 1024 + count x
// width; every token equal to the file's little-endian bytes; the vocabulary check rejecting exactly at
// the largest token; and the shard written back by token_shard_bytes reads back with the same tokens.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <longnet/io/token_shards.hpp>

#include "fuzz_check.hpp"

namespace {

namespace io = longnet::io;

std::int32_t le32(const std::uint8_t* p) {
    const std::uint32_t u = p[0] | (std::uint32_t(p[1]) << 8) | (std::uint32_t(p[2]) << 16) | (std::uint32_t(p[3]) << 24);
    std::int32_t v;
    std::memcpy(&v, &u, 4);
    return v;
}

void check_accepted(const std::uint8_t* data, std::size_t size, const io::token_shard_view& v) {
    FUZZ_CHECK(size >= 1024, "accepted a file shorter than the header");
    const std::int32_t magic = le32(data), version = le32(data + 4), count = le32(data + 8);
    const bool u16 = magic == 20240520 && version == 1;
    const bool u32 = magic == 20240801 && (version == 1 || version == 7);
    FUZZ_CHECK(u16 || u32, "accepted magic " + std::to_string(magic) + " version " + std::to_string(version));
    FUZZ_CHECK(count >= 0 && v.count == static_cast<std::uint64_t>(count), "count differs from the header's");
    const std::size_t width = u16 ? 2 : 4;
    FUZZ_CHECK(static_cast<std::size_t>(v.width) == width, "width differs from the magic's");
    FUZZ_CHECK(1024 + v.count * width == size, "file size " + std::to_string(size) + " != 1024 + count x width");
    std::uint32_t largest = 0;
    std::vector<std::int64_t> tokens(static_cast<std::size_t>(v.count));
    for (std::uint64_t i = 0; i < v.count; ++i) {
        const std::uint8_t* p = data + 1024 + i * width;
        const std::uint32_t t = u16 ? std::uint32_t(p[0] | (p[1] << 8)) : static_cast<std::uint32_t>(le32(p));
        FUZZ_CHECK(v[i] == t, "token " + std::to_string(i) + " differs from the file's bytes");
        largest = std::max(largest, t);
        tokens[static_cast<std::size_t>(i)] = t;
    }
    check_token_shard_vocab(v, std::uint64_t{largest} + 1, "<fuzz>");
    bool rejected = false;
    try {
        check_token_shard_vocab(v, largest, "<fuzz>");
    } catch (const io::token_shard_error&) {
        rejected = true;
    }
    FUZZ_CHECK(rejected == (v.count > 0), "vocabulary check does not reject at the largest token");

    const std::string image = io::token_shard_bytes(tokens.data(), tokens.size(), v.width, "<round trip>");
    const io::token_shard_view back = io::parse_token_shard(image.data(), image.size(), "<round trip>");
    FUZZ_CHECK(back.count == v.count && back.width == v.width, "round trip changed the count or width");
    for (std::uint64_t i = 0; i < v.count; ++i) FUZZ_CHECK(back[i] == v[i], "round trip changed a token");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    io::token_shard_view v;
    try {
        v = io::parse_token_shard(data, size, "<fuzz>");
    } catch (const io::token_shard_error& e) {
        FUZZ_CHECK(std::string(e.what()).rfind("token shard: <fuzz>: offset ", 0) == 0,
                   std::string("message does not name the file and offset: ") + e.what());
        return 0;
    }
    check_accepted(data, size, v);
    return 0;
}
