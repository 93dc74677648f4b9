// SPDX-License-Identifier: Apache-2.0
#pragma once
// llm.c token shards: the strict header reader, a memory-mapped shard, a glob of shards read as one
// stream, and the writer.
//
// The format is llm.c's (dev/data/data_common.py, train_gpt2.c's dataloader), little-endian:
//   bytes [0, 1024)   header: 256 int32; [0] magic, [1] version, [2] token count n; the rest unused
//   bytes [1024, ...) n tokens: uint16 when magic = 20240520 (GPT-2 shards, version 1),
//                               uint32 when magic = 20240801 (llama-3 shards; version 1, or 7 as llm.c
//                               writes them)
// and nothing after them: the file size must be exactly 1024 + n x token width.
//
//   auto image = io::parse_token_shard(bytes, size, "name");   // header checked, tokens viewed in place
//   io::token_shard s("train_000001.bin");                    // memory-mapped, never read whole
//   io::token_shard_stream all(io::glob_token_shards("dir/train_*.bin"));  // sorted names, one stream
//   all.read(start, count, out);                              // tokens [start, start + count) as int64
//   all.tokens_read();                                        // how many tokens read() has returned
//   all.check_vocab(50257);                                   // every token < vocab, or a clear error
//   io::write_token_shard("x.bin", tokens, io::token_width::u16);  // atomic (staged file + rename)
//   io::token_shard_writer w("dir/train", 1 << 20, width);    // dir/train_000000.bin, ... of 1M tokens
//
// Every failure throws token_shard_error; what() is "token shard: <file>: offset <byte>: <problem>"
// (the offset is the byte of the file where the problem is). Nothing is allocated from the header's
// count before it has been checked against the file's size.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "longnet/io/staged_file.hpp"

namespace longnet::io {

// Every token-shard failure.
class token_shard_error : public std::runtime_error {
public:
    token_shard_error(const std::string& file, std::uint64_t offset, const std::string& problem)
        : std::runtime_error("token shard: " + file + ": offset " + std::to_string(offset) + ": " + problem),
          file_(file),
          offset_(offset) {}
    const std::string& file() const noexcept { return file_; }
    std::uint64_t offset() const noexcept { return offset_; }

private:
    std::string file_;
    std::uint64_t offset_;
};

enum class token_width : int { u16 = 2, u32 = 4 };

inline constexpr std::int32_t token_shard_magic_u16 = 20240520;
inline constexpr std::int32_t token_shard_magic_u32 = 20240801;
inline constexpr std::size_t token_shard_header_bytes = 256 * 4;

// A checked shard image: `count` tokens of `width` bytes each at `tokens` (inside the caller's bytes).
struct token_shard_view {
    token_width width = token_width::u16;
    std::int32_t version = 1;
    std::uint64_t count = 0;
    const unsigned char* tokens = nullptr;

