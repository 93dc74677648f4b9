// longnet: LongNet dilated attention, header-only C++17.
// SPDX-License-Identifier: Apache-2.0
#pragma once

// The single source of truth for the version; CMake parses these three lines.
#define LONGNET_VERSION_MAJOR 0
#define LONGNET_VERSION_MINOR 1
#define LONGNET_VERSION_PATCH 0

#define LONGNET_VERSION_STRING "0.1.0"

namespace longnet {
inline constexpr int version_major = LONGNET_VERSION_MAJOR;
inline constexpr int version_minor = LONGNET_VERSION_MINOR;
inline constexpr int version_patch = LONGNET_VERSION_PATCH;
}  // namespace longnet
