// SPDX-License-Identifier: Apache-2.0
// longnet_train: train a LongNet decoder (torchscale LongNetDecoder) with longnet's own backward and AdamW.
//
//   longnet_train MODEL DATA [options]
//   longnet_train --resume DIR [--steps K]
//
// MODEL: --weights W.safetensors --config C.json   start from a checkpoint
//        --config C.json                          fresh model (torchscale initialisation, --seed)
//        --random-config tiny|small|small-long|base          fresh model of a built-in size (vocabulary from the data
//                                                 or --vocab; --segment-length/--dilated-ratio and
//                                                 --xpos-scale-base override)
// DATA:  --tokens T.npy (int32/int64 ids) | --text FILE (bytes, vocabulary 256) | --task recall | --task passkey
//        | --data 'dir/train_*.bin' [--heldout 'dir/val_*.bin'] (llm.c token shards, memory-mapped and never
//        read whole, sorted by name into one stream; needs --seq-len; windows drawn from the seed exactly as
//        for --tokens, so --resume continues the same stream; every token checked against the vocabulary
//        before training; with --data, --heldout names the held-out shards instead of a fraction)
//        Without --seq-len, the whole of T.npy / FILE is one sequence (inputs T[:-1], targets T[1:]) and
//        every step trains on it; with --seq-len N, batches of --batch random windows of N tokens come from
//        the first part and the last --heldout fraction (default 0.1) is held out for --eval-every.
//        --task recall: the synthetic long-range task (training/data.hpp): key-value pairs (--recall-pairs,
//        repeated --recall-copies times) at the start of a sequence of --seq-len tokens, --recall-queries
//        keys at its end, only their values scored.
//        --pack-documents [--eos-token ID]: the data are documents, each ending with the end token (ID, or
//        the --tokenizer's eos; required for byte-level data, e.g. --eos-token 10 makes every line a
//        document). Each sequence (the whole file, or a window) is cut at every end token, which stays the
//        last token of its document; attention never crosses a boundary and the XPos positions restart at
//        0 at each document, so every document trains as if alone and no compute goes to padding. The
//        target of an end token (the next document's first token) is not scored; a window's first and last
//        documents may be cut off by its edges (docs/training.md, "Packed documents"). Not under mpirun
//        with more than one rank; not with --task recall or passkey.
//        --task passkey: llama.cpp's passkey retrieval, byte level (training/passkey.hpp): every sequence a
//        fresh document of --seq-len + 1 bytes (default 1024), the key N uniform in 1..--passkey-max (default
//        50000) at a random filler boundary; --passkey-loss answer (default: only " N." after the question
//        is scored) | all (every byte). Evaluate with `longnet_lm passkey`.
//        --tokenizer spm.model (a build with SentencePiece): --text is encoded with that SentencePiece model
//        (line by line, as spm_encode and longnet_data do; longnet/text/tokenizer.hpp) instead of bytes; with
//        --tokens or --data the ids are taken to be its encoding. The vocabulary (from the data, --vocab or
//        the config) must hold the tokenizer's; config.json records the tokenizer (path, FNV-1a 64 hash of
//        the file: nn/decoder_config.hpp) and `longnet_lm generate` refuses any other. A config that
//        records one (--config, with or without --weights) takes --text only with that tokenizer.
// Optimisation: --steps --lr --schedule cosine|constant --warmup --min-lr --betas b1,b2 --eps
//        --weight-decay --clip-norm --grad-mode exact|stop_grad_weights --checkpoint-activations --seed
//        --dtype float|double --angles torchscale|float64
// Output: --save-grads G.safetensors (gradients at the initial parameters, before clipping)
//        --save P.safetensors (parameters after the last step) --save-dtype float32|float64
//        --out DIR: progress in DIR/log.jsonl (one JSON line per step: loss, seconds, CPU and system
//        seconds, minor page faults, peak RSS), checkpoints every --save-every
//        steps and at the end (model.safetensors float32 + config.json, loadable by longnet_lm and
//        torchscale; state-<step>.safetensors + checkpoint.json for --resume), each file written to a
//        temporary name and renamed. --resume DIR continues a run with its recorded arguments; the result
//        is bitwise the run that never stopped.
// Distributed (built with MPI, longnet::mpi): mpirun -np W longnet_train ... [--data-parallel K] trains with
//        sequence parallelism over W/K ranks per sequence and K data-parallel groups; --bucket-bytes N
//        (default 25 MiB) overlaps the gradient all-reduce with the backward in buckets of about N bytes,
//        0 runs it after the backward (the same sums; the log has its seconds, exposed and hidden)
//        (longnet/training/distributed_trainer.hpp): the same flags, the batch split between the groups,
//        every sequence split into W/K equal chunks (with --data each rank reads only the tokens of its
//        chunks of its group's windows, the windows drawn as alone); rank 0 writes the log, the
//        checkpoints and --save files; --resume DIR restarts with the recorded arguments. An error every rank agrees on (bad data
//        in one rank's chunk) ends every rank with exit 1; any other failure on one rank aborts the job
//        (MPI_Abort, non-zero exit). Without mpirun the tool runs alone, as before.
// Exit codes: 0 success, 1 data error (files, checkpoints, I/O), 2 usage error (flags, values).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <longnet/allocator.hpp>
#include <longnet/io/npy.hpp>
#include <longnet/io/safetensors.hpp>
#include <longnet/nn/nn.hpp>
#include <longnet/training/checkpoint.hpp>
#include <longnet/training/data.hpp>
#include <longnet/training/init.hpp>
#include <longnet/training/passkey.hpp>
#include <longnet/training/trainer.hpp>

