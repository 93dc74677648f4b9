// SPDX-License-Identifier: Apache-2.0
// Consumer check of longnet/training/distributed_trainer.hpp through longnet::mpi (built when the installed
// longnet offers longnet::mpi): MPI initialised, a tiny decoder trained over MPI_COMM_WORLD (one rank when
// run alone, as the consumer test does); the loss must fall and the ranks' parameters agree; and the packed
// variable-length op of longnet/distributed.hpp equals the single-process one. Exit 0 only if so.
#include <mpi.h>

#include <longnet/distributed.hpp>
#include <longnet/nn/nn.hpp>
#include <longnet/training/distributed_trainer.hpp>
#include <longnet/training/training.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    namespace nn = longnet::nn;
    namespace tr = longnet::training;
    int ok = 0;
    try {
        nn::decoder_config cfg = nn::decoder_config::base(29);
        cfg.embed_dim = 32, cfg.heads = 4, cfg.ffn_dim = 64, cfg.layers = 2;
        cfg.segment_length = {8, 16};
        cfg.dilated_ratio = {1, 2};
        nn::decoder<float> model(cfg);
        tr::torchscale_init(model, 5);
        tr::trainer_options opt;
        opt.schedule.kind = tr::schedule_kind::constant;
        opt.schedule.lr = 1e-2;
        tr::distributed_options dopt;
        dopt.verify_parameters = true;
        tr::distributed_trainer<float> trainer(model, opt, MPI_COMM_WORLD, dopt);
        std::vector<std::int64_t> tokens;
        for (int i = 0; i < 33; ++i) tokens.push_back((i * 7 + 3) % 29);
        const std::vector<tr::sequence> batch{tr::window(tokens, 0, 32)};
        double first = 0, last = 0;
        for (int s = 0; s < 10; ++s) {
            const tr::step_stats st = trainer.step(batch);
            if (s == 0) first = st.loss;
            last = st.loss;
        }
        ok = std::isfinite(last) && last < first;
        // distributed::dilated_attention_varlen over the world: rank ρ holds rows [6ρ, 6ρ + 6) of the packed
        // tensors, three sequences (one spans ranks when there are several); bitwise the single process
        int rank = 0, size = 1;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        const longnet::index_t n = 6, total = n * size, H = 2, D = 4;
        std::vector<float> x(static_cast<std::size_t>(total * H * D)), ref(x.size()), mine(static_cast<std::size_t>(n * H * D));
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
        const std::vector<std::int64_t> cu{0, 1, 8 < total ? 8 : total, total};
        const auto all = longnet::make_bnhd(static_cast<const float*>(x.data()), 1, total, H, D);
        const auto opts = longnet::dilated_options::from_lists({4, 8}, {1, 2});
        longnet::dilated_attention_varlen(all, all, all, cu, longnet::make_bnhd(ref.data(), 1, total, H, D), opts);
        const auto part = longnet::make_bnhd(static_cast<const float*>(x.data()) + rank * n * H * D, 1, n, H, D);
        longnet::distributed::dilated_attention_varlen(part, part, part, cu, longnet::make_bnhd(mine.data(), 1, n, H, D), opts,
                                                       MPI_COMM_WORLD);
        ok = ok && std::memcmp(mine.data(), ref.data() + rank * n * H * D, mine.size() * sizeof(float)) == 0;
        if (trainer.is_root())
            std::printf("consumer_distributed_training: %d rank(s), loss %.4f -> %.4f\n", trainer.world_size(), first, last);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "consumer_distributed_training: %s\n", e.what());
    }
    MPI_Finalize();
    return ok ? 0 : 1;
}
