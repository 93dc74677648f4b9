# SPDX-License-Identifier: Apache-2.0
# ISA warning check (label "isa"): compile tests/isa/instantiate_kernels.cpp, which instantiates every
# kernel, with -O3 -Wall -Wextra -Wpedantic -Werror -fopenmp for each -march target in
# LONGNET_ISA_CHECK_TARGETS (default x86-64 = the baseline, whose build compiles the runtime-dispatch
# regions for AVX2+FMA and AVX-512 (detail/dispatch.hpp), x86-64-v3 = AVX2+FMA, x86-64-v4 = AVX-512, cooperlake = AVX-512 with
# AVX512-BF16: the bf16 dot-product path of detail/bf16_dot.hpp, with the AMX tiles in their own target
# region; sapphirerapids = AVX512-BF16 and AMX in the target itself), with the project
# compiler and with clang++ when found (the nn part: see below). Compiling needs no such CPU, so every machine checks that a
# user's -Werror build is clean on AVX2 and AVX-512 targets alike (GCC 12 once failed on AVX-512 only).
# One CTest test per compiler and target: test_isa_<compiler>_<target>.

if(NOT CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$" OR MSVC)
  message(STATUS "longnet: not an x86-64 GCC/clang build; the ISA warning check is skipped")
  return()
endif()
set(LONGNET_ISA_CHECK_TARGETS "x86-64;x86-64-v3;x86-64-v4;cooperlake;sapphirerapids" CACHE STRING
    "-march targets the ISA warning check compiles every kernel for (tests/isa)")

set(_isa_source "${CMAKE_CURRENT_LIST_DIR}/instantiate_kernels.cpp")
set(_isa_flags -std=c++17 -O3 -Wall -Wextra -Wpedantic -Werror "-I${PROJECT_SOURCE_DIR}/include")
if(LONGNET_WITH_OPENMP)
  list(APPEND _isa_flags -fopenmp)
endif()
list(APPEND _isa_flags ${LONGNET_TEST_DEPENDENCY_ISYSTEM})  # tests/test_headers.cmake
if(LONGNET_FORCE_SCALAR)
  list(APPEND _isa_flags -DLONGNET_FORCE_SCALAR=1)
endif()

string(TOLOWER "${CMAKE_CXX_COMPILER_ID}" _isa_cxx_id)
set(_isa_compilers "${CMAKE_CXX_COMPILER}")
set(_isa_names "${_isa_cxx_id}")
if(LONGNET_CLANGXX AND NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  list(APPEND _isa_compilers "${LONGNET_CLANGXX}")
  list(APPEND _isa_names clang)
endif()

list(GET LONGNET_ISA_CHECK_TARGETS 0 _isa_first_target)
set(_isa_out "${CMAKE_CURRENT_BINARY_DIR}/isa_check")
file(MAKE_DIRECTORY "${_isa_out}")
set(_isa_count 0)
list(LENGTH _isa_compilers _isa_ncomp)
math(EXPR _isa_last "${_isa_ncomp} - 1")
foreach(ci RANGE ${_isa_last})
  list(GET _isa_compilers ${ci} compiler)
  list(GET _isa_names ${ci} cname)
  foreach(target IN LISTS LONGNET_ISA_CHECK_TARGETS)
    # A compiler too old for the target name (GCC < 11, clang < 12) says so at configure time.
    execute_process(COMMAND "${compiler}" "-march=${target}" -x c++ -fsyntax-only -
                    INPUT_FILE /dev/null RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
    if(NOT rc EQUAL 0)
      message(WARNING "longnet: ${compiler} does not accept -march=${target}; no ISA check for it")
      continue()
    endif()
    string(REGEX REPLACE "[^A-Za-z0-9]+" "-" tname "${target}")
    # The nn decoder (Eigen's GEMMs, the nn loops' dispatch regions) for every target with the project
    # compiler, and with clang++ for the first target only (the baseline, which compiles every dispatch
    # region): the nn part almost triples a compile (clang, x86-64-v4: 29 s with it, 11 s without on a
    # Zen 5 core); the attention kernels are checked for every target by both compilers
    set(nn_flag "")
    if(LONGNET_WITH_EIGEN AND (ci EQUAL 0 OR target STREQUAL _isa_first_target))
      set(nn_flag -DLONGNET_ISA_CHECK_NN=1)
    endif()
    add_test(NAME test_isa_${cname}_${tname}
             COMMAND "${compiler}" ${_isa_flags} ${nn_flag} "-march=${target}" -c "${_isa_source}"
                     -o "${_isa_out}/${cname}_${tname}.o")
    set_tests_properties(test_isa_${cname}_${tname} PROPERTIES LABELS "isa" TIMEOUT 600)
    math(EXPR _isa_count "${_isa_count} + 1")
  endforeach()
endforeach()
# The kernels once more with <immintrin.h> included before longnet (what python/'s torch headers do), for
# an AVX-512 target with AVX512-BF16 and AMX, with the project compiler (GCC 12's warnings are the point).
if("sapphirerapids" IN_LIST LONGNET_ISA_CHECK_TARGETS AND TEST test_isa_${_isa_cxx_id}_sapphirerapids)
  set(_isa_first_flags ${_isa_flags})
  add_test(NAME test_isa_${_isa_cxx_id}_sapphirerapids_immintrin_first
           COMMAND "${CMAKE_CXX_COMPILER}" ${_isa_first_flags} -DLONGNET_ISA_CHECK_IMMINTRIN_FIRST=1
                   -march=sapphirerapids -c "${_isa_source}" -o "${_isa_out}/immintrin_first.o")
  set_tests_properties(test_isa_${_isa_cxx_id}_sapphirerapids_immintrin_first PROPERTIES LABELS "isa" TIMEOUT 600)
  math(EXPR _isa_count "${_isa_count} + 1")
endif()
message(STATUS "longnet: ISA warning check: ${_isa_count} compiles (${LONGNET_ISA_CHECK_TARGETS})")
