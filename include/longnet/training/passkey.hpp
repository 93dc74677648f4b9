// SPDX-License-Identifier: Apache-2.0
#pragma once
// Passkey retrieval (--task passkey; `longnet_lm passkey`), byte level: llama.cpp's examples/passkey
// prompt (from Landmark Attention, arXiv 2305.16300) as a document of a given byte length.
//
// A document is
//   passkey_prefix                                  (the instruction, once)
//   passkey_filler x n, with passkey_key_sentence(N) inserted before filler i (0 <= i < n: a filler
//                                                   boundary, as llama.cpp's i_pos; never after the last)
//   passkey_question                                (" What is the pass key? The pass key is")
//   " N."                                           (the answer: the key sentence reads "The pass key is N.",
//                                                   so the continuation of the question is " N", a space and
//                                                   the digits, then ".")
//   tail: the filler again, cut to the document's length (after the answer: it never affects the answer)
// N is uniform in 1..max_key (llama.cpp: rand() % 50000 + 1). n is the largest filler count for which the
// document with the longest key (max_key's digits) fits in the length, so n does not depend on N. The
// insertion index i comes from a depth d in [0, 1] (i = round(d (n - 1)): 0 right after the prefix, 1
// before the last filler) or is uniform in 0..n-1 (llama.cpp's random i_pos). The prompt a model is
// asked with is the document up to the question (passkey_document::prompt()); it is correct when greedy
// decoding continues it with " N" and then a byte that is not a digit (passkey_correct).
//
// Tokens are bytes (ids 0..255; a byte-level model, vocab >= 256). Everything is deterministic given the
// rng_state.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "longnet/nn/cross_entropy.hpp"
#include "longnet/training/data.hpp"

