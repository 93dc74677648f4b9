// SPDX-License-Identifier: Apache-2.0
// The replay driver of a fuzz target in ordinary builds (g++ or clang, no libFuzzer): feeds every file
// named on the command line (a folder: every file in it, sorted) to LLVMFuzzerTestOneInput, the target's
// entry function. The target aborts on a defect, so the CTest test fails; exit 1 when an argument is
// missing or a folder is empty (a replay of nothing would pass silently).
//
//   fuzz_npy_replay tests/fuzz/corpus/npy tests/fuzz/regressions/npy

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {
std::vector<std::uint8_t> read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
}  // namespace

int main(int argc, char** argv) {
    namespace fs = std::filesystem;
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s FILE_OR_FOLDER...\n", argv[0]);
        return 1;
    }
    std::size_t replayed = 0;
    for (int i = 1; i < argc; ++i) {
        const fs::path arg(argv[i]);
        std::vector<fs::path> files;
        if (fs::is_directory(arg)) {
            for (const auto& entry : fs::directory_iterator(arg))
                if (entry.is_regular_file()) files.push_back(entry.path());
            std::sort(files.begin(), files.end());
            if (files.empty()) {
                std::fprintf(stderr, "%s: folder %s is empty\n", argv[0], argv[i]);
                return 1;
            }
        } else if (fs::is_regular_file(arg)) {
            files.push_back(arg);
        } else {
            std::fprintf(stderr, "%s: no such file or folder: %s\n", argv[0], argv[i]);
            return 1;
        }
        for (const auto& file : files) {
            const std::vector<std::uint8_t> bytes = read_file(file);
            std::fprintf(stderr, "replay %s (%zu bytes)\n", file.string().c_str(), bytes.size());
            // A copy of exactly the file's size: ASan then sees any read past its end, as under libFuzzer.
            std::vector<std::uint8_t> exact(bytes);
            static const std::uint8_t none = 0;  // libFuzzer never passes a null pointer either
            LLVMFuzzerTestOneInput(exact.empty() ? &none : exact.data(), exact.size());
            ++replayed;
        }
    }
    std::printf("%s: %zu inputs replayed, no defect\n", argv[0], replayed);
    return 0;
}
