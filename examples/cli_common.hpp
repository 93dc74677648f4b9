// SPDX-License-Identifier: Apache-2.0
#pragma once
// Private helpers of the example programs (not part of the library): strict argument parsing
// (arg_reader, numbers, lists), error classes with exit codes and main_guard (the one place an exception
// becomes an exit code and a message), memory limits, peak RSS and CPU time (getrusage), output-path
// checks, deterministic random inputs, timing, --tokenizer (load it, check it against the tokenizer a
// config records). The model flags longnet_lm and longnet_train share are in model_flags.hpp.
//
// Exit codes of the tools: 0 success, 1 data error (files, shapes, dtypes, I/O), 2 usage error
// (flags, numbers, policies, sizes that cannot fit in memory).

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <longnet/config.hpp>
#include <longnet/io/staged_file.hpp>
#include <longnet/text/tokenizer.hpp>

#if LONGNET_HAS_OPENMP
#include <omp.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <sys/resource.h>
#include <unistd.h>
#define LONGNET_CLI_POSIX 1
#else
#define LONGNET_CLI_POSIX 0
#endif

namespace cli {

// Bad command line: exit code 2.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// Bad data (files, shapes, dtypes) or failed I/O: exit code 1.
struct data_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// ---- numbers ----------------------------------------------------------------------------------------

// A whole decimal integer in [lo, hi]; `what` names the flag in messages.
inline std::int64_t parse_int(std::string_view what, std::string_view text, std::int64_t lo, std::int64_t hi) {
    std::int64_t value = 0;
    const char* first = text.data();
    const char* last = text.data() + text.size();
    if (first != last && *first == '+') ++first;  // from_chars rejects a leading '+'
    const auto not_whole = [&]() {
        return usage_error(std::string(what) + ": '" + std::string(text) + "' is not a whole number");
    };
    if (first == last || *first == '+' || (text.front() == '+' && *first == '-')) throw not_whole();
    const auto [ptr, ec] = std::from_chars(first, last, value);
    if (ec == std::errc::invalid_argument || ptr != last) throw not_whole();
    if (ec == std::errc::result_out_of_range || value < lo || value > hi)
        throw usage_error(std::string(what) + ": " + std::string(text) + " is out of range (expected " + std::to_string(lo) +
                          " to " + std::to_string(hi) + ")");
    return value;
}

// An unsigned 64-bit integer (seeds).
inline std::uint64_t parse_uint64(std::string_view what, std::string_view text) {
    std::uint64_t value = 0;
    const char* last = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), last, value);
    if (text.empty() || ptr != last || ec == std::errc::invalid_argument)
        throw usage_error(std::string(what) + ": '" + std::string(text) + "' is not a whole non-negative number");
    if (ec == std::errc::result_out_of_range)
        throw usage_error(std::string(what) + ": " + std::string(text) + " is out of range (at most 2^64 - 1)");
    return value;
}

// A finite floating-point number.
inline double parse_double(std::string_view what, std::string_view text) {
    const std::string s(text);
    if (s.empty() || std::isspace(static_cast<unsigned char>(s.front())))
        throw usage_error(std::string(what) + ": '" + s + "' is not a number");
    char* end = nullptr;
    errno = 0;
    const double value = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size()) throw usage_error(std::string(what) + ": '" + s + "' is not a number");
    if (!std::isfinite(value) || errno == ERANGE)
        throw usage_error(std::string(what) + ": " + s + " is not a finite number in range");
    return value;
}

// A comma-separated list of whole numbers, each in [lo, hi]; at least one item, no empty items.
inline std::vector<std::int64_t> parse_int_list(std::string_view what, std::string_view text, std::int64_t lo,
                                                std::int64_t hi) {
    if (text.empty()) throw usage_error(std::string(what) + ": empty list (expected e.g. 2048,4096)");
    std::vector<std::int64_t> out;
    std::size_t start = 0;
    for (;;) {
        const std::size_t comma = text.find(',', start);
        const std::string_view item = text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
        if (item.empty())
            throw usage_error(std::string(what) + ": empty item in list '" + std::string(text) + "'");
        out.push_back(parse_int(what, item, lo, hi));
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return out;
}

inline std::string join(const std::vector<std::int64_t>& v, const char* sep = ",") {
    std::string s;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) s += sep;
        s += std::to_string(v[i]);
    }
    return s;
}

