// SPDX-License-Identifier: Apache-2.0
// Fuzz target: packed variable-length attention's offsets (longnet/varlen.hpp: check_cu_seqlens and
// dilated_attention_varlen) on arbitrary bytes.
//
// Input: byte 0 = flags (bit 0: int64 offsets, else int32; bit 1: causal; bit 2: zero_pad tails),
// byte 1 = the packed token count (mod 97), then the cu_seqlens entries as raw little-endian integers
// (at most 64), so negative, decreasing, too large and missing offsets all occur.
// Every input must either be refused with std::invalid_argument whose message names cu_seqlens, and be
// invalid by an independent reading of the offsets (non-empty, first 0, non-decreasing, last = total),
// or be valid by that reading; then the forward runs on [1, total, 2, 4] float tensors and must equal,
// bitwise, one dilated_attention call per sequence on copies of its rows (outputs and LSE; rows of
// length-0 sequences do not exist), with every value finite.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <longnet/varlen.hpp>

#include "fuzz_check.hpp"

namespace {

template <class I>
std::vector<I> read_offsets(const std::uint8_t* p, std::size_t size) {
    std::vector<I> out(std::min<std::size_t>(size / sizeof(I), 64));
    for (std::size_t i = 0; i < out.size(); ++i) {
        std::uint64_t u = 0;
        for (std::size_t b = 0; b < sizeof(I); ++b) u |= std::uint64_t(p[i * sizeof(I) + b]) << (8 * b);
        const auto narrow = static_cast<std::make_unsigned_t<I>>(u);
        std::memcpy(&out[i], &narrow, sizeof(I));
    }
    return out;
}

template <class I>
bool valid_offsets(const std::vector<I>& cu, std::int64_t total) {
    if (cu.empty() || cu[0] != 0) return false;
    for (std::size_t i = 1; i < cu.size(); ++i)
        if (cu[i] < cu[i - 1]) return false;
    return static_cast<std::int64_t>(cu.back()) == total;
}

float value(std::uint64_t& state) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<std::int64_t>(state >> 33) % 2001 - 1000) / 500.0f;
}

template <class I>
void run(const std::uint8_t* data, std::size_t size) {
    const bool causal = (data[0] & 2) != 0, zero_pad = (data[0] & 4) != 0;
    const std::int64_t total = data[1] % 97, H = 2, D = 4;
    const std::vector<I> cu = read_offsets<I>(data + 2, size - 2);
    const bool valid = valid_offsets(cu, total);
    try {
        const std::vector<longnet::index_t> checked = longnet::check_cu_seqlens(cu, total);
        FUZZ_CHECK(valid, "check_cu_seqlens accepted invalid offsets");
        FUZZ_CHECK(checked.size() == cu.size(), "check_cu_seqlens changed the count");
        for (std::size_t i = 0; i < cu.size(); ++i)
            FUZZ_CHECK(checked[i] == static_cast<longnet::index_t>(cu[i]), "check_cu_seqlens changed an offset");
    } catch (const std::invalid_argument& e) {
        FUZZ_CHECK(!valid, std::string("check_cu_seqlens refused valid offsets: ") + e.what());
        FUZZ_CHECK(std::string(e.what()).rfind("longnet::dilated_attention_varlen: cu_seqlens", 0) == 0,
                   std::string("message does not name cu_seqlens: ") + e.what());
        return;
    }

    longnet::dilated_options opt;
    opt.branches = {{4, 1}, {8, 2}};
    opt.causal = causal;
    opt.tail = zero_pad ? longnet::tail_mode::zero_pad : longnet::tail_mode::exact;
    const std::size_t n = static_cast<std::size_t>(total * H * D);
    std::uint64_t state = size;
    std::vector<float> q(n), k(n), v(n), out(n, 7.0f), lse(static_cast<std::size_t>(total * H), 7.0f);
    for (auto* t : {&q, &k, &v})
        for (float& x : *t) x = value(state);
    using longnet::make_bnhd;
    longnet::dilated_attention_varlen(make_bnhd<const float>(q.data(), 1, total, H, D),
                                      make_bnhd<const float>(k.data(), 1, total, H, D),
                                      make_bnhd<const float>(v.data(), 1, total, H, D), cu,
                                      make_bnhd<float>(out.data(), 1, total, H, D), opt,
                                      longnet::make_lse_bnh<float>(lse.data(), 1, total, H));
    for (std::size_t b = 0; b + 1 < cu.size(); ++b) {
        const std::int64_t s = cu[b], len = cu[b + 1] - cu[b];
        if (len == 0) continue;
        const std::size_t row = static_cast<std::size_t>(s * H * D), count = static_cast<std::size_t>(len * H * D);
        std::vector<float> qs(q.begin() + row, q.begin() + row + count), ks(k.begin() + row, k.begin() + row + count),
            vs(v.begin() + row, v.begin() + row + count), os(count), ls(static_cast<std::size_t>(len * H));
        longnet::dilated_attention(make_bnhd<const float>(qs.data(), 1, len, H, D), make_bnhd<const float>(ks.data(), 1, len, H, D),
                                   make_bnhd<const float>(vs.data(), 1, len, H, D), make_bnhd<float>(os.data(), 1, len, H, D),
                                   opt, longnet::make_lse_bnh<float>(ls.data(), 1, len, H));
        FUZZ_CHECK(std::memcmp(os.data(), out.data() + row, count * sizeof(float)) == 0,
                   "sequence " + std::to_string(b) + ": output differs from the call on its rows alone");
        FUZZ_CHECK(std::memcmp(ls.data(), lse.data() + s * H, ls.size() * sizeof(float)) == 0,
                   "sequence " + std::to_string(b) + ": lse differs from the call on its rows alone");
    }
    for (float x : out) FUZZ_CHECK(std::isfinite(x), "non-finite output");
    for (float x : lse) FUZZ_CHECK(std::isfinite(x), "non-finite lse");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    if (data[0] & 1)
        run<std::int64_t>(data, size);
    else
        run<std::int32_t>(data, size);
    return 0;
}
