// SPDX-License-Identifier: Apache-2.0
#pragma once
// Atomic file writing: io::staged_file (bytes staged under a temporary name next to the target, renamed
// into place by commit(), removed when not committed) and io::write_error, what it throws.
//
//   longnet::io::staged_file f("out/checkpoint.json", text);  // the target is untouched so far
//   f.commit();                                                // rename: all of it or nothing
//
// Every writer of the library goes through it: io::save_npy (which reports npy_error), and the
// training checkpoints, models and text files (training/checkpoint.hpp, trainer.hpp).

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace longnet::io {

// A file that could not be written (missing folder, a folder in the way, no space, failed rename).
// what() is "cannot write <file>: <problem>".
class write_error : public std::runtime_error {
public:
    write_error(const std::string& file, const std::string& problem)
        : std::runtime_error("cannot write " + file + ": " + problem), file_(file), problem_(problem) {}
    const std::string& file() const noexcept { return file_; }
    const std::string& problem() const noexcept { return problem_; }

private:
    std::string file_, problem_;
};

// A file written under a temporary name in the target's folder, renamed into place by commit().
// Not committed (an exception, an early return): the temporary file is removed. This is how save_npy,
// the checkpoint files and save_text are atomic, and how a tool writes several outputs all-or-nothing
// (stage all, commit all).
class staged_file {
public:
    // Writes `bytes` to a fresh temporary file next to `path`. Throws write_error on any failure.
    staged_file(std::string path, const std::string& bytes) : path_(std::move(path)) {
        namespace fs = std::filesystem;
        std::error_code ec;
        if (path_.empty()) throw write_error(path_, "empty output path");
        if (fs::is_directory(path_, ec)) throw write_error(path_, "output path is a directory");
        const fs::path parent = fs::path(path_).parent_path();
        if (!parent.empty() && !fs::is_directory(parent, ec))
            throw write_error(path_, "output folder '" + parent.string() + "' does not exist");
        std::FILE* f = nullptr;
        std::uint64_t name_state = unique_seed();
        for (int attempt = 0; attempt < 16 && !f; ++attempt) {
            temp_ = path_ + ".tmp-" + std::to_string(next_name(name_state));
            f = std::fopen(temp_.c_str(), "wbx");  // exclusive create: never clobber another file
            if (!f && errno != EEXIST) break;
        }
        if (!f) {
            const int err = errno;
            temp_.clear();
            throw write_error(path_, "cannot create a temporary file in its folder: " + errno_text(err));
        }
        errno = 0;
        const bool ok_write = bytes.empty() || std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
        int err = errno;
        const bool ok_close = std::fclose(f) == 0;  // flushes: a full disk may only show here
        if (ok_write && !ok_close) err = errno;
        if (!ok_write || !ok_close) {
            discard();
            throw write_error(path_, "write failed: " + (err ? errno_text(err) : std::string("I/O error")));
        }
    }
    staged_file(const staged_file&) = delete;
    staged_file& operator=(const staged_file&) = delete;
    staged_file(staged_file&& o) noexcept : path_(std::move(o.path_)), temp_(std::exchange(o.temp_, std::string())) {}
    staged_file& operator=(staged_file&&) = delete;
    ~staged_file() { discard(); }

    // Rename the temporary file onto the target (atomic replace on POSIX).
    void commit() {
        if (temp_.empty()) throw write_error(path_, "nothing staged to commit");
        std::error_code ec;
        std::filesystem::rename(temp_, path_, ec);
        if (ec) {
            discard();
            throw write_error(path_, "cannot move the temporary file into place: " + ec.message());
        }
        temp_.clear();
    }
    const std::string& path() const noexcept { return path_; }
    const std::string& temp_path() const noexcept { return temp_; }

private:
    // Different for every staged file of every process: clock, a process-wide counter, an address and,
    // when available, std::random_device.
    static std::uint64_t unique_seed() noexcept {
        static std::atomic<std::uint64_t> counter{0};
        std::uint64_t seed = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                             (counter.fetch_add(1) * 0x9e3779b97f4a7c15ULL) ^
                             static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&counter));
        try {
            std::random_device rd;
            seed ^= (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
        } catch (...) {  // no entropy source: the clock and counter still separate names
        }
        return seed;
    }
    static std::uint64_t next_name(std::uint64_t& state) noexcept {  // splitmix64
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    static std::string errno_text(int err) { return std::generic_category().message(err); }
    void discard() noexcept {
        if (!temp_.empty()) {
            std::error_code ec;
            std::filesystem::remove(temp_, ec);
            temp_.clear();
        }
    }
    std::string path_, temp_;
};

}  // namespace longnet::io
