// SPDX-License-Identifier: Apache-2.0
#pragma once
// Catch2 v2 / v3 shim: tests include "catch.hpp" and use only what both versions have
// (TEST_CASE, SECTION, REQUIRE, CHECK, REQUIRE_THROWS_AS, Approx, GENERATE, INFO, CAPTURE).

#if defined(__has_include)
#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#define LONGNET_CATCH2_VERSION 3
// v2 declares Approx at global scope, v3 only as Catch::Approx: bring it out so plain `Approx`
// works with both.
using Catch::Approx;
#elif __has_include(<catch2/catch.hpp>)
#include <catch2/catch.hpp>
#define LONGNET_CATCH2_VERSION 2
#else
#error "Catch2 not found: install catch2 (Debian: apt-get install catch2)"
#endif
#else
#include <catch2/catch.hpp>
#define LONGNET_CATCH2_VERSION 2
#endif
