// SPDX-License-Identifier: Apache-2.0
// longnet_data: text or token ids -> llm.c token shards (longnet/io/token_shards.hpp), the files
// `longnet_train --data` and `longnet_lm perplexity --data` read memory-mapped.
//
//   longnet_data --text corpus.txt [--tokenizer spm.model] --out dir/train [--shard-tokens N] [--width 16|32]
//   longnet_data --tokens ids.npy  --out dir/train [--shard-tokens N] [--width 16|32]
//
// --text: the byte-level tokenizer (one token per byte, vocabulary 256), the file streamed in blocks
// (never read whole, so a corpus larger than memory works); with --tokenizer, a SentencePiece model
// (spm_train's .model; needs a build with SentencePiece) encodes the file line by line as spm_encode does
// (longnet/text/tokenizer.hpp; one line in memory at a time). --tokens: int32/int64 ids of a [T] .npy
// (each must fit the width). Writes dir/train_000000.bin, dir/train_000001.bin, ... of --shard-tokens
// tokens each (default 100M, as llm.c's prepro scripts; the last one shorter), each atomically (temp file
// + rename). --width: 16 (magic 20240520, ids < 65536; default) or 32 (magic 20240801). Prints the
// files written and the token count. Exit codes: 0 success, 1 data error, 2 usage error.

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include <longnet/io/npy.hpp>
#include <longnet/io/token_shards.hpp>

#include "cli_common.hpp"

namespace {

namespace io = longnet::io;

const char* const usage_text =
    "usage:\n"
    "  longnet_data (--text corpus.txt [--tokenizer spm.model] | --tokens ids.npy) --out PREFIX [--shard-tokens N]\n"
    "               [--width 16|32]\n"
    "writes PREFIX_000000.bin, PREFIX_000001.bin, ... (llm.c token shards; --text: byte-level tokens, or the\n"
    "SentencePiece model of --tokenizer)\n";

struct arguments {
    std::string text, tokens, out, tokenizer;
    std::int64_t shard_tokens = 100000000, width = 16;
};

arguments parse(int argc, char** argv) {
    arguments a;
    cli::arg_reader r(argc, argv);
    cli::read_flags(r, usage_text, "", [&](const std::string& f) {
        if (f == "--text") a.text = r.value(f);
        else if (f == "--tokens") a.tokens = r.value(f);
        else if (f == "--out") a.out = r.value(f);
        else if (f == "--tokenizer") a.tokenizer = cli::tokenizer_flag(r, f);
        else if (f == "--shard-tokens") a.shard_tokens = cli::parse_int(f, r.value(f), 1, 2147483647);
        else if (f == "--width") {
            a.width = cli::parse_int(f, r.value(f), 16, 32);
            if (a.width != 16 && a.width != 32) throw cli::usage_error("--width: expected 16 or 32, got " + std::to_string(a.width));
        } else {
            return false;
        }
        return true;
    });
    if (a.text.empty() == a.tokens.empty()) throw cli::usage_error("give exactly one of --text F and --tokens F.npy");
    if (a.out.empty()) throw cli::usage_error("--out PREFIX is required");
    if (!a.tokenizer.empty() && a.text.empty()) throw cli::usage_error("--tokenizer is for --text (--tokens are ids already)");
    return a;
}

int run(int argc, char** argv) {
    const arguments a = parse(argc, argv);
    const io::token_width width = a.width == 16 ? io::token_width::u16 : io::token_width::u32;
    const longnet::text::tokenizer tok = cli::load_tokenizer(a.tokenizer);  // byte level without --tokenizer
    if (a.width == 16 && tok.vocab_size() > 65536)
        throw cli::usage_error("--width 16 holds ids below 65536, but " + tok.record().describe() + " has more: use --width 32");
    io::token_shard_writer writer(a.out, static_cast<std::size_t>(a.shard_tokens), width);
    std::uint64_t count = 0;
    if (!a.text.empty()) {
        try {
            count = tok.encode_file(a.text, [&](const std::int64_t* ids, std::size_t n) {
                for (std::size_t i = 0; i < n; ++i) writer.append(ids[i]);
            });
        } catch (const longnet::text::tokenizer_error& e) {
            throw cli::data_error(e.what());
        }
        if (!tok.byte_level()) std::fprintf(stderr, "longnet_data: %s\n", tok.record().describe().c_str());
    } else {
        const io::npy_array arr = io::load_npy(a.tokens);
        if (arr.ndim() != 1 || (arr.dtype() != io::npy_dtype::int64 && arr.dtype() != io::npy_dtype::int32))
            throw cli::data_error(a.tokens + ": tokens must be a [T] int32 or int64 array, got " + io::dtype_name(arr.dtype()) + " " +
                                  io::shape_string(arr.shape()));
        for (std::int64_t t : arr.as_int64()) writer.append(t);
        count = arr.size();
    }
    if (count == 0) throw cli::data_error((a.text.empty() ? a.tokens : a.text) + ": no tokens");
    const std::vector<std::string> files = writer.finish();
    for (const auto& f : files) std::printf("%s\n", f.c_str());
    std::fprintf(stderr, "longnet_data: %llu tokens in %zu shards (uint%lld)\n", static_cast<unsigned long long>(count), files.size(),
                 static_cast<long long>(a.width));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return cli::main_guard({"longnet_data", "", usage_text}, [&] { return run(argc, argv); });
}
