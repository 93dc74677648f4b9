// SPDX-License-Identifier: Apache-2.0
// Consumer check of longnet/training/distributed_trainer.hpp through longnet::mpi (built when the installed
// longnet offers longnet::mpi): MPI initialised, a tiny decoder trained over MPI_COMM_WORLD (one rank when
// run alone, as the consumer test does); the loss must fall and the ranks' parameters agree. Exit 0 only if so.
#include <mpi.h>

#include <longnet/nn/nn.hpp>
#include <longnet/training/distributed_trainer.hpp>
#include <longnet/training/training.hpp>

#include <cmath>
#include <cstdio>
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
        if (trainer.is_root())
            std::printf("consumer_distributed_training: %d rank(s), loss %.4f -> %.4f\n", trainer.world_size(), first, last);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "consumer_distributed_training: %s\n", e.what());
    }
    MPI_Finalize();
    return ok ? 0 : 1;
}