#include "cli_common.hpp"
#include "longnet_train_args.hpp"
#include "train_memory.hpp"
#include "model_flags.hpp"

#if LONGNET_TRAIN_MPI
#include <cstdlib>

#include <longnet/training/distributed_trainer.hpp>
#endif

namespace {

// The process's CPU seconds (user, system: all threads) and minor page faults so far (getrusage), for the
// log's per-step figures: on a shared machine CPU time says more than wall time, and system time with
// minor faults is what re-faulting freed memory costs.
struct process_usage {
    double user = 0, system = 0;
    double minor_faults = 0;
};
process_usage usage_now() noexcept {
    process_usage p;
#if LONGNET_CLI_POSIX
    struct rusage u {};
    if (getrusage(RUSAGE_SELF, &u) != 0) return p;
    const auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec); };
    p.user = sec(u.ru_utime);
    p.system = sec(u.ru_stime);
    p.minor_faults = static_cast<double>(u.ru_minflt);
#endif
    return p;
}

namespace nn = longnet::nn;
namespace tr = longnet::training;
namespace fs = std::filesystem;

using namespace train_cli;  // usage_text, arguments, parse, random_config (longnet_train_args.hpp)

// The run's data: a fixed sequence, a token dataset, or the recall or passkey task.
struct data_source {
    bool whole = false;  // one fixed sequence
    tr::sequence fixed;
    tr::token_dataset dataset;
    bool shards = false;  // --data: windows of memory-mapped shards
    tr::shard_dataset shard_data;
    bool recall = false;
    tr::recall_task task;
    bool passkey = false;
    tr::passkey_task passkey_task;
    std::int64_t vocab_needed = 0;  // largest token + 1
    std::int64_t eos = -1;          // --pack-documents: the end token; -1: no packing

    std::vector<tr::sequence> batch(tr::rng_state& rng, std::int64_t size) const {
        if (shards) return packed(shard_data.sample_batch(rng, static_cast<std::size_t>(size)));
        std::vector<tr::sequence> b;
        for (std::int64_t i = 0; i < size; ++i) {
            if (whole) b.push_back(fixed);
            else if (recall) b.push_back(task.sample(rng));
            else if (passkey) b.push_back(passkey_task.sample(rng));
            else b.push_back(dataset.sample(rng));
        }
        return packed(std::move(b));
    }
    std::vector<tr::sequence> heldout(std::int64_t count, std::uint64_t seed) const {
        if (recall || passkey) {
            tr::rng_state r{seed ^ 0x4e1dull};  // a fixed evaluation set, never the training stream
            std::vector<tr::sequence> b;
            for (std::int64_t i = 0; i < count; ++i) b.push_back(recall ? task.sample(r) : passkey_task.sample(r));
            return b;
        }
        if (shards) return packed(shard_data.heldout(static_cast<std::size_t>(count)));
        return packed(dataset.heldout(static_cast<std::size_t>(count)));
    }
    // --pack-documents: each sequence cut at its end tokens (training/data.hpp: pack_documents).
    std::vector<tr::sequence> packed(std::vector<tr::sequence> b) const {
        if (eos >= 0)
            for (auto& s : b) tr::pack_documents(s, eos);
        return b;
    }
};

