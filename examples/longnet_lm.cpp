// SPDX-License-Identifier: Apache-2.0
// longnet_lm: run a LongNet decoder (torchscale LongNetDecoder) on a token sequence.
//
//   longnet_lm --weights model.safetensors --config config.json --tokens tokens.npy --logits logits.npy
//              [--hidden hidden.npy] [--dtype float|double] [--weights-dtype float|bf16]
//              [--attention dilated|dense] [--offsets torchscale|paper] [--angles torchscale|float64]
//              [--last-only]
//   longnet_lm --random-config base --tokens-random N [--seed S] [--layers L] [--vocab V]
//              [--attention dilated|dense] [--weights-dtype float|bf16] [--logits last.npy]
//
// File mode: config.json uses torchscale DecoderConfig field names; tokens.npy holds int32/int64 ids
// [T]; logits.npy gets [T, vocab] ([1, vocab] with --last-only), hidden.npy [T, D] (after the final
// LayerNorm), float32 for --dtype float (default) and float64 for --dtype double. Writes are atomic
// (temporary file in the same folder, then rename).
// Random mode: the paper's base model (12 layers, hidden 768, 12 heads, FFN 3072, segments 2048..32768,
// dilations 1, 2, 4, 6, 12; vocabulary 32000 unless --vocab) with seeded random weights, one forward
// over N random tokens. Only the last row's logits are computed (never the [N, vocab] matrix); --logits
// saves that row. Progress per layer on stderr; the last line gives tokens/s and the time split.
// Batch 1 (one sequence). Exit codes: 0 success, 1 data error (files, shapes, memory), 2 usage error.
//
// Generation (incremental decoding with the bounded cache of longnet/decoding/):
//   longnet_lm generate --weights W --config C (--prompt-tokens P.npy | --prompt TEXT [--tokenizer T.model])
//              --max-new-tokens N [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop-tokens ID,...]
//              [--out-tokens OUT.npy] [--dtype float|double] [--weights-dtype float|bf16]
//              [--offsets torchscale|paper] [--angles torchscale|float64]
//   longnet_lm generate --random-config base --prompt-random N --max-new-tokens M [--layers L] [--vocab V]
//              [sampling flags] [--seed S] [--out-tokens OUT.npy]
// Prefill runs the full forward over the prompt; each new token is one step. Tokens are printed on
// stdout as they come: as text for --prompt (a byte-level model: ids 0..255 are bytes; vocab >= 256;
// other ids print as <id>; with --tokenizer, a SentencePiece model encodes the prompt and decodes the
// output: it must be the tokenizer config.json records, see longnet_train --tokenizer), as ids otherwise.
// Then, on stderr, prefill and decoding tokens/s and the cache size. --temperature 0 is greedy (default 1), --top-k 0 and --top-p 1 are off (defaults); the same
// --seed gives the same tokens. --stop-tokens: generation ends after emitting one of these ids (e.g.
// end-of-text), at most --max-new-tokens. --out-tokens writes prompt + generated ids as int64 [n].
//
//   longnet_lm perplexity --weights W --config C (--tokens F.npy | --data 'val_*.bin' | --text F [--tokenizer T])
//              [--ctx N[,N2,...]] [--stride S] [--max-windows K] [--kl-base logits.npy]
//              [--save-logits logits.npy] [--dtype float|double] [--weights-dtype float|bf16]
// llama.cpp-style perplexity (longnet/training/perplexity.hpp: windows of N tokens, only tokens with
// full context scored): a running "[window] PPL" progress line on stderr, then per context the final
// PPL +/- standard error and tokens/s, one JSON line on stdout per context ({"ctx":..,"ppl":..}), and a
// table when several contexts are given. --data: llm.c token shards (memory-mapped, sorted by name,
// one stream). --text: bytes, or with --tokenizer encoded by that SentencePiece model (line by line; the
// tokenizer config.json records). --save-logits writes the scored rows' logits (one context): the
// reference for --kl-base, which reports the KL divergence of this model against it (e.g. bf16 weights against float).
//
//   longnet_lm passkey --weights W --config C --length L[,L2,...] --trials K [--depths 0,0.25,0.5,0.75,1]
//              [--seed S] [--passkey-max M] [--dtype float|double] [--weights-dtype float|bf16]
//              [--offsets torchscale|paper] [--angles torchscale|float64]
// Passkey retrieval (longnet/training/passkey.hpp: llama.cpp's examples/passkey prompt, byte level) with a
// byte-level model (vocab >= 256), e.g. one trained by `longnet_train --task passkey`: for every length,
// depth and trial a document of L + 1 bytes (the document `longnet_train --task passkey --seq-len L`
// trains on; keys uniform in 1..M, default 50000, from --seed); its prompt (up to "... The pass key is")
// is prefilled, then greedy decoding with the bounded cache produces len(" N") + 1 bytes. Correct: " N"
// and then a non-digit. One JSON line per trial on stdout ({"length", "depth", "key", "answer" (the digits
// read), "correct", "output", "prompt_bytes", "key_offset"}); on stderr a table of accuracy per length and depth.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include <longnet/allocator.hpp>
#include <longnet/decoding/decoding.hpp>
#include <longnet/io/npy.hpp>
#include <longnet/io/safetensors.hpp>
#include <longnet/nn/nn.hpp>
#include <longnet/training/data.hpp>
#include <longnet/training/passkey.hpp>
#include <longnet/training/perplexity.hpp>

