// SPDX-License-Identifier: Apache-2.0
#pragma once
// Which tokenizer a model was trained with, as a config.json records it (nn::decoder_config::tokenizer,
// the "tokenizer" object of config.json), and the hash that identifies a tokenizer model file.
//
//   byte level      no record in config.json (every config written before the record existed is one),
//                   or {"type": "byte"}: ids 0..255 are the bytes of the text.
//   SentencePiece   {"type": "sentencepiece", "path": "spm.model", "fnv1a64": "89ab...", "vocab_size": 8000}:
//                   path as given when the model was trained (for people: never opened from here),
//                   fnv1a64 the 64-bit FNV-1a hash of the model file's bytes as 16 lowercase hex digits
//                   (offset basis 0xcbf29ce484222325, prime 0x100000001b3, one byte at a time),
//                   vocab_size the tokenizer's (the model's vocab_size is at least that).
// Two records name the same tokenizer when both are byte level or both are SentencePiece with the same
// hash (the path may differ: a copied or moved model file is the same tokenizer). No JSON here: the
// config reader (nn/decoder_config.hpp) reads and writes the object. The tokenizers themselves:
// text/tokenizer.hpp.

#include <cstddef>
#include <cstdint>
#include <string>

namespace longnet::text {

enum class tokenizer_kind { byte_level, sentencepiece };

// 64-bit FNV-1a of bytes [data, data + size), continuing from `hash` (the offset basis to start).
constexpr std::uint64_t fnv1a64_basis = 0xcbf29ce484222325ULL;
inline std::uint64_t fnv1a64(const void* data, std::size_t size, std::uint64_t hash = fnv1a64_basis) noexcept {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < size; ++i) {
        hash ^= p[i];
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

// 16 lowercase hex digits.
inline std::string hex64(std::uint64_t v) {
    static const char digits[] = "0123456789abcdef";
    std::string s(16, '0');
    for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<std::size_t>(i)] = digits[v & 15];
    return s;
}

struct tokenizer_record {
    tokenizer_kind kind = tokenizer_kind::byte_level;
    std::string path;            // SentencePiece: the model file as given at training time
    std::uint64_t fnv1a64 = 0;   // SentencePiece: hash of the model file's bytes
    std::int64_t vocab_size = 256;

    bool byte_level() const noexcept { return kind == tokenizer_kind::byte_level; }

    // Same tokenizer (see the top of this file).
    bool same_as(const tokenizer_record& o) const noexcept {
        return kind == o.kind && (byte_level() || fnv1a64 == o.fnv1a64);
    }

    // For messages: "the byte-level tokenizer" or "SentencePiece model 'spm.model' (FNV-1a 64 0123..., 8000 pieces)".
    std::string describe() const {
        if (byte_level()) return "the byte-level tokenizer";
        return "SentencePiece model '" + path + "' (FNV-1a 64 " + hex64(fnv1a64) + ", " + std::to_string(vocab_size) + " pieces)";
    }
};

}  // namespace longnet::text
