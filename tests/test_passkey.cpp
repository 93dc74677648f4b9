// SPDX-License-Identifier: Apache-2.0
// The passkey document builder (training/passkey.hpp): the exact llama.cpp text, built here again from
// its pieces; depth placement; exact length; keys in 1..max_key, seeded; the training sequence (bytes,
// only the answer scored); the correctness rule; bad arguments.

#include <cstdint>
#include <set>
#include <string>

#include <longnet/training/passkey.hpp>

#include "catch.hpp"

namespace {

namespace tr = longnet::training;

// The llama.cpp prompt (examples/passkey/passkey.cpp) for n fillers, the key before filler i.
std::string llama_cpp_prompt(int n, int i, int key) {
    std::string p = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the "
                    "important information there.";
    for (int j = 0; j < n; j++) {
        if (j == i) p += " The pass key is " + std::to_string(key) + ". Remember it. " + std::to_string(key) + " is the pass key.";
        p += " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
    }
    return p + " What is the pass key? The pass key is";
}

}  // namespace

TEST_CASE("passkey: the document is llama.cpp's prompt, the answer, then filler to the exact length", "[training]") {
    for (std::size_t length : {342, 512, 1000, 4097}) {
        const std::size_t n = tr::passkey_fillers(length, 50000);
        for (std::size_t i : {std::size_t{0}, n / 2, n - 1}) {
            const tr::passkey_document d = tr::make_passkey_document(length, 31337, i);
            CHECK(d.text.size() == length);
            CHECK(d.fillers == n);
            CHECK(d.prompt() == llama_cpp_prompt(static_cast<int>(n), static_cast<int>(i), 31337));
            CHECK(d.text.substr(d.answer_offset, 7) == " 31337.");
            CHECK(d.text.compare(d.key_offset, 25, " The pass key is 31337. R") == 0);
            const std::string tail = d.text.substr(d.answer_offset + 7);
            CHECK(tail.size() < tr::passkey_filler.size() + 7);  // no room for one more filler with the longest key
            CHECK(tr::passkey_filler.compare(0, tail.size(), tail) == 0);
        }
    }
    // n is the largest count that fits with the longest key (5 digits), whatever the key
    const std::size_t fixed = tr::passkey_fixed_bytes(50000);
    CHECK(fixed == 148 + 59 + 38 + 7);
    CHECK(tr::passkey_fillers(fixed + 90, 50000) == 1);
    CHECK(tr::passkey_fillers(fixed + 2 * 90 - 1, 50000) == 1);
    CHECK(tr::passkey_fillers(fixed + 2 * 90, 50000) == 2);
    CHECK(tr::make_passkey_document(fixed + 90, 7, 0).prompt().size() == fixed + 90 - 8 - 7);  // 4 digits and " 7." shorter
}

TEST_CASE("passkey: depth places the key at round(depth (n - 1)); random depth covers every boundary", "[training]") {
    const std::size_t length = 2000, n = tr::passkey_fillers(length, 50000);
    REQUIRE(n == 19);
    CHECK(tr::passkey_index(0, n) == 0);
    CHECK(tr::passkey_index(1, n) == 18);
    CHECK(tr::passkey_index(0.5, n) == 9);
    CHECK(tr::passkey_index(0.25, n) == 5);  // 4.5 rounds away from zero
    tr::rng_state rng{4};
    std::size_t last_offset = 0;
    for (double depth : {0.0, 0.25, 0.5, 0.75, 1.0}) {
        const tr::passkey_document d = tr::sample_passkey_document(length, depth, 50000, rng);
        CHECK(d.key_index == tr::passkey_index(depth, n));
        CHECK(d.key_offset == tr::passkey_prefix.size() + d.key_index * tr::passkey_filler.size());
        CHECK(d.key_offset >= last_offset);
        last_offset = d.key_offset;
    }
    std::set<std::size_t> seen;
    for (int k = 0; k < 400; ++k) seen.insert(tr::sample_passkey_document(length, -1, 50000, rng).key_index);
    CHECK(seen.size() == n);
    CHECK(*seen.rbegin() == n - 1);
}

