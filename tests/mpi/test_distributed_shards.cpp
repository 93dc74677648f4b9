// SPDX-License-Identifier: Apache-2.0
// Each rank reads only its part of llm.c token shards (training/data.hpp: shard_dataset::sample_batch
// and heldout with a data_share) under mpirun (CTest: 2 ranks).
//
// Rank 0 writes two training shards and one held-out shard of random tokens (a window crosses the
// shard boundary); every rank opens them. For each data-parallel split of the world (with 2 ranks:
// 1 group of 2 ranks per sequence, 2 groups of 1), in double, three steps and a held-out evaluation:
//   - the whole-batch run, today's way: every rank draws the whole windows (sample_batch without a
//     share) and distributed_trainer::compute_gradients / evaluate split them;
//   - the local run: every rank draws the same windows from the same seed but reads only its share
//     (sample_batch / heldout with trainer.share()), compute_gradients_local / evaluate_local;
//   - the local run's losses, held-out loss and accuracy, and final parameters bitwise the whole-batch
//     run's, its losses within 1e-12 of the single-process trainer's on the whole windows;
//   - the reader statistic: the local run's dataset read exactly its group's windows' chunks, n + 1
//     tokens each (n inputs and the next-token target at the chunk's end); the whole-batch run read
//     T + 1 tokens per window. (That the chunks are the windows' slices: tests/test_token_shards.cpp.)
// Exit code 1 on any failure on any rank (mpi_check.hpp).

#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "longnet/io/token_shards.hpp"
#include "longnet/nn/decoder.hpp"
#include "longnet/training/data.hpp"
#include "longnet/training/distributed_trainer.hpp"
#include "longnet/training/init.hpp"
#include "longnet/training/parameters.hpp"
#include "longnet/training/trainer.hpp"

#include "mpi_check.hpp"

namespace fs = std::filesystem;
namespace nn = longnet::nn;
namespace tr = longnet::training;
namespace io = longnet::io;
using longnet::index_t;

