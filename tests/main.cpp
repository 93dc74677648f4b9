// SPDX-License-Identifier: Apache-2.0
// Catch2 v2 test runner main (with Catch2 v3, tests link Catch2::Catch2WithMain instead).
#define CATCH_CONFIG_MAIN
#include "catch.hpp"