#include "cli_common.hpp"
#include "longnet_lm_args.hpp"
#include "model_flags.hpp"

namespace {

namespace nn = longnet::nn;

using namespace lm_cli;  // usage_text, the arguments and parsers of the four modes (longnet_lm_args.hpp)

// config.json (torchscale DecoderConfig names); a bad file is a data error (exit 1) naming it.
nn::decoder_config read_config(const std::string& path) {
    try {
        return nn::decoder_config::from_file(path);
    } catch (const std::invalid_argument& e) {
        throw cli::data_error(e.what());
    }
}

// Per-layer progress on stderr: a bar redrawn in place on a terminal, one line per layer otherwise.
class progress_bar {
public:
    explicit progress_bar(std::chrono::steady_clock::time_point start) : start_(start), tty_(::isatty(2) != 0) {}
    void operator()(longnet::index_t done, longnet::index_t total) const {
        constexpr int width = 30;
        const int filled = total ? static_cast<int>(width * done / total) : width;
        std::string bar(static_cast<std::size_t>(filled), '#');
        bar.resize(width, '.');
        std::fprintf(stderr, "%slayer %3lld/%lld [%s] %8.1f s%s", tty_ ? "\r" : "", static_cast<long long>(done),
                     static_cast<long long>(total), bar.c_str(), cli::seconds_since(start_), tty_ && done < total ? "" : "\n");
        std::fflush(stderr);
    }

private:
    std::chrono::steady_clock::time_point start_;
    bool tty_;
};

template <class T>
std::vector<std::int64_t> shape_of(const nn::matrix<T>& m) {
    return {static_cast<std::int64_t>(m.rows()), static_cast<std::int64_t>(m.cols())};
}

template <class T>
void save(const std::string& path, const nn::matrix<T>& m) {
    longnet::io::save_npy(path, m.data(), shape_of(m));  // atomic: temp file + rename
}

std::vector<std::int64_t> read_tokens(const std::string& path) {
    const longnet::io::npy_array a = longnet::io::load_npy(path);
    if (a.ndim() != 1 && !(a.ndim() == 2 && a.shape()[0] == 1))
        throw cli::data_error(path + ": tokens must be a [T] (or [1, T]) integer array, got shape " +
                              longnet::io::shape_string(a.shape()));
    if (a.dtype() != longnet::io::npy_dtype::int64 && a.dtype() != longnet::io::npy_dtype::int32)
        throw cli::data_error(path + ": tokens must be int32 or int64, got " + longnet::io::dtype_name(a.dtype()));
    std::vector<std::int64_t> t = a.as_int64();
    if (t.empty()) throw cli::data_error(path + ": no tokens");
    return t;
}

template <class T, class W>
int run_files(const arguments& a) {
    nn::decoder_config cfg = read_config(a.config);
    const std::vector<std::int64_t> tokens = read_tokens(a.tokens);
    if (!a.logits.empty()) cli::check_writable("--logits", a.logits);
    if (!a.hidden.empty()) cli::check_writable("--hidden", a.hidden);
    const auto model = nn::load_decoder<T, W>(a.weights, cfg, a.options);
    for (std::size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] < 0 || tokens[i] >= cfg.vocab_size)
            throw cli::data_error(a.tokens + ": token " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                                  " is outside the vocabulary [0, " + std::to_string(cfg.vocab_size) + ")");
    const auto start = std::chrono::steady_clock::now();
    nn::forward_profile profile;
    const nn::matrix<T> hidden = model.forward_hidden(tokens, nullptr, &profile, progress_bar(start));
    const nn::matrix<T> logits = a.last_only ? model.project(hidden.bottomRows(1), &profile) : model.project(hidden, &profile);
    const double seconds = cli::seconds_since(start);
    save(a.logits, logits);
    if (!a.hidden.empty()) save(a.hidden, hidden);
    std::fprintf(stderr, "longnet_lm: %zu tokens in %.3f s; logits [%lld, %lld] -> %s\n", tokens.size(), seconds,
                 static_cast<long long>(logits.rows()), static_cast<long long>(logits.cols()), a.logits.c_str());
    return 0;
}

