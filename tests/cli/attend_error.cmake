# SPDX-License-Identifier: Apache-2.0
# A bad command line or bad input must give: exit code CODE, one line on stderr starting with
# "<PROGRAM>: error: " and containing EXPECT, nothing on stdout, and no file in WORK/out (no partial
# output, no temporary file). WORK/in holds the inputs made by `longnet_cli_testkit make-bad`.
#
#   cmake -DTOOL=<exe> -DTESTKIT=<exe> -DWORK=<dir> -DCODE=<1|2> -DEXPECT=<text> [-DPROGRAM=<name>]
#         -P attend_error.cmake -- <tool arguments...>
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
cli_require_vars(TOOL TESTKIT WORK CODE EXPECT)
if(NOT DEFINED PROGRAM)
  set(PROGRAM longnet_attend)
endif()
cli_tool_arguments(args)

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/in" "${WORK}/out")
cli_run_testkit(make-bad "${WORK}/in")
file(GLOB inputs_before LIST_DIRECTORIES true "${WORK}/in/*")

execute_process(COMMAND "${TOOL}" ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
message(STATUS "exit ${rc}, stderr: ${err}")
if(NOT rc STREQUAL "${CODE}")
  cli_fail("expected exit code ${CODE}, got '${rc}'; stderr: ${err}")
endif()
if(NOT err MATCHES "^${PROGRAM}: error: [^\n]+\n$")
  cli_fail("stderr must be exactly one line starting with '${PROGRAM}: error: ', got: '${err}'")
endif()
string(FIND "${err}" "${EXPECT}" at)
if(at EQUAL -1)
  cli_fail("stderr does not mention '${EXPECT}': ${err}")
endif()
if(NOT out STREQUAL "")
  cli_fail("stdout should be empty, got: ${out}")
endif()
cli_require_empty("${WORK}/out" "output folder")
file(GLOB inputs_after LIST_DIRECTORIES true "${WORK}/in/*")
if(NOT inputs_before STREQUAL inputs_after)
  cli_fail("the input folder changed: ${inputs_after}")
endif()
