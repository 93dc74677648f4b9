// SPDX-License-Identifier: Apache-2.0
#pragma once
// longnet_encode's command line (examples/longnet_encode.cpp): the usage text, the arguments and the
// parser (parse: every flag, its range and the pairings of file and random mode). Kept apart from the
// encoder code so that the CLI fuzz target (tests/fuzz/cli_encode.cpp) compiles the parser without the
// encoder templates.

#include <cstdint>
#include <string>

#include "cli_common.hpp"

namespace encode_cli {

inline const char* const usage_text =
    "usage:\n"
    "  longnet_encode --weights W.safetensors --config C.json --embeddings X.npy [--lengths L.npy | --mask M.npy]\n"
    "                 --out Y.npy [--cls-out CLS.npy] [--dtype float|double]\n"
    "  longnet_encode (--random-config gigapath | --config C.json) --random-tokens N [--layers L] [--seed S]\n"
    "                 [--dtype float|double] [--out Y.npy]\n"
    "\n"
    "  --embeddings X.npy  float32/float64 [B, N, D] or [N, D]; D = the config's encoder_embed_dim\n"
    "  --lengths L.npy     int32/int64 [B]: row b's real tokens are [0, L[b]) (right padding)\n"
    "  --mask M.npy        bool/uint8/int32/int64 [B, N], 1 = pad (torchscale's key_padding_mask; any pattern)\n"
    "  --out Y.npy         encoded tokens, [B, N, D] (as X), pad rows 0, dtype of --dtype (default float)\n"
    "  --cls-out CLS.npy   each row's token at position 0 (the CLS token when X starts with one), [B, D]\n"
    "  --random-config gigapath  Prov-GigaPath's slide encoder (12 layers, dim 768, 16 heads) on random weights\n"
    "  --random-tokens N   random mode: N standard-normal embeddings; prints time and peak memory\n";

struct arguments {
    std::string weights, config, random_config, embeddings, lengths, mask, out, cls_out, dtype = "float";
    std::int64_t random_tokens = 0, layers = -1;
    std::uint64_t seed = 0;
    bool seed_given = false;
};

inline arguments parse(int argc, char** argv) {
    arguments a;
    cli::arg_reader r(argc, argv);
    cli::read_flags(r, usage_text, "", [&](const std::string& f) {
        if (f == "--weights") a.weights = r.value(f);
        else if (f == "--config") a.config = r.value(f);
        else if (f == "--embeddings") a.embeddings = r.value(f);
        else if (f == "--lengths") a.lengths = r.value(f);
        else if (f == "--mask") a.mask = r.value(f);
        else if (f == "--out") a.out = r.value(f);
        else if (f == "--cls-out") a.cls_out = r.value(f);
        else if (f == "--dtype") {
            a.dtype = r.value(f);
            if (a.dtype != "float" && a.dtype != "double")
                throw cli::usage_error("--dtype: expected float or double, got '" + a.dtype + "'");
        } else if (f == "--random-config") {
            a.random_config = r.value(f);
            if (a.random_config != "gigapath")
                throw cli::usage_error("--random-config: only 'gigapath' is known (got '" + a.random_config + "')");
        } else if (f == "--random-tokens") a.random_tokens = cli::parse_int(f, r.value(f), 1, std::int64_t(1) << 40);
        else if (f == "--layers") a.layers = cli::parse_int(f, r.value(f), 1, 1000);
        else if (f == "--seed") {
            a.seed = cli::parse_uint64(f, r.value(f));
            a.seed_given = true;
        } else return false;
        return true;
    });
    if (!a.random_config.empty() || a.random_tokens > 0) {
        if (a.random_tokens < 1) throw cli::usage_error("--random-config needs --random-tokens N");
        if (a.random_config.empty() == a.config.empty())
            throw cli::usage_error("--random-tokens needs exactly one of --random-config gigapath and --config C.json");
        if (!a.weights.empty() || !a.embeddings.empty() || !a.lengths.empty() || !a.mask.empty() || !a.cls_out.empty())
            throw cli::usage_error("--random-tokens does not take --weights, --embeddings, --lengths, --mask or --cls-out");
        return a;
    }
    if (a.weights.empty() || a.config.empty() || a.embeddings.empty() || a.out.empty())
        throw cli::usage_error("file mode needs --weights, --config, --embeddings and --out");
    if (!a.lengths.empty() && !a.mask.empty()) throw cli::usage_error("give --lengths or --mask, not both");
    if (a.layers >= 0) throw cli::usage_error("--layers is for --random-tokens (the config file gives the layer count)");
    if (a.seed_given) throw cli::usage_error("--seed is for --random-tokens");
    if (!a.cls_out.empty() && a.cls_out == a.out) throw cli::usage_error("--out and --cls-out name the same file");
    return a;
}

}  // namespace encode_cli