template <class W>
int run_random(const arguments& a) {
    nn::decoder_config cfg = nn::decoder_config::base(a.vocab);
    if (a.layers >= 0) cfg.layers = a.layers;
    if (!a.logits.empty()) cli::check_writable("--logits", a.logits);
    const std::int64_t n = a.random_tokens;
    // activations: x, h, y, q, k, v, attention out, the decayed q and k of a branch ([N, D] each) + the FFN
    // block; plus the weights
    const auto act = cli::mul(static_cast<std::uint64_t>(n), static_cast<std::uint64_t>(cfg.embed_dim) * 9 * sizeof(float));
    cli::require_memory(act, "activations of " + std::to_string(n) + " tokens");

    auto t0 = std::chrono::steady_clock::now();
    const auto model = nn::random_decoder<float, W>(cfg, a.seed, a.options);
    std::fprintf(stderr, "longnet_lm: base model, %lld layers, hidden %lld, %lld heads, FFN %lld, vocab %lld, %s weights "
                         "(%.1f M parameters), random in %.1f s; %s attention, %d threads\n",
                 static_cast<long long>(cfg.layers), static_cast<long long>(cfg.embed_dim), static_cast<long long>(cfg.heads),
                 static_cast<long long>(cfg.ffn_dim), static_cast<long long>(cfg.vocab_size),
                 std::is_same_v<W, float> ? "float" : "bf16", static_cast<double>(model.parameter_count()) / 1e6,
                 cli::seconds_since(t0), nn::to_string(a.options.attention), cli::max_threads());

    std::vector<std::int64_t> tokens(static_cast<std::size_t>(n));
    std::uint64_t state = a.seed ^ 0x5eedull;
    for (auto& t : tokens) t = static_cast<std::int64_t>(cli::splitmix64(state) % static_cast<std::uint64_t>(cfg.vocab_size));

    const auto start = std::chrono::steady_clock::now();
    nn::forward_profile profile;
    const nn::matrix<float> hidden = model.forward_hidden(tokens, nullptr, &profile, progress_bar(start));
    const nn::matrix<float> last = model.project(hidden.bottomRows(1), &profile);  // only the last row
    const double seconds = cli::seconds_since(start);
    if (!last.allFinite()) throw cli::data_error("the forward produced non-finite logits");
    Eigen::Index next = 0;
    last.row(0).maxCoeff(&next);
    if (!a.logits.empty()) save(a.logits, last);
    const double total = std::max(profile.total(), 1e-12);
    std::fprintf(stderr, "longnet_lm: next token %lld (logit %.4f)%s%s\n", static_cast<long long>(next),
                 static_cast<double>(last(0, next)), a.logits.empty() ? "" : "; last-row logits -> ",
                 a.logits.c_str());
    std::printf("longnet_lm: %lld tokens x %lld layers in %.2f s = %.1f tokens/s | attention %.2f s (%.0f%%), "
                "dense %.2f s (%.0f%%), norms %.2f s (%.0f%%), other %.2f s (%.0f%%)\n",
                static_cast<long long>(n), static_cast<long long>(cfg.layers), seconds, static_cast<double>(n) / seconds,
                profile.attention, 100 * profile.attention / total, profile.dense, 100 * profile.dense / total,
                profile.norms, 100 * profile.norms / total, profile.other, 100 * profile.other / total);
    return 0;
}

// ---- generate -------------------------------------------------------------------------------------------

namespace dec = longnet::decoding;

// One generated token on stdout, right away: a byte (text mode, id < 256), <id> (text mode) or the id.
void emit(std::int64_t id, bool text, bool first) {
    if (text) {
        if (id < 256) std::fputc(static_cast<int>(id), stdout);
        else std::printf("<%lld>", static_cast<long long>(id));
    } else {
        std::printf(first ? "%lld" : " %lld", static_cast<long long>(id));
    }
    std::fflush(stdout);
}