// ---- command line -----------------------------------------------------------------------------------

// The grammar of a command line. The default: each flag at most once, "--name=value" allowed.
struct arg_grammar {
    bool repeats = false;        // a flag given again overrides the earlier one (else a usage error)
    bool inline_values = true;   // "--name=value" (else "--name=value" is read as one unknown flag name)
};

// Walks argv: "--name value", "--name=value" and bare switches (see arg_grammar).
class arg_reader {
public:
    arg_reader(int argc, char** argv, arg_grammar grammar = arg_grammar())
        : args_(argv + 1, argv + std::max(argc, 1)), grammar_(grammar) {}

    bool done() const noexcept { return pos_ >= args_.size(); }

    // The next flag name ("--q"); throws for positional arguments and repeated flags.
    std::string next_flag() {
        std::string a = args_[pos_++];
        pending_value_.reset();
        if (a.size() < 3 || a.compare(0, 2, "--") != 0) {
            if (a == "-h") return "--help";
            throw usage_error("unexpected argument '" + a + "' (flags start with --)");
        }
        const std::size_t eq = grammar_.inline_values ? a.find('=') : std::string::npos;
        if (eq != std::string::npos) {
            pending_value_ = a.substr(eq + 1);
            a.resize(eq);
        }
        if (!grammar_.repeats) {
            if (std::find(seen_.begin(), seen_.end(), a) != seen_.end()) throw usage_error(a + " given more than once");
            seen_.push_back(a);
        }
        return a;
    }
    // The value of the flag just read.
    std::string value(const std::string& flag) {
        std::string v;
        if (pending_value_) {
            v = *pending_value_;
            pending_value_.reset();
        } else {
            if (pos_ >= args_.size() || args_[pos_].compare(0, 2, "--") == 0) throw usage_error(flag + " needs a value");
            v = args_[pos_++];
        }
        if (v.empty()) throw usage_error(flag + " needs a non-empty value");
        return v;
    }
    // A switch takes no value: "--causal=1" is an error.
    void no_value(const std::string& flag) const {
        if (pending_value_) throw usage_error(flag + " takes no value");
    }

private:
    std::vector<std::string> args_;
    arg_grammar grammar_;
    std::size_t pos_ = 0;
    std::vector<std::string> seen_;
    std::optional<std::string> pending_value_;
};

// Reads every flag of r: "--help" prints `usage` on stdout and exits 0; any other flag goes to
// read(flag), which takes its value from r and returns false for a flag it does not know. Throws
// usage_error for no arguments at all and for an unknown flag, each message after `context` (e.g.
// "generate: ").
template <class Read>
void read_flags(arg_reader& r, const char* usage, const std::string& context, Read&& read) {
    if (r.done()) throw usage_error(context + "no arguments");
    while (!r.done()) {
        const std::string flag = r.next_flag();
        if (flag == "--help") {
            std::fputs(usage, stdout);
            std::exit(0);
        }
        if (!read(flag)) throw usage_error(context + "unknown flag " + flag);
    }
}

// ---- failures: exit code and message -----------------------------------------------------------------

// What the exception in flight means for a tool: its exit code and message.
struct failure {
    int code = 1;
    std::string message;
    bool usage = false;  // a cli::usage_error (the tool may add its usage text)
};

// Call only inside a catch block. The one ladder of the tools: usage_error and the library's refusals
// (std::invalid_argument) exit 2; everything else (data_error, npy_error, safetensors_error,
// io::write_error, out of memory, ...) exits 1.
inline failure current_failure() noexcept {
    try {
        throw;
    } catch (const usage_error& e) {
        return {2, e.what(), true};
    } catch (const std::invalid_argument& e) {  // options and values the library refuses
        return {2, e.what(), false};
    } catch (const std::bad_alloc&) {
        return {1, "out of memory", false};
    } catch (const std::exception& e) {
        return {1, e.what(), false};
    } catch (...) {
        return {1, "unknown failure", false};
    }
}

