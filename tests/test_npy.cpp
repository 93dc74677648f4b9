// SPDX-License-Identifier: Apache-2.0
// longnet::io .npy reading and writing: round trips, big-endian and Fortran-order reads, versions 1-3,
// and every malformed-file case producing an npy_error that names the file and the problem.

#include <longnet/io/npy.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "catch.hpp"

namespace fs = std::filesystem;
using longnet::io::load_npy;
using longnet::io::npy_array;
using longnet::io::npy_dtype;
using longnet::io::npy_error;
using longnet::io::save_npy;

namespace {

// A fresh empty folder, removed with everything in it at scope exit.
struct temp_dir {
    fs::path path;
    temp_dir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("longnet_test_npy_" + std::to_string(rd()) + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string file(const std::string& name) const { return (path / name).string(); }
    std::vector<std::string> listing() const {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
        return names;
    }
};

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(f.good());
}
std::string read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// A .npy image written by hand: magic, version, little-endian header length, the dict text (padded with
// spaces and '\n' to a multiple of 64 when `pad`), then `data`.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1, bool pad = true) {
    std::string header = dict;
    const std::size_t pre = major == 1 ? 10 : 12;
    if (pad) {
        const std::size_t total = pre + header.size() + 1;
        header.append((total + 63) / 64 * 64 - total, ' ');
        header.push_back('\n');
    }
    std::string out("\x93NUMPY", 6);
    out.push_back(static_cast<char>(major));
    out.push_back('\0');
    const std::size_t n = header.size();
    out.push_back(static_cast<char>(n & 0xff));
    out.push_back(static_cast<char>((n >> 8) & 0xff));
    if (major != 1) {
        out.push_back(static_cast<char>((n >> 16) & 0xff));
        out.push_back(static_cast<char>((n >> 24) & 0xff));
    }
    return out + header + data;
}
std::string dict_of(const std::string& descr, const std::string& shape, bool fortran = false) {
    return "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': " + shape + ", }";
}

template <class T>
std::string raw(const std::vector<T>& v, bool big_endian = false) {
    std::string s(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
    if (big_endian)  // the test host is little-endian (x86, ARM): reverse each element
        for (std::size_t i = 0; i < v.size(); ++i) std::reverse(s.begin() + i * sizeof(T), s.begin() + (i + 1) * sizeof(T));
    return s;
}

// load_npy(path) must throw npy_error whose message names the file and contains `problem`.
void require_npy_error(const std::string& path, const std::string& problem) {
    INFO("file " << path << ", expected problem: " << problem);
    try {
        (void)load_npy(path);
        FAIL("load_npy accepted a bad file");
    } catch (const npy_error& e) {
        const std::string what = e.what();
        INFO("message: " << what);
        CHECK(what.find(path) != std::string::npos);
        CHECK(what.find(problem) != std::string::npos);
    }
}

}  // namespace

