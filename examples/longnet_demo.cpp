// SPDX-License-Identifier: Apache-2.0
// longnet_demo: LongNet dilated attention over a 1M-token sequence in the paper's configuration
// (segments 2048..32768, dilations 1, 2, 4, 6, 12, head dim 64), on random inputs, with progress,
// a timing summary and a correctness check of sampled rows against a float64 brute force of the
// multiset-softmax definition (SPEC §3). Exit codes: 0 ok, 1 check failed or error, 2 usage error.
//
// Progress: the public op runs over the whole sequence at once, so the demo cuts the sequence into
// chunks whose length is a multiple of every segment length. Segments are aligned at position 0, so
// no segment crosses a chunk boundary and running the op chunk by chunk gives exactly the same
// result as one call over the whole sequence (exact tails: the last chunk's short segments are the
// sequence's short segments).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <longnet/longnet.hpp>

#include "cli_common.hpp"
#include "longnet_demo_args.hpp"

namespace {

using namespace demo_cli;  // the defaults, usage_text, arguments, parse_arguments (longnet_demo_args.hpp)

constexpr double max_check_error = 1e-3;

// "1,048,576"
std::string grouped(std::int64_t n) {
    std::string digits = std::to_string(n), out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}

class progress_bar {
public:
    explicit progress_bar(std::int64_t steps) : steps_(steps), tty_(is_tty()) {}
    void update(std::int64_t done, double elapsed) const {
        if (steps_ <= 1) return;
        const double frac = static_cast<double>(done) / static_cast<double>(steps_);
        if (tty_) {
            constexpr int width = 30;
            const int filled = static_cast<int>(frac * width + 0.5);
            std::fprintf(stderr, "\r  [%s%s] %3d%%  %lld/%lld chunks  %.1f s", std::string(static_cast<std::size_t>(filled), '#').c_str(),
                         std::string(static_cast<std::size_t>(width - filled), '.').c_str(), static_cast<int>(frac * 100 + 0.5),
                         static_cast<long long>(done), static_cast<long long>(steps_), elapsed);
            if (done == steps_) std::fputc('\n', stderr);
        } else {
            std::fprintf(stderr, "  %3d%%  %lld/%lld chunks  %.1f s\n", static_cast<int>(frac * 100 + 0.5),
                         static_cast<long long>(done), static_cast<long long>(steps_), elapsed);
        }
        std::fflush(stderr);
    }

private:
    static bool is_tty() {
#if LONGNET_CLI_POSIX
        return isatty(fileno(stderr)) != 0;
#else
        return false;
#endif
    }
    std::int64_t steps_;
    bool tty_;
};

// Row p of head h by the definition (SPEC §3): one softmax, in double, over every (branch, key) the row
// sees. Writes D outputs to `out` and returns the log-sum-exp (-inf when no branch selects the row).
double brute_force_row(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                       std::int64_t N, std::int64_t H, std::int64_t D, const longnet::dilated_options& opt, std::int64_t p,
                       std::int64_t h, std::vector<double>& out) {
    const auto row = [&](const std::vector<float>& x, std::int64_t n) { return x.data() + (n * H + h) * D; };
    const double scale = longnet::effective_scale(opt.scale, D);
    std::vector<std::pair<double, std::int64_t>> seen;  // (logit, key position), with multiplicity
    for (const longnet::branch& br : opt.branches) {
        const std::int64_t w = br.segment_length, r = br.dilation;
        const std::int64_t o = longnet::head_offset(opt.offsets, h, H, r);
        const std::int64_t start = p / w * w, end = std::min(start + w, N);
        if (p - start < o || (p - start - o) % r != 0) continue;  // this branch does not select row p
        for (std::int64_t j = start + o; j < end; j += r) {
            if (opt.causal && j > p) break;
            double dot = 0;
            for (std::int64_t d = 0; d < D; ++d) dot += static_cast<double>(row(q, p)[d]) * static_cast<double>(row(k, j)[d]);
            seen.emplace_back(scale * dot, j);
        }
    }
    out.assign(static_cast<std::size_t>(D), 0.0);
    if (seen.empty()) return -std::numeric_limits<double>::infinity();
    double mx = -std::numeric_limits<double>::infinity();
    for (const auto& s : seen) mx = std::max(mx, s.first);
    double sum = 0;
    for (const auto& s : seen) {
        const double e = std::exp(s.first - mx);
        sum += e;
        for (std::int64_t d = 0; d < D; ++d) out[static_cast<std::size_t>(d)] += e * static_cast<double>(row(v, s.second)[d]);
    }
    for (double& x : out) x /= sum;
    return mx + std::log(sum);
}

int run(int argc, char** argv) {
    const arguments a = parse_arguments(argc, argv);
    if (a.help) {
        std::fputs(usage_text, stdout);
        return 0;
    }
    const std::int64_t N = a.tokens, H = a.heads, D = a.dim;
    longnet::dilated_options opt = longnet::dilated_options::paper(a.causal);

    // q, k, v, out: N·H·D floats each; lse: N·H floats.
    const auto elems = cli::mul(static_cast<std::uint64_t>(N), static_cast<std::uint64_t>(H));
    const auto elems_d = elems ? cli::mul(*elems, static_cast<std::uint64_t>(D)) : std::nullopt;
    const auto bytes_qkvo = elems_d ? cli::mul(*elems_d, 16) : std::nullopt;
    const auto bytes = bytes_qkvo ? cli::add(*bytes_qkvo, *elems * 4) : std::nullopt;
    cli::require_memory(bytes, "--tokens " + std::to_string(N) + " --heads " + std::to_string(H) + " --dim " + std::to_string(D));

    // Chunk length: a multiple of every segment length (their lcm), about 16 chunks.
    std::int64_t lcm = 1;
    for (const longnet::branch& br : opt.branches) lcm = std::lcm(lcm, br.segment_length);
    const std::int64_t target = (N + 15) / 16;
    const std::int64_t chunk = std::max<std::int64_t>(lcm, (target + lcm - 1) / lcm * lcm);
    const std::int64_t steps = (N + chunk - 1) / chunk;

    std::string branches;
    for (const longnet::branch& br : opt.branches)
        branches += " (" + std::to_string(br.segment_length) + "," + std::to_string(br.dilation) + ")";
    std::printf("longnet_demo: LongNet dilated attention, paper configuration\n");
    std::printf("  sequence    %s tokens x %lld heads x %lld dims, float32, batch 1, %s\n", grouped(N).c_str(),
                static_cast<long long>(H), static_cast<long long>(D), a.causal ? "causal" : "non-causal");
    std::printf("  branches    (segment, dilation) =%s, offsets h mod r\n", branches.c_str());
    std::printf("  threads     %d (%s), SIMD kernels: %s\n", cli::max_threads(), LONGNET_HAS_OPENMP ? "OpenMP" : "no OpenMP",
                longnet::simd_isa());
    std::printf("  memory      %s for q, k, v, out and lse\n", cli::human_bytes(static_cast<double>(*bytes)).c_str());
    std::fflush(stdout);

    const std::size_t n = static_cast<std::size_t>(*elems_d);
    std::vector<float> q(n), k(n), v(n), out(n), lse(static_cast<std::size_t>(*elems));
    const auto t_gen = std::chrono::steady_clock::now();
    const auto same = [](float x) { return x; };
    cli::fill_normal(q.data(), static_cast<std::int64_t>(n), a.seed, 0, same);
    cli::fill_normal(k.data(), static_cast<std::int64_t>(n), a.seed, 1, same);
    cli::fill_normal(v.data(), static_cast<std::int64_t>(n), a.seed, 2, same);
    const double gen_seconds = cli::seconds_since(t_gen);
    std::fprintf(stderr, "  random inputs made in %.1f s; attention in %lld chunk%s of %s tokens:\n", gen_seconds,
                 static_cast<long long>(steps), steps == 1 ? "" : "s", grouped(std::min(chunk, N)).c_str());

    progress_bar bar(steps);
    const auto t0 = std::chrono::steady_clock::now();
    for (std::int64_t s = 0; s < steps; ++s) {
        const std::int64_t begin = s * chunk, len = std::min(chunk, N - begin);
        const std::size_t at = static_cast<std::size_t>(begin * H * D);
        const auto view = [&](float* base) { return longnet::make_bnhd(base + at, 1, len, H, D); };
        const auto cview = [&](const float* base) { return longnet::make_bnhd(base + at, 1, len, H, D); };
        longnet::dilated_attention(cview(q.data()), cview(k.data()), cview(v.data()), view(out.data()), opt,
                                   longnet::make_lse_bnh(lse.data() + begin * H, 1, len, H));
        bar.update(s + 1, cli::seconds_since(t0));
    }
    const double seconds = cli::seconds_since(t0);

    const double flops = longnet::dilated_attention_flops(1, N, H, D, opt);
    const double dense_flops = longnet::dense_attention_flops(1, N, H, D, a.causal);
    std::printf("  time        %.3f s (random inputs: %.1f s more, not counted)\n", seconds, gen_seconds);
    std::printf("  throughput  %s tokens/s, %.1f GFLOP/s (%.3g TFLOP in total)\n",
                grouped(static_cast<std::int64_t>(static_cast<double>(N) / seconds)).c_str(), flops / seconds * 1e-9,
                flops * 1e-12);
    std::printf("  vs dense    dense attention would need %.3g TFLOP: %.1fx more (cost ~ N^2 vs ~ N)\n", dense_flops * 1e-12,
                dense_flops / flops);

    // Check: sampled rows (first, last, a few random) of every head against the brute force.
    std::vector<std::int64_t> rows{0, N - 1, std::min<std::int64_t>(N - 1, 2047), std::min<std::int64_t>(N - 1, 32768)};
    std::uint64_t state = a.seed ^ 0x5eedULL;
    while (rows.size() < 16) rows.push_back(static_cast<std::int64_t>(cli::splitmix64(state) % static_cast<std::uint64_t>(N)));
    const std::int64_t check_heads = std::min<std::int64_t>(H, 4);
    double max_out_err = 0, max_lse_err = 0;
    std::vector<double> ref;
    for (std::int64_t h = 0; h < check_heads; ++h)
        for (std::int64_t p : rows) {
            const double ref_lse = brute_force_row(q, k, v, N, H, D, opt, p, h, ref);
            const float* got = out.data() + (p * H + h) * D;
            for (std::int64_t d = 0; d < D; ++d)
                max_out_err = std::max(max_out_err, std::fabs(static_cast<double>(got[d]) - ref[static_cast<std::size_t>(d)]));
            const double got_lse = lse[static_cast<std::size_t>(p * H + h)];
            const double lse_err = std::isinf(ref_lse) && got_lse == ref_lse ? 0.0 : std::fabs(got_lse - ref_lse);
            max_lse_err = std::max(max_lse_err, std::isnan(lse_err) ? std::numeric_limits<double>::infinity() : lse_err);
            if (std::isnan(max_out_err)) max_out_err = std::numeric_limits<double>::infinity();
        }
    const bool ok = max_out_err <= max_check_error && max_lse_err <= max_check_error;
    std::printf("  check       %zu rows x %lld heads vs float64 brute force: max |out error| %.2e, max |lse error| %.2e: %s\n",
                rows.size(), static_cast<long long>(check_heads), max_out_err, max_lse_err,
                ok ? "OK" : "FAILED (above 1e-3)");
    std::fflush(stdout);
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    return cli::main_guard({"longnet_demo", "error: "}, [&] { return run(argc, argv); });
}
