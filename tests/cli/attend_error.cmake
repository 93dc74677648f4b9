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
cli_expect_failure(${PROGRAM} "${CODE}" "${EXPECT}" "${WORK}/in" "${WORK}/out" "${args}")
