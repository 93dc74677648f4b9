# SPDX-License-Identifier: Apache-2.0
# Run longnet_attend on a fixture case (CASE_DIR/q.npy, k.npy, v.npy) and compare its out and lse with
# the fixture's out.npy and lse.npy (float64 references) within OUT_TOL / LSE_TOL relative to max |value|.
#
#   TRANSFORM  none     the float32 inputs as they are
#              float64  inputs converted to float64 (the double path; out must be float64)
#              float16  inputs rounded to float16 (out must be float16)
#              batch2   inputs and references stacked twice: [2, N, H, D]
#
#   cmake -DTOOL=<exe> -DTESTKIT=<exe> -DWORK=<dir> -DCASE_DIR=<dir> -DTRANSFORM=<t> -DOUT_TOL=<x>
#         -DLSE_TOL=<x> -DOUT_DTYPE=<dtype> -P attend_fixture.cmake -- <option flags...>
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
cli_require_vars(TOOL TESTKIT WORK CASE_DIR TRANSFORM OUT_TOL LSE_TOL OUT_DTYPE)
cli_tool_arguments(args)

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(want_out "${CASE_DIR}/out.npy")
set(want_lse "${CASE_DIR}/lse.npy")
foreach(t q k v)
  set(${t} "${CASE_DIR}/${t}.npy")
endforeach()
if(TRANSFORM STREQUAL "float64" OR TRANSFORM STREQUAL "float16")
  foreach(t q k v)
    cli_run_testkit(convert "${CASE_DIR}/${t}.npy" "${WORK}/${t}.npy" "${TRANSFORM}")
    set(${t} "${WORK}/${t}.npy")
  endforeach()
elseif(TRANSFORM STREQUAL "batch2")
  foreach(t q k v out lse)
    cli_run_testkit(batch2 "${CASE_DIR}/${t}.npy" "${WORK}/${t}_in.npy")
  endforeach()
  foreach(t q k v)
    set(${t} "${WORK}/${t}_in.npy")
  endforeach()
  set(want_out "${WORK}/out_in.npy")
  set(want_lse "${WORK}/lse_in.npy")
elseif(NOT TRANSFORM STREQUAL "none")
  cli_fail("unknown TRANSFORM ${TRANSFORM}")
endif()

execute_process(COMMAND "${TOOL}" --q "${q}" --k "${k}" --v "${v}" ${args} --out "${WORK}/out.npy" --lse "${WORK}/lse.npy"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
if(NOT rc EQUAL 0)
  cli_fail("longnet_attend exited with '${rc}': ${err}")
endif()
if(NOT err STREQUAL "")
  cli_fail("unexpected stderr: ${err}")
endif()
cli_run_testkit(compare "${WORK}/out.npy" "${want_out}" "${OUT_TOL}" "${OUT_DTYPE}")
cli_run_testkit(compare "${WORK}/lse.npy" "${want_lse}" "${LSE_TOL}" float32)
file(GLOB temps "${WORK}/*.tmp-*")
if(temps)
  cli_fail("temporary files left behind: ${temps}")
endif()