TEST_CASE("npy round trip of every dtype", "[npy]") {
    temp_dir dir;
    SECTION("float32 [2, 3, 4]") {
        std::vector<float> v(24);
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.5f * static_cast<float>(i) - 3.25f;
        save_npy(dir.file("a.npy"), v, {2, 3, 4});
        const npy_array a = load_npy(dir.file("a.npy"));
        CHECK(a.dtype() == npy_dtype::float32);
        CHECK(a.shape() == std::vector<std::int64_t>{2, 3, 4});
        CHECK(a.values<float>() == v);
        const std::vector<double> d = a.as_double();
        for (std::size_t i = 0; i < v.size(); ++i) CHECK(d[i] == static_cast<double>(v[i]));
    }
    SECTION("float64 with inf, -inf, nan and denormals") {
        std::vector<double> v{1.0 / 3.0, -0.0, 1e-310, std::numeric_limits<double>::infinity(),
                              -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()};
        save_npy(dir.file("a.npy"), v, {6});
        const npy_array a = load_npy(dir.file("a.npy"));
        CHECK(a.dtype() == npy_dtype::float64);
        CHECK(a.shape() == std::vector<std::int64_t>{6});
        const auto& w = a.values<double>();
        CHECK(std::memcmp(w.data(), v.data(), v.size() * sizeof(double)) == 0);  // bit exact, NaN included
    }
    SECTION("float16") {
        std::vector<longnet::half> v;
        for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f}) v.emplace_back(f);
        save_npy(dir.file("a.npy"), v, {2, 3});
        const npy_array a = load_npy(dir.file("a.npy"));
        CHECK(a.dtype() == npy_dtype::float16);
        const std::vector<float> f = a.as_float();
        CHECK(f == std::vector<float>{0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f});
        CHECK(read_bytes(dir.file("a.npy")).find("'descr': '<f2'") != std::string::npos);
    }
    SECTION("int64 and int32") {
        std::vector<std::int64_t> v{0, -1, 96, std::numeric_limits<std::int64_t>::max(),
                                    std::numeric_limits<std::int64_t>::min()};
        save_npy(dir.file("t.npy"), v, {5});
        const npy_array a = load_npy(dir.file("t.npy"));
        CHECK(a.dtype() == npy_dtype::int64);
        CHECK(a.as_int64() == v);
        CHECK_THROWS_AS(a.values<float>(), npy_error);

        std::vector<std::int32_t> w{7, -8, 9};
        save_npy(dir.file("u.npy"), w, {3, 1});
        const npy_array b = load_npy(dir.file("u.npy"));
        CHECK(b.dtype() == npy_dtype::int32);
        CHECK(b.as_int64() == std::vector<std::int64_t>{7, -8, 9});
        CHECK(b.as_float() == std::vector<float>{7, -8, 9});
    }
    SECTION("0-d, zero-size and npy_array overload") {
        save_npy(dir.file("s.npy"), std::vector<double>{42.0}, {});
        const npy_array s = load_npy(dir.file("s.npy"));
        CHECK(s.ndim() == 0);
        CHECK(s.size() == 1);
        CHECK(s.as_double() == std::vector<double>{42.0});

        save_npy(dir.file("z.npy"), std::vector<float>{}, {0, 7});
        const npy_array z = load_npy(dir.file("z.npy"));
        CHECK(z.shape() == std::vector<std::int64_t>{0, 7});
        CHECK(z.size() == 0);

        save_npy(dir.file("c.npy"), z);
        CHECK(load_npy(dir.file("c.npy")).shape() == z.shape());
    }
    SECTION("the written header is numpy's v1 layout") {
        save_npy(dir.file("a.npy"), std::vector<float>(6, 1.0f), {2, 3});
        const std::string bytes = read_bytes(dir.file("a.npy"));
        REQUIRE(bytes.size() == 128 + 24);  // data starts at a multiple of 64
        CHECK(bytes.compare(0, 8, std::string("\x93NUMPY\x01\x00", 8)) == 0);
        CHECK(static_cast<unsigned char>(bytes[8]) + 256 * static_cast<unsigned char>(bytes[9]) == 118);
        CHECK(bytes[127] == '\n');
        CHECK(bytes.find("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }") == 10);
        CHECK(dir.listing() == std::vector<std::string>{"a.npy"});  // no temporary file left behind
    }
    SECTION("1-d shape is written as a one-tuple") {
        save_npy(dir.file("a.npy"), std::vector<float>(3, 1.0f), {3});
        CHECK(read_bytes(dir.file("a.npy")).find("'shape': (3,), }") != std::string::npos);
    }
}

TEST_CASE("npy reads big-endian files and converts them", "[npy]") {
    temp_dir dir;
    const std::vector<float> f{1.5f, -2.0f, 3.25f};
    write_bytes(dir.file("f4.npy"), npy_bytes(dict_of(">f4", "(3,)"), raw(f, true)));
    CHECK(load_npy(dir.file("f4.npy")).values<float>() == f);

    const std::vector<double> d{1.0 / 7.0, -1e300};
    write_bytes(dir.file("f8.npy"), npy_bytes(dict_of(">f8", "(2,)"), raw(d, true)));
    CHECK(load_npy(dir.file("f8.npy")).values<double>() == d);

    const std::vector<std::uint16_t> h{0x3c00, 0xc000};  // 1.0, -2.0
    write_bytes(dir.file("f2.npy"), npy_bytes(dict_of(">f2", "(2,)"), raw(h, true)));
    CHECK(load_npy(dir.file("f2.npy")).as_float() == std::vector<float>{1.0f, -2.0f});

    const std::vector<std::int64_t> t{1, -2, 1234567890123};
    write_bytes(dir.file("i8.npy"), npy_bytes(dict_of(">i8", "(3,)"), raw(t, true)));
    CHECK(load_npy(dir.file("i8.npy")).as_int64() == t);

    const std::vector<std::int32_t> u{5, -6};
    write_bytes(dir.file("i4.npy"), npy_bytes(dict_of(">i4", "(2,)"), raw(u, true)));
    CHECK(load_npy(dir.file("i4.npy")).as_int64() == std::vector<std::int64_t>{5, -6});
}

