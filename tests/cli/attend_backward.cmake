# SPDX-License-Identifier: Apache-2.0
# Backward through longnet_attend.
#
#   MODE=fixture  run on a backward fixture (CASE_DIR/q, k, v, dout .npy) with --dout/--dq/--dk/--dv and
#                 compare out, dq, dk, dv with the fixture's float64 references within TOL (relative to
#                 max |value|); no temporary file may be left.
#   MODE=random   --random ... --backward: exit 0, one JSON line with forward_seconds, backward_seconds
#                 (positive) besides the forward's keys, nothing on stderr.
#
#   cmake -DTOOL=<exe> -DTESTKIT=<exe> -DWORK=<dir> -DMODE=fixture|random [-DCASE_DIR=<dir> -DTOL=<x>]
#         -P attend_backward.cmake -- <tool arguments...>
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
cli_require_vars(TOOL TESTKIT WORK MODE)
cli_tool_arguments(args)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

if(MODE STREQUAL "fixture")
  cli_require_vars(CASE_DIR TOL)
  execute_process(COMMAND "${TOOL}" --q "${CASE_DIR}/q.npy" --k "${CASE_DIR}/k.npy" --v "${CASE_DIR}/v.npy"
                          --dout "${CASE_DIR}/dout.npy" ${args} --out "${WORK}/out.npy" --dq "${WORK}/dq.npy"
                          --dk "${WORK}/dk.npy" --dv "${WORK}/dv.npy"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  if(NOT rc EQUAL 0)
    cli_fail("longnet_attend exited with '${rc}': ${err}")
  endif()
  if(NOT err STREQUAL "")
    cli_fail("unexpected stderr: ${err}")
  endif()
  foreach(t out dq dk dv)
    cli_run_testkit(compare "${WORK}/${t}.npy" "${CASE_DIR}/${t}.npy" "${TOL}" float32)
  endforeach()
  file(GLOB temps "${WORK}/*.tmp-*")
  if(temps)
    cli_fail("temporary files left behind: ${temps}")
  endif()
elseif(MODE STREQUAL "random")
  execute_process(COMMAND "${TOOL}" ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  message(STATUS "stdout: ${out}")
  if(NOT rc EQUAL 0)
    cli_fail("exit '${rc}': ${err}")
  endif()
  if(NOT err STREQUAL "")
    cli_fail("unexpected stderr: ${err}")
  endif()
  if(NOT out MATCHES "^{[^\n]*}\n$")
    cli_fail("stdout must be one JSON object on one line: ${out}")
  endif()
  foreach(key seconds gflops forward_seconds backward_seconds backward_gflops grad_mode N)
    if(NOT out MATCHES "\"${key}\":")
      cli_fail("JSON line lacks \"${key}\": ${out}")
    endif()
  endforeach()
  if(NOT CMAKE_VERSION VERSION_LESS 3.19)
    foreach(key forward_seconds backward_seconds)
      string(JSON value ERROR_VARIABLE json_error GET "${out}" ${key})
      if(json_error OR NOT value GREATER 0)
        cli_fail("'${key}' is not a positive number (${json_error}): ${out}")
      endif()
    endforeach()
  endif()
else()
  cli_fail("unknown MODE ${MODE}")
endif()
