// SPDX-License-Identifier: Apache-2.0
// examples/longnet_train.cpp's argument parser for the CLI fuzz target: parse and random_config of
// examples/longnet_train_args.hpp (the tool's command line, kept apart from its training code; nothing
// is run). Its --help prints and calls std::exit(0) inside the parser, which a fuzz target cannot
// survive: fuzz_cli.cpp does not send argument vectors holding -h or --help.
//
// Checked on acceptance: the recorded arguments (for --resume) are the ones given; --resume DIR comes
// with nothing but --steps (the run's other arguments are the recorded ones, so any other flag would be
// silently ignored); otherwise exactly one model and one data source, the pairings the usage states
// (--weights with --config, --segment-length/--dilated-ratio/--xpos-scale-base with --random-config and
// equally many, --batch/--eval-every with --seq-len, --save-every with --out, --eos-token with
// --pack-documents, which is not for a --task), every number in its
// stated range and finite, AdamW options that validate, and the steps the tool takes next without
// files: the built-in model of --random-config with its overrides validates or is refused with
// std::invalid_argument (the tool's usage error), and so do the recall and passkey tasks.

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <longnet/nn/decoder_config.hpp>
#include <longnet/training/data.hpp>
#include <longnet/training/passkey.hpp>

#include "cli_common.hpp"
#include "longnet_train_args.hpp"

#include "fuzz_check.hpp"
#include "fuzz_cli.hpp"

namespace {

namespace nn = longnet::nn;
namespace tr = longnet::training;
using train_cli::arguments;

bool in(std::int64_t v, std::int64_t lo, std::int64_t hi) { return v >= lo && v <= hi; }

// Everything but --resume, --steps and the recorded argv at its default.
bool only_resume_and_steps(const arguments& a) {
    const arguments d;
    return a.weights == d.weights && a.config == d.config && a.random_config == d.random_config && a.tokens == d.tokens &&
           a.text == d.text && a.task == d.task && a.data == d.data && a.heldout_data == d.heldout_data && a.save_grads == d.save_grads && a.save == d.save && a.out == d.out &&
           a.dtype == d.dtype && a.save_dtype == d.save_dtype && a.seq_len == d.seq_len && a.batch == d.batch &&
           a.warmup == d.warmup && a.vocab == d.vocab && a.eval_every == d.eval_every && a.eval_batches == d.eval_batches &&
           a.save_every == d.save_every && a.recall_pairs == d.recall_pairs && a.recall_copies == d.recall_copies &&
           a.recall_queries == d.recall_queries && a.passkey_max == d.passkey_max && a.passkey_all == d.passkey_all && a.lr == d.lr && a.min_lr == d.min_lr && a.heldout == d.heldout &&
           a.clip_norm == d.clip_norm && a.xpos_scale_base == d.xpos_scale_base && a.segment_length == d.segment_length &&
           a.dilated_ratio == d.dilated_ratio && a.seed == d.seed && a.schedule == d.schedule &&
           a.adamw.beta1 == d.adamw.beta1 && a.adamw.beta2 == d.adamw.beta2 && a.adamw.eps == d.adamw.eps &&
           a.adamw.weight_decay == d.adamw.weight_decay && a.pass.mode == d.pass.mode &&
           a.pass.checkpoint_activations == d.pass.checkpoint_activations && a.options.angles == d.options.angles &&
           a.data_parallel == d.data_parallel && a.tokenizer == d.tokenizer && a.pack_documents == d.pack_documents &&
           a.eos_token == d.eos_token;
}

}  // namespace

