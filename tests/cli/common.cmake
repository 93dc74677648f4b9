# SPDX-License-Identifier: Apache-2.0
# Shared by the CLI test scripts (cmake -P): argument collection and failure reporting.

# The arguments after "--" on the cmake -P command line, one list element each.
function(cli_tool_arguments out_var)
  set(args "")
  set(after OFF)
  math(EXPR last "${CMAKE_ARGC} - 1")
  foreach(i RANGE ${last})
    if(after)
      list(APPEND args "${CMAKE_ARGV${i}}")
    elseif("${CMAKE_ARGV${i}}" STREQUAL "--")
      set(after ON)
    endif()
  endforeach()
  set(${out_var} "${args}" PARENT_SCOPE)
endfunction()

function(cli_require_vars)
  foreach(v IN LISTS ARGN)
    if(NOT DEFINED ${v})
      message(FATAL_ERROR "missing -D${v}=...")
    endif()
  endforeach()
endfunction()

function(cli_fail)
  string(JOIN "" text ${ARGN})
  message(FATAL_ERROR "FAILED: ${text}")
endfunction()

# No stray files (partial outputs, temporary files) under `dir`.
function(cli_require_empty dir what)
  file(GLOB_RECURSE left LIST_DIRECTORIES false "${dir}/*")
  if(left)
    cli_fail("${what}: files were left behind: ${left}")
  endif()
endfunction()

function(cli_run_testkit)
  execute_process(COMMAND "${TESTKIT}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
  message(STATUS "testkit ${ARGV0}: ${out}${err}")
  if(NOT rc EQUAL 0)
    cli_fail("testkit ${ARGN}: exit ${rc}: ${out}${err}")
  endif()
endfunction()