// The generated tokens of --prompt with a SentencePiece tokenizer, as text on stdout as they come: each
// new id prints what it adds to the decoded text of the ids before it (decoding ids one by one would lose
// the spaces SentencePiece puts at the start of words). The context starts at the prompt's last token
// and restarts from the newest id after `window` ids, so a step decodes about `window` ids, not all.
class sentencepiece_printer {
public:
    sentencepiece_printer(const longnet::text::tokenizer& tok, std::int64_t last_prompt_token)
        : tok_(tok), ids_{last_prompt_token}, shown_(tok.decode(ids_)) {}
    void operator()(std::int64_t id) {
        ids_.push_back(id);
        const std::string text = tok_.decode(ids_);
        std::size_t same = 0;  // the text so far normally stays a prefix; if not, print from where it differs
        while (same < text.size() && same < shown_.size() && text[same] == shown_[same]) ++same;
        std::fwrite(text.data() + same, 1, text.size() - same, stdout);
        std::fflush(stdout);
        shown_ = text;
        if (ids_.size() >= window) {  // restart at an id with text of its own (not a control piece such as
            std::string alone = tok_.decode({id});  // </s>, after which a word's leading space would be lost)
            if (!alone.empty()) {
                ids_.assign(1, id);
                shown_ = std::move(alone);
            }
        }
    }

private:
    static constexpr std::size_t window = 64;
    const longnet::text::tokenizer& tok_;
    std::vector<std::int64_t> ids_;
    std::string shown_;
};