// --pack-documents: the end token (--eos-token, else the tokenizer's eos); -1 without packing.
std::int64_t end_token(const arguments& a, const longnet::text::tokenizer& tok) {
    if (!a.pack_documents) return -1;
    if (a.eos_token >= 0) return a.eos_token;
    if (tok.eos_id() >= 0) return tok.eos_id();
    throw cli::usage_error(std::string("--pack-documents needs the end token: give --eos-token ID (") +
                           (tok.byte_level() ? "byte-level data have none; --eos-token 10 makes every line a document)"
                                             : tok.record().describe() + " has no eos piece)"));
}

#if LONGNET_TRAIN_MPI
// MPI runs only when a launcher started this process (mpirun / mpiexec set these); alone, the tool never
// initialises MPI.
bool launched_by_mpi() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
        if (std::getenv(v)) return true;
    return false;
}
bool g_mpi = false;              // MPI_Init was called
bool g_collective_error = false; // the error that ends the run was agreed by every rank
int g_rank = 0, g_ranks = 1;
MPI_Comm mpi_world() { return g_mpi ? MPI_COMM_WORLD : MPI_COMM_NULL; }
#endif

// Which share of the shards this process scans for the vocabulary (rank of ranks under mpirun; 0 of 1).
std::pair<std::size_t, std::size_t> shard_part() {
#if LONGNET_TRAIN_MPI
    if (g_mpi && g_ranks > 1) return {static_cast<std::size_t>(g_rank), static_cast<std::size_t>(g_ranks)};
#endif
    return {0, 1};
}