// How a tool reports a failure on stderr: "<name>: <prefix><message>", then after a usage error the
// usage text, or " (see --help)" on the message's line when the tool gives none.
struct tool_info {
    const char* name;
    const char* prefix = "";
    const char* usage = nullptr;
};

inline void report(const tool_info& tool, const failure& f) {
    std::fprintf(stderr, "%s: %s%s%s\n", tool.name, tool.prefix, f.message.c_str(), f.usage && !tool.usage ? " (see --help)" : "");
    if (f.usage && tool.usage) std::fputs(tool.usage, stderr);
}

// A tool's main: body() is its exit code, or the failure it throws is reported and gives the code.
template <class Body>
int main_guard(const tool_info& tool, Body&& body) {
    try {
        return body();
    } catch (...) {
        const failure f = current_failure();
        report(tool, f);
        return f.code;
    }
}

// ---- memory -----------------------------------------------------------------------------------------

// a·b, or nullopt on 64-bit overflow.
inline std::optional<std::uint64_t> mul(std::uint64_t a, std::uint64_t b) noexcept {
    if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return std::nullopt;
    return a * b;
}
inline std::optional<std::uint64_t> add(std::uint64_t a, std::uint64_t b) noexcept {
    if (b > std::numeric_limits<std::uint64_t>::max() - a) return std::nullopt;
    return a + b;
}

// Physical memory of the machine in bytes (sysconf), or 0 when unknown.
inline std::uint64_t physical_memory_bytes() noexcept {
#if LONGNET_CLI_POSIX && defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES);
    const long page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) {
        if (auto b = mul(static_cast<std::uint64_t>(pages), static_cast<std::uint64_t>(page))) return *b;
    }
#endif
    return 0;
}

// The process's peak resident set size in bytes (getrusage: ru_maxrss, KiB on Linux, bytes on macOS), or 0
// when unknown.
inline std::uint64_t peak_rss_bytes() noexcept {
#if LONGNET_CLI_POSIX
    struct rusage u {};
    if (getrusage(RUSAGE_SELF, &u) != 0 || u.ru_maxrss < 0) return 0;
#if defined(__APPLE__)
    return static_cast<std::uint64_t>(u.ru_maxrss);
#else
    return static_cast<std::uint64_t>(u.ru_maxrss) * 1024u;
#endif
#else
    return 0;
#endif
}

// CPU time (user + system) the process has used so far in seconds, all threads, or 0 when unknown. On a
// shared machine the CPU time a run takes says more than its wall time.
inline double process_cpu_seconds() noexcept {
#if LONGNET_CLI_POSIX
    struct rusage u {};
    if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
    const auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec); };
    return sec(u.ru_utime) + sec(u.ru_stime);
#else
    return 0;
#endif
}

inline std::string human_bytes(double bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 6) {
        bytes /= 1024.0;
        ++u;
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f %s", bytes, units[u]);
    return buf;
}

// Throws usage_error unless `bytes` (nullopt = overflowed) fits in physical memory.
inline void require_memory(const std::optional<std::uint64_t>& bytes, const std::string& what) {
    if (!bytes) throw usage_error(what + " needs more than 2^64 bytes of memory");
    const std::uint64_t limit = physical_memory_bytes();
    if (limit != 0 && *bytes > limit)
        throw usage_error(what + " needs " + human_bytes(static_cast<double>(*bytes)) + " of memory but this machine has " +
                          human_bytes(static_cast<double>(limit)));
    if (*bytes > static_cast<std::uint64_t>(std::numeric_limits<std::ptrdiff_t>::max()))
        throw usage_error(what + " is too large to address");
}

// ---- output paths -----------------------------------------------------------------------------------

// Fails with data_error now, before any computing, if `path` cannot be written later: its folder must
// exist, it must not be a folder, and a temporary file must be creatable next to it (then removed).
inline void check_writable(const std::string& flag, const std::string& path) {
    try {
        longnet::io::staged_file probe(path, std::string());
    } catch (const longnet::io::write_error& e) {
        throw data_error(flag + " " + path + ": " + e.problem());
    }
}