TEST_CASE("npy reads Fortran-order files into C order", "[npy]") {
    temp_dir dir;
    SECTION("2-d") {
        // C-order matrix [[0, 1, 2], [3, 4, 5]] stored column by column.
        write_bytes(dir.file("m.npy"), npy_bytes(dict_of("<f8", "(2, 3)", true), raw(std::vector<double>{0, 3, 1, 4, 2, 5})));
        const npy_array a = load_npy(dir.file("m.npy"));
        CHECK(a.shape() == std::vector<std::int64_t>{2, 3});
        CHECK(a.values<double>() == std::vector<double>{0, 1, 2, 3, 4, 5});
    }
    SECTION("3-d, big-endian") {
        const std::int64_t A = 2, B = 3, C = 4;
        std::vector<float> fortran(static_cast<std::size_t>(A * B * C));
        // element (i, j, k) has value 100 i + 10 j + k; Fortran offset i + A j + A B k
        for (std::int64_t i = 0; i < A; ++i)
            for (std::int64_t j = 0; j < B; ++j)
                for (std::int64_t k = 0; k < C; ++k)
                    fortran[static_cast<std::size_t>(i + A * j + A * B * k)] = static_cast<float>(100 * i + 10 * j + k);
        write_bytes(dir.file("t.npy"), npy_bytes(dict_of(">f4", "(2, 3, 4)", true), raw(fortran, true)));
        const npy_array a = load_npy(dir.file("t.npy"));
        REQUIRE(a.shape() == std::vector<std::int64_t>{A, B, C});
        const auto& v = a.values<float>();
        for (std::int64_t i = 0; i < A; ++i)
            for (std::int64_t j = 0; j < B; ++j)
                for (std::int64_t k = 0; k < C; ++k)
                    CHECK(v[static_cast<std::size_t>((i * B + j) * C + k)] == static_cast<float>(100 * i + 10 * j + k));
    }
    SECTION("1-d Fortran is the same as C") {
        write_bytes(dir.file("v.npy"), npy_bytes(dict_of("<i8", "(3,)", true), raw(std::vector<std::int64_t>{4, 5, 6})));
        CHECK(load_npy(dir.file("v.npy")).as_int64() == std::vector<std::int64_t>{4, 5, 6});
    }
}

TEST_CASE("npy reads format versions 2.0 and 3.0 and tolerant header spellings", "[npy]") {
    temp_dir dir;
    const std::vector<float> v{1, 2, 3, 4};
    write_bytes(dir.file("v2.npy"), npy_bytes(dict_of("<f4", "(2, 2)"), raw(v), 2));
    CHECK(load_npy(dir.file("v2.npy")).values<float>() == v);
    write_bytes(dir.file("v3.npy"), npy_bytes(dict_of("<f4", "(4,)"), raw(v), 3));
    CHECK(load_npy(dir.file("v3.npy")).values<float>() == v);
    // Keys in another order, double quotes, no trailing comma, no padding, no newline.
    write_bytes(dir.file("odd.npy"),
                npy_bytes("{\"shape\": (4,), \"fortran_order\": False, \"descr\": \"<f4\"}", raw(v), 1, false));
    CHECK(load_npy(dir.file("odd.npy")).values<float>() == v);
    // numpy before 1.x wrote Python 2 longs: (4L,)
    write_bytes(dir.file("long.npy"), npy_bytes(dict_of("<f4", "(4L,)"), raw(v)));
    CHECK(load_npy(dir.file("long.npy")).shape() == std::vector<std::int64_t>{4});
}

