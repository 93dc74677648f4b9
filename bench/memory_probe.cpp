// SPDX-License-Identifier: Apache-2.0
// longnet_memory_probe: peak resident memory of one dilated attention forward against the bytes of its
// own tensors. Target: (peak RSS − RSS before allocating) ≤ 1.05 × bytes(q, k, v, out, lse).
//
//   longnet_memory_probe [--seq N] [--heads H] [--dim D] [--type float|bf16] [--causal]
//   defaults: N = 4194304, H = 1, D = 64, float, non-causal, paper branches, B = 1
//
// Method (Linux):
//   1. wake the OpenMP thread pool (its stacks belong to the baseline, not to the op);
//   2. baseline = current RSS from /proc/self/statm (resident pages × page size), read right before
//      the tensors are allocated; ru_maxrss at that moment is printed too;
//   3. allocate q, k, v, out, lse; write random normal values into q, k, v (no temporary buffers);
//   4. run longnet::dilated_attention once;
//   5. peak = getrusage(RUSAGE_SELF).ru_maxrss (KiB → bytes): the high-water mark of the whole run.
//   ratio = (peak − baseline) / tensor bytes. Subtracting the current RSS rather than the earlier
//   high-water mark is the conservative choice (the baseline can only be smaller).
// Prints one JSON object on stdout.

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "bench_common.hpp"

namespace {

using longnet::index_t;

long long current_rss_bytes() {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    if (f == nullptr) return -1;
    long long size_pages = 0, resident_pages = 0;
    const int read = std::fscanf(f, "%lld %lld", &size_pages, &resident_pages);
    std::fclose(f);
    if (read != 2) return -1;
    return resident_pages * static_cast<long long>(sysconf(_SC_PAGESIZE));
}

long long peak_rss_bytes() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return static_cast<long long>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

struct probe_args {
    index_t seq = 4194304, heads = 1, dim = 64;
    std::string type = "float";
    bool causal = false;
};

[[noreturn]] void usage_error(const std::string& message) {
    std::fprintf(stderr,
                 "longnet_memory_probe: %s\nusage: longnet_memory_probe [--seq N] [--heads H] [--dim D] "
                 "[--type float|bf16] [--causal]\n",
                 message.c_str());
    std::exit(2);
}

index_t positive(const char* flag, const char* text) {
    char* end = nullptr;
    const long long value = std::strtoll(text, &end, 10);
    if (end == text || *end != '\0' || value < 1) usage_error(std::string(flag) + " needs a positive integer, got '" + text + "'");
    return static_cast<index_t>(value);
}

probe_args parse(int argc, char** argv) {
    probe_args a;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) usage_error(flag + " needs a value");
            return argv[++i];
        };
        if (flag == "--seq") a.seq = positive("--seq", value());
        else if (flag == "--heads") a.heads = positive("--heads", value());
        else if (flag == "--dim") a.dim = positive("--dim", value());
        else if (flag == "--type") a.type = value();
        else if (flag == "--causal") a.causal = true;
        else usage_error("unknown argument '" + flag + "'");
    }
    if (a.type != "float" && a.type != "bf16") usage_error("--type must be float or bf16, got '" + a.type + "'");
    return a;
}

template <class T>
T* allocate(std::size_t count) {
    return static_cast<T*>(std::malloc(count * sizeof(T)));  // untouched until written
}

template <class T>
int probe(const probe_args& a) {
    using A = longnet::accum_t<T>;
#if defined(_OPENMP)
#pragma omp parallel
    { benchmark::DoNotOptimize(a.seq); }  // wake the thread pool before the baseline
#endif
    const long long baseline_rss = current_rss_bytes();
    const long long baseline_peak = peak_rss_bytes();

    const auto count = static_cast<std::size_t>(a.seq * a.heads * a.dim);
    const auto lse_count = static_cast<std::size_t>(a.seq * a.heads);
    const double tensor_bytes = 4.0 * static_cast<double>(count) * sizeof(T) + static_cast<double>(lse_count) * sizeof(A);
    std::unique_ptr<T, decltype(&std::free)> q(allocate<T>(count), &std::free), k(allocate<T>(count), &std::free),
        v(allocate<T>(count), &std::free), out(allocate<T>(count), &std::free);
    std::unique_ptr<A, decltype(&std::free)> lse(allocate<A>(lse_count), &std::free);
    if (!q || !k || !v || !out || !lse) {
        std::fprintf(stderr, "longnet_memory_probe: allocation of %.3f GiB failed\n", tensor_bytes / (1 << 30));
        return 1;
    }
    longnet_bench::fill_normal(q.get(), static_cast<std::int64_t>(count), 1);
    longnet_bench::fill_normal(k.get(), static_cast<std::int64_t>(count), 2);
    longnet_bench::fill_normal(v.get(), static_cast<std::int64_t>(count), 3);

    const longnet::dilated_options options = longnet::dilated_options::paper(a.causal);
    const auto t0 = std::chrono::steady_clock::now();
    longnet::dilated_attention(longnet::make_bnhd<const T>(q.get(), 1, a.seq, a.heads, a.dim),
                               longnet::make_bnhd<const T>(k.get(), 1, a.seq, a.heads, a.dim),
                               longnet::make_bnhd<const T>(v.get(), 1, a.seq, a.heads, a.dim),
                               longnet::make_bnhd(out.get(), 1, a.seq, a.heads, a.dim), options,
                               longnet::make_lse_bnh(lse.get(), 1, a.seq, a.heads));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(out.get());

    const long long peak = peak_rss_bytes();
    const long long baseline = baseline_rss >= 0 ? baseline_rss : baseline_peak;
    const double ratio = static_cast<double>(peak - baseline) / tensor_bytes;
    std::printf(
        "{\"seq\": %lld, \"heads\": %lld, \"dim\": %lld, \"type\": \"%s\", \"causal\": %s, \"branches\": \"paper\",\n"
        " \"tensor_bytes\": %.0f, \"baseline_rss_bytes\": %lld, \"baseline_peak_rss_bytes\": %lld,\n"
        " \"peak_rss_bytes\": %lld, \"peak_minus_baseline_bytes\": %lld, \"ratio\": %.4f, \"target\": 1.05,\n"
        " \"within_target\": %s, \"forward_seconds\": %.3f, \"baseline_source\": \"%s\"}\n",
        static_cast<long long>(a.seq), static_cast<long long>(a.heads), static_cast<long long>(a.dim), a.type.c_str(),
        a.causal ? "true" : "false", tensor_bytes, baseline_rss, baseline_peak, peak, peak - baseline, ratio,
        ratio <= 1.05 ? "true" : "false", seconds, baseline_rss >= 0 ? "proc_self_statm" : "ru_maxrss");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const probe_args a = parse(argc, argv);
    try {
        return a.type == "bf16" ? probe<longnet::bfloat16>(a) : probe<float>(a);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "longnet_memory_probe: %s\n", e.what());
        return 1;
    }
}