template <class T, class W>
int generate_with(const generate_arguments& a, const nn::decoder<T, W>& model, std::vector<std::int64_t> tokens,
                  const std::string& prompt_name, const longnet::text::tokenizer& tok) {
    const std::int64_t vocab = model.vocab_size();
    if (tokens.empty()) throw cli::data_error(prompt_name + ": the prompt is empty; generation needs at least one token");
    for (std::size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            throw cli::data_error(prompt_name + ": token " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                                  " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    for (std::int64_t id : a.stop_tokens)
        if (id >= vocab)
            throw cli::usage_error("--stop-tokens: " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    std::optional<sentencepiece_printer> text_out;
    if (a.text && !tok.byte_level()) text_out.emplace(tok, tokens.back());
    const dec::incremental_decoder<T, W> gen(model);
    dec::decoding_state<T> state = gen.make_state();
    dec::sampler pick(a.sampling, a.seed);
    const std::size_t prompt = tokens.size();
    std::fprintf(stderr, "longnet_lm: prefill %zu tokens, then %lld new (%s)\n", prompt, static_cast<long long>(a.max_new),
                 a.sampling.greedy() ? "greedy" : "sampling");

    auto t0 = std::chrono::steady_clock::now();
    nn::vector<T> logits = gen.prefill(state, tokens);
    const double prefill_seconds = cli::seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    std::int64_t generated = 0;
    bool stopped = false;
    while (generated < a.max_new && !stopped) {
        if (!logits.allFinite()) throw cli::data_error("the model produced non-finite logits at position " + std::to_string(state.position() - 1));
        const std::int64_t next = pick(logits);
        tokens.push_back(next);
        if (text_out) (*text_out)(next);
        else emit(next, a.text, generated == 0);
        ++generated;
        stopped = std::find(a.stop_tokens.begin(), a.stop_tokens.end(), next) != a.stop_tokens.end();
        if (generated < a.max_new && !stopped) logits = gen.step(state, next);  // the last token's logits are not needed
    }
    const double decode_seconds = cli::seconds_since(t0);
    if (generated > 0 || !a.text) std::fputc('\n', stdout);
    if (stopped) std::fprintf(stderr, "longnet_lm: stopped at token %lld\n", static_cast<long long>(tokens.back()));
    std::fflush(stdout);
    if (!a.out_tokens.empty())
        longnet::io::save_npy(a.out_tokens, tokens.data(), {static_cast<std::int64_t>(tokens.size())});

    const double steps = static_cast<double>(std::max<std::int64_t>(generated, 1));
    std::fprintf(stderr,
                 "longnet_lm: prefill %zu tokens in %.3f s = %.1f tokens/s | decode %lld tokens in %.3f s = %.2f tokens/s "
                 "(%.2f ms/token) | cache %s (bound %s) at position %lld | %d threads\n",
                 prompt, prefill_seconds, static_cast<double>(prompt) / std::max(prefill_seconds, 1e-12),
                 static_cast<long long>(generated), decode_seconds, generated > 0 ? static_cast<double>(generated) / decode_seconds : 0.0,
                 1e3 * decode_seconds / steps, cli::human_bytes(static_cast<double>(state.bytes())).c_str(),
                 cli::human_bytes(static_cast<double>(state.max_bytes())).c_str(), static_cast<long long>(state.position()),
                 cli::max_threads());
    if (!a.out_tokens.empty()) std::fprintf(stderr, "longnet_lm: %zu tokens -> %s\n", tokens.size(), a.out_tokens.c_str());
    return 0;
}

std::vector<std::int64_t> read_prompt(const std::string& path) {
    const longnet::io::npy_array arr = longnet::io::load_npy(path);
    if (arr.ndim() != 1 && !(arr.ndim() == 2 && arr.shape()[0] == 1))
        throw cli::data_error(path + ": prompt tokens must be a [T] (or [1, T]) integer array, got shape " +
                              longnet::io::shape_string(arr.shape()));
    if (arr.dtype() != longnet::io::npy_dtype::int64 && arr.dtype() != longnet::io::npy_dtype::int32)
        throw cli::data_error(path + ": prompt tokens must be int32 or int64, got " + longnet::io::dtype_name(arr.dtype()));
    return arr.as_int64();
}

template <class T, class W>
int generate_files(const generate_arguments& a) {
    nn::decoder_config cfg = read_config(a.config);
    const longnet::text::tokenizer tok = cli::load_tokenizer(a.tokenizer);  // byte level without --tokenizer
    if (a.text) cli::check_tokenizer(cfg.tokenizer, a.config, tok.record(), cfg.vocab_size);  // the one it was trained with
    if (a.text && tok.byte_level() && cfg.vocab_size < 256)
        throw cli::usage_error("--prompt needs a byte-level model (vocab_size >= 256, ids 0..255 = bytes); this one has vocab_size " +
                               std::to_string(cfg.vocab_size) + ": use --prompt-tokens");
    std::vector<std::int64_t> tokens;
    if (a.text) {
        tokens = tok.encode(a.prompt_text);  // byte level: the UTF-8 bytes
    } else {
        tokens = read_prompt(a.prompt_tokens);
    }
    if (!a.out_tokens.empty()) cli::check_writable("--out-tokens", a.out_tokens);
    const auto model = nn::load_decoder<T, W>(a.weights, cfg, a.options);
    return generate_with(a, model, std::move(tokens), a.text ? std::string("--prompt") : a.prompt_tokens, tok);
}

template <class W>
int generate_random(const generate_arguments& a) {
    nn::decoder_config cfg = nn::decoder_config::base(a.vocab);
    if (a.layers >= 0) cfg.layers = a.layers;
    const longnet::text::tokenizer tok = cli::load_tokenizer(a.tokenizer);  // byte level without --tokenizer
    if (a.text && cfg.vocab_size < (tok.byte_level() ? 256 : tok.vocab_size()))
        throw cli::usage_error("--prompt needs a vocabulary of at least " + std::to_string(tok.byte_level() ? 256 : tok.vocab_size()) +
                               " (" + tok.record().describe() + "); --vocab is " + std::to_string(cfg.vocab_size));
    if (!a.out_tokens.empty()) cli::check_writable("--out-tokens", a.out_tokens);
    const std::vector<std::int64_t> prompt_ids = a.text ? tok.encode(a.prompt_text) : std::vector<std::int64_t>{};
    const std::int64_t n = a.text ? static_cast<std::int64_t>(prompt_ids.size()) : a.prompt_random;
    const auto act = cli::mul(static_cast<std::uint64_t>(n), static_cast<std::uint64_t>(cfg.embed_dim) * 9 * sizeof(float));
    cli::require_memory(act, "a prefill of " + std::to_string(n) + " tokens");
    const auto t0 = std::chrono::steady_clock::now();
    const auto model = nn::random_decoder<float, W>(cfg, a.seed, a.options);
    std::fprintf(stderr, "longnet_lm: base model, %lld layers, hidden %lld, %lld heads, vocab %lld, %s weights (%.1f M "
                         "parameters), random in %.1f s\n",
                 static_cast<long long>(cfg.layers), static_cast<long long>(cfg.embed_dim), static_cast<long long>(cfg.heads),
                 static_cast<long long>(cfg.vocab_size), std::is_same_v<W, float> ? "float" : "bf16",
                 static_cast<double>(model.parameter_count()) / 1e6, cli::seconds_since(t0));
    std::vector<std::int64_t> tokens;
    if (a.text) {
        tokens = prompt_ids;
    } else {
        tokens.resize(static_cast<std::size_t>(n));
        std::uint64_t state = a.seed ^ 0x5eedull;
        for (auto& t : tokens) t = static_cast<std::int64_t>(cli::splitmix64(state) % static_cast<std::uint64_t>(cfg.vocab_size));
    }
    return generate_with(a, model, std::move(tokens), a.text ? std::string("--prompt") : std::string("--prompt-random"), tok);
}

int run_generate(int argc, char** argv) {
    const generate_arguments a = parse_generate(argc, argv);
    const bool bf16 = a.weights_dtype == "bf16";
    if (!a.random_config.empty()) return bf16 ? generate_random<Eigen::bfloat16>(a) : generate_random<float>(a);
    if (a.dtype == "double") return generate_files<double, double>(a);
    return bf16 ? generate_files<float, Eigen::bfloat16>(a) : generate_files<float, float>(a);
}

// ---- perplexity ------------------------------------------------------------------------------------------

template <class T, class W>
int perplexity_files(const perplexity_arguments& a) {
    namespace tr = longnet::training;
    nn::decoder_config cfg = read_config(a.config);
    // The token stream: in memory (.npy, text bytes) or memory-mapped shards.
    std::vector<std::int64_t> memory;
    longnet::io::token_shard_stream shards;
    std::string source;
    try {
        if (!a.data.empty()) {
            shards = longnet::io::token_shard_stream(longnet::io::glob_token_shards(a.data));
            shards.check_vocab(static_cast<std::uint64_t>(cfg.vocab_size));
            source = a.data + " (" + std::to_string(shards.shard_count()) + " shards)";
        } else {
            if (!a.text.empty()) {  // bytes, or the SentencePiece model of --tokenizer: the one config.json records
                const longnet::text::tokenizer tok = cli::load_tokenizer(a.tokenizer);
                cli::check_tokenizer(cfg.tokenizer, a.config, tok.record(), cfg.vocab_size);
                tok.encode_file(a.text, [&](const std::int64_t* ids, std::size_t k) { memory.insert(memory.end(), ids, ids + k); });
            } else {
                memory = tr::read_token_file(a.tokens);
            }
            source = !a.tokens.empty() ? a.tokens : a.text;
            for (std::size_t i = 0; i < memory.size(); ++i)
                if (memory[i] >= cfg.vocab_size)
                    throw cli::data_error(source + ": token " + std::to_string(memory[i]) + " at position " + std::to_string(i) +
                                          " is not below the model's vocabulary size " + std::to_string(cfg.vocab_size));
        }
    } catch (const longnet::io::token_shard_error& e) {
        throw cli::data_error(e.what());
    } catch (const std::runtime_error& e) {
        if (dynamic_cast<const cli::data_error*>(&e)) throw;
        throw cli::data_error(e.what());
    }
    const std::uint64_t n = a.data.empty() ? memory.size() : shards.size();
    std::vector<float> base;
    std::uint64_t base_rows = 0;
    if (!a.kl_base.empty()) {
        const longnet::io::npy_array arr = longnet::io::load_npy(a.kl_base);
        if (arr.ndim() != 2 || arr.shape()[1] != cfg.vocab_size)
            throw cli::data_error(a.kl_base + ": reference logits must be [scored tokens, " + std::to_string(cfg.vocab_size) +
                                  "], got shape " + longnet::io::shape_string(arr.shape()));
        base = arr.as_float();
        base_rows = static_cast<std::uint64_t>(arr.shape()[0]);
    }
    if (!a.save_logits.empty()) cli::check_writable("--save-logits", a.save_logits);
    const auto model = nn::load_decoder<T, W>(a.weights, cfg);
    std::fprintf(stderr, "longnet_lm perplexity: %s, %llu tokens, %s weights, %d threads\n", source.c_str(),
                 static_cast<unsigned long long>(n), std::is_same_v<W, float> ? (std::is_same_v<T, double> ? "double" : "float") : "bf16",
                 cli::max_threads());
    std::vector<tr::perplexity_result> results;
    for (std::int64_t c : a.ctx) {
        tr::perplexity_options opt;
        opt.ctx = static_cast<std::size_t>(c);
        opt.stride = static_cast<std::size_t>(a.stride);
        opt.max_windows = static_cast<std::size_t>(a.max_windows);
        std::vector<float> saved;
        if (!a.save_logits.empty()) opt.scored_logits = &saved;
        if (!base.empty()) {
            opt.kl_base = base.data();
            opt.kl_base_rows = base_rows;
        }
        opt.progress = [](const tr::perplexity_result& r) {
            std::fprintf(stderr, "\r[%llu] PPL %.4f (%llu tokens scored, %.1f tokens/s)", static_cast<unsigned long long>(r.windows),
                         r.ppl(), static_cast<unsigned long long>(r.scored), r.tokens_per_second());
            std::fflush(stderr);
        };
        tr::perplexity_result r;
        try {
            r = a.data.empty() ? tr::perplexity(model, memory, opt) : tr::perplexity(model, shards, opt);
        } catch (const std::invalid_argument& e) {
            throw cli::data_error(e.what());
        }
        std::fprintf(stderr, "\nctx %lld: final estimate PPL = %.4f +/- %.5f over %llu tokens in %llu windows, %.1f tokens/s",
                     static_cast<long long>(c), r.ppl(), r.ppl_stderr(), static_cast<unsigned long long>(r.scored),
                     static_cast<unsigned long long>(r.windows), r.tokens_per_second());
        if (r.has_kl) std::fprintf(stderr, ", KL divergence %.6f +/- %.6f", r.kl_mean(), r.kl_stderr());
        std::fputc('\n', stderr);
        std::printf("{\"ctx\": %lld, \"stride\": %lld, \"windows\": %llu, \"scored\": %llu, \"ppl\": %.17g, \"ppl_stderr\": %.17g, "
                    "\"mean_nll\": %.17g, \"tokens_per_second\": %.6g",
                    static_cast<long long>(c), static_cast<long long>(a.stride), static_cast<unsigned long long>(r.windows),
                    static_cast<unsigned long long>(r.scored), r.ppl(), r.ppl_stderr(), r.mean_nll(), r.tokens_per_second());
        if (r.has_kl) std::printf(", \"kl\": %.17g, \"kl_stderr\": %.17g", r.kl_mean(), r.kl_stderr());
        std::printf("}\n");
        std::fflush(stdout);
        if (!a.save_logits.empty())
            longnet::io::save_npy(a.save_logits, saved.data(), {static_cast<std::int64_t>(r.scored), cfg.vocab_size});
        results.push_back(r);
    }
    if (results.size() > 1) {
        std::fprintf(stderr, "\n| ctx | windows | scored | PPL | +/- | tokens/s |\n|---:|---:|---:|---:|---:|---:|\n");
        for (const auto& r : results)
            std::fprintf(stderr, "| %zu | %llu | %llu | %.4f | %.5f | %.1f |\n", r.ctx, static_cast<unsigned long long>(r.windows),
                         static_cast<unsigned long long>(r.scored), r.ppl(), r.ppl_stderr(), r.tokens_per_second());
    }
    return 0;
}

int run_perplexity(int argc, char** argv) {
    const perplexity_arguments a = parse_perplexity(argc, argv);
    if (a.dtype == "double") return perplexity_files<double, double>(a);
    return a.weights_dtype == "bf16" ? perplexity_files<float, Eigen::bfloat16>(a) : perplexity_files<float, float>(a);
}

// ---- passkey --------------------------------------------------------------------------------------------

template <class T, class W>
int passkey_files(const passkey_arguments& a) {
    namespace tr = longnet::training;
    nn::decoder_config cfg = read_config(a.config);
    if (cfg.vocab_size < 256 || !cfg.tokenizer.byte_level())
        throw cli::data_error(a.config + ": passkey needs a byte-level model (vocab_size >= 256, no tokenizer); this one has vocab_size " +
                              std::to_string(cfg.vocab_size) + (cfg.tokenizer.byte_level() ? "" : " and " + cfg.tokenizer.describe()));
    const auto model = nn::load_decoder<T, W>(a.weights, cfg, a.options);
    const dec::incremental_decoder<T, W> gen(model);
    dec::sampler greedy(dec::sampling_options{0, 0, 1}, 0);
    tr::rng_state rng{a.seed * 0x9e3779b97f4a7c15ull ^ 0x9a55ull};
    const std::size_t depths = a.depths.size();
    std::vector<std::int64_t> right(a.lengths.size() * depths, 0);
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t li = 0; li < a.lengths.size(); ++li) {
        const std::size_t length = static_cast<std::size_t>(a.lengths[li]);
        for (std::size_t di = 0; di < depths; ++di) {
            for (std::int64_t k = 0; k < a.trials; ++k) {
                const tr::passkey_document d =
                    tr::sample_passkey_document(length + 1, a.depths[di], static_cast<std::uint64_t>(a.max_key), rng);
                const std::string prompt = d.prompt();
                const std::vector<std::int64_t> ids(prompt.begin(), prompt.end());  // ASCII: bytes = ids
                dec::decoding_state<T> state = gen.make_state();
                nn::vector<T> logits = gen.prefill(state, ids);
                const std::size_t want = tr::passkey_answer(d.key).size();  // " N" and one more byte
                std::string out;
                while (true) {
                    if (!logits.allFinite()) throw cli::data_error("the model produced non-finite logits at position " + std::to_string(state.position() - 1));
                    const std::int64_t next = greedy(logits);
                    out += next < 256 ? std::string(1, static_cast<char>(next)) : "<" + std::to_string(next) + ">";
                    if (out.size() >= want) break;
                    logits = gen.step(state, next);
                }
                std::string answer;
                const bool ok = tr::passkey_correct(out, d.key, &answer);
                right[li * depths + di] += ok;
                std::printf("{\"length\": %zu, \"depth\": %s, \"key\": %llu, \"answer\": %s, \"correct\": %s, \"output\": %s, "
                            "\"prompt_bytes\": %zu, \"key_offset\": %zu}\n",
                            length, cli::json_number(a.depths[di]).c_str(), static_cast<unsigned long long>(d.key),
                            nlohmann::json(answer).dump().c_str(), ok ? "true" : "false",
                            nlohmann::json(out).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str(), prompt.size(),
                            d.key_offset);
                std::fflush(stdout);
            }
        }
    }
    std::fprintf(stderr, "longnet_lm passkey: %lld trials per length and depth, keys 1..%lld, %.2f s\n\n| length |",
                 static_cast<long long>(a.trials), static_cast<long long>(a.max_key), cli::seconds_since(start));
    for (double d : a.depths) std::fprintf(stderr, " depth %s |", cli::json_number(d).c_str());
    std::fprintf(stderr, " all |\n|---:|");
    for (std::size_t di = 0; di <= depths; ++di) std::fprintf(stderr, "---:|");
    std::fputc('\n', stderr);
    for (std::size_t li = 0; li < a.lengths.size(); ++li) {
        std::fprintf(stderr, "| %lld |", static_cast<long long>(a.lengths[li]));
        std::int64_t all = 0;
        for (std::size_t di = 0; di < depths; ++di) {
            all += right[li * depths + di];
            std::fprintf(stderr, " %.3f |", static_cast<double>(right[li * depths + di]) / static_cast<double>(a.trials));
        }
        std::fprintf(stderr, " %.3f |\n", static_cast<double>(all) / static_cast<double>(a.trials * static_cast<std::int64_t>(depths)));
    }
    return 0;
}

int run_passkey(int argc, char** argv) {
    const passkey_arguments a = parse_passkey(argc, argv);
    if (a.dtype == "double") return passkey_files<double, double>(a);
    return a.weights_dtype == "bf16" ? passkey_files<float, Eigen::bfloat16>(a) : passkey_files<float, float>(a);
}

int run(int argc, char** argv) {
    if (argc >= 2 && std::string(argv[1]) == "passkey") return run_passkey(argc - 1, argv + 1);
    if (argc >= 2 && std::string(argv[1]) == "perplexity") return run_perplexity(argc - 1, argv + 1);
    if (argc >= 2 && std::string(argv[1]) == "generate") return run_generate(argc - 1, argv + 1);
    const arguments a = parse(argc, argv);
    const bool bf16 = a.weights_dtype == "bf16";
    if (!a.random_config.empty()) return bf16 ? run_random<Eigen::bfloat16>(a) : run_random<float>(a);
    if (a.dtype == "double") {
        if (bf16) throw cli::usage_error("--weights-dtype bf16 needs --dtype float");
        return run_files<double, double>(a);
    }
    return bf16 ? run_files<float, Eigen::bfloat16>(a) : run_files<float, float>(a);
}

}  // namespace

int main(int argc, char** argv) {
    longnet::keep_freed_memory();  // long forwards free and reallocate large buffers (longnet/allocator.hpp)
    return cli::main_guard({"longnet_lm", "", usage_text}, [&] { return run(argc, argv); });
}
