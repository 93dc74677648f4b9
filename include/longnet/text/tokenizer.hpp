// SPDX-License-Identifier: Apache-2.0
#pragma once
// Text to token ids and back: the byte-level tokenizer (ids 0..255 are the bytes; needs nothing) and
// SentencePiece models (spm_train's .model files; needs libsentencepiece, through longnet::sentencepiece,
// which defines LONGNET_WITH_SENTENCEPIECE=1). Without it, tokenizer::load throws tokenizer_error saying
// so and sentencepiece_available is false; the byte-level tokenizer works either way.
//
//   text::tokenizer t = text::tokenizer::load("spm.model");   // or text::tokenizer() for byte level
//   std::vector<std::int64_t> ids = t.encode("some text");
//   std::string back = t.decode(ids);
//   t.vocab_size(); t.record();   // what a model trained on it records (text/tokenizer_record.hpp)
//   t.eos_id();                   // the end-of-document id, or -1 (byte level; a model without one)
//   t.encode_file("corpus.txt", [](const std::int64_t* ids, std::size_t n) { ... });
//
// Files (encode_file): byte level streams the file's bytes in 1 MiB blocks, newlines included (a file
// larger than memory works). SentencePiece encodes the file line by line as spm_encode does: a line's
// ids follow the previous line's and the newline itself is no token (SentencePiece's normalisation makes
// it whitespace; each line starts a new word). One line is held in memory at a time.
// decode: ids outside [0, vocab_size) print as "<id>" (a model's vocabulary may be larger than its
// tokenizer's); byte level gives the bytes, SentencePiece its detokenised text.
// Errors: tokenizer_error (a std::runtime_error) naming the file: missing, unreadable, not a
// SentencePiece model, no SentencePiece support in this build.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "longnet/text/tokenizer_record.hpp"

#if LONGNET_WITH_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace longnet::text {

struct tokenizer_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

#if LONGNET_WITH_SENTENCEPIECE
inline constexpr bool sentencepiece_available = true;
#else
inline constexpr bool sentencepiece_available = false;
#endif

// The message of a build without SentencePiece.
inline std::string no_sentencepiece_message() {
    return "this build has no SentencePiece support: install libsentencepiece-dev and rebuild";
}

class tokenizer {
public:
    // Byte level.
    tokenizer() = default;

    // A SentencePiece model file (spm_train's prefix.model). Throws tokenizer_error.
    static tokenizer load(const std::string& path) {
        if (!sentencepiece_available) throw tokenizer_error(path + ": " + no_sentencepiece_message());
        std::error_code ec;
        if (std::filesystem::is_directory(path, ec)) throw tokenizer_error(path + ": is a folder, not a SentencePiece model file");
        std::ifstream in(path, std::ios::binary);
        if (!in) throw tokenizer_error(path + ": cannot open the tokenizer model");
        std::string bytes;
        char block[1 << 16];
        while (in.read(block, sizeof block) || in.gcount() > 0) {
            bytes.append(block, static_cast<std::size_t>(in.gcount()));
            if (bytes.size() > max_model_bytes)
                throw tokenizer_error(path + ": more than " + std::to_string(max_model_bytes >> 20) +
                                      " MiB; not a SentencePiece model");
        }
        if (in.bad()) throw tokenizer_error(path + ": read error");
        tokenizer t;
        t.record_.kind = tokenizer_kind::sentencepiece;
        t.record_.path = path;
        t.record_.fnv1a64 = fnv1a64(bytes.data(), bytes.size());
#if LONGNET_WITH_SENTENCEPIECE
        auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
        const auto status = sp->LoadFromSerializedProto(bytes);
        if (!status.ok()) throw tokenizer_error(path + ": not a SentencePiece model (" + status.ToString() + ")");
        if (sp->GetPieceSize() < 1) throw tokenizer_error(path + ": not a SentencePiece model (no pieces)");
        t.record_.vocab_size = sp->GetPieceSize();
        t.sp_ = std::move(sp);
#endif
        return t;
    }