    std::uint32_t operator[](std::uint64_t i) const noexcept {
        const unsigned char* p = tokens + i * static_cast<std::uint64_t>(width);
        if (width == token_width::u16) return static_cast<std::uint32_t>(p[0] | (p[1] << 8));
        return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
               (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
    }
};

namespace detail {
inline std::int32_t shard_le_i32(const unsigned char* p) noexcept {
    const std::uint32_t u = static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
                            (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
    std::int32_t v;
    std::memcpy(&v, &u, 4);
    return v;
}
inline void shard_put_le32(std::string& out, std::uint32_t v) {
    for (int b = 0; b < 4; ++b) out.push_back(static_cast<char>((v >> (8 * b)) & 0xffu));
}
}  // namespace detail

// Check a whole shard image of `size` bytes (the header and the size; not the token values: see
// check_vocab) and view its tokens in place. `name` names the file in errors.
inline token_shard_view parse_token_shard(const void* data, std::size_t size, const std::string& name) {
    const auto* p = static_cast<const unsigned char*>(data);
    if (size < token_shard_header_bytes)
        throw token_shard_error(name, size, "truncated header: " + std::to_string(size) + " bytes, an llm.c shard header is " +
                                                std::to_string(token_shard_header_bytes));
    const std::int32_t magic = detail::shard_le_i32(p), version = detail::shard_le_i32(p + 4),
                       count = detail::shard_le_i32(p + 8);
    token_shard_view v;
    if (magic == token_shard_magic_u16) {
        v.width = token_width::u16;
        if (version != 1)
            throw token_shard_error(name, 4, "version " + std::to_string(version) + " of a uint16 shard (magic 20240520) is not 1");
    } else if (magic == token_shard_magic_u32) {
        v.width = token_width::u32;
        if (version != 1 && version != 7)
            throw token_shard_error(name, 4, "version " + std::to_string(version) + " of a uint32 shard (magic 20240801) is not 1 or 7");
    } else {
        throw token_shard_error(name, 0, "magic " + std::to_string(magic) +
                                             " is not an llm.c token shard's (20240520: uint16 tokens, 20240801: uint32 tokens)");
    }
    if (count < 0) throw token_shard_error(name, 8, "negative token count " + std::to_string(count));
    v.version = version;
    v.count = static_cast<std::uint64_t>(count);
    const std::uint64_t expect = token_shard_header_bytes + v.count * static_cast<std::uint64_t>(v.width);
    if (size < expect)
        throw token_shard_error(name, size, "truncated: the header's " + std::to_string(count) + " tokens need " +
                                                std::to_string(expect) + " bytes, the file has " + std::to_string(size));
    if (size > expect)
        throw token_shard_error(name, expect, "trailing bytes: the header's " + std::to_string(count) + " tokens end at byte " +
                                                  std::to_string(expect) + ", the file has " + std::to_string(size) +
                                                  " (token count mismatch)");
    v.tokens = p + token_shard_header_bytes;
    return v;
}

// The first token of `v` that is >= vocab, as an error naming its byte offset; nothing when all are below.
inline void check_token_shard_vocab(const token_shard_view& v, std::uint64_t vocab, const std::string& name) {
    for (std::uint64_t i = 0; i < v.count; ++i)
        if (v[i] >= vocab)
            throw token_shard_error(name, token_shard_header_bytes + i * static_cast<std::uint64_t>(v.width),
                                    "token " + std::to_string(v[i]) + " at position " + std::to_string(i) +
                                        " is not below the vocabulary size " + std::to_string(vocab));
}

// The bytes of a shard holding `tokens` (each < 2^16 for u16, < 2^32 for u32; at most 2^31 - 1 tokens).
inline std::string token_shard_bytes(const std::int64_t* tokens, std::size_t count, token_width width, const std::string& name) {
    if (count > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
        throw token_shard_error(name, 8, std::to_string(count) + " tokens do not fit one shard (at most 2^31 - 1)");
    const std::int64_t limit = width == token_width::u16 ? (std::int64_t{1} << 16) : (std::int64_t{1} << 32);
    std::string out;
    out.reserve(token_shard_header_bytes + count * static_cast<std::size_t>(width));
    detail::shard_put_le32(out, static_cast<std::uint32_t>(width == token_width::u16 ? token_shard_magic_u16 : token_shard_magic_u32));
    detail::shard_put_le32(out, width == token_width::u16 ? 1u : 7u);  // llm.c's versions for the two widths
    detail::shard_put_le32(out, static_cast<std::uint32_t>(count));
    out.append(token_shard_header_bytes - 12, '\0');
    for (std::size_t i = 0; i < count; ++i) {
        const std::int64_t t = tokens[i];
        if (t < 0 || t >= limit)
            throw token_shard_error(name, token_shard_header_bytes + i * static_cast<std::size_t>(width),
                                    "token " + std::to_string(t) + " at position " + std::to_string(i) + " does not fit a " +
                                        (width == token_width::u16 ? "uint16" : "uint32") + " shard");
        const auto u = static_cast<std::uint32_t>(t);
        out.push_back(static_cast<char>(u & 0xffu));
        out.push_back(static_cast<char>((u >> 8) & 0xffu));
        if (width == token_width::u32) {
            out.push_back(static_cast<char>((u >> 16) & 0xffu));
            out.push_back(static_cast<char>((u >> 24) & 0xffu));
        }
    }
    return out;
}

// Write one shard atomically (temporary file in the same folder, renamed into place).
inline void write_token_shard(const std::string& path, const std::vector<std::int64_t>& tokens, token_width width) {
    const std::string bytes = token_shard_bytes(tokens.data(), tokens.size(), width, path);
    try {
        staged_file f(path, bytes);
        f.commit();
    } catch (const write_error& e) {
        throw token_shard_error(path, 0, e.problem());
    }
}

// Tokens appended in order, written as <prefix>_000000.bin, <prefix>_000001.bin, ... of `shard_tokens`
// tokens each (the last one shorter); finish() writes the last one. Returns the paths written.
class token_shard_writer {
public:
    token_shard_writer(std::string prefix, std::size_t shard_tokens, token_width width)
        : prefix_(std::move(prefix)), shard_tokens_(shard_tokens), width_(width) {
        if (shard_tokens_ < 1 || shard_tokens_ > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
            throw std::invalid_argument("token shards: shard size " + std::to_string(shard_tokens_) + " must be 1 .. 2^31 - 1 tokens");
    }
    void append(std::int64_t token) {
        pending_.push_back(token);
        if (pending_.size() == shard_tokens_) flush();
    }
    std::vector<std::string> finish() {
        if (!pending_.empty()) flush();
        return written_;
    }
    const std::vector<std::string>& written() const noexcept { return written_; }

private:
    void flush() {
        std::string index = std::to_string(written_.size());
        if (index.size() < 6) index.insert(0, 6 - index.size(), '0');
        const std::string path = prefix_ + "_" + index + ".bin";
        write_token_shard(path, pending_, width_);
        written_.push_back(path);
        pending_.clear();
    }
    std::string prefix_;
    std::size_t shard_tokens_;
    token_width width_;
    std::vector<std::int64_t> pending_;
    std::vector<std::string> written_;
};

// One shard file, memory-mapped read-only (pages are read on demand; the file is never read whole).
class token_shard {
public:
    explicit token_shard(std::string path) : path_(std::move(path)) {
        const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw token_shard_error(path_, 0, std::string("cannot open: ") + std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            throw token_shard_error(path_, 0, "not a regular file");
        }
        size_ = static_cast<std::size_t>(st.st_size);
        if (size_ > 0) {
            void* m = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
            if (m == MAP_FAILED) {
                const int err = errno;
                ::close(fd);
                throw token_shard_error(path_, 0, std::string("cannot memory-map: ") + std::strerror(err));
            }
            map_ = m;
        }
        ::close(fd);
        try {
            view_ = parse_token_shard(map_, size_, path_);
        } catch (...) {
            unmap();
            throw;
        }
    }
    token_shard(const token_shard&) = delete;
    token_shard& operator=(const token_shard&) = delete;
    token_shard(token_shard&& o) noexcept
        : path_(std::move(o.path_)), map_(std::exchange(o.map_, nullptr)), size_(std::exchange(o.size_, 0)), view_(o.view_) {}
    token_shard& operator=(token_shard&&) = delete;
    ~token_shard() { unmap(); }

    const std::string& path() const noexcept { return path_; }
    const token_shard_view& view() const noexcept { return view_; }
    std::uint64_t size() const noexcept { return view_.count; }
    std::uint32_t operator[](std::uint64_t i) const noexcept { return view_[i]; }
    // Every token < vocab, or token_shard_error naming the offset of the first that is not. Scanned in
    // blocks, each block's pages released after it (madvise DONTNEED: they stay in the page cache, not in
    // this process's resident set), so checking a corpus larger than memory keeps the RSS flat.
    void check_vocab(std::uint64_t vocab) const {
        scan([&](std::uint64_t i, std::uint32_t t) {
            if (t >= vocab)
                throw token_shard_error(path_, token_shard_header_bytes + i * static_cast<std::uint64_t>(view_.width),
                                        "token " + std::to_string(t) + " at position " + std::to_string(i) +
                                            " is not below the vocabulary size " + std::to_string(vocab));
        });
    }
    std::uint32_t max_token() const {
        std::uint32_t m = 0;
        scan([&](std::uint64_t, std::uint32_t t) { m = std::max(m, t); });
        return m;
    }

private:
    template <class F>
    void scan(F&& f) const {
        const std::uint64_t block = (std::uint64_t{16} << 20) / static_cast<std::uint64_t>(view_.width);  // 16 MiB of tokens
        const long page = ::sysconf(_SC_PAGESIZE);
        for (std::uint64_t b0 = 0; b0 < view_.count; b0 += block) {
            const std::uint64_t b1 = std::min(view_.count, b0 + block);
            for (std::uint64_t i = b0; i < b1; ++i) f(i, view_[i]);
            // release the whole pages of this block (the header's page stays)
            const auto begin = reinterpret_cast<std::uintptr_t>(view_.tokens + b0 * static_cast<std::uint64_t>(view_.width));
            const auto end = reinterpret_cast<std::uintptr_t>(view_.tokens + b1 * static_cast<std::uint64_t>(view_.width));
            const std::uintptr_t p = static_cast<std::uintptr_t>(page > 0 ? page : 4096);
            const std::uintptr_t first = (begin + p - 1) / p * p, last = end / p * p;
            if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
        }
    }
    void unmap() noexcept {
        if (map_) ::munmap(map_, size_);
        map_ = nullptr;
    }
    std::string path_;
    void* map_ = nullptr;
    std::size_t size_ = 0;
    token_shard_view view_{};
};

// The files matching a shell pattern (e.g. "dir/train_*.bin"), sorted by name; none: token_shard_error.
inline std::vector<std::string> glob_token_shards(const std::string& pattern) {
    glob_t g{};
    const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);  // glob sorts (no GLOB_NOSORT)
    std::vector<std::string> out;
    if (rc == 0)
        for (std::size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
    ::globfree(&g);
    if (out.empty()) throw token_shard_error(pattern, 0, "no file matches the pattern");
    std::sort(out.begin(), out.end());
    return out;
}

// Shards concatenated in the given order as one token stream (a deterministic order: glob's, sorted).
class token_shard_stream {
public:
    token_shard_stream() = default;
    explicit token_shard_stream(const std::vector<std::string>& paths) {
        if (paths.empty()) throw std::invalid_argument("token shards: no shard files");
        starts_.push_back(0);
        for (const auto& p : paths) {
            shards_.push_back(std::make_unique<token_shard>(p));
            starts_.push_back(starts_.back() + shards_.back()->size());
        }
    }
    std::uint64_t size() const noexcept { return starts_.empty() ? 0 : starts_.back(); }
    std::size_t shard_count() const noexcept { return shards_.size(); }
    const token_shard& shard(std::size_t i) const { return *shards_.at(i); }

    // Tokens [start, start + count) of the stream into out[0 .. count).
    void read(std::uint64_t start, std::uint64_t count, std::int64_t* out) const {
        if (start > size() || count > size() - start)
            throw std::out_of_range("token shards: tokens [" + std::to_string(start) + ", " + std::to_string(start + count) +
                                    ") past the end of the stream of " + std::to_string(size()));
        std::size_t s = static_cast<std::size_t>(std::upper_bound(starts_.begin(), starts_.end(), start) - starts_.begin()) - 1;
        while (count > 0) {
            while (s < shards_.size() && start >= starts_[s + 1]) ++s;
            const token_shard& sh = *shards_[s];
            const std::uint64_t at = start - starts_[s], n = std::min<std::uint64_t>(count, sh.size() - at);
            for (std::uint64_t i = 0; i < n; ++i) out[i] = sh[at + i];
            out += n;
            start += n;
            count -= n;
            tokens_read_->fetch_add(n, std::memory_order_relaxed);
        }
    }
    // The reader statistic: tokens returned by read() since the stream was opened (each read counts its
    // `count`; check_vocab and max_token, which scan every token, do not count). Under mpirun it shows
    // that a rank read only its own chunks (training/data.hpp: shard_dataset::sample_batch).
    std::uint64_t tokens_read() const noexcept { return tokens_read_ ? tokens_read_->load(std::memory_order_relaxed) : 0; }
    std::vector<std::int64_t> read(std::uint64_t start, std::uint64_t count) const {
        std::vector<std::int64_t> out(static_cast<std::size_t>(count));
        read(start, count, out.data());
        return out;
    }
    // Every token of every shard < vocab, or token_shard_error naming the first bad one's file and offset.
    void check_vocab(std::uint64_t vocab) const {
        for (const auto& s : shards_) s->check_vocab(vocab);
    }
    // The largest token of the stream (0 when empty); reads every page once.
    std::uint32_t max_token() const {
        std::uint32_t m = 0;
        for (const auto& s : shards_) m = std::max(m, s->max_token());
        return m;
    }

private:
    std::vector<std::unique_ptr<token_shard>> shards_;
    std::vector<std::uint64_t> starts_;
    std::unique_ptr<std::atomic<std::uint64_t>> tokens_read_ = std::make_unique<std::atomic<std::uint64_t>>(0);
};

}  // namespace longnet::io
