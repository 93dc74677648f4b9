// SPDX-License-Identifier: Apache-2.0
#pragma once
// Storage element types and the accumulator each one computes in.
//
//   float, double                 native
//   longnet::bfloat16             16-bit brain float (1-8-7), round-to-nearest-even from float
//   longnet::half                 IEEE binary16 (1-5-10), round-to-nearest-even from float
//
// accum_t<T>: double for double storage, float for everything else (fp32 accumulation).

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace longnet {

struct bfloat16 {
    std::uint16_t bits = 0;

    bfloat16() = default;
    explicit bfloat16(float f) noexcept : bits(from_float(f)) {}
    explicit operator float() const noexcept { return to_float(bits); }

    static bfloat16 from_bits(std::uint16_t b) noexcept {
        bfloat16 r;
        r.bits = b;
        return r;
    }
    static float to_float(std::uint16_t b) noexcept {
        const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
        float f;
        std::memcpy(&f, &u, sizeof f);
        return f;
    }
    static std::uint16_t from_float(float f) noexcept {
        std::uint32_t u;
        std::memcpy(&u, &f, sizeof u);
        if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
        u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
        return static_cast<std::uint16_t>(u >> 16);
    }
};

// The interface of bfloat16 for IEEE binary16 (same members, its own conversions): duplicates shows the
// two as one shape; they stay two plain types so that each is a trivially copyable 2-byte value.
struct half {
    std::uint16_t bits = 0;

    half() = default;
    explicit half(float f) noexcept : bits(from_float(f)) {}
    explicit operator float() const noexcept { return to_float(bits); }

    static half from_bits(std::uint16_t b) noexcept {
        half r;
        r.bits = b;
        return r;
    }
    static float to_float(std::uint16_t h) noexcept {
        const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
        std::uint32_t exp = (h >> 10) & 0x1fu;
        std::uint32_t mant = h & 0x3ffu;
        std::uint32_t u;
        if (exp == 0x1fu) {
            u = sign | 0x7f800000u | (mant << 13);  // inf / NaN
        } else if (exp != 0) {
            u = sign | ((exp + 112u) << 23) | (mant << 13);  // normal: rebias 15 -> 127
        } else if (mant == 0) {
            u = sign;  // ±0
        } else {  // subnormal: normalise
            exp = 113u;
            while ((mant & 0x400u) == 0) {
                mant <<= 1;
                --exp;
            }
            mant &= 0x3ffu;
            u = sign | (exp << 23) | (mant << 13);
        }
        float f;
        std::memcpy(&f, &u, sizeof f);
        return f;
    }
    static std::uint16_t from_float(float f) noexcept {
        std::uint32_t u;
        std::memcpy(&u, &f, sizeof u);
        const std::uint32_t sign = (u >> 16) & 0x8000u;
        const std::uint32_t absu = u & 0x7fffffffu;
        if (absu > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);  // NaN
        if (absu >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow -> inf
        if (absu < 0x38800000u) {  // result is subnormal or zero: exact rounding via float arithmetic
            float a;
            std::memcpy(&a, &absu, sizeof a);
            const float scaled = a * 16777216.0f;  // a / 2^-24
            // round to nearest even integer count of 2^-24 units
            auto n = static_cast<std::uint32_t>(scaled);
            const float frac = scaled - static_cast<float>(n);
            if (frac > 0.5f || (frac == 0.5f && (n & 1u))) ++n;
            return static_cast<std::uint16_t>(sign | n);
        }
        std::uint32_t r = absu - 0x38000000u;  // rebias 127 -> 15 (exp field - 112)
        r += 0xfffu + ((r >> 13) & 1u);       // round to nearest even on the 13 dropped bits
        return static_cast<std::uint16_t>(sign | (r >> 13));
    }
};

template <class T>
struct is_storage_type
    : std::bool_constant<std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bfloat16> ||
                         std::is_same_v<T, half>> {};

// The type a storage type computes in.
template <class T>
using accum_t = std::conditional_t<std::is_same_v<std::remove_cv_t<T>, double>, double, float>;

namespace detail {
template <class A, class T>
inline A to_accum(T x) noexcept {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) return static_cast<A>(x);
    else return static_cast<A>(static_cast<float>(x));
}
template <class T, class A>
inline T from_accum(A x) noexcept {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) return static_cast<T>(x);
    else return T(static_cast<float>(x));
}
}  // namespace detail

}  // namespace longnet