data_source load_data(const arguments& a, const longnet::text::tokenizer& tok) {
    data_source d;
    if (a.task == "recall") {
        d.recall = true;
        d.task.seq_len = static_cast<std::size_t>(a.seq_len);
        d.task.pairs = static_cast<std::size_t>(a.recall_pairs);
        d.task.copies = static_cast<std::size_t>(a.recall_copies);
        d.task.queries = static_cast<std::size_t>(a.recall_queries);
        try {
            d.task.validate();
        } catch (const std::invalid_argument& e) {
            throw cli::usage_error(e.what());
        }
        d.vocab_needed = tr::recall_task::vocab;
        return d;
    }
    if (a.task == "passkey") {
        d.passkey = true;
        d.passkey_task.seq_len = static_cast<std::size_t>(a.seq_len);
        d.passkey_task.max_key = static_cast<std::uint64_t>(a.passkey_max);
        d.passkey_task.answer_only = !a.passkey_all;
        try {
            d.passkey_task.validate();
        } catch (const std::invalid_argument& e) {
            throw cli::usage_error(std::string(e.what()) + " (--seq-len " + std::to_string(a.seq_len) + ")");
        }
        d.vocab_needed = tr::passkey_task::vocab;
        return d;
    }
    if (!a.data.empty()) {  // shards: the vocabulary is checked (file and offset named) once the model is known
        try {
            d.shards = true;
            d.shard_data = tr::shard_dataset(longnet::io::glob_token_shards(a.data),
                                             a.heldout_data.empty() ? std::vector<std::string>{}
                                                                    : longnet::io::glob_token_shards(a.heldout_data),
                                             static_cast<std::size_t>(a.seq_len), std::uint64_t{1} << 32);
            // the vocabulary from the data only when nothing else gives it (a second pass over the corpus;
            // under mpirun each rank scans its share of the shards, the largest over the world)
            if (a.config.empty() && a.vocab == 0 && tok.byte_level()) {
                const auto [part, parts] = shard_part();
                long long largest = static_cast<long long>(d.shard_data.max_token(part, parts));
#if LONGNET_TRAIN_MPI
                if (parts > 1) MPI_Allreduce(MPI_IN_PLACE, &largest, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
#endif
                d.vocab_needed = static_cast<std::int64_t>(largest) + 1;
            }
        } catch (const std::runtime_error& e) {
            throw cli::data_error(e.what());
        }
        return d;
    }
    std::vector<std::int64_t> tokens;
    try {
        if (!a.text.empty() && !tok.byte_level()) {
            tok.encode_file(a.text, [&](const std::int64_t* ids, std::size_t n) { tokens.insert(tokens.end(), ids, ids + n); });
        } else {
            tokens = a.text.empty() ? tr::read_token_file(a.tokens) : tr::read_text_bytes(a.text);
        }
    } catch (const longnet::io::npy_error& e) {
        throw cli::data_error(e.what());
    } catch (const std::runtime_error& e) {
        throw cli::data_error(e.what());
    }
    const std::string& path = a.text.empty() ? a.tokens : a.text;
    for (auto t : tokens) d.vocab_needed = std::max(d.vocab_needed, t + 1);
    if (!a.text.empty()) d.vocab_needed = tok.byte_level() ? 256 : tok.vocab_size();
    if (a.seq_len == 0) {
        if (tokens.size() < 2) throw cli::data_error(path + ": " + std::to_string(tokens.size()) + " tokens; need at least 2 (inputs and a target)");
        d.whole = true;
        d.fixed = tr::window(tokens, 0, tokens.size() - 1);
        return d;
    }
    try {
        d.dataset = tr::token_dataset(std::move(tokens), static_cast<std::size_t>(a.seq_len), a.eval_every > 0 ? a.heldout : 0.0);
    } catch (const std::runtime_error& e) {
        throw cli::data_error(path + ": " + e.what());
    }
    return d;
}

std::string read_file_text(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// log.jsonl: keep the lines of steps <= `step` (a resumed run redoes the steps after its checkpoint).
void truncate_log(const std::string& path, std::int64_t step) {
    std::ifstream in(path);
    if (!in) return;
    std::string line, kept;
    while (std::getline(in, line)) {
        try {
            const auto j = nlohmann::json::parse(line);
            if (j.value("step", std::int64_t(0)) <= step) kept += line + "\n";
        } catch (const nlohmann::json::exception&) {  // a torn last line of a killed run
        }
    }
    tr::save_text(path, kept);
}

template <class T>
int train(arguments a) {
    // checkpoint to resume from: its recorded arguments, with --steps possibly overridden
    nlohmann::json resume_meta;
    if (!a.resume.empty()) {
        const std::string meta_path = (fs::path(a.resume) / "checkpoint.json").string();
        if (!fs::exists(meta_path)) throw cli::data_error(meta_path + ": no checkpoint to resume from");
        try {
            resume_meta = nlohmann::json::parse(read_file_text(meta_path));
        } catch (const nlohmann::json::exception& e) {
            throw cli::data_error(meta_path + ": not valid JSON: " + e.what());
        }
        if (!resume_meta.contains("args") || !resume_meta["args"].is_array())
            throw cli::data_error(meta_path + ": no recorded arguments (args)");
        std::vector<std::string> args;
        for (const auto& s : resume_meta["args"]) {
            if (!s.is_string()) throw cli::data_error(meta_path + ": args must be a list of strings, got " + s.dump());
            args.push_back(s.get<std::string>());
            if (args.back() == "--resume" || args.back().rfind("--resume=", 0) == 0)
                throw cli::data_error(meta_path + ": the recorded args contain --resume");
        }
        const bool steps_set = a.steps_set;
        const std::int64_t steps = a.steps;
        const std::string dir = a.resume;
        a = parse(args);
        if (steps_set) a.steps = steps;
        a.out = dir;
        a.resume = dir;
        a.argv = args;
    }

    const longnet::text::tokenizer tok = cli::load_tokenizer(a.tokenizer);  // byte level without --tokenizer
    try {  // config.json will record the path: JSON holds only UTF-8
        (void)nlohmann::json(a.tokenizer).dump();
    } catch (const nlohmann::json::exception&) {
        throw cli::usage_error("--tokenizer: the path is not valid UTF-8 (config.json records it)");
    }
    data_source data = load_data(a, tok);
    data.eos = end_token(a, tok);
    if (!a.save_grads.empty()) cli::check_writable("--save-grads", a.save_grads);
    if (!a.save.empty()) cli::check_writable("--save", a.save);

    nn::decoder_config cfg;
    if (!a.config.empty()) {
        try {
            cfg = nn::decoder_config::from_file(a.config);
        } catch (const std::invalid_argument& e) {
            throw cli::data_error(e.what());
        }
    } else {
        cfg = random_config(a.random_config);
        cfg.vocab_size = a.vocab > 0 ? a.vocab
                                     : std::max<std::int64_t>({data.vocab_needed, tok.byte_level() ? 1 : tok.vocab_size(), 1});
        if (!a.segment_length.empty()) {
            cfg.segment_length = a.segment_length;
            cfg.dilated_ratio = a.dilated_ratio;
        }
        if (a.xpos_scale_base > 0) cfg.xpos_scale_base = a.xpos_scale_base;
        try {
            cfg.validate();
        } catch (const std::invalid_argument& e) {
            throw cli::usage_error(e.what());
        }
    }
    // The tokenizer: a config that records one takes text only through it; the one given is recorded.
    if (!tok.byte_level() && cfg.vocab_size < tok.vocab_size())
        throw cli::data_error("the model's vocabulary (" + std::to_string(cfg.vocab_size) + ") is smaller than that of " +
                              tok.record().describe() + (a.config.empty() ? ": raise --vocab" : ""));
    const bool first_record = !tok.byte_level() && cfg.tokenizer.byte_level();  // a config without a record takes any
    if (!a.config.empty() && !first_record && (!a.text.empty() || !tok.byte_level()))
        cli::check_tokenizer(cfg.tokenizer, a.config, tok.record(), cfg.vocab_size);
    if (!tok.byte_level()) cfg.tokenizer = tok.record();
    if (!a.resume.empty()) {  // the recorded --tokenizer must still be the file the run started with
        const std::string run_config = (fs::path(a.resume) / "config.json").string();
        if (fs::exists(run_config)) {
            nn::decoder_config before;
            try {
                before = nn::decoder_config::from_file(run_config);
            } catch (const std::invalid_argument& e) {
                throw cli::data_error(e.what());
            }
            if (!before.tokenizer.same_as(cfg.tokenizer))
                throw cli::data_error(run_config + " records " + before.tokenizer.describe() + ", but the run's arguments now give " +
                                      cfg.tokenizer.describe() + ": the tokenizer changed since the run started");
        }
    }
    if (data.shards) {  // under mpirun each rank scans its share of the shards; a bad token ends every rank
        const auto [part, parts] = shard_part();
        std::string error;
        try {
            data.shard_data.check_vocab(static_cast<std::uint64_t>(cfg.vocab_size), part, parts);
        } catch (const std::runtime_error& e) {
            error = e.what();
        }
#if LONGNET_TRAIN_MPI
        if (parts > 1) tr::detail::agree_or_throw(MPI_COMM_WORLD, error);  // collective_error on every rank
#endif
        if (!error.empty()) throw cli::data_error(error);
    }
    if (data.eos >= cfg.vocab_size)
        throw cli::usage_error("--eos-token: " + std::to_string(data.eos) + " is outside the model's vocabulary [0, " +
                               std::to_string(cfg.vocab_size) + ")");
    if (data.vocab_needed > cfg.vocab_size)
        throw cli::data_error("the data has token " + std::to_string(data.vocab_needed - 1) + ", outside the model's vocabulary [0, " +
                              std::to_string(cfg.vocab_size) + ")");
    nn::decoder<T> model;
    if (!a.weights.empty()) {
        model = nn::load_decoder<T>(a.weights, cfg, a.options);
    } else {
        model = nn::decoder<T>(cfg, a.options);
        tr::torchscale_init(model, a.seed);
    }

    tr::trainer_options topt;
    topt.adamw = a.adamw;
    topt.clip_norm = a.clip_norm;
    topt.pass = a.pass;
    topt.precision = a.precision;
    topt.schedule.kind = a.schedule;
    topt.schedule.lr = a.lr;
    topt.schedule.min_lr = a.min_lr;
    topt.schedule.warmup = a.warmup;
    topt.schedule.total_steps = std::max<std::int64_t>(a.steps, 1);
#if LONGNET_TRAIN_MPI
    tr::distributed_options dopt;
    dopt.data_parallel = static_cast<int>(a.data_parallel);
    dopt.bucket_bytes = a.bucket_bytes;
    tr::distributed_trainer<T> trainer(model, topt, mpi_world(), dopt);  // alone: the single-process trainer
    const bool root = trainer.is_root();                                 // rank 0 writes and prints
    if (a.pack_documents && trainer.distributed())  // every rank: the same condition, one message
        throw tr::collective_error("--pack-documents is not supported across MPI ranks (a document boundary inside a "
                                   "rank's chunk); run it in one process");
#else
    if (a.data_parallel != 1) throw cli::usage_error("--data-parallel needs a longnet_train built with MPI, run under mpirun");
    if (a.bucket_bytes_set) throw cli::usage_error("--bucket-bytes needs a longnet_train built with MPI, run under mpirun");
    tr::trainer<T> trainer(model, topt);
    const bool root = true;
#endif
    tr::rng_state rng{a.seed * 0x9e3779b97f4a7c15ull ^ 0xda7aull};
    // --data under mpirun: each rank reads only its chunks of its group's windows (the same windows as
    // alone: shard_dataset::sample_batch with the trainer's share), and the trainer takes them as they are
#if LONGNET_TRAIN_MPI
    const bool local_chunks = data.shards && trainer.distributed();
    if (local_chunks && a.seq_len % trainer.sequence_ranks() != 0)  // every rank: the same condition, one message
        throw tr::collective_error("a sequence of " + std::to_string(a.seq_len) + " tokens does not split into " +
                                   std::to_string(trainer.sequence_ranks()) +
                                   " equal chunks (the sequence length must be a multiple of the ranks per sequence)");
#else
    const bool local_chunks = false;
#endif
    const auto draw = [&](tr::rng_state& r) {  // the batch, or with local_chunks this rank's chunks of it
#if LONGNET_TRAIN_MPI
        if (local_chunks)
            return data.shard_data.sample_batch(r, static_cast<std::size_t>(a.batch), trainer.share());
#endif
        return data.batch(r, a.batch);
    };
    const auto gradients = [&](const std::vector<tr::sequence>& b) {
#if LONGNET_TRAIN_MPI
        if (local_chunks) return trainer.compute_gradients_local(b, a.batch);
#endif
        return trainer.compute_gradients(b);
    };
    // The memory model's peak (train_memory.hpp), single process: checked before the run folder or anything
    // large exists.
    std::uint64_t predicted_bytes = 0;
    bool distributed = false;
#if LONGNET_TRAIN_MPI
    distributed = trainer.distributed();
#endif
    if (!distributed) {
        const std::int64_t longest = data.whole ? static_cast<std::int64_t>(data.fixed.inputs.size()) : a.seq_len;
        const auto p = train_memory::predict(cfg, longest, model.parameter_count(), a.pass.checkpoint_activations, sizeof(T));
        cli::require_memory(p ? std::optional<std::uint64_t>(p->total_bytes) : std::nullopt,
                            "training on sequences of " + std::to_string(longest) + " tokens (the memory model of docs/training.md" +
                                (a.pass.checkpoint_activations ? ")" : "; --checkpoint-activations needs less)"));
        predicted_bytes = p->total_bytes;
        if (root) std::fprintf(stderr, "longnet_train: predicted peak memory %s (%s per token + %s)\n",
                     cli::human_bytes(static_cast<double>(p->total_bytes)).c_str(),
                     cli::human_bytes(static_cast<double>(p->per_token_bytes)).c_str(),
                     cli::human_bytes(static_cast<double>(p->fixed_bytes)).c_str());
    }

    std::string log_path;
    if (!a.out.empty() && root) {
        std::error_code ec;
        fs::create_directories(a.out, ec);
        if (ec || !fs::is_directory(a.out)) throw cli::data_error("--out " + a.out + ": cannot create the folder: " + ec.message());
        log_path = (fs::path(a.out) / "log.jsonl").string();
        cli::check_writable("--out", log_path);
    }
    if (!a.resume.empty()) {
        try {
            trainer.load_checkpoint(a.resume, rng);
#if LONGNET_TRAIN_MPI
        } catch (const tr::collective_error&) {  // every rank failed to load it: one message, exit 1
            throw;
#endif
        } catch (const longnet::io::safetensors_error& e) {
            throw cli::data_error(e.what());
        } catch (const std::runtime_error& e) {
            throw cli::data_error(e.what());
        }
        if (root) truncate_log(log_path, trainer.steps_done());
        if (root) std::fprintf(stderr, "longnet_train: resumed %s at step %lld\n", a.resume.c_str(), static_cast<long long>(trainer.steps_done()));
    } else if (!log_path.empty()) {
        tr::save_text(log_path, "");
    }

    if (root) std::fprintf(stderr,
                 "longnet_train: %lld layers, hidden %lld, %lld heads, FFN %lld, vocab %lld (%.2f M parameters), %s, "
                 "segments %s / dilations %s, grad mode %s%s%s%s, %d threads\n",
                 static_cast<long long>(cfg.layers), static_cast<long long>(cfg.embed_dim), static_cast<long long>(cfg.heads),
                 static_cast<long long>(cfg.ffn_dim), static_cast<long long>(cfg.vocab_size),
                 static_cast<double>(model.parameter_count()) / 1e6, std::is_same_v<T, double> ? "double" : "float",
                 cli::join(cfg.segment_length).c_str(), cli::join(cfg.dilated_ratio).c_str(), longnet::to_string(a.pass.mode),
                 a.pass.checkpoint_activations ? ", activation checkpointing" : "",
                 a.precision == tr::precision::bf16 ? ", bf16 products (float master weights)" : "",
                 data.eos >= 0 ? (", packed documents (end token " + std::to_string(data.eos) + ")").c_str() : "",
                 cli::max_threads());

    std::vector<tr::sequence> heldout;  // with local_chunks: this rank's chunks of heldout_count windows
    std::int64_t heldout_count = 0;
    if (a.eval_every > 0) {
#if LONGNET_TRAIN_MPI
        if (local_chunks) {
            heldout = data.shard_data.heldout(static_cast<std::size_t>(a.eval_batches), trainer.share());
            heldout_count =
                static_cast<std::int64_t>(data.shard_data.heldout_windows(static_cast<std::size_t>(a.eval_batches)));
        }
#endif
        if (!local_chunks) {
            heldout = data.heldout(a.eval_batches, a.seed);
            heldout_count = static_cast<std::int64_t>(heldout.size());
        }
    }
    std::ofstream log;
    if (!log_path.empty()) log.open(log_path, std::ios::app);
    nlohmann::json extra;
    extra["args"] = a.argv;
#if LONGNET_TRAIN_MPI
    if (trainer.distributed()) {
        extra["ranks"] = trainer.world_size();
        if (root)
            std::fprintf(stderr, "longnet_train: %d MPI ranks: %d data-parallel group(s) of %d ranks per sequence; gradient "
                         "all-reduce in %zu bucket(s)%s\n", trainer.world_size(), trainer.data_parallel(), trainer.sequence_ranks(),
                         std::max<std::size_t>(trainer.gradient_bucket_count(), 1),
                         trainer.gradient_bucket_count() > 1 ? " overlapping the backward" : " after the backward");
    }
#endif
    auto checkpoint = [&] {
        if (a.out.empty()) return;
        try {
            trainer.save_checkpoint(a.out, rng, extra);
        } catch (const longnet::io::write_error& e) {
            throw cli::data_error(e.what());
        }
    };
    const auto run_start = std::chrono::steady_clock::now();
    while (trainer.steps_done() < a.steps) {
        const std::vector<tr::sequence> batch = draw(rng);
        const auto t0 = std::chrono::steady_clock::now();
        const process_usage u0 = usage_now();
        const double loss = gradients(batch);
        if (!a.save_grads.empty() && trainer.steps_done() == 0 && root) {
            tr::save_tensors(a.save_grads, trainer.named_grads(), a.save_dtype);
        }
        tr::step_stats st = trainer.apply(loss);
        st.seconds = cli::seconds_since(t0);
        const process_usage u1 = usage_now();
        if (local_chunks) st.tokens = a.batch * a.seq_len;  // the whole sequences (every rank counts the same)
        else for (const auto& s : batch) st.tokens += static_cast<std::int64_t>(s.inputs.size());
        nlohmann::json line{{"step", st.step},
                            {"loss", st.loss},
                            {"lr", st.lr},
                            {"grad_norm", st.grad_norm},
                            {"tokens_per_s", static_cast<double>(st.tokens) / std::max(st.seconds, 1e-12)},
                            {"seconds", st.seconds},
                            {"cpu_seconds", u1.user + u1.system - u0.user - u0.system},  // all threads
                            {"system_seconds", u1.system - u0.system},
                            {"minor_faults", u1.minor_faults - u0.minor_faults},
                            {"peak_rss_bytes", cli::peak_rss_bytes()}};  // this process's (rank 0's) peak so far
#if LONGNET_TRAIN_MPI
        if (trainer.distributed()) {  // rank 0's traffic and time in communication this step
            const auto& ds = trainer.last_stats();
            line["ranks"] = trainer.world_size();
            line["attention_bytes_sent"] = ds.attention_bytes_sent;
            line["gradient_bytes"] = ds.gradient_bytes;
            line["seconds_communication"] = ds.seconds_attention_communication + ds.seconds_allreduce;
            line["seconds_allreduce"] = ds.seconds_allreduce;  // the gradient all-reduce's duration
            line["seconds_allreduce_exposed"] = ds.seconds_allreduce_exposed;  // of it, not hidden behind the backward
            line["seconds_allreduce_wait"] = ds.seconds_allreduce_wait;  // of that, at the end of the step
            line["allreduce_hidden_fraction"] = ds.allreduce_hidden_fraction();
            line["cpu_seconds_compute"] = ds.cpu_seconds_compute();  // this rank's thread CPU outside collectives
            line["max_cpu_seconds_compute"] = ds.max_cpu_seconds_compute;  // over all ranks
            line["max_attention_bytes_sent"] = ds.max_attention_bytes_sent;
        }
#endif
        std::string eval_text;
        if (a.eval_every > 0 && (st.step % a.eval_every == 0 || st.step == a.steps) && heldout_count > 0) {
#if LONGNET_TRAIN_MPI
            const auto e = local_chunks ? trainer.evaluate_local(heldout, heldout_count) : trainer.evaluate(heldout);
#else
            const auto e = trainer.evaluate(heldout);
#endif
            line["heldout_loss"] = e.loss;
            line["heldout_accuracy"] = e.accuracy;
            char buf[96];
            std::snprintf(buf, sizeof buf, " | held-out loss %.4f acc %.3f", e.loss, e.accuracy);
            eval_text = buf;
        }
        if (root) std::fprintf(stderr, "step %lld/%lld loss %.4f lr %.3g |g| %.3f %.0f tok/s%s\n", static_cast<long long>(st.step),
                     static_cast<long long>(a.steps), st.loss, st.lr, st.grad_norm,
                     static_cast<double>(st.tokens) / std::max(st.seconds, 1e-12), eval_text.c_str());
        if (log.is_open()) {
            log << line.dump() << "\n";
            log.flush();
        }
        if (a.save_every > 0 && st.step % a.save_every == 0 && st.step != a.steps) checkpoint();
    }
    if (!a.save_grads.empty() && a.steps == 0) {  // gradients only
        gradients(draw(rng));
        if (root) tr::save_tensors(a.save_grads, trainer.named_grads(), a.save_dtype);
    }
    checkpoint();
    if (!a.save.empty() && root) tr::save_model(a.save, model, a.save_dtype);
    if (root) std::fprintf(stderr, "longnet_train: %lld steps in %.2f s%s%s; peak RSS %s%s\n", static_cast<long long>(trainer.steps_done()),
                 cli::seconds_since(run_start), a.out.empty() ? "" : "; checkpoint in ", a.out.c_str(),
                 cli::human_bytes(static_cast<double>(cli::peak_rss_bytes())).c_str(),
                 predicted_bytes ? (" (predicted " + cli::human_bytes(static_cast<double>(predicted_bytes)) + ")").c_str() : "");
    return 0;
}

int run(int argc, char** argv) {
    const std::vector<std::string> args(argv + 1, argv + std::max(argc, 1));
    arguments a = parse(args);
    std::string dtype = a.dtype;
    if (!a.resume.empty()) {  // the checkpoint decides the compute type
        const std::string meta_path = (fs::path(a.resume) / "checkpoint.json").string();
        try {
            const auto j = nlohmann::json::parse(read_file_text(meta_path));
            const auto d = j.is_object() ? j.find("dtype") : j.end();
            if (!j.is_object() || (d != j.end() && !(d->is_string() && (*d == "float32" || *d == "float64"))))
                throw cli::data_error(meta_path + ": expected a JSON object whose dtype is \"float32\" or \"float64\"");
            dtype = d != j.end() && *d == "float64" ? "double" : "float";
        } catch (const nlohmann::json::exception& e) {
            throw cli::data_error(meta_path + ": " + (fs::exists(meta_path) ? std::string("not valid JSON: ") + e.what() : "no checkpoint to resume from"));
        }
    }
    return dtype == "double" ? train<double>(a) : train<float>(a);
}

// A training step allocates and frees its activations at every step (with --checkpoint-activations each
// layer's, several times a step); past ~256K tokens glibc's default (fresh mmaps, trimmed heap) made most
// of a small model's step the kernel zeroing pages (docs/training.md, "One million tokens per sequence").
// longnet::keep_freed_memory() (longnet/allocator.hpp) keeps freed memory for the next allocation.
int main_body(int argc, char** argv) {
    longnet::keep_freed_memory();
    return cli::main_guard({"longnet_train", "", usage_text}, [&] {
#if LONGNET_TRAIN_MPI
        try {
            return run(argc, argv);
        } catch (const tr::collective_error& e) {  // every rank has it: rank 0 says it, all end cleanly
            g_collective_error = true;
            if (g_rank == 0) std::fprintf(stderr, "longnet_train: %s\n", e.what());
            return 1;
        }
#else
        return run(argc, argv);
#endif
    });
}

}  // namespace

int main(int argc, char** argv) {
#if LONGNET_TRAIN_MPI
    if (launched_by_mpi()) {
        int provided = 0;
        MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
        g_mpi = true;
        MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
        MPI_Comm_size(MPI_COMM_WORLD, &g_ranks);
    }
    const int code = main_body(argc, argv);
    if (g_mpi) {
        if (code != 0 && !g_collective_error && g_ranks > 1) {
            // an error on this rank alone: the others may wait in a collective; end the whole job
            std::fprintf(stderr, "longnet_train: rank %d of %d failed (exit %d); aborting the job\n", g_rank, g_ranks, code);
            std::fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, code);
        }
        MPI_Finalize();
    }
    return code;
#else
    return main_body(argc, argv);
#endif
}