    tokenizer_kind kind() const noexcept { return record_.kind; }
    bool byte_level() const noexcept { return record_.byte_level(); }
    std::int64_t vocab_size() const noexcept { return record_.vocab_size; }
    // The end-of-document id: a SentencePiece model's eos piece (−1 when it has none, --eos_id=-1); the
    // byte-level tokenizer has none (−1). encode / encode_file never insert it.
    std::int64_t eos_id() const noexcept {
#if LONGNET_WITH_SENTENCEPIECE
        if (sp_) return sp_->eos_id();
#endif
        return -1;
    }
    // What a model trained with this tokenizer records in its config.
    const tokenizer_record& record() const noexcept { return record_; }

    std::vector<std::int64_t> encode(std::string_view text) const {
        std::vector<std::int64_t> out;
        if (byte_level()) {
            out.reserve(text.size());
            for (char c : text) out.push_back(static_cast<unsigned char>(c));
            return out;
        }
#if LONGNET_WITH_SENTENCEPIECE
        std::vector<int> ids;
        const auto status = sp_->Encode(text, &ids);
        if (!status.ok()) throw tokenizer_error(record_.path + ": encoding failed (" + status.ToString() + ")");
        out.assign(ids.begin(), ids.end());
#endif
        return out;
    }

    std::string decode(const std::vector<std::int64_t>& ids) const {
        std::string out;
        auto outside = [&](std::int64_t id) { return id < 0 || id >= record_.vocab_size; };
        if (byte_level()) {
            for (std::int64_t id : ids) {
                if (outside(id)) out += "<" + std::to_string(id) + ">";
                else out += static_cast<char>(static_cast<unsigned char>(id));
            }
            return out;
        }
#if LONGNET_WITH_SENTENCEPIECE
        std::vector<int> run;  // a run of ids inside the vocabulary, decoded together
        auto flush = [&] {
            if (run.empty()) return;
            std::string piece;
            const auto status = sp_->Decode(run, &piece);
            if (!status.ok()) throw tokenizer_error(record_.path + ": decoding failed (" + status.ToString() + ")");
            out += piece;
            run.clear();
        };
        for (std::int64_t id : ids) {
            if (outside(id)) {
                flush();
                out += "<" + std::to_string(id) + ">";
            } else {
                run.push_back(static_cast<int>(id));
            }
        }
        flush();
#endif
        return out;
    }

    // Encodes a text file (see the top of this file), handing the ids to sink(const std::int64_t*, size_t)
    // in pieces; returns the number of ids. Throws tokenizer_error naming the file.
    template <class Sink>
    std::uint64_t encode_file(const std::string& path, Sink&& sink) const {
        std::ifstream in(path, std::ios::binary);
        if (!in) throw tokenizer_error(path + ": cannot open the text file");
        std::uint64_t count = 0;
        if (byte_level()) {
            std::vector<char> block(1 << 20);
            std::vector<std::int64_t> ids(block.size());
            while (in) {
                in.read(block.data(), static_cast<std::streamsize>(block.size()));
                const std::size_t got = static_cast<std::size_t>(in.gcount());
                for (std::size_t i = 0; i < got; ++i) ids[i] = static_cast<unsigned char>(block[i]);
                if (got > 0) sink(static_cast<const std::int64_t*>(ids.data()), got);
                count += got;
            }
        } else {
            std::string line;
            while (std::getline(in, line)) {
                const std::vector<std::int64_t> ids = encode(line);
                if (!ids.empty()) sink(static_cast<const std::int64_t*>(ids.data()), ids.size());
                count += ids.size();
            }
        }
        if (in.bad()) throw tokenizer_error(path + ": read error");
        return count;
    }

    static constexpr std::size_t max_model_bytes = std::size_t(1) << 30;

private:
    tokenizer_record record_;
#if LONGNET_WITH_SENTENCEPIECE
    std::shared_ptr<const sentencepiece::SentencePieceProcessor> sp_;
#endif
};

}  // namespace longnet::text
