// SPDX-License-Identifier: Apache-2.0
// Consumer check of longnet/text/tokenizer.hpp through longnet::sentencepiece (built when the consumer
// sees that target): LONGNET_WITH_SENTENCEPIECE must be defined by it, the byte-level tokenizer round-trips,
// and loading a file that is no SentencePiece model reaches SentencePiece's parser (its refusal, not the
// no-support message), which proves libsentencepiece is linked and called. Exit code 0 only if so.
#include <longnet/text/tokenizer.hpp>

#if !LONGNET_WITH_SENTENCEPIECE
#error "consumer_tokenizer: linked longnet::sentencepiece, but LONGNET_WITH_SENTENCEPIECE is not set"
#endif

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

int main() {
    namespace text = longnet::text;
    const text::tokenizer bytes;
    const std::string hello = "h\xc3\xa9llo";
    const std::vector<std::int64_t> ids = bytes.encode(hello);
    if (ids.size() != hello.size() || ids[1] != 0xc3 || bytes.decode(ids) != hello) {
        std::fprintf(stderr, "consumer_tokenizer: the byte-level tokenizer does not round-trip\n");
        return 1;
    }
    const std::string path = "consumer_not_a_model.model";
    std::ofstream(path, std::ios::binary) << "not a SentencePiece model";
    try {
        (void)text::tokenizer::load(path);
        std::fprintf(stderr, "consumer_tokenizer: a garbage model file was accepted\n");
        return 1;
    } catch (const text::tokenizer_error& e) {
        const std::string what = e.what();
        std::remove(path.c_str());
        if (what.find("not a SentencePiece model") == std::string::npos) {
            std::fprintf(stderr, "consumer_tokenizer: unexpected refusal: %s\n", e.what());
            return 1;
        }
    }
    std::printf("consumer_tokenizer: SentencePiece linked; byte level round-trips\n");
    return 0;
}