TEST_CASE("passkey: keys uniform in 1..max_key, the same seed gives the same documents", "[training]") {
    tr::rng_state a{11}, b{11}, c{12}, s{13};
    std::set<std::uint64_t> small;
    std::uint64_t lo = ~0ull, hi = 0;
    bool differs = false;
    for (int k = 0; k < 2000; ++k) {
        const tr::passkey_document x = tr::sample_passkey_document(700, -1, 50000, a), y = tr::sample_passkey_document(700, -1, 50000, b);
        CHECK(x.text == y.text);
        differs = differs || tr::sample_passkey_document(700, -1, 50000, c).text != x.text;
        lo = std::min(lo, x.key), hi = std::max(hi, x.key);
        small.insert(tr::sample_passkey_document(700, -1, 3, s).key);
    }
    CHECK(differs);
    CHECK(lo >= 1);
    CHECK(lo < 200);  // 2000 draws of 50000: the smallest is below 200 with probability 1 - 1e-3
    CHECK(hi <= 50000);
    CHECK(hi > 49800);
    CHECK(small == std::set<std::uint64_t>{1, 2, 3});
}

TEST_CASE("passkey task: a sequence is the document's bytes, only the answer scored (or all)", "[training]") {
    tr::passkey_task task;
    task.seq_len = 600;
    task.validate();
    tr::rng_state r1{5}, r2{5};
    const tr::sequence s = task.sample(r1);
    const tr::passkey_document d = tr::sample_passkey_document(601, -1, 50000, r2);
    REQUIRE(s.inputs.size() == 600);
    REQUIRE(s.targets.size() == 600);
    const std::string answer = tr::passkey_answer(d.key);
    std::string scored;
    for (std::size_t t = 0; t < 600; ++t) {
        CHECK(s.inputs[t] == static_cast<unsigned char>(d.text[t]));
        if (s.targets[t] != longnet::nn::ignore_target) {
            CHECK(s.targets[t] == static_cast<unsigned char>(d.text[t + 1]));
            CHECK(t + 1 >= d.answer_offset);
            scored += static_cast<char>(s.targets[t]);
        }
    }
    CHECK(scored == answer);
    CHECK(std::string(d.text.begin() + static_cast<std::ptrdiff_t>(d.answer_offset) - 3, d.text.begin() + static_cast<std::ptrdiff_t>(d.answer_offset)) == " is");
    task.answer_only = false;
    tr::rng_state r3{5};
    const tr::sequence all = task.sample(r3);
    CHECK(all.inputs == s.inputs);
    for (std::size_t t = 0; t < 600; ++t) CHECK(all.targets[t] == static_cast<unsigned char>(d.text[t + 1]));
}

TEST_CASE("passkey: correct is \" N\" then a non-digit; bad arguments are named", "[training]") {
    std::string got;
    CHECK(tr::passkey_correct(" 4021.", 4021, &got));
    CHECK(got == "4021");
    CHECK(tr::passkey_correct(" 4021", 4021));
    CHECK_FALSE(tr::passkey_correct(" 40217", 4021, &got));
    CHECK(got == "40217");
    CHECK_FALSE(tr::passkey_correct(" 402.", 4021, &got));
    CHECK(got == "402");
    CHECK_FALSE(tr::passkey_correct("4021.", 4021));  // the space belongs to the answer
    CHECK_FALSE(tr::passkey_correct(" x4021", 4021, &got));
    CHECK(got.empty());
    CHECK_THROWS_WITH(tr::passkey_fillers(300, 50000), Catch::Contains("300 bytes is too short") && Catch::Contains("342"));
    CHECK_THROWS_WITH(tr::make_passkey_document(1000, 0, 0), Catch::Contains("key 0"));
    CHECK_THROWS_WITH(tr::make_passkey_document(1000, 50001, 0), Catch::Contains("50001"));
    CHECK_THROWS_WITH(tr::make_passkey_document(1000, 5, 8), Catch::Contains("key index 8"));
    CHECK_THROWS_WITH(tr::passkey_index(1.5, 4), Catch::Contains("1.5"));
    tr::passkey_task task;
    task.seq_len = 100;
    CHECK_THROWS_WITH(task.validate(), Catch::Contains("101 bytes"));
}
