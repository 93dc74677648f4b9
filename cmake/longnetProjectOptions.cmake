# SPDX-License-Identifier: Apache-2.0
# Flags for longnet's own targets (tests, examples, benchmarks), never for the library INTERFACE:
#
#   longnet_apply_project_options(<target> [NO_NATIVE] [NO_WARNINGS])
#
# links longnet::onednn where it exists (the nn GEMMs on oneDNN: cmake/longnet_onednn.cmake), and
# adds -Wall -Wextra -Wpedantic, -Werror when LONGNET_WERROR, the sanitizers of LONGNET_SANITIZE
# (e.g. "address,undefined") to compile and link, and -march=native when LONGNET_NATIVE
# (unless NO_NATIVE); LONGNET_MARCH=<isa> (e.g. x86-64-v3, x86-64-v4) replaces native by -march=<isa>,
# so one machine can compile (and, where the CPU has it, test) another ISA. All PRIVATE. NO_WARNINGS is for code that is not ours (the Catch2 v2 main:
# GCC 12 reports false -Wmaybe-uninitialized in <regex> there at -O2).

include_guard(GLOBAL)
include(CheckCXXCompilerFlag)

if(LONGNET_MARCH)
  check_cxx_compiler_flag("-march=${LONGNET_MARCH}" LONGNET_HAVE_MARCH_${LONGNET_MARCH})
  if(NOT LONGNET_HAVE_MARCH_${LONGNET_MARCH})
    message(FATAL_ERROR "longnet: LONGNET_MARCH=${LONGNET_MARCH}: the compiler does not accept -march=${LONGNET_MARCH}")
  endif()
  message(STATUS "longnet: tests, examples and benchmarks are compiled with -march=${LONGNET_MARCH}")
elseif(LONGNET_NATIVE AND NOT DEFINED LONGNET_HAVE_MARCH_NATIVE)
  check_cxx_compiler_flag(-march=native LONGNET_HAVE_MARCH_NATIVE)
endif()

function(longnet_apply_project_options target)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "NO_NATIVE;NO_WARNINGS" "" "")
  if(COMMAND longnet_link_onednn)
    longnet_link_onednn(${target})
  endif()
  if(MSVC)
    if(NOT ARG_NO_WARNINGS)
      target_compile_options(${target} PRIVATE /W4 $<$<BOOL:${LONGNET_WERROR}>:/WX>)
    endif()
  else()
    if(NOT ARG_NO_WARNINGS)
      target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
      if(LONGNET_WERROR)
        target_compile_options(${target} PRIVATE -Werror)
      endif()
    endif()
    if(LONGNET_SANITIZE)
      # -fno-sanitize-recover: a UBSan finding fails the test instead of printing and going on
      target_compile_options(${target} PRIVATE -fsanitize=${LONGNET_SANITIZE} -fno-omit-frame-pointer
                                               -fno-sanitize-recover=all)
      target_link_options(${target} PRIVATE -fsanitize=${LONGNET_SANITIZE})
    endif()
    if(ARG_NO_NATIVE)
    elseif(LONGNET_MARCH)
      target_compile_options(${target} PRIVATE "-march=${LONGNET_MARCH}")
    elseif(LONGNET_NATIVE AND LONGNET_HAVE_MARCH_NATIVE)
      target_compile_options(${target} PRIVATE -march=native)
    endif()
  endif()
endfunction()
