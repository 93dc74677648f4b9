// SPDX-License-Identifier: Apache-2.0
#pragma once
// longnet_lm's command line (examples/longnet_lm.cpp): the usage text, the model flags each mode takes,
// and the arguments and parser of each mode: the forward (parse), generate (parse_generate), perplexity
// (parse_perplexity) and passkey (parse_passkey), with the value ranges and pairings the usage states.
// Kept apart from the model code so that the CLI fuzz target (tests/fuzz/cli_lm.cpp) compiles the
// parsers without the decoder templates.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <longnet/decoding/sampling.hpp>
#include <longnet/training/passkey.hpp>

#include "cli_common.hpp"
#include "model_flags.hpp"

namespace lm_cli {

inline const char* const usage_text =
    "usage:\n"
    "  longnet_lm --weights model.safetensors --config config.json --tokens tokens.npy --logits logits.npy\n"
    "             [--hidden hidden.npy] [--dtype float|double] [--weights-dtype float|bf16]\n"
    "             [--attention dilated|dense] [--offsets torchscale|paper] [--angles torchscale|float64]\n"
    "             [--last-only]\n"
    "  longnet_lm --random-config base --tokens-random N [--seed S] [--layers L] [--vocab V]\n"
    "             [--attention dilated|dense] [--weights-dtype float|bf16] [--logits last_row.npy]\n"
    "  longnet_lm perplexity --weights W --config C (--tokens F.npy | --data 'val_*.bin' | --text F [--tokenizer T.model])\n"
    "             [--ctx N[,N2,...]] [--stride S] [--max-windows K] [--kl-base logits.npy] [--save-logits logits.npy]\n"
    "             [--dtype float|double] [--weights-dtype float|bf16]\n"
    "  longnet_lm generate --weights W --config C (--prompt-tokens P.npy | --prompt TEXT [--tokenizer T.model])\n"
    "             --max-new-tokens N\n"
    "             [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop-tokens ID,...]\n"
    "             [--out-tokens OUT.npy] [--dtype float|double] [--weights-dtype float|bf16]\n"
    "             [--offsets torchscale|paper] [--angles torchscale|float64]\n"
    "  longnet_lm generate --random-config base --prompt-random N --max-new-tokens N [--layers L] [--vocab V]\n"
    "             [--temperature T] [--top-k K] [--top-p P] [--seed S] [--out-tokens OUT.npy] [--prompt TEXT [--tokenizer T.model]]\n"
    "  longnet_lm passkey --weights W --config C --length L[,L2,...] --trials K [--depths 0,0.25,0.5,0.75,1] [--seed S]\n"
    "             [--passkey-max M] [--dtype float|double] [--weights-dtype float|bf16] [--offsets torchscale|paper]\n"
    "             [--angles torchscale|float64]\n";

// The model flags of the forward mode, generate and perplexity (model_flags.hpp): generate runs no
// dense attention and needs at least one layer; perplexity runs a checkpoint as it is.
inline cli::model_flag_set forward_model_flags() {
    cli::model_flag_set s;
    s.weights = s.config = s.random_config = s.seed = s.vocab = s.layers = true;
    s.dtype = s.weights_dtype = s.attention = s.offsets = s.angles = true;
    return s;
}
inline cli::model_flag_set generate_model_flags() {
    cli::model_flag_set s = forward_model_flags();
    s.attention = false;
    s.min_layers = 1;
    return s;
}
inline cli::model_flag_set perplexity_model_flags() {
    cli::model_flag_set s;
    s.weights = s.config = s.dtype = s.weights_dtype = true;
    return s;
}

// The forward mode's arguments: the model flags (defaults: vocab 32000, seed 0) and its own.
struct arguments : cli::model_flags {
    std::string tokens, logits, hidden;
    std::int64_t random_tokens = 0;
    bool last_only = false;
    arguments() { vocab = 32000; }
};

inline arguments parse(int argc, char** argv) {
    arguments a;
    const cli::model_flag_set model_flags = forward_model_flags();
    cli::arg_reader r(argc, argv);
    cli::read_flags(r, usage_text, "", [&](const std::string& f) {
        if (a.read(r, f, model_flags)) return true;  // --weights, --config, --seed, ... (model_flags.hpp)
        if (f == "--tokens") a.tokens = r.value(f);
        else if (f == "--logits") a.logits = r.value(f);
        else if (f == "--hidden") a.hidden = r.value(f);
        else if (f == "--tokens-random") a.random_tokens = cli::parse_int(f, r.value(f), 1, std::int64_t(1) << 40);
        else if (f == "--last-only") {
            r.no_value(f);
            a.last_only = true;
        } else {
            return false;
        }
        return true;
    });
    const bool random_mode = !a.random_config.empty() || a.random_tokens > 0;
    if (random_mode) {
        if (a.random_config != "base") throw cli::usage_error("--random-config: only 'base' is known (got '" + a.random_config + "')");
        if (a.random_tokens < 1) throw cli::usage_error("--random-config needs --tokens-random N");
        if (!a.weights.empty() || !a.config.empty() || !a.tokens.empty() || !a.hidden.empty())
            throw cli::usage_error("--random-config does not take --weights, --config, --tokens or --hidden");
        if (a.dtype != "float") throw cli::usage_error("--random-config runs in float only");
    } else {
        if (a.weights.empty() || a.config.empty() || a.tokens.empty() || a.logits.empty())
            throw cli::usage_error("file mode needs --weights, --config, --tokens and --logits");
        if (a.layers >= 0) throw cli::usage_error("--layers is for --random-config (the config file gives the layer count)");
        if (a.seed != 0) throw cli::usage_error("--seed is for --random-config");
    }
    return a;
}

// generate's arguments: the model flags (defaults: vocab 32000, seed 0) and its own.
struct generate_arguments : cli::model_flags {
    std::string prompt_tokens, prompt_text, out_tokens, tokenizer;
    bool text = false;  // --prompt given: stream text (byte level, or the SentencePiece model of --tokenizer)
    std::int64_t prompt_random = 0, max_new = -1;
    std::vector<std::int64_t> stop_tokens;
    longnet::decoding::sampling_options sampling;
    generate_arguments() { vocab = 32000; }
};

inline generate_arguments parse_generate(int argc, char** argv) {
    generate_arguments a;
    const cli::model_flag_set model_flags = generate_model_flags();
    cli::arg_reader r(argc, argv);
    cli::read_flags(r, usage_text, "generate: ", [&](const std::string& f) {
        if (a.read(r, f, model_flags)) return true;  // --weights, --config, --seed, ... (model_flags.hpp)
        if (f == "--prompt-tokens") a.prompt_tokens = r.value(f);
        else if (f == "--prompt") {
            a.prompt_text = r.value(f);  // "" is refused there: "--prompt needs a non-empty value"
            a.text = true;
        } else if (f == "--prompt-random") a.prompt_random = cli::parse_int(f, r.value(f), 1, std::int64_t(1) << 40);
        else if (f == "--max-new-tokens") a.max_new = cli::parse_int(f, r.value(f), 0, std::int64_t(1) << 40);
        else if (f == "--out-tokens") a.out_tokens = r.value(f);
        else if (f == "--tokenizer") a.tokenizer = cli::tokenizer_flag(r, f);
        else if (f == "--stop-tokens") a.stop_tokens = cli::parse_int_list(f, r.value(f), 0, std::int64_t(1) << 40);
        else if (f == "--temperature") {
            const std::string v = r.value(f);
            a.sampling.temperature = cli::parse_double(f, v);
            if (a.sampling.temperature < 0) throw cli::usage_error("--temperature: " + v + " is negative (0 is greedy)");
        } else if (f == "--top-k") a.sampling.top_k = cli::parse_int(f, r.value(f), 0, std::int64_t(1) << 31);
        else if (f == "--top-p") {
            const std::string v = r.value(f);
            a.sampling.top_p = cli::parse_double(f, v);
            if (!(a.sampling.top_p > 0 && a.sampling.top_p <= 1))
                throw cli::usage_error("--top-p: " + v + " is outside (0, 1]");
        } else {
            return false;
        }
        return true;
    });
    if (a.max_new < 0) throw cli::usage_error("generate needs --max-new-tokens N");
    const int prompts = (a.prompt_tokens.empty() ? 0 : 1) + (a.text ? 1 : 0) + (a.prompt_random > 0 ? 1 : 0);
    if (prompts != 1)
        throw cli::usage_error(prompts == 0 ? "generate needs a prompt: --prompt-tokens P.npy, --prompt TEXT or (with "
                                              "--random-config) --prompt-random N"
                                            : "generate takes one of --prompt-tokens, --prompt and --prompt-random");
    if (!a.tokenizer.empty() && !a.text) throw cli::usage_error("--tokenizer is for --prompt TEXT (the other prompts are ids)");
    if (!a.random_config.empty()) {
        if (a.random_config != "base") throw cli::usage_error("--random-config: only 'base' is known (got '" + a.random_config + "')");
        if (!a.weights.empty() || !a.config.empty()) throw cli::usage_error("--random-config does not take --weights or --config");
        if (a.dtype != "float") throw cli::usage_error("--random-config runs in float only");
    } else {
        if (a.weights.empty() || a.config.empty()) throw cli::usage_error("generate needs --weights and --config (or --random-config base)");
        if (a.prompt_random > 0) throw cli::usage_error("--prompt-random is for --random-config");
        if (a.layers >= 0) throw cli::usage_error("--layers is for --random-config (the config file gives the layer count)");
    }
    if (a.dtype == "double" && a.weights_dtype == "bf16") throw cli::usage_error("--weights-dtype bf16 needs --dtype float");
    return a;
}

// perplexity's arguments: the model flags (--weights, --config, --dtype, --weights-dtype) and its own.
struct perplexity_arguments : cli::model_flags {
    std::string tokens, data, text, kl_base, save_logits, tokenizer;
    std::vector<std::int64_t> ctx{512};
    std::int64_t stride = 0, max_windows = 0;
};

inline perplexity_arguments parse_perplexity(int argc, char** argv) {
    perplexity_arguments a;
    const cli::model_flag_set model_flags = perplexity_model_flags();
    cli::arg_reader r(argc, argv);
    cli::read_flags(r, usage_text, "perplexity: ", [&](const std::string& f) {
        if (a.read(r, f, model_flags)) return true;  // --weights, --config, --dtype, --weights-dtype
        if (f == "--tokens") a.tokens = r.value(f);
        else if (f == "--data") a.data = r.value(f);
        else if (f == "--text") a.text = r.value(f);
        else if (f == "--tokenizer") a.tokenizer = cli::tokenizer_flag(r, f);
        else if (f == "--ctx") a.ctx = cli::parse_int_list(f, r.value(f), 2, std::int64_t(1) << 40);
        else if (f == "--stride") a.stride = cli::parse_int(f, r.value(f), 1, std::int64_t(1) << 40);
        else if (f == "--max-windows") a.max_windows = cli::parse_int(f, r.value(f), 1, std::int64_t(1) << 40);
        else if (f == "--kl-base") a.kl_base = r.value(f);
        else if (f == "--save-logits") a.save_logits = r.value(f);
        else return false;
        return true;
    });
    if (a.weights.empty() || a.config.empty()) throw cli::usage_error("perplexity needs --weights and --config");
    const int sources = !a.tokens.empty() + !a.data.empty() + !a.text.empty();
    if (sources != 1) throw cli::usage_error("perplexity needs exactly one of --tokens F.npy, --data 'shards_*.bin', --text F");
    if (!a.tokenizer.empty() && a.text.empty()) throw cli::usage_error("--tokenizer is for --text (--tokens and --data are ids)");
    if (a.ctx.empty()) throw cli::usage_error("--ctx needs at least one context length");
    for (std::int64_t c : a.ctx)
        if (a.stride && a.stride >= c)
            throw cli::usage_error("--stride " + std::to_string(a.stride) + " must be below every --ctx (got " + std::to_string(c) + ")");
    if ((!a.kl_base.empty() || !a.save_logits.empty()) && a.ctx.size() != 1)
        throw cli::usage_error("--kl-base and --save-logits need a single --ctx");
    if (a.dtype == "double" && a.weights_dtype == "bf16") throw cli::usage_error("--weights-dtype bf16 needs --dtype float");
    return a;
}

// passkey's arguments: the model flags (--weights, --config, --seed, --dtype, ...) and its own.
struct passkey_arguments : cli::model_flags {
    std::vector<std::int64_t> lengths;
    std::vector<double> depths{0, 0.25, 0.5, 0.75, 1};
    std::int64_t trials = 0, max_key = 50000;
};

inline passkey_arguments parse_passkey(int argc, char** argv) {
    passkey_arguments a;
    cli::model_flag_set model_flags;
    model_flags.weights = model_flags.config = model_flags.seed = model_flags.dtype = model_flags.weights_dtype = true;
    model_flags.offsets = model_flags.angles = true;
    cli::arg_reader r(argc, argv);
    cli::read_flags(r, usage_text, "passkey: ", [&](const std::string& f) {
        if (a.read(r, f, model_flags)) return true;
        if (f == "--length") a.lengths = cli::parse_int_list(f, r.value(f), 1, std::int64_t(1) << 40);
        else if (f == "--trials") a.trials = cli::parse_int(f, r.value(f), 1, std::int64_t(1) << 30);
        else if (f == "--passkey-max") a.max_key = cli::parse_int(f, r.value(f), 1, std::int64_t(1) << 40);
        else if (f == "--depths") {
            const std::string v = r.value(f);
            a.depths.clear();
            std::size_t start = 0;
            while (true) {
                const std::size_t comma = v.find(',', start);
                const double d = cli::parse_double(f, v.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
                if (!(d >= 0 && d <= 1)) throw cli::usage_error("--depths: " + std::to_string(d) + " is outside [0, 1]");
                a.depths.push_back(d);
                if (comma == std::string::npos) break;
                start = comma + 1;
            }
        } else return false;
        return true;
    });
    if (a.weights.empty() || a.config.empty()) throw cli::usage_error("passkey needs --weights and --config (a byte-level model)");
    if (a.lengths.empty()) throw cli::usage_error("passkey needs --length L (document bytes, as longnet_train --task passkey --seq-len L)");
    if (a.trials < 1) throw cli::usage_error("passkey needs --trials K");
    if (a.dtype == "double" && a.weights_dtype == "bf16") throw cli::usage_error("--weights-dtype bf16 needs --dtype float");
    for (std::int64_t l : a.lengths) {
        try {
            (void)longnet::training::passkey_fillers(static_cast<std::size_t>(l) + 1, static_cast<std::uint64_t>(a.max_key));
        } catch (const std::invalid_argument& e) {
            throw cli::usage_error("--length " + std::to_string(l) + " (documents of L + 1 bytes): " + e.what());
        }
    }
    return a;
}

}  // namespace lm_cli
