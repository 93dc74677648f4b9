// SPDX-License-Identifier: Apache-2.0
#pragma once
// longnet_train's command line (examples/longnet_train.cpp): the usage text, the arguments, the parser
// (parse: every flag, its range and the pairings the usage states) and the built-in model sizes of
// --random-config (random_config). Kept apart from the trainer so that the CLI fuzz target
// (tests/fuzz/cli_train.cpp) compiles the parser without the training templates.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <longnet/nn/decoder.hpp>
#include <longnet/nn/decoder_config.hpp>
#include <longnet/options.hpp>
#include <longnet/training/adamw.hpp>
#include <longnet/training/precision.hpp>
#include <longnet/training/checkpoint.hpp>
#include <longnet/training/schedule.hpp>

#include "cli_common.hpp"
#include "model_flags.hpp"

namespace train_cli {

inline const char* const usage_text =
    "usage:\n"
    "  longnet_train (--weights W.safetensors --config C.json | --config C.json | --random-config tiny|small|small-long|base)\n"
    "                (--tokens T.npy | --text FILE | --task recall|passkey) [--seq-len N] [--batch B] [--heldout F]\n"
    "                [--tokenizer spm.model]   (--text encoded with a SentencePiece model; recorded in config.json)\n"
    "                | --data 'train_*.bin' --seq-len N [--heldout 'val_*.bin']\n"
    "                [--pack-documents [--eos-token ID]]   (documents split at the end token, each attended alone)\n"
    "                [--steps K] [--lr X] [--schedule cosine|constant] [--warmup W] [--min-lr X]\n"
    "                [--betas b1,b2] [--eps E] [--weight-decay W] [--clip-norm C]\n"
    "                [--grad-mode exact|stop_grad_weights] [--checkpoint-activations] [--seed S]\n"
    "                [--dtype float|double] [--precision float32|bf16] [--angles torchscale|float64] [--vocab V]\n"
    "                [--segment-length 64,128 --dilated-ratio 1,2] [--xpos-scale-base S] [--recall-pairs P] [--recall-copies C] [--recall-queries Q]\n"
    "                [--passkey-max K] [--passkey-loss answer|all]\n"
    "                [--eval-every N] [--eval-batches N] [--save-every N] [--out DIR]\n"
    "                [--save-grads G.safetensors] [--save P.safetensors] [--save-dtype float32|float64]\n"
    "                [--data-parallel K]   (under mpirun: K groups of ranks, each splitting its sequences)\n"
    "                [--bucket-bytes N]   (under mpirun: gradient all-reduce overlapped with the backward in buckets\n"
    "                                      of about N bytes, default 26214400 = 25 MiB; 0: blocking, after the backward)\n"
    "  longnet_train --resume DIR [--steps K]\n";

// The model flags (model_flags.hpp; defaults: seed 1, vocabulary from the data) and the tool's own.
struct arguments : cli::model_flags {
    std::string tokens, text, task;
    std::int64_t passkey_max = 50000;
    bool passkey_all = false;  // --passkey-loss all
    std::string data, heldout_data;  // --data shards; --heldout shards (with --data)
    std::string save_grads, save, out, resume;
    std::string tokenizer;  // --tokenizer: a SentencePiece model file
    longnet::training::save_dtype save_dtype = longnet::training::save_dtype::float32;
    std::int64_t seq_len = 0, batch = 1, steps = 1, warmup = 0, eval_every = 0, eval_batches = 4,
                 save_every = 0, recall_pairs = 4, recall_copies = 1, recall_queries = 1, data_parallel = 1;
    std::int64_t bucket_bytes = std::int64_t(25) << 20;  // --bucket-bytes (distributed_options::bucket_bytes)
    bool bucket_bytes_set = false;
    double lr = 3e-4, min_lr = 0, heldout = 0.1, clip_norm = 1.0, xpos_scale_base = 0;
    std::vector<std::int64_t> segment_length, dilated_ratio;
    bool steps_set = false;
    bool pack_documents = false;
    std::int64_t eos_token = -1;  // --eos-token; -1: the tokenizer's eos
    longnet::training::schedule_kind schedule = longnet::training::schedule_kind::cosine;
    longnet::training::adamw_options adamw;
    longnet::nn::train_options pass;
    longnet::training::precision precision = longnet::training::precision::float32;  // --precision
    std::vector<std::string> argv;  // as given (recorded in checkpoint.json for --resume)
    arguments() { seed = 1; }
};

inline std::pair<double, double> parse_betas(const std::string& flag, const std::string& v) {
    const auto comma = v.find(',');
    if (comma == std::string::npos || v.find(',', comma + 1) != std::string::npos)
        throw cli::usage_error(flag + ": expected two numbers b1,b2, got '" + v + "'");
    return {cli::parse_double(flag, v.substr(0, comma)), cli::parse_double(flag, v.substr(comma + 1))};
}

inline arguments parse(const std::vector<std::string>& args) {
    std::vector<char*> argv{const_cast<char*>("longnet_train")};
    for (const auto& s : args) argv.push_back(const_cast<char*>(s.c_str()));
    arguments a;
    a.argv = args;
    cli::model_flag_set model_flags;
    model_flags.weights = model_flags.config = model_flags.random_config = model_flags.seed = model_flags.vocab = true;
    model_flags.dtype = model_flags.angles = true;
    model_flags.random_configs = {"tiny", "small", "small-long", "base"};
    cli::arg_reader r(static_cast<int>(argv.size()), argv.data());
    std::string heldout_text;
    std::vector<std::string> flags;  // as given
    cli::read_flags(r, usage_text, "", [&](const std::string& f) {
        flags.push_back(f);
        if (a.read(r, f, model_flags)) return true;  // --weights, --config, --seed, ... (model_flags.hpp)
        if (f == "--tokens") a.tokens = r.value(f);
        else if (f == "--text") a.text = r.value(f);
        else if (f == "--tokenizer") a.tokenizer = cli::tokenizer_flag(r, f);
        else if (f == "--task") {
            a.task = r.value(f);
            if (a.task != "recall" && a.task != "passkey") throw cli::usage_error("--task: expected recall or passkey, got '" + a.task + "'");
        } else if (f == "--seq-len") a.seq_len = cli::parse_int(f, r.value(f), 1, std::int64_t(1) << 32);
        else if (f == "--batch") a.batch = cli::parse_int(f, r.value(f), 1, 1 << 20);
        else if (f == "--data") a.data = r.value(f);
        else if (f == "--heldout") {
            heldout_text = r.value(f);  // a fraction, or shards with --data (read after the loop)
        } else if (f == "--steps") {
            a.steps = cli::parse_int(f, r.value(f), 0, std::int64_t(1) << 40);
            a.steps_set = true;
        } else if (f == "--lr") {
            a.lr = cli::parse_double(f, r.value(f));
            if (a.lr < 0) throw cli::usage_error("--lr: must be >= 0, got " + std::to_string(a.lr));
        } else if (f == "--min-lr") {
            a.min_lr = cli::parse_double(f, r.value(f));
        } else if (f == "--schedule") {
            try {
                a.schedule = longnet::training::parse_schedule(r.value(f));
            } catch (const std::invalid_argument& e) {
                throw cli::usage_error(std::string("--schedule: ") + e.what());
            }
        } else if (f == "--warmup") a.warmup = cli::parse_int(f, r.value(f), 0, std::int64_t(1) << 40);
        else if (f == "--betas") std::tie(a.adamw.beta1, a.adamw.beta2) = parse_betas(f, r.value(f));
        else if (f == "--eps") a.adamw.eps = cli::parse_double(f, r.value(f));
        else if (f == "--weight-decay") a.adamw.weight_decay = cli::parse_double(f, r.value(f));
        else if (f == "--clip-norm") {
            a.clip_norm = cli::parse_double(f, r.value(f));
            if (a.clip_norm < 0) throw cli::usage_error("--clip-norm: must be >= 0 (0 turns clipping off), got " + std::to_string(a.clip_norm));
        } else if (f == "--grad-mode") {
            try {
                a.pass.mode = longnet::parse_grad_mode(r.value(f));
            } catch (const std::invalid_argument& e) {
                throw cli::usage_error(std::string("--grad-mode: ") + e.what());
            }
        } else if (f == "--precision") {
            try {
                a.precision = longnet::training::parse_precision(r.value(f));
            } catch (const std::invalid_argument& e) {
                throw cli::usage_error(std::string("--precision: ") + e.what());
            }
        } else if (f == "--pack-documents") {
            r.no_value(f);
            a.pack_documents = true;
        } else if (f == "--eos-token") a.eos_token = cli::parse_int(f, r.value(f), 0, std::int64_t(1) << 40);
        else if (f == "--checkpoint-activations") {
            r.no_value(f);
            a.pass.checkpoint_activations = true;
        } else if (f == "--segment-length") a.segment_length = cli::parse_int_list(f, r.value(f), 1, std::int64_t(1) << 40);
        else if (f == "--dilated-ratio") a.dilated_ratio = cli::parse_int_list(f, r.value(f), 1, std::int64_t(1) << 40);
        else if (f == "--xpos-scale-base") {
            a.xpos_scale_base = cli::parse_double(f, r.value(f));
            if (!(a.xpos_scale_base > 0)) throw cli::usage_error("--xpos-scale-base: must be > 0, got " + std::to_string(a.xpos_scale_base));
        } else if (f == "--recall-pairs") a.recall_pairs = cli::parse_int(f, r.value(f), 1, 16);
        else if (f == "--recall-copies") a.recall_copies = cli::parse_int(f, r.value(f), 1, std::int64_t(1) << 20);
        else if (f == "--recall-queries") a.recall_queries = cli::parse_int(f, r.value(f), 1, std::int64_t(1) << 20);
        else if (f == "--passkey-max") a.passkey_max = cli::parse_int(f, r.value(f), 1, std::int64_t(1) << 40);
        else if (f == "--passkey-loss") {
            const std::string v = r.value(f);
            if (v != "answer" && v != "all") throw cli::usage_error("--passkey-loss: expected answer or all, got '" + v + "'");
            a.passkey_all = v == "all";
        } else if (f == "--eval-every") a.eval_every = cli::parse_int(f, r.value(f), 0, std::int64_t(1) << 40);
        else if (f == "--eval-batches") a.eval_batches = cli::parse_int(f, r.value(f), 1, 1 << 20);
        else if (f == "--save-every") a.save_every = cli::parse_int(f, r.value(f), 0, std::int64_t(1) << 40);
        else if (f == "--out") a.out = r.value(f);
        else if (f == "--data-parallel") a.data_parallel = cli::parse_int(f, r.value(f), 1, 1 << 20);
        else if (f == "--bucket-bytes") {
            a.bucket_bytes = cli::parse_int(f, r.value(f), 0, std::int64_t(1) << 40);
            a.bucket_bytes_set = true;
        }
        else if (f == "--resume") a.resume = r.value(f);
        else if (f == "--save-grads") a.save_grads = r.value(f);
        else if (f == "--save") a.save = r.value(f);
        else if (f == "--save-dtype") {
            try {
                a.save_dtype = longnet::training::parse_save_dtype(r.value(f));
            } catch (const std::invalid_argument& e) {
                throw cli::usage_error(std::string("--save-dtype: ") + e.what());
            }
        } else {
            return false;
        }
        return true;
    });
    if (!heldout_text.empty()) {
        if (!a.data.empty()) {
            a.heldout_data = heldout_text;
        } else {
            a.heldout = cli::parse_double("--heldout", heldout_text);
            if (a.heldout < 0 || a.heldout >= 1) throw cli::usage_error("--heldout: expected a fraction in [0, 1), got " + std::to_string(a.heldout));
        }
    }
    if (!a.resume.empty()) {  // the rest is checked after the recorded arguments are merged in
        for (const std::string& f : flags)  // any other flag would be silently replaced by the recorded one
            if (f != "--resume" && f != "--steps")
                throw cli::usage_error("--resume DIR takes only --steps (the run's other arguments are the recorded ones), got " + f);
        return a;
    }
    const int models = !a.config.empty() + !a.random_config.empty();
    if (models != 1) throw cli::usage_error("give exactly one model: --config C.json (with or without --weights) or --random-config");
    if (!a.weights.empty() && a.config.empty()) throw cli::usage_error("--weights needs --config");
    const int data = !a.tokens.empty() + !a.text.empty() + !a.task.empty() + !a.data.empty();
    if (data != 1) throw cli::usage_error("give exactly one data source: --tokens, --text, --data or --task recall|passkey");
    if (!a.tokenizer.empty() && !a.task.empty()) throw cli::usage_error("--tokenizer is for --text, --tokens or --data, not --task " + a.task);
    if (!a.data.empty() && a.seq_len == 0) throw cli::usage_error("--data needs --seq-len (windows of the shard stream)");
    if (!a.heldout_data.empty() && a.eval_every == 0) throw cli::usage_error("--heldout shards need --eval-every");
    if ((!a.segment_length.empty() || !a.dilated_ratio.empty() || a.xpos_scale_base > 0) && a.random_config.empty())
        throw cli::usage_error("--segment-length/--dilated-ratio/--xpos-scale-base are for --random-config (a config file gives its own)");
    if (a.segment_length.size() != a.dilated_ratio.size())
        throw cli::usage_error("--segment-length and --dilated-ratio need equally many entries");
    if (a.precision == longnet::training::precision::bf16 && a.dtype != "float")
        throw cli::usage_error("--precision bf16 needs --dtype float (bf16 products with float master weights), got --dtype " + a.dtype);
    if (a.eos_token >= 0 && !a.pack_documents) throw cli::usage_error("--eos-token is for --pack-documents");
    if (a.pack_documents && !a.task.empty()) throw cli::usage_error("--pack-documents is for --tokens, --text or --data, not --task " + a.task);
    if (a.seq_len == 0 && a.task == "recall") a.seq_len = 8192;
    if (a.seq_len == 0 && a.task == "passkey") a.seq_len = 1024;
    for (const std::string& f : flags)
        if ((f == "--passkey-max" || f == "--passkey-loss") && a.task != "passkey") throw cli::usage_error(f + " is for --task passkey");
    if (a.seq_len == 0 && a.batch != 1) throw cli::usage_error("--batch needs --seq-len (without it the whole file is one sequence)");
    if (a.eval_every > 0 && a.seq_len == 0) throw cli::usage_error("--eval-every needs --seq-len (a held-out tail)");
    if (a.save_every > 0 && a.out.empty()) throw cli::usage_error("--save-every needs --out DIR");
    try {
        a.adamw.validate();
    } catch (const std::invalid_argument& e) {
        throw cli::usage_error(e.what());
    }
    if (a.min_lr < 0 || a.min_lr > a.lr)
        throw cli::usage_error("--min-lr: must be in [0, --lr = " + std::to_string(a.lr) + "], got " + std::to_string(a.min_lr));
    return a;
}

// Built-in sizes (vocabulary from the data unless --vocab).
inline longnet::nn::decoder_config random_config(const std::string& name) {
    longnet::nn::decoder_config c;
    if (name == "tiny") {
        c.embed_dim = 64, c.heads = 4, c.ffn_dim = 256, c.layers = 2;
        c.segment_length = {64, 256}, c.dilated_ratio = {1, 4};
    } else if (name == "small") {
        c.embed_dim = 256, c.heads = 4, c.ffn_dim = 1024, c.layers = 4;
        c.segment_length = {256, 1024, 4096}, c.dilated_ratio = {1, 4, 16};
    } else if (name == "small-long") {
        // small's shape for 1M-token sequences (docs/training.md, "Memory model"): segment lengths 1K ..
        // 1M by 4 with dilations 1 .. 1024 (every branch 1024 rows per segment; the last segment is a
        // 1M-token sequence), XPos scale base 8192 so the anchored decay of a 1M segment fits float.
        c.embed_dim = 256, c.heads = 4, c.ffn_dim = 1024, c.layers = 4;
        c.segment_length = {1024, 4096, 16384, 65536, 262144, 1048576};
        c.dilated_ratio = {1, 4, 16, 64, 256, 1024};
        c.xpos_scale_base = 8192;
    } else {
        c = longnet::nn::decoder_config::base();
    }
    return c;
}

}  // namespace train_cli