// ---- tokenizers: --tokenizer model.model (longnet/text/tokenizer.hpp) ----------------------------------

// The value of --tokenizer, read at parse time: a usage error in a build without SentencePiece.
inline std::string tokenizer_flag(arg_reader& r, const std::string& flag) {
    std::string path = r.value(flag);
    if (!longnet::text::sentencepiece_available)
        throw usage_error(flag + " " + path + ": " + longnet::text::no_sentencepiece_message());
    return path;
}

// The tokenizer of --tokenizer PATH, byte level when PATH is empty; a data_error names the file.
inline longnet::text::tokenizer load_tokenizer(const std::string& path) {
    if (path.empty()) return longnet::text::tokenizer();
    try {
        return longnet::text::tokenizer::load(path);
    } catch (const longnet::text::tokenizer_error& e) {
        throw data_error(std::string("--tokenizer ") + e.what());
    }
}

// Text goes into a model only through the tokenizer it was trained with: `recorded` is what the config
// `config_path` records (byte level when it records none), `given` what --tokenizer gave (byte level
// without it). A data_error naming both otherwise; also when the model's vocabulary is smaller than the
// tokenizer's.
inline void check_tokenizer(const longnet::text::tokenizer_record& recorded, const std::string& config_path,
                            const longnet::text::tokenizer_record& given, std::int64_t model_vocab) {
    if (!recorded.same_as(given)) {
        std::string msg = config_path + " records " + recorded.describe() + " (the tokenizer the model was trained with), but " +
                          (given.byte_level() ? "no --tokenizer was given (" + given.describe() + ")"
                                              : "--tokenizer gives " + given.describe());
        msg += recorded.byte_level() ? ": this model reads byte-level text; leave out --tokenizer"
                                     : ": pass --tokenizer with that model file";
        throw data_error(msg);
    }
    if (!given.byte_level() && model_vocab < given.vocab_size)
        throw data_error("the model's vocabulary (" + std::to_string(model_vocab) + ") is smaller than that of " + given.describe());
}

// ---- threads, time, random inputs -------------------------------------------------------------------

inline int max_threads() noexcept {
#if LONGNET_HAS_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline std::uint64_t splitmix64(std::uint64_t& state) noexcept {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// Fill out[0, n) with standard-normal values (Box-Muller in float on a splitmix64 stream; 24-bit
// uniforms, so |x| < 5.8), stream `stream` of seed `seed`. Blocks of 4096 values are seeded
// independently, so the result does not depend on the thread count. `convert` maps a float to the
// element type.
template <class T, class Convert>
void fill_normal(T* out, std::int64_t n, std::uint64_t seed, std::uint64_t stream, Convert convert) {
    constexpr std::int64_t block = 4096;
    const std::int64_t blocks = (n + block - 1) / block;
#if LONGNET_HAS_OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (std::int64_t b = 0; b < blocks; ++b) {
        std::uint64_t state = seed * 0x2545f4914f6cdd1dULL ^ (stream + 1) * 0x9e3779b97f4a7c15ULL ^
                              static_cast<std::uint64_t>(b) * 0xd1b54a32d192ed03ULL;
        (void)splitmix64(state);
        const std::int64_t begin = b * block, end = std::min(n, begin + block);
        for (std::int64_t i = begin; i < end; i += 2) {
            const std::uint64_t x = splitmix64(state);
            const float u1 = (static_cast<float>(x >> 40) + 1.0f) * 0x1.0p-24f;            // (0, 1]
            const float u2 = static_cast<float>((x >> 16) & 0xffffffu) * 0x1.0p-24f;       // [0, 1)
            const float radius = std::sqrt(-2.0f * std::log(u1));
            const float angle = 6.28318530718f * u2;
            out[i] = convert(radius * std::cos(angle));
            if (i + 1 < end) out[i + 1] = convert(radius * std::sin(angle));
        }
    }
}

// A JSON number, or null for inf/NaN (JSON has neither).
inline std::string json_number(double x) {
    if (!std::isfinite(x)) return "null";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", x);
    return buf;
}

}  // namespace cli
