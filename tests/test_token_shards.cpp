// SPDX-License-Identifier: Apache-2.0
// llm.c token shards (longnet/io/token_shards.hpp) and the shard dataset (training/data.hpp): header
// bytes against llm.c's layout written by hand, round trips of both widths, every header defect with its
// file and offset in the message, token >= vocab, a glob of shards read as one stream (across shard
// boundaries), and seeded windows equal to token_dataset's on the same tokens, resumed bitwise; a rank's
// share (data_share) of a batch: only its chunks of its group's windows read (tokens_read).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <longnet/io/token_shards.hpp>
#include <longnet/training/data.hpp>

#include <unistd.h>

#include "catch.hpp"

namespace fs = std::filesystem;
namespace io = longnet::io;
namespace tr = longnet::training;

namespace {

struct temp_dir {
    fs::path path;
    temp_dir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("longnet_test_shards_" + std::to_string(rd()) + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// llm.c's layout written independently: 256 little-endian int32 then the tokens.
std::string llmc_bytes(std::int32_t magic, std::int32_t version, std::int32_t count, const std::vector<std::uint32_t>& tokens,
                       int width) {
    std::string s(1024, '\0');
    std::memcpy(&s[0], &magic, 4);  // this host is little-endian (x86)
    std::memcpy(&s[4], &version, 4);
    std::memcpy(&s[8], &count, 4);
    for (std::uint32_t t : tokens) s.append(reinterpret_cast<const char*>(&t), static_cast<std::size_t>(width));
    return s;
}

std::vector<std::int64_t> random_tokens(std::size_t n, std::int64_t vocab, std::uint32_t seed) {
    std::mt19937 g(seed);
    std::uniform_int_distribution<std::int64_t> d(0, vocab - 1);
    std::vector<std::int64_t> t(n);
    for (auto& x : t) x = d(g);
    return t;
}

std::string error_of(const std::string& path) {
    try {
        io::token_shard s(path);
    } catch (const io::token_shard_error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("token shards: llm.c's bytes read as written, both widths", "[shards]") {
    temp_dir d;
    const std::vector<std::uint32_t> t16 = {0, 1, 65535, 50256, 7};
    write_bytes(d.file("a.bin"), llmc_bytes(20240520, 1, 5, t16, 2));
    io::token_shard a(d.file("a.bin"));
    REQUIRE(a.size() == 5);
    REQUIRE(a.view().width == io::token_width::u16);
    for (std::size_t i = 0; i < t16.size(); ++i) REQUIRE(a[i] == t16[i]);

    const std::vector<std::uint32_t> t32 = {0, 128255, 4000000000u, 3};
    for (std::int32_t version : {1, 7}) {
        write_bytes(d.file("b.bin"), llmc_bytes(20240801, version, 4, t32, 4));
        io::token_shard b(d.file("b.bin"));
        REQUIRE(b.view().width == io::token_width::u32);
        for (std::size_t i = 0; i < t32.size(); ++i) REQUIRE(b[i] == t32[i]);
    }
}

TEST_CASE("token shards: the writer's bytes are llm.c's and read back", "[shards]") {
    temp_dir d;
    const auto t = random_tokens(1000, 60000, 1);
    io::write_token_shard(d.file("w.bin"), t, io::token_width::u16);
    std::vector<std::uint32_t> u(t.begin(), t.end());
    std::ifstream in(d.file("w.bin"), std::ios::binary);
    const std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(got == llmc_bytes(20240520, 1, 1000, u, 2));

    const auto t32 = random_tokens(777, 200000, 2);
    io::write_token_shard(d.file("w32.bin"), t32, io::token_width::u32);
    io::token_shard s(d.file("w32.bin"));
    REQUIRE(s.size() == t32.size());
    for (std::size_t i = 0; i < t32.size(); ++i) REQUIRE(s[i] == static_cast<std::uint32_t>(t32[i]));

    REQUIRE_THROWS_WITH(io::write_token_shard(d.file("bad.bin"), {1, 65536}, io::token_width::u16),
                        Catch::Contains("token 65536 at position 1") && Catch::Contains("offset 1026"));
    REQUIRE_FALSE(fs::exists(d.file("bad.bin")));
}

TEST_CASE("token shards: header defects name the file and the offset", "[shards]") {
    temp_dir d;
    const std::string f = d.file("x.bin");
    const std::vector<std::uint32_t> t = {1, 2, 3};
    write_bytes(f, llmc_bytes(20240521, 1, 3, t, 2));
    REQUIRE_THAT(error_of(f), Catch::Contains(f + ": offset 0: magic 20240521"));
    write_bytes(f, llmc_bytes(20240520, 2, 3, t, 2));
    REQUIRE_THAT(error_of(f), Catch::Contains(f + ": offset 4: version 2"));
    write_bytes(f, llmc_bytes(20240801, 3, 3, t, 4));
    REQUIRE_THAT(error_of(f), Catch::Contains("offset 4: version 3"));
    write_bytes(f, llmc_bytes(20240520, 1, -5, t, 2));
    REQUIRE_THAT(error_of(f), Catch::Contains("offset 8: negative token count -5"));
    write_bytes(f, llmc_bytes(20240520, 1, 4, t, 2));  // 3 tokens present, 4 claimed
    REQUIRE_THAT(error_of(f), Catch::Contains("offset 1030: truncated") && Catch::Contains("need 1032 bytes"));
    write_bytes(f, llmc_bytes(20240520, 1, 2, t, 2));  // 3 present, 2 claimed
    REQUIRE_THAT(error_of(f), Catch::Contains("offset 1028: trailing bytes") && Catch::Contains("count mismatch"));
    write_bytes(f, llmc_bytes(20240520, 1, 3, t, 2).substr(0, 100));
    REQUIRE_THAT(error_of(f), Catch::Contains("offset 100: truncated header"));
    write_bytes(f, "");
    REQUIRE_THAT(error_of(f), Catch::Contains("offset 0: truncated header"));
    REQUIRE_THAT(error_of(d.file("missing.bin")), Catch::Contains("missing.bin: offset 0: cannot open"));
    REQUIRE_THAT(error_of(d.path.string()), Catch::Contains("not a regular file"));
    REQUIRE_THROWS_WITH(io::glob_token_shards(d.file("none_*.bin")), Catch::Contains("no file matches"));
}

TEST_CASE("token shards: token >= vocab is rejected with its offset", "[shards]") {
    temp_dir d;
    write_bytes(d.file("v.bin"), llmc_bytes(20240801, 7, 4, {5, 9, 300, 2}, 4));
    io::token_shard s(d.file("v.bin"));
    REQUIRE_NOTHROW(s.check_vocab(301));
    REQUIRE_THROWS_WITH(s.check_vocab(300), Catch::Contains("offset 1032: token 300 at position 2") &&
                                               Catch::Contains("vocabulary size 300"));
}

TEST_CASE("token shards: a glob is one stream in name order, read across shard boundaries", "[shards]") {
    temp_dir d;
    const auto all = random_tokens(1000, 256, 3);
    const std::size_t cuts[] = {0, 137, 137, 600, 1000};  // includes an empty shard
    for (int s = 0; s < 4; ++s)
        io::write_token_shard(d.file("train_00000" + std::to_string(s) + ".bin"),
                              std::vector<std::int64_t>(all.begin() + static_cast<std::ptrdiff_t>(cuts[s]),
                                                        all.begin() + static_cast<std::ptrdiff_t>(cuts[s + 1])),
                              s % 2 ? io::token_width::u32 : io::token_width::u16);
    write_bytes(d.file("val_000000.bin"), llmc_bytes(20240520, 1, 1, {1}, 2));
    const auto paths = io::glob_token_shards(d.file("train_*.bin"));
    REQUIRE(paths.size() == 4);
    io::token_shard_stream stream(paths);
    REQUIRE(stream.size() == all.size());
    for (std::uint64_t start : {0u, 100u, 130u, 137u, 599u, 990u})
        for (std::uint64_t n : {0u, 1u, 10u}) {
            const auto got = stream.read(start, n);
            REQUIRE(got == std::vector<std::int64_t>(all.begin() + static_cast<std::ptrdiff_t>(start),
                                                     all.begin() + static_cast<std::ptrdiff_t>(start + n)));
        }
    REQUIRE(stream.read(0, 1000) == all);
    REQUIRE_THROWS_AS(stream.read(995, 6), std::out_of_range);
}

TEST_CASE("shard dataset: the windows of token_dataset on the same tokens; resume continues bitwise", "[shards]") {
    temp_dir d;
    const auto all = random_tokens(5000, 256, 4);
    io::token_shard_writer w(d.file("train"), 1500, io::token_width::u16);
    for (auto t : all) w.append(t);
    REQUIRE(w.finish().size() == 4);
    const auto heldout = random_tokens(300, 256, 5);
    io::write_token_shard(d.file("val_000000.bin"), heldout, io::token_width::u16);

    const std::size_t seq = 64;
    tr::shard_dataset shards(io::glob_token_shards(d.file("train_*.bin")), {d.file("val_000000.bin")}, seq, 256);
    tr::token_dataset memory(all, seq, 0.0);
    tr::rng_state a{12345}, b{12345};
    for (int i = 0; i < 50; ++i) {
        const tr::sequence x = shards.sample(a), y = memory.sample(b);
        REQUIRE(x.inputs == y.inputs);
        REQUIRE(x.targets == y.targets);
    }
    // Resume: a copy of the state continues with the same windows.
    tr::rng_state saved = a, again = a;
    for (int i = 0; i < 5; ++i) REQUIRE(shards.sample(saved).inputs == shards.sample(again).inputs);

    const auto h = shards.heldout(100);
    REQUIRE(h.size() == (300 - 1) / seq);
    REQUIRE(h[1].inputs == std::vector<std::int64_t>(heldout.begin() + 64, heldout.begin() + 128));
    REQUIRE(h[1].targets == std::vector<std::int64_t>(heldout.begin() + 65, heldout.begin() + 129));

    REQUIRE_THROWS_WITH(tr::shard_dataset(io::glob_token_shards(d.file("train_*.bin")), {}, seq, 200),
                        Catch::Contains("train_00000") && Catch::Contains("vocabulary size 200"));
    REQUIRE_THROWS_WITH(tr::shard_dataset({d.file("val_000000.bin")}, {}, 400, 256), Catch::Contains("too few"));
}

TEST_CASE("shard dataset: a rank's share reads only its chunks of its group's windows, drawn as the whole batch's",
          "[shards]") {
    temp_dir d;
    const auto all = random_tokens(700, 256, 6), heldout = random_tokens(200, 256, 7);
    io::write_token_shard(d.file("train_000000.bin"), std::vector<std::int64_t>(all.begin(), all.begin() + 400), io::token_width::u16);
    io::write_token_shard(d.file("train_000001.bin"), std::vector<std::int64_t>(all.begin() + 400, all.end()), io::token_width::u32);
    io::write_token_shard(d.file("val_000000.bin"), heldout, io::token_width::u16);
    const std::size_t seq = 32, batch = 5, windows = 4;
    const tr::token_dataset memory(all, seq, 0.0);  // the oracle: whole windows in memory
    for (std::size_t parts : {1, 2, 4})
        for (std::size_t groups : {1, 3})
            for (std::size_t part = 0; part < parts; ++part)
                for (std::size_t group = 0; group < groups; ++group) {
                    CAPTURE(parts, groups, part, group);
                    const tr::shard_dataset shards(io::glob_token_shards(d.file("train_*.bin")), {d.file("val_000000.bin")}, seq, 256);
                    tr::rng_state a{23}, b{23};
                    const auto mine = shards.sample_batch(a, batch, tr::data_share{group, groups, part, parts});
                    const auto mine_eval = shards.heldout(windows, tr::data_share{group, groups, part, parts});
                    std::vector<tr::sequence> whole;
                    for (std::size_t i = 0; i < batch; ++i) whole.push_back(memory.sample(b));
                    REQUIRE(a.state == b.state);  // every window drawn, read or not
                    const std::size_t n = seq / parts, mine_count = (batch - group + groups - 1) / groups,
                                      eval_count = (windows - group + groups - 1) / groups;
                    REQUIRE(mine.size() == mine_count);
                    REQUIRE(mine_eval.size() == eval_count);
                    const auto at = static_cast<std::ptrdiff_t>(part * n), end = static_cast<std::ptrdiff_t>((part + 1) * n);
                    for (std::size_t j = 0; j < mine.size(); ++j) {  // chunk j: window group + j·groups, [part·n, (part+1)·n]
                        const tr::sequence& w = whole[group + j * groups];
                        REQUIRE(mine[j].inputs == std::vector<std::int64_t>(w.inputs.begin() + at, w.inputs.begin() + end));
                        REQUIRE(mine[j].targets == std::vector<std::int64_t>(w.targets.begin() + at, w.targets.begin() + end));
                    }
                    for (std::size_t j = 0; j < mine_eval.size(); ++j) {
                        const auto first = heldout.begin() + static_cast<std::ptrdiff_t>((group + j * groups) * seq) + at;
                        REQUIRE(mine_eval[j].inputs == std::vector<std::int64_t>(first, first + (end - at)));
                        REQUIRE(mine_eval[j].targets == std::vector<std::int64_t>(first + 1, first + 1 + (end - at)));
                    }
                    // the reader statistic: n inputs and the target after them, of its windows only
                    REQUIRE(shards.tokens_read() == (mine_count + eval_count) * (n + 1));
                    REQUIRE(shards.heldout_windows(windows) == windows);
                }
    // the vocabulary check and max_token split between 2 parts: shards 0 and 2 (a_000000, the held-out
    // shard) to part 0, shard 1 (a_000001) to part 1; together the whole data's
    io::write_token_shard(d.file("a_000000.bin"), {1, 2, 90, 3}, io::token_width::u16);
    io::write_token_shard(d.file("a_000001.bin"), {4, 200, 5, 6}, io::token_width::u32);
    io::write_token_shard(d.file("b_000000.bin"), {7, 8, 150}, io::token_width::u16);
    const tr::shard_dataset split(io::glob_token_shards(d.file("a_*.bin")), {d.file("b_000000.bin")}, 2, 256);
    REQUIRE(split.max_token(0, 2) == 150);
    REQUIRE(split.max_token(1, 2) == 200);
    REQUIRE(split.max_token() == 200);
    REQUIRE_NOTHROW(split.check_vocab(151, 0, 2));
    REQUIRE_THROWS_WITH(split.check_vocab(151, 1, 2), Catch::Contains("a_000001.bin: offset 1028: token 200 at position 1"));
    REQUIRE_THROWS_WITH(split.check_vocab(100, 0, 2), Catch::Contains("b_000000.bin: offset 1028: token 150"));
    REQUIRE(split.tokens_read() == 0);  // the scans are not reads of windows

    const tr::shard_dataset shards(io::glob_token_shards(d.file("train_*.bin")), {}, seq, 256);
    tr::rng_state r{1};
    REQUIRE_THROWS_WITH(shards.sample_batch(r, 1, tr::data_share{0, 1, 0, 3}), Catch::Contains("does not split into 3"));
    REQUIRE_THROWS_WITH(shards.sample_batch(r, 1, tr::data_share{2, 2, 0, 1}), Catch::Contains("not a valid share"));
    REQUIRE(shards.heldout_windows(windows) == 0);
}

namespace {
// Anonymous resident memory of this process in bytes (RssAnon of /proc/self/status): the memory the
// kernel cannot drop. The shards' pages are file-backed: mapped page cache the kernel reclaims under
// pressure (their RSS share depends on fault-around and huge pages, so it is not what is measured).
std::uint64_t resident_bytes() {
    std::ifstream in("/proc/self/status");
    std::string key;
    std::uint64_t kb = 0;
    while (in >> key) {
        if (key == "RssAnon:") {
            in >> kb;
            return kb * 1024;
        }
        in.ignore(1 << 20, '\n');
    }
    FAIL("no RssAnon in /proc/self/status");
    return 0;
}
}  // namespace

TEST_CASE("shard dataset: anonymous memory does not grow with the corpus (48 MB of shards)", "[shards]") {
    temp_dir d;
    {
        std::vector<std::int64_t> t(4u << 20);
        std::uint64_t state = 9;
        for (int s = 0; s < 6; ++s) {
            for (auto& x : t) x = static_cast<std::int64_t>(longnet::nn::detail::splitmix64(state) % 50000);
            io::write_token_shard(d.file("big_00000" + std::to_string(s) + ".bin"), t, io::token_width::u16);
        }
    }
    const std::uint64_t before = resident_bytes();
    REQUIRE(before > 0);
    tr::shard_dataset data(io::glob_token_shards(d.file("big_*.bin")), {}, 256, 50000);  // scans all 48 MB
    REQUIRE(data.train_tokens() == 6u * (4u << 20));
    tr::rng_state rng{1};
    std::uint64_t sum = 0;
    for (int i = 0; i < 200; ++i) sum += static_cast<std::uint64_t>(data.sample(rng).inputs[7]);
    const std::uint64_t after = resident_bytes();
    INFO("resident before " << before << " after " << after << " (sum " << sum << ")");
    // The corpus is never copied: only the windows (a few KB) are allocated. Under AddressSanitizer every
    // byte read through the mapping also touches its shadow byte (1 per 8 bytes of application memory,
    // anonymous memory): that share, at most corpus / 8, is the sanitizer's, not the reader's.
    std::uint64_t allowance = 4u << 20;
#if defined(__SANITIZE_ADDRESS__)
    allowance += (6u * (4u << 20) * 2u) / 8u;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    allowance += (6u * (4u << 20) * 2u) / 8u;
#endif
#endif
    CHECK(after < before + allowance);
}
