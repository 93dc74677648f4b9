# SPDX-License-Identifier: Apache-2.0
# Fuzz targets of the file and command-line readers (tests/fuzz/, see docs/reliability.md), included
# from tests/CMakeLists.txt.
#
# Every build (g++ or clang, any preset): fuzz_<name>_replay, the target's entry function behind a plain
# main (replay_main.cpp), and the CTest test fuzz_replay_<name> (label "fuzz") that feeds it the seed
# corpus tests/fuzz/corpus/<name>/ and the crash inputs tests/fuzz/regressions/<name>/.
# With -DLONGNET_FUZZ=ON (clang only; the `fuzz` preset): the libFuzzer executables fuzz_<name>, built
# with -fsanitize=fuzzer,address,undefined, all behind the target longnet_fuzz; run them with
# scripts/fuzz.sh <name> <seconds>.

option(LONGNET_FUZZ "Build the libFuzzer targets tests/fuzz/fuzz_* (needs clang and its compiler-rt)" OFF)

set(_fuzz_dir "${CMAKE_CURRENT_LIST_DIR}")
if(LONGNET_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "longnet: LONGNET_FUZZ needs clang (libFuzzer); the compiler is ${CMAKE_CXX_COMPILER_ID}. "
                        "Use the fuzz preset or -DCMAKE_CXX_COMPILER=clang++")
  endif()
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer,address,undefined")
  check_cxx_source_compiles(
    "#include <cstddef>\n#include <cstdint>\nextern \"C\" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }"
    LONGNET_HAVE_LIBFUZZER)
  unset(CMAKE_REQUIRED_FLAGS)
  if(NOT LONGNET_HAVE_LIBFUZZER)
    message(FATAL_ERROR "longnet: clang cannot link -fsanitize=fuzzer,address,undefined; install its compiler-rt "
                        "(Debian 12: libclang-rt-14-dev, or scripts/install-deps.sh)")
  endif()
  add_custom_target(longnet_fuzz)
endif()

# _longnet_fuzz_target(<name> <sources...>): fuzz_<name>_replay + test, and fuzz_<name> when LONGNET_FUZZ.
function(_longnet_fuzz_target name)
  set(sources ${ARGN})
  set(all_targets fuzz_${name}_replay)
  add_executable(fuzz_${name}_replay ${sources} "${_fuzz_dir}/replay_main.cpp")
  if(LONGNET_FUZZ)
    add_executable(fuzz_${name} ${sources})
    target_compile_options(fuzz_${name} PRIVATE -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
                                                -fno-omit-frame-pointer)
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    add_dependencies(longnet_fuzz fuzz_${name})
    list(APPEND all_targets fuzz_${name})
  endif()
  foreach(t IN LISTS all_targets)
    target_link_libraries(${t} PRIVATE longnet::longnet)
    if(TARGET nlohmann_json::nlohmann_json)
      target_link_libraries(${t} PRIVATE nlohmann_json::nlohmann_json)
    endif()
    target_include_directories(${t} PRIVATE "${_fuzz_dir}" "${PROJECT_SOURCE_DIR}/examples")
    longnet_apply_project_options(${t} NO_NATIVE)
  endforeach()

  set(inputs "${_fuzz_dir}/corpus/${name}")
  file(GLOB regressions CONFIGURE_DEPENDS "${_fuzz_dir}/regressions/${name}/*")
  if(regressions)
    list(APPEND inputs "${_fuzz_dir}/regressions/${name}")
  endif()
  add_test(NAME fuzz_replay_${name} COMMAND fuzz_${name}_replay ${inputs})
  set_tests_properties(fuzz_replay_${name} PROPERTIES LABELS "fuzz;io" TIMEOUT 300)
endfunction()

_longnet_fuzz_target(npy "${_fuzz_dir}/fuzz_npy.cpp")
_longnet_fuzz_target(token_shard "${_fuzz_dir}/fuzz_token_shard.cpp")
_longnet_fuzz_target(varlen "${_fuzz_dir}/fuzz_varlen.cpp")
if(TARGET nlohmann_json::nlohmann_json)
  _longnet_fuzz_target(safetensors "${_fuzz_dir}/fuzz_safetensors.cpp")
  _longnet_fuzz_target(decoder_config "${_fuzz_dir}/fuzz_decoder_config.cpp")
  if(LONGNET_WITH_EIGEN)
    _longnet_fuzz_target(checkpoint "${_fuzz_dir}/fuzz_checkpoint.cpp")
    _longnet_fuzz_target(train_state "${_fuzz_dir}/fuzz_train_state.cpp")
  endif()
  if(LONGNET_WITH_EIGEN AND EXISTS "${PROJECT_SOURCE_DIR}/examples/longnet_lm.cpp")
    _longnet_fuzz_target(cli "${_fuzz_dir}/fuzz_cli.cpp" "${_fuzz_dir}/cli_attend.cpp" "${_fuzz_dir}/cli_demo.cpp"
                         "${_fuzz_dir}/cli_lm.cpp" "${_fuzz_dir}/cli_train.cpp" "${_fuzz_dir}/cli_distributed.cpp"
                         "${_fuzz_dir}/cli_encode.cpp")
  endif()
else()
  message(STATUS "longnet: nlohmann_json not found; only the .npy fuzz target is built")
endif()

# The hardening tests (Catch2): each defect found, the limits, the in-memory readers, valid seeds.
if(TARGET nlohmann_json::nlohmann_json AND LONGNET_WITH_EIGEN)
  longnet_add_test(NAME test_reader_limits SOURCES "${_fuzz_dir}/test_reader_limits.cpp" LABELS "io;fuzz"
                   LIBRARIES nlohmann_json::nlohmann_json)
  target_compile_definitions(test_reader_limits PRIVATE LONGNET_FUZZ_DIR="${_fuzz_dir}")
endif()