TEST_CASE("npy rejects every malformed file with a message naming the problem", "[npy]") {
    temp_dir dir;
    const std::string good_data = raw(std::vector<float>{1, 2, 3, 4, 5, 6});
    const auto put = [&](const std::string& name, const std::string& bytes) {
        write_bytes(dir.file(name), bytes);
        return dir.file(name);
    };

    require_npy_error(dir.file("missing.npy"), "no such file");
    require_npy_error(dir.path.string(), "is a directory");
    require_npy_error(put("empty.npy", ""), "empty file");
    require_npy_error(put("short_magic.npy", std::string("\x93NUM", 4)), "truncated header");
    require_npy_error(put("text.npy", "hello, this is not a numpy file at all\n"), "bad magic");
    require_npy_error(put("tiny_text.npy", "hi"), "bad magic");
    require_npy_error(put("no_version.npy", std::string("\x93NUMPY\x01", 7)), "truncated header");
    require_npy_error(put("no_length.npy", std::string("\x93NUMPY\x01\x00\x10", 9)), "truncated header");
    require_npy_error(put("v4.npy", std::string("\x93NUMPY\x04\x00\x10\x00", 10) + std::string(16, ' ')),
                      "unsupported .npy format version 4.0");
    require_npy_error(put("v1_1.npy", std::string("\x93NUMPY\x01\x01\x10\x00", 10) + std::string(16, ' ')),
                      "unsupported .npy format version 1.1");
    {  // header length claims more than the file holds
        std::string b = npy_bytes(dict_of("<f4", "(6,)"), good_data);
        b[8] = '\xff';
        b[9] = '\xff';
        require_npy_error(put("long_header.npy", b), "truncated header");
        std::string c = npy_bytes(dict_of("<f4", "(6,)"), "", 2);
        c[11] = '\x7f';  // v2: 2 GiB header length
        require_npy_error(put("huge_header.npy", c), "truncated header");
        // a truncated header: the file stops inside the dict
        require_npy_error(put("cut_header.npy", npy_bytes(dict_of("<f4", "(6,)"), good_data).substr(0, 40)),
                          "truncated header");
    }

    // Malformed dicts.
    const auto bad_dict = [&](const std::string& name, const std::string& dict, const std::string& problem) {
        require_npy_error(put(name, npy_bytes(dict, good_data)), problem);
    };
    bad_dict("not_dict.npy", "['descr', '<f4']", "malformed header dict");
    bad_dict("missing_shape.npy", "{'descr': '<f4', 'fortran_order': False}", "missing key 'shape'");
    bad_dict("missing_descr.npy", "{'fortran_order': False, 'shape': (6,)}", "missing key 'descr'");
    bad_dict("missing_order.npy", "{'descr': '<f4', 'shape': (6,)}", "missing key 'fortran_order'");
    bad_dict("extra_key.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}", "unexpected key 'x'");
    bad_dict("dup_key.npy", "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}",
             "duplicate key 'descr'");
    bad_dict("bad_bool.npy", "{'descr': '<f4', 'fortran_order': 0, 'shape': (6,)}", "True or False");
    bad_dict("shape_str.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': '6'}", "'shape' is not a tuple");
    bad_dict("shape_float.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (6.0,)}", "malformed header dict");
    bad_dict("unterminated.npy", "{'descr': '<f4, 'fortran_order': False, 'shape': (6,)}", "malformed header dict");
    bad_dict("no_close.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)", "malformed header dict");
    bad_dict("garbage_after.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)} x", "after the closing");
    bad_dict("descr_int.npy", "{'descr': 4, 'fortran_order': False, 'shape': (6,)}", "'descr' is not a string");
    static const char nul_dict[] = "{'descr': '<f4',\0 'fortran_order': False, 'shape': (6,)}";
    require_npy_error(put("nul.npy", npy_bytes(std::string(nul_dict, sizeof nul_dict - 1), good_data)), "NUL byte");

    // Unsupported dtypes are named.
    bad_dict("c8.npy", dict_of("<c8", "(3,)"), "unsupported dtype '<c8'");
    bad_dict("u1.npy", dict_of("|u1", "(24,)"), "unsupported dtype '|u1'");
    bad_dict("f16.npy", dict_of("<f16", "(1,)"), "unsupported dtype '<f16'");
    bad_dict("obj.npy", dict_of("|O", "(1,)"), "unsupported dtype '|O'");
    bad_dict("record.npy", "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,)}", "structured");

    // Bad shapes, overflow, and headers claiming more data than the file has (no allocation first).
    bad_dict("neg.npy", dict_of("<f4", "(-6,)"), "negative dimension");
    bad_dict("huge_dim.npy", dict_of("<f4", "(99999999999999999999999,)"), "too large");
    bad_dict("count_overflow.npy", dict_of("<f4", "(4294967296, 4294967296, 4)"), "absurd element count");
    bad_dict("bytes_overflow.npy", dict_of("<f8", "(2305843009213693952,)"), "overflows");  // 2^61 · 8 = 2^64
    bad_dict("lying.npy", dict_of("<f4", "(1000000, 1000000)"), "truncated data");  // 4 TB claimed
    bad_dict("short_data.npy", dict_of("<f4", "(7,)"), "truncated data");
    bad_dict("trailing.npy", dict_of("<f4", "(5,)"), "trailing bytes");
    require_npy_error(put("no_data.npy", npy_bytes(dict_of("<f8", "(6,)"), "")), "truncated data");
}