namespace {

using namespace mpi_check;

constexpr std::size_t seq_len = 32, batch = 4, steps = 3, eval_windows = 3;
constexpr std::int64_t vocab = 29;

nn::decoder_config tiny_config() {
    nn::decoder_config c;
    c.embed_dim = 16, c.heads = 4, c.ffn_dim = 24, c.layers = 2, c.vocab_size = vocab;
    c.segment_length = {8, 32};  // (32, 4) spans both ranks when they split a sequence
    c.dilated_ratio = {1, 4};
    return c;
}

std::vector<std::int64_t> random_tokens(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    std::vector<std::int64_t> t(n);
    for (auto& x : t) x = static_cast<std::int64_t>(gen() % vocab);
    return t;
}

// The shard folder: made by rank 0 (its name from rank 0's pid), known to every rank.
fs::path make_shards() {
    long long pid = g_rank == 0 ? static_cast<long long>(::getpid()) : 0;
    MPI_Bcast(&pid, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    const fs::path dir = fs::temp_directory_path() / ("longnet_test_distributed_shards_" + std::to_string(pid));
    if (g_rank == 0) {
        fs::create_directories(dir);
        io::write_token_shard((dir / "train_000000.bin").string(), random_tokens(150, 1), io::token_width::u16);
        io::write_token_shard((dir / "train_000001.bin").string(), random_tokens(90, 2), io::token_width::u32);
        io::write_token_shard((dir / "val_000000.bin").string(), random_tokens(110, 3), io::token_width::u16);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return dir;
}

struct run_result {
    std::vector<double> losses;
    tr::trainer<double>::evaluation heldout;
    std::vector<double> params;
    std::uint64_t tokens_read = 0;
};

std::vector<double> flat_params(nn::decoder<double>& m) {
    std::vector<double> out;
    for (const auto& p : tr::named_parameters(m)) out.insert(out.end(), p.data, p.data + p.size());
    return out;
}

tr::trainer_options options() {
    tr::trainer_options o;
    o.schedule.lr = 3e-3;
    o.schedule.warmup = 1;
    o.schedule.total_steps = steps;
    return o;
}

// local: each rank reads only its share; otherwise whole windows split by the trainer.
run_result run(const fs::path& dir, int data_parallel, bool local) {
    const tr::shard_dataset data(io::glob_token_shards((dir / "train_*.bin").string()), {(dir / "val_000000.bin").string()},
                                 seq_len, vocab);
    nn::decoder<double> model(tiny_config());
    tr::torchscale_init(model, 7);
    tr::distributed_options dopt;
    dopt.data_parallel = data_parallel;
    tr::distributed_trainer<double> trainer(model, options(), MPI_COMM_WORLD, dopt);
    tr::rng_state rng{11};
    run_result r;
    for (std::size_t s = 0; s < steps; ++s) {
        const double loss = local ? trainer.compute_gradients_local(data.sample_batch(rng, batch, trainer.share()), batch)
                                  : trainer.compute_gradients(data.sample_batch(rng, batch));
        r.losses.push_back(trainer.apply(loss).loss);
    }
    r.heldout = local ? trainer.evaluate_local(data.heldout(eval_windows, trainer.share()),
                                               static_cast<std::int64_t>(data.heldout_windows(eval_windows)))
                      : trainer.evaluate(data.heldout(eval_windows));
    r.params = flat_params(model);
    r.tokens_read = data.tokens_read();
    return r;
}

// The single process on the whole windows (every rank computes it itself).
run_result single(const fs::path& dir) {
    const tr::shard_dataset data(io::glob_token_shards((dir / "train_*.bin").string()), {(dir / "val_000000.bin").string()},
                                 seq_len, vocab);
    nn::decoder<double> model(tiny_config());
    tr::torchscale_init(model, 7);
    tr::trainer<double> trainer(model, options());
    tr::rng_state rng{11};
    run_result r;
    for (std::size_t s = 0; s < steps; ++s) r.losses.push_back(trainer.step(data.sample_batch(rng, batch)).loss);
    r.heldout = trainer.evaluate(data.heldout(eval_windows));
    r.params = flat_params(model);
    return r;
}

void split_case(const fs::path& dir, const run_result& ref, int data_parallel) {
    const int parts = g_size / data_parallel;
    const std::string name = std::to_string(data_parallel) + " group(s) x " + std::to_string(parts) + " rank(s): ";
    const run_result whole = run(dir, data_parallel, false), local = run(dir, data_parallel, true);
    check(local.losses == whole.losses, name + "losses differ from the whole-batch run's (not bitwise)");
    check(local.heldout.loss == whole.heldout.loss && local.heldout.accuracy == whole.heldout.accuracy,
          name + "held-out loss or accuracy differs from the whole-batch run's");
    check(local.params == whole.params, name + "parameters differ from the whole-batch run's (not bitwise)");
    for (std::size_t s = 0; s < steps; ++s)
        check(std::abs(local.losses[s] - ref.losses[s]) <= 1e-12 * std::abs(ref.losses[s]),
              name + "step " + std::to_string(s + 1) + " loss " + std::to_string(local.losses[s]) +
                  " vs the single process's " + std::to_string(ref.losses[s]));
    check(std::abs(local.heldout.loss - ref.heldout.loss) <= 1e-12 * std::abs(ref.heldout.loss),
          name + "held-out loss differs from the single process's");

    // the reader statistic: this rank's windows (i mod groups = group), n + 1 tokens of each
    const std::size_t group = static_cast<std::size_t>(g_rank / parts), n = seq_len / static_cast<std::size_t>(parts);
    std::size_t mine_train = 0, mine_eval = 0;
    for (std::size_t i = group; i < batch; i += static_cast<std::size_t>(data_parallel)) ++mine_train;
    for (std::size_t i = group; i < eval_windows; i += static_cast<std::size_t>(data_parallel)) ++mine_eval;
    const std::uint64_t expect = (steps * mine_train + mine_eval) * (n + 1);
    check(local.tokens_read == expect, name + "read " + std::to_string(local.tokens_read) + " tokens, expected " +
                                           std::to_string(expect) + " (its chunks only)");
    check(whole.tokens_read == (steps * batch + eval_windows) * (seq_len + 1),
          name + "the whole-batch run read " + std::to_string(whole.tokens_read) + " tokens");
    if (g_rank == 0)
        std::printf("  %srank 0 read %llu tokens (whole windows: %llu)\n", name.c_str(),
                    static_cast<unsigned long long>(local.tokens_read), static_cast<unsigned long long>(whole.tokens_read));
}

}  // namespace

int main(int argc, char** argv) {
    start(argc, argv);
    const fs::path dir = make_shards();
    try {
        const run_result ref = single(dir);
        for (int k = 1; k <= g_size; ++k)
            if (g_size % k == 0) split_case(dir, ref, k);
    } catch (const std::exception& e) {
        check(false, std::string("threw: ") + e.what());
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0) fs::remove_all(dir);
    return finish("test_distributed_shards");
}
