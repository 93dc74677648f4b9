# SPDX-License-Identifier: Apache-2.0
# examples/longnet_encode on a torchscale encoder fixture (tests/data/encoder_*: a batch of 2 x 40 tokens,
# row 1 right-padded to 27; the reference's real rows are each row encoded alone, its pads 0).
#
#   MODE fixture  the fixture's batch: --mask as bool in double (vs encoder_out_pure64.npy, 1e-9) with
#                 --cls-out (= token 0 of each row); --mask as uint8 in float (1e-5); --lengths (int32)
#                 equal to that --mask output exactly; the batch moved to left padding (double, 1e-9);
#                 row 0 alone as an [N, D] array and row 1 as [N, D] with an [N] mask (double, 1e-9). No
#                 temporary file is left.
#   MODE random   --random-config gigapath and --config examples/configs/gigapath_slide_encoder.json on the
#                 same seed and a cut-down layer count give the same output (the JSON file is the built-in
#                 config), and the timing line reports peak RSS.
#   MODE error    one bad command line or bad input (arguments after --, @IN@ = the prepared inputs, @OUT@
#                 an empty folder that must stay empty): exit code CODE, one stderr line with EXPECT.
#
# WORK/in holds: config.json (the fixture's config), mask_{bool,uint8,int64,float32}.npy, lengths.npy
# (int32 [2]), lengths_long.npy (40, 41), lengths_three.npy ([3]), mask_short.npy ([3]), x0.npy (row 0 of
# the embeddings, [40, D]), mask_two.npy (int64 [40], the last entry 2) and the inputs
# of `longnet_cli_testkit make-bad` (other.npy float32 [8, 2, 8], int64.npy, text.npy, ...).
#
#   cmake -DTOOL=<exe> -DTESTKIT=<exe> -DWORK=<dir> -DCASE_DIR=<dir> -DMODE=<mode> [-DCODE= -DEXPECT=]
#         [-DCONFIG=<gigapath json>] -P encode.cmake [-- <tool arguments...>]
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
cli_require_vars(TOOL TESTKIT WORK CASE_DIR MODE)
cli_tool_arguments(args)

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/in" "${WORK}/out")
set(in "${WORK}/in")
file(READ "${CASE_DIR}/params.json" json)
string(JSON config GET "${json}" config)
file(WRITE "${in}/config.json" "${config}")
foreach(t bool uint8 int64 float32)
  cli_run_testkit(mask "${CASE_DIR}/padding_mask.npy" "${in}/mask_${t}.npy" ${t})
endforeach()
cli_run_testkit(lengths "${CASE_DIR}/padding_mask.npy" "${in}/lengths.npy")
cli_run_testkit(tokens "${in}/lengths_long.npy" 40 41)
cli_run_testkit(tokens "${in}/lengths_three.npy" 40 27 1)
cli_run_testkit(tokens "${in}/mask_short.npy" 0 0 1)
cli_run_testkit(row "${CASE_DIR}/embeddings.npy" "${in}/x0.npy" 0)
set(ids "")
foreach(i RANGE 38)
  list(APPEND ids 0)
endforeach()
cli_run_testkit(tokens "${in}/mask_two.npy" ${ids} 2)
cli_run_testkit(make-bad "${in}")
set(model --weights "${CASE_DIR}/model.safetensors" --config "${in}/config.json")

if(MODE STREQUAL "error")
  cli_require_vars(CODE EXPECT)
  string(REPLACE "@IN@" "${in}" args "${args}")
  string(REPLACE "@OUT@" "${WORK}/out" args "${args}")
  string(REPLACE "@CASE@" "${CASE_DIR}" args "${args}")
  cli_expect_failure(longnet_encode "${CODE}" "${EXPECT}" "${in}" "${WORK}/out" "${args}")
  return()
endif()