TEST_CASE("npy never crashes on truncated or corrupted files", "[npy]") {
    temp_dir dir;
    const std::string good = npy_bytes(dict_of("<f4", "(2, 3)"), raw(std::vector<float>{1, 2, 3, 4, 5, 6}));
    const std::string path = dir.file("x.npy");
    for (std::size_t len = 0; len < good.size(); ++len) {
        write_bytes(path, good.substr(0, len));
        CHECK_THROWS_AS(load_npy(path), npy_error);
    }
    // Random byte corruption of the preamble and header: either a clean load or an npy_error.
    std::mt19937 rng(1234);
    int loaded = 0, rejected = 0;
    for (int trial = 0; trial < 2000; ++trial) {
        std::string bad = good;
        const int flips = 1 + static_cast<int>(rng() % 3);
        for (int f = 0; f < flips; ++f) bad[rng() % 64] = static_cast<char>(rng() & 0xff);
        write_bytes(path, bad);
        try {
            const npy_array a = load_npy(path);
            CHECK(a.nbytes() == 24);  // accepted only when it still describes exactly the data
            ++loaded;
        } catch (const npy_error&) {
            ++rejected;
        }
    }
    CHECK(rejected > 0);
    CHECK(loaded + rejected == 2000);
}

TEST_CASE("npy writes atomically", "[npy]") {
    temp_dir dir;
    const std::vector<float> v{1, 2, 3};
    SECTION("a missing output folder is an error and leaves nothing") {
        const std::string target = (dir.path / "no_such_folder" / "out.npy").string();
        try {
            save_npy(target, v, {3});
            FAIL("save_npy wrote into a missing folder");
        } catch (const npy_error& e) {
            CHECK(std::string(e.what()).find("does not exist") != std::string::npos);
        }
        CHECK(dir.listing().empty());
    }
    SECTION("an output path that is a folder is an error") {
        fs::create_directory(dir.path / "sub");
        CHECK_THROWS_AS(save_npy((dir.path / "sub").string(), v, {3}), npy_error);
        CHECK(dir.listing() == std::vector<std::string>{"sub"});
    }
    SECTION("a shape that does not match the data is an error and leaves nothing") {
        CHECK_THROWS_AS(save_npy(dir.file("a.npy"), v, {4}), npy_error);
        CHECK(dir.listing().empty());
    }
    SECTION("replacing an existing file") {
        write_bytes(dir.file("a.npy"), "old contents");
        save_npy(dir.file("a.npy"), v, {3});
        CHECK(load_npy(dir.file("a.npy")).values<float>() == v);
        CHECK(dir.listing() == std::vector<std::string>{"a.npy"});
    }
    SECTION("an uncommitted staged file disappears") {
        {
            longnet::io::staged_file staged(dir.file("a.npy"), "bytes");
            CHECK(fs::exists(staged.temp_path()));
            CHECK(!fs::exists(dir.file("a.npy")));
        }
        CHECK(dir.listing().empty());
    }
    SECTION("two staged files commit together") {
        longnet::io::staged_file a(dir.file("a.npy"), longnet::io::npy_file_bytes(npy_dtype::float32, {3}, v.data(), 3));
        longnet::io::staged_file b(dir.file("b.npy"), longnet::io::npy_file_bytes(npy_dtype::float32, {1, 3}, v.data(), 3));
        a.commit();
        b.commit();
        CHECK(load_npy(dir.file("a.npy")).shape() == std::vector<std::int64_t>{3});
        CHECK(load_npy(dir.file("b.npy")).shape() == std::vector<std::int64_t>{1, 3});
        CHECK(dir.listing().size() == 2);
    }
}