int fuzz_cli::train(int argc, char** argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    arguments a;
    try {
        a = train_cli::parse(args);
    } catch (const cli::usage_error&) {
        return 2;
    } catch (const std::invalid_argument&) {
        return 2;
    }
    std::string shown;
    for (const auto& s : args) shown += " '" + s + "'";
    FUZZ_CHECK(!args.empty(), "no arguments accepted");
    FUZZ_CHECK(a.argv == args, "recorded arguments differ from" + shown);
    constexpr std::int64_t big = std::int64_t(1) << 40;
    FUZZ_CHECK(in(a.steps, 0, big), "--steps of" + shown);
    if (!a.resume.empty()) {
        FUZZ_CHECK(only_resume_and_steps(a), "--resume with flags it ignores:" + shown);
        return 0;
    }
    FUZZ_CHECK(a.config.empty() != a.random_config.empty(), "not exactly one model:" + shown);
    FUZZ_CHECK(a.random_config.empty() || a.random_config == "tiny" || a.random_config == "small" || a.random_config == "base",
               "--random-config of" + shown);
    FUZZ_CHECK(a.weights.empty() || !a.config.empty(), "--weights without --config:" + shown);
    FUZZ_CHECK(!a.tokens.empty() + !a.text.empty() + !a.task.empty() + !a.data.empty() == 1, "not exactly one data source:" + shown);
    FUZZ_CHECK(a.task.empty() || a.task == "recall" || a.task == "passkey", "--task of" + shown);
    if (a.task != "passkey") FUZZ_CHECK(a.passkey_max == 50000 && !a.passkey_all, "--passkey-* without --task passkey:" + shown);
    FUZZ_CHECK(a.segment_length.size() == a.dilated_ratio.size(), "unequal branch lists:" + shown);
    if (!a.segment_length.empty() || a.xpos_scale_base != 0)
        FUZZ_CHECK(!a.random_config.empty(), "model overrides without --random-config:" + shown);
    for (std::size_t i = 0; i < a.segment_length.size(); ++i)
        FUZZ_CHECK(in(a.segment_length[i], 1, big) && in(a.dilated_ratio[i], 1, big), "branch range of" + shown);
    FUZZ_CHECK(in(a.seq_len, 0, std::int64_t(1) << 32), "--seq-len of" + shown);
    if (!a.task.empty()) FUZZ_CHECK(a.seq_len >= 1, "a task without a sequence length:" + shown);
    if (a.batch != 1 || a.eval_every > 0) FUZZ_CHECK(a.seq_len >= 1, "--batch/--eval-every without --seq-len:" + shown);
    if (a.save_every > 0) FUZZ_CHECK(!a.out.empty(), "--save-every without --out:" + shown);
    if (a.eos_token >= 0) FUZZ_CHECK(a.pack_documents, "--eos-token without --pack-documents:" + shown);
    if (a.pack_documents) FUZZ_CHECK(a.task.empty(), "--pack-documents with a --task:" + shown);
    FUZZ_CHECK(in(a.eos_token, -1, big), "--eos-token of" + shown);
    FUZZ_CHECK(in(a.batch, 1, 1 << 20) && in(a.warmup, 0, big) && in(a.vocab, 0, std::int64_t(1) << 31) &&
                   in(a.eval_every, 0, big) && in(a.eval_batches, 1, 1 << 20) && in(a.save_every, 0, big) &&
                   in(a.recall_pairs, 1, 16) && in(a.recall_copies, 1, 1 << 20) && in(a.recall_queries, 1, 1 << 20) && in(a.passkey_max, 1, big) &&
                   in(a.data_parallel, 1, 1 << 20),
               "an integer out of its range:" + shown);
    FUZZ_CHECK(std::isfinite(a.lr) && a.lr >= 0, "--lr of" + shown);
    FUZZ_CHECK(std::isfinite(a.min_lr) && a.min_lr >= 0 && a.min_lr <= a.lr, "--min-lr of" + shown);
    FUZZ_CHECK(a.heldout >= 0 && a.heldout < 1, "--heldout of" + shown);
    FUZZ_CHECK(std::isfinite(a.clip_norm) && a.clip_norm >= 0, "--clip-norm of" + shown);
    FUZZ_CHECK(a.xpos_scale_base == 0 || (std::isfinite(a.xpos_scale_base) && a.xpos_scale_base > 0), "--xpos-scale-base of" + shown);
    FUZZ_CHECK(a.dtype == "float" || a.dtype == "double", "--dtype of" + shown);
    try {
        a.adamw.validate();
    } catch (const std::invalid_argument& e) {
        FUZZ_CHECK(false, "accepted AdamW options do not validate:" + shown + ": " + e.what());
    }
    // What the tool does next without reading files: std::invalid_argument there is its usage error.
    if (!a.random_config.empty()) {
        nn::decoder_config cfg = train_cli::random_config(a.random_config);
        cfg.vocab_size = a.vocab > 0 ? a.vocab : 256;
        if (!a.segment_length.empty()) {
            cfg.segment_length = a.segment_length;
            cfg.dilated_ratio = a.dilated_ratio;
        }
        if (a.xpos_scale_base > 0) cfg.xpos_scale_base = a.xpos_scale_base;
        try {
            cfg.validate();
        } catch (const std::invalid_argument&) {
        }
    }
    if (a.task == "recall") {
        tr::recall_task task;
        task.seq_len = static_cast<std::size_t>(a.seq_len);
        task.pairs = static_cast<std::size_t>(a.recall_pairs);
        task.copies = static_cast<std::size_t>(a.recall_copies);
        task.queries = static_cast<std::size_t>(a.recall_queries);
        try {
            task.validate();
        } catch (const std::invalid_argument&) {
        }
    }
    if (a.task == "passkey") {
        tr::passkey_task task;
        task.seq_len = static_cast<std::size_t>(a.seq_len);
        task.max_key = static_cast<std::uint64_t>(a.passkey_max);
        try {
            task.validate();
        } catch (const std::invalid_argument&) {
        }
    }
    return 0;
}