# encode(<output> <arguments...>): runs the tool, which must succeed with one report line on stderr.
function(encode output)
  execute_process(COMMAND "${TOOL}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  message(STATUS "longnet_encode ${ARGN}: ${out}${err}")
  if(NOT rc EQUAL 0)
    cli_fail("longnet_encode ${ARGN}: exit '${rc}': ${err}")
  endif()
  if(NOT output STREQUAL "" AND NOT EXISTS "${output}")
    cli_fail("longnet_encode did not write ${output}")
  endif()
  set(encode_stdout "${out}" PARENT_SCOPE)
endfunction()

set(out "${WORK}/out")
if(MODE STREQUAL "random")
  cli_require_vars(CONFIG)
  set(small --random-tokens 300 --layers 1 --seed 5)
  encode("${out}/builtin.npy" --random-config gigapath ${small} --out "${out}/builtin.npy")
  if(NOT encode_stdout MATCHES "300 tokens x 1 layers in .* tokens/s .*peak RSS [0-9.]+ [KMG]iB")
    cli_fail("the timing line lacks tokens/s or peak RSS: ${encode_stdout}")
  endif()
  encode("${out}/file.npy" --config "${CONFIG}" ${small} --out "${out}/file.npy")
  cli_run_testkit(compare "${out}/file.npy" "${out}/builtin.npy" 0 float32)
  cli_run_testkit(info "${out}/builtin.npy")
  return()
endif()
if(NOT MODE STREQUAL "fixture")
  cli_fail("unknown MODE ${MODE}")
endif()

set(want "${CASE_DIR}/encoder_out_pure64.npy")
set(x "${CASE_DIR}/embeddings.npy")
# --mask bool, double, --cls-out
encode("${out}/double.npy" ${model} --embeddings "${x}" --mask "${in}/mask_bool.npy" --dtype double
       --out "${out}/double.npy" --cls-out "${out}/cls.npy")
cli_run_testkit(compare "${out}/double.npy" "${want}" 1e-9 float64)
cli_run_testkit(first-token "${want}" "${WORK}/cls_want.npy")
cli_run_testkit(compare "${out}/cls.npy" "${WORK}/cls_want.npy" 1e-9 float64)
# --mask uint8 and --lengths in float: the same result
encode("${out}/mask.npy" ${model} --embeddings "${x}" --mask "${in}/mask_uint8.npy" --out "${out}/mask.npy")
cli_run_testkit(compare "${out}/mask.npy" "${want}" 1e-5 float32)
encode("${out}/lengths.npy" ${model} --embeddings "${x}" --lengths "${in}/lengths.npy" --out "${out}/lengths.npy")
cli_run_testkit(compare "${out}/lengths.npy" "${out}/mask.npy" 0 float32)
# left padding (row 1's 27 tokens at positions 13..39)
file(MAKE_DIRECTORY "${WORK}/left")
cli_run_testkit(left-pad "${x}" "${CASE_DIR}/padding_mask.npy" "${want}" "${WORK}/left")
encode("${out}/left.npy" ${model} --embeddings "${WORK}/left/x.npy" --mask "${WORK}/left/mask.npy" --dtype double
       --out "${out}/left.npy")
cli_run_testkit(compare "${out}/left.npy" "${WORK}/left/want.npy" 1e-9 float64)
# row 0 (unpadded) alone as [N, D]
cli_run_testkit(row "${x}" "${WORK}/x0.npy" 0)
cli_run_testkit(row "${want}" "${WORK}/want0.npy" 0)
encode("${out}/row0.npy" ${model} --embeddings "${WORK}/x0.npy" --dtype double --out "${out}/row0.npy")
cli_run_testkit(compare "${out}/row0.npy" "${WORK}/want0.npy" 1e-9 float64)
# row 1 (27 tokens, 13 pads) alone as [N, D] with its [N] mask
foreach(f embeddings padding_mask encoder_out_pure64)
  cli_run_testkit(row "${CASE_DIR}/${f}.npy" "${WORK}/${f}1.npy" 1)
endforeach()
encode("${out}/row1.npy" ${model} --embeddings "${WORK}/embeddings1.npy" --mask "${WORK}/padding_mask1.npy" --dtype double
       --out "${out}/row1.npy")
cli_run_testkit(compare "${out}/row1.npy" "${WORK}/encoder_out_pure641.npy" 1e-9 float64)
file(GLOB temps "${out}/*.tmp-*")
if(temps)
  cli_fail("temporary files left behind: ${temps}")
endif()