namespace longnet::training {

inline const std::string passkey_prefix =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about "
    "the important information there.";
inline const std::string passkey_filler = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
inline const std::string passkey_question = " What is the pass key? The pass key is";

inline std::string passkey_key_sentence(std::uint64_t key) {
    const std::string n = std::to_string(key);
    return " The pass key is " + n + ". Remember it. " + n + " is the pass key.";
}
// What follows the question in a document: " N." (the answer " N" and the sentence's full stop).
inline std::string passkey_answer(std::uint64_t key) { return " " + std::to_string(key) + "."; }

struct passkey_document {
    std::string text;              // exactly the requested length
    std::uint64_t key = 0;         // N
    std::size_t fillers = 0;       // n
    std::size_t key_index = 0;     // i: the key sentence stands before filler i
    std::size_t key_offset = 0;    // byte offset of the key sentence in text
    std::size_t answer_offset = 0; // byte offset of " N." (= the prompt's length)
    std::string prompt() const { return text.substr(0, answer_offset); }
};

// The bytes of a document apart from its fillers and tail, with the longest key of 1..max_key.
inline std::size_t passkey_fixed_bytes(std::uint64_t max_key) {
    return passkey_prefix.size() + passkey_key_sentence(max_key).size() + passkey_question.size() + passkey_answer(max_key).size();
}
// How many fillers a document of `length` bytes holds (n >= 1), or std::invalid_argument naming the
// shortest length that holds one.
inline std::size_t passkey_fillers(std::size_t length, std::uint64_t max_key) {
    if (max_key < 1) throw std::invalid_argument("passkey task: the largest key must be >= 1, got 0");
    const std::size_t fixed = passkey_fixed_bytes(max_key);
    if (length < fixed + passkey_filler.size())
        throw std::invalid_argument("passkey task: a document of " + std::to_string(length) + " bytes is too short: the prefix, one filler, " +
                                    "the key sentence, the question and the answer need " +
                                    std::to_string(fixed + passkey_filler.size()) + " bytes (keys up to " + std::to_string(max_key) + ")");
    return (length - fixed) / passkey_filler.size();
}
// The filler index of a depth in [0, 1] among n fillers: round(depth (n - 1)).
inline std::size_t passkey_index(double depth, std::size_t fillers) {
    if (!(depth >= 0 && depth <= 1)) throw std::invalid_argument("passkey task: depth " + std::to_string(depth) + " is outside [0, 1]");
    return static_cast<std::size_t>(std::lround(depth * static_cast<double>(fillers - 1)));
}

// The document of `length` bytes with key `key` before filler `key_index`.
inline passkey_document make_passkey_document(std::size_t length, std::uint64_t key, std::size_t key_index, std::uint64_t max_key = 50000) {
    const std::size_t n = passkey_fillers(length, max_key);
    if (key < 1 || key > max_key)
        throw std::invalid_argument("passkey task: key " + std::to_string(key) + " is outside 1.." + std::to_string(max_key));
    if (key_index >= n)
        throw std::invalid_argument("passkey task: key index " + std::to_string(key_index) + " is past the last of " + std::to_string(n) +
                                    " fillers");
    passkey_document d;
    d.key = key, d.fillers = n, d.key_index = key_index;
    d.text.reserve(length);
    d.text = passkey_prefix;
    for (std::size_t i = 0; i < n; ++i) {
        if (i == key_index) {
            d.key_offset = d.text.size();
            d.text += passkey_key_sentence(key);
        }
        d.text += passkey_filler;
    }
    d.text += passkey_question;
    d.answer_offset = d.text.size();
    d.text += passkey_answer(key);
    while (d.text.size() < length) d.text += passkey_filler.substr(0, std::min(passkey_filler.size(), length - d.text.size()));
    return d;
}

// A document with N uniform in 1..max_key and the key at `depth`, or (depth < 0) at a uniform filler.
inline passkey_document sample_passkey_document(std::size_t length, double depth, std::uint64_t max_key, rng_state& rng) {
    const std::size_t n = passkey_fillers(length, max_key);
    const std::uint64_t key = 1 + rng.below(max_key);
    const std::size_t index = depth < 0 ? static_cast<std::size_t>(rng.below(n)) : passkey_index(depth, n);
    return make_passkey_document(length, key, index, max_key);
}

// Greedy output `generated` (bytes after the prompt) is right: " N" and then a byte that is not a digit
// (or nothing more). The number read from it (digits after one optional space) goes to *answer.
inline bool passkey_correct(const std::string& generated, std::uint64_t key, std::string* answer = nullptr) {
    std::size_t i = !generated.empty() && generated[0] == ' ' ? 1 : 0, j = i;
    while (j < generated.size() && generated[j] >= '0' && generated[j] <= '9') ++j;
    if (answer) *answer = generated.substr(i, j - i);
    return i == 1 && generated.substr(i, j - i) == std::to_string(key);  // j ends the digits: a non-digit or the end
}

// Training on passkey documents (--task passkey): each sequence is one fresh document of seq_len + 1
// bytes (inputs its first seq_len, targets its last seq_len). Scored: the answer " N." only
// (answer_only, the default), or every target.
struct passkey_task {
    static constexpr std::int64_t vocab = 256;
    std::size_t seq_len = 1024;
    std::uint64_t max_key = 50000;
    double depth = -1;  // < 0: a uniform filler boundary
    bool answer_only = true;

    void validate() const { (void)passkey_fillers(seq_len + 1, max_key); }
    sequence sample(rng_state& rng) const {
        const passkey_document d = sample_passkey_document(seq_len + 1, depth, max_key, rng);
        sequence s;
        s.inputs.resize(seq_len);
        s.targets.resize(seq_len);
        for (std::size_t t = 0; t < seq_len; ++t) {
            s.inputs[t] = static_cast<unsigned char>(d.text[t]);
            s.targets[t] = static_cast<unsigned char>(d.text[t + 1]);
        }
        if (answer_only) {  // target t is byte t + 1: the answer's bytes are targets answer_offset - 1 ..
            const std::size_t first = d.answer_offset - 1, last = first + passkey_answer(d.key).size();
            for (std::size_t t = 0; t < seq_len; ++t)
                if (t < first || t >= last) s.targets[t] = nn::ignore_target;
        }
        return s;
    }
};

}  // namespace longnet::training
