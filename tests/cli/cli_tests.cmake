# SPDX-License-Identifier: Apache-2.0
# Command-line tests of examples/longnet_attend and examples/longnet_demo (label "cli"), included from
# tests/CMakeLists.txt. The examples folder is added after tests/ by the top-level CMakeLists.txt, so the
# targets may not exist yet here: register when they exist or will (generator expressions resolve
# them at generate time).
#
#   cli_attend_fixture_<case>[_<variant>]  run on tests/data/attn_fwd_*, compare out/lse with the fixture
#   cli_attend_error_<class>               one bad command line or bad input per error class: exit code,
#                                          one-line stderr message, no output or temporary file left
#   cli_attend_random*, cli_attend_help, cli_demo_*

if(NOT (TARGET longnet_attend OR (LONGNET_BUILD_EXAMPLES AND EXISTS "${PROJECT_SOURCE_DIR}/examples/CMakeLists.txt")))
  message(STATUS "longnet: examples are not built; the command-line tests are off")
  return()
endif()

# .npy chores of the tests in C++ (compare, convert, make bad inputs): numpy may be absent.
add_executable(longnet_cli_testkit "${CMAKE_CURRENT_LIST_DIR}/testkit.cpp")
target_link_libraries(longnet_cli_testkit PRIVATE longnet::longnet)
longnet_apply_project_options(longnet_cli_testkit)

set(_cli_scripts "${CMAKE_CURRENT_LIST_DIR}")
set(_cli_work "${CMAKE_CURRENT_BINARY_DIR}/cli_work")
set(_cli_data "${CMAKE_CURRENT_SOURCE_DIR}/data")
set(_cli_tools -DTOOL=$<TARGET_FILE:longnet_attend> -DTESTKIT=$<TARGET_FILE:longnet_cli_testkit>)

function(_longnet_cli_label name)
  set_tests_properties(${name} PROPERTIES LABELS cli TIMEOUT 120)
endfunction()

# --- fixtures: every attn_fwd_* case, float32; plus float64, float16 and batched variants -------------
function(_longnet_cli_fixture case transform out_tol lse_tol out_dtype)
  set(dir "${_cli_data}/${case}")
  file(READ "${dir}/params.json" json)
  set(flags "")
  foreach(key segments dilations)
    string(JSON count LENGTH "${json}" ${key})
    set(values "")
    math(EXPR last "${count} - 1")
    foreach(i RANGE ${last})
      string(JSON x GET "${json}" ${key} ${i})
      list(APPEND values ${x})
    endforeach()
    list(JOIN values "," values)
    list(APPEND flags --${key} ${values})
  endforeach()
  string(JSON causal GET "${json}" causal)
  if(causal)
    list(APPEND flags --causal)
  endif()
  string(JSON offsets GET "${json}" offsets)
  string(JSON tail GET "${json}" tail_mode)
  string(JSON scale GET "${json}" scale)
  list(APPEND flags --offsets ${offsets} --tail ${tail} --scale ${scale})
  set(name cli_attend_fixture_${case})
  if(NOT transform STREQUAL "none")
    string(APPEND name _${transform})
  endif()
  add_test(NAME ${name}
           COMMAND ${CMAKE_COMMAND} ${_cli_tools} -DWORK=${_cli_work}/${name} -DCASE_DIR=${dir}
                   -DTRANSFORM=${transform} -DOUT_TOL=${out_tol} -DLSE_TOL=${lse_tol} -DOUT_DTYPE=${out_dtype}
                   -P ${_cli_scripts}/attend_fixture.cmake -- ${flags})
  _longnet_cli_label(${name})
endfunction()

if(CMAKE_VERSION VERSION_LESS 3.19)
  message(STATUS "longnet: CMake < 3.19 cannot read params.json; the CLI fixture tests are off")
else()
  file(GLOB _cli_cases RELATIVE "${_cli_data}" "${_cli_data}/attn_fwd_*")
  list(SORT _cli_cases)
  foreach(case IN LISTS _cli_cases)
    _longnet_cli_fixture(${case} none 2e-5 2e-5 float32)
  endforeach()
  # The lse file is float32 whatever the input dtype: 1e-6 relative for the float64 run.
  _longnet_cli_fixture(attn_fwd_01 float64 1e-10 1e-6 float64)
  _longnet_cli_fixture(attn_fwd_03 float16 2e-2 2e-2 float16)
  _longnet_cli_fixture(attn_fwd_05 batch2 2e-5 2e-5 float32)
endif()

# --- bad command lines and bad inputs --------------------------------------------------------------------
# _longnet_cli_error(<class> <exit code> <expected stderr text> <arguments...>): @IN@ is the folder of
# inputs made by `longnet_cli_testkit make-bad` (good.npy [8, 2, 4] float32, empty.npy, text.npy, ...),
# @OUT@ an empty folder that must stay empty.
function(_longnet_cli_error class code expect)
  set(name cli_attend_error_${class})
  set(work "${_cli_work}/${name}")
  set(args "${ARGN}")
  string(REPLACE "@IN@" "${work}/in" args "${args}")
  string(REPLACE "@OUT@" "${work}/out" args "${args}")
  add_test(NAME ${name}
           COMMAND ${CMAKE_COMMAND} ${_cli_tools} -DWORK=${work} -DCODE=${code} "-DEXPECT=${expect}"
                   -P ${_cli_scripts}/attend_error.cmake -- ${args})
  _longnet_cli_label(${name})
endfunction()

set(_in --q @IN@/good.npy --k @IN@/good.npy --v @IN@/good.npy)
set(_br --segments 4,8 --dilations 1,2)
set(_out --out @OUT@/out.npy --lse @OUT@/lse.npy)

# usage errors: exit code 2
_longnet_cli_error(unknown_flag 2 "unknown flag --bogus" ${_in} ${_br} ${_out} --bogus)
_longnet_cli_error(positional 2 "unexpected argument 'stray.npy'" ${_in} ${_br} ${_out} stray.npy)
_longnet_cli_error(missing_out 2 "missing --out" ${_in} ${_br})
_longnet_cli_error(missing_segments 2 "missing --segments" ${_in} --dilations 1,2 ${_out})
_longnet_cli_error(missing_value 2 "--lse needs a value" ${_in} ${_br} --out @OUT@/out.npy --lse)
_longnet_cli_error(repeated_flag 2 "--causal given more than once" ${_in} ${_br} ${_out} --causal --causal)
_longnet_cli_error(not_a_number 2 "--segments: 'x' is not a whole number" ${_in} --segments 4,x --dilations 1,2 ${_out})
_longnet_cli_error(zero 2 "--dilations: 0 is out of range" ${_in} --segments 4,8 --dilations 0,2 ${_out})
_longnet_cli_error(negative 2 "--segments: -4 is out of range" ${_in} --segments -4,8 --dilations 1,2 ${_out})
_longnet_cli_error(too_large 2 "out of range" ${_in} --segments 99999999999999999999999,8 --dilations 1,2 ${_out})
_longnet_cli_error(empty_list 2 "--segments needs a non-empty value" ${_in} --segments= --dilations 1,2 ${_out})
_longnet_cli_error(empty_item 2 "empty item" ${_in} --segments 4,,8 --dilations 1,2 ${_out})
_longnet_cli_error(count_mismatch 2 "the counts must be equal" ${_in} --segments 4,8 --dilations 1,2,4 ${_out})
_longnet_cli_error(unknown_offsets 2 "unknown policy 'diagonal'" ${_in} ${_br} ${_out} --offsets diagonal)
_longnet_cli_error(unknown_tail 2 "unknown mode 'wrap'" ${_in} ${_br} ${_out} --tail wrap)
_longnet_cli_error(bad_scale 2 "--scale: 'abc' is not a number" ${_in} ${_br} ${_out} --scale abc)
_longnet_cli_error(nan_scale 2 "not a finite number" ${_in} ${_br} ${_out} --scale nan)
_longnet_cli_error(seed_without_random 2 "--seed is only for --random" ${_in} ${_br} ${_out} --seed 3)
_longnet_cli_error(random_with_files 2 "do not combine" --random 1,8,2,4 ${_in} ${_br} ${_out})
_longnet_cli_error(random_count 2 "expected 4 numbers" --random 1,8,2 ${_br} ${_out})
_longnet_cli_error(random_zero 2 "--random: 0 is out of range" --random 0,8,2,4 ${_br} ${_out})
_longnet_cli_error(random_scientific 2 "'1e12' is not a whole number" --random 1,1e12,4,64 ${_br} ${_out})
_longnet_cli_error(random_memory 2 "of memory" --random 1,1000000000000,16,64 ${_br} ${_out})
_longnet_cli_error(random_dtype 2 "unknown type 'int8'" --random 1,8,2,4 --dtype int8 ${_br} ${_out})
# data errors: exit code 1
_longnet_cli_error(missing_file 1 "no such file" --q @IN@/nope.npy --k @IN@/good.npy --v @IN@/good.npy ${_br} ${_out})
_longnet_cli_error(input_folder 1 "is a directory" --q @IN@ --k @IN@/good.npy --v @IN@/good.npy ${_br} ${_out})
_longnet_cli_error(empty_file 1 "empty file" --q @IN@/good.npy --k @IN@/empty.npy --v @IN@/good.npy ${_br} ${_out})
_longnet_cli_error(not_npy 1 "bad magic" --q @IN@/good.npy --k @IN@/good.npy --v @IN@/text.npy ${_br} ${_out})
_longnet_cli_error(truncated 1 "truncated data" --q @IN@/truncated.npy --k @IN@/good.npy --v @IN@/good.npy ${_br} ${_out})
_longnet_cli_error(bad_header 1 "malformed header dict" --q @IN@/badheader.npy --k @IN@/good.npy --v @IN@/good.npy ${_br} ${_out})
_longnet_cli_error(bad_version 1 "unsupported .npy format version 9.0" --q @IN@/version9.npy --k @IN@/good.npy --v @IN@/good.npy ${_br} ${_out})
_longnet_cli_error(shape_mismatch 1 "v (${_cli_work}/cli_attend_error_shape_mismatch/in/other.npy) has shape (8, 2, 8) float32 but q"
                   --q @IN@/good.npy --k @IN@/good.npy --v @IN@/other.npy ${_br} ${_out})
_longnet_cli_error(dtype_mismatch 1 "has shape (8, 2, 4) float64 but q" --q @IN@/good.npy --k @IN@/float64.npy --v @IN@/good.npy ${_br} ${_out})
_longnet_cli_error(unsupported_dtype 1 "unsupported dtype int64" --q @IN@/int64.npy --k @IN@/int64.npy --v @IN@/int64.npy ${_br} ${_out})
_longnet_cli_error(bad_rank 1 "expected [N, H, D] or [B, N, H, D]" --q @IN@/rank2.npy --k @IN@/rank2.npy --v @IN@/rank2.npy ${_br} ${_out})
_longnet_cli_error(missing_out_folder 1 "does not exist" ${_in} ${_br} --out @OUT@/missing/out.npy)
_longnet_cli_error(missing_lse_folder 1 "does not exist" ${_in} ${_br} --out @OUT@/out.npy --lse @OUT@/missing/lse.npy)
_longnet_cli_error(out_is_folder 1 "is a directory" ${_in} ${_br} --out @OUT@)

# --- random mode, dense mode, help --------------------------------------------------------------------------
function(_longnet_cli_random name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "DENSE_EQUIV" "EXPECT_INFO" "ARGS")
  set(work "${_cli_work}/${name}")
  string(REPLACE "@WORK@" "${work}" args "${ARG_ARGS}")
  set(extra "")
  if(ARG_EXPECT_INFO)
    list(APPEND extra "-DEXPECT_INFO=${ARG_EXPECT_INFO}")
  endif()
  if(ARG_DENSE_EQUIV)
    list(APPEND extra -DDENSE_EQUIV=ON)
  endif()
  add_test(NAME ${name} COMMAND ${CMAKE_COMMAND} ${_cli_tools} -DWORK=${work} ${extra}
                                -P ${_cli_scripts}/attend_random.cmake -- ${args})
  _longnet_cli_label(${name})
endfunction()

_longnet_cli_random(cli_attend_random EXPECT_INFO "float32 (2, 64, 4, 16)"
  ARGS --random 2,64,4,16 --segments 8,16 --dilations 1,2 --causal --repeat 2 --seed 7 --out @WORK@/out.npy --lse @WORK@/lse.npy)
_longnet_cli_random(cli_attend_random_float64 EXPECT_INFO "float64 (1, 40, 3, 8)"
  ARGS --random 1,40,3,8 --segments 16 --dilations 2 --dtype float64 --repeat 1 --out @WORK@/out.npy)
_longnet_cli_random(cli_attend_random_float16 EXPECT_INFO "float16 (1, 40, 3, 8)"
  ARGS --random 1,40,3,8 --segments 16 --dilations 2 --dtype float16 --repeat 1 --out @WORK@/out.npy)
_longnet_cli_random(cli_attend_random_bfloat16 EXPECT_INFO "float32 (1, 40, 3, 8)"
  ARGS --random 1,40,3,8 --segments 16 --dilations 2 --dtype bfloat16 --repeat 1 --out @WORK@/out.npy)
_longnet_cli_random(cli_attend_random_no_out ARGS --random 1,32,2,8 --segments 8,16 --dilations 1,2 --offsets torchscale)
# one branch (N, 1) is dense attention: --dense must agree
_longnet_cli_random(cli_attend_dense_equivalence DENSE_EQUIV
  ARGS --random 2,50,2,16 --segments 50 --dilations 1 --causal --repeat 1 --out @WORK@/out.npy)

add_test(NAME cli_attend_help COMMAND longnet_attend --help)
set_tests_properties(cli_attend_help PROPERTIES PASS_REGULAR_EXPRESSION "usage: longnet_attend")
_longnet_cli_label(cli_attend_help)

# --- the demo: a small run (two chunks) must pass its own check; bad arguments exit 2 ----------------------
# (exit code 1 when the sampled rows differ from the float64 brute force by more than 1e-3)
add_test(NAME cli_demo_small COMMAND longnet_demo --tokens 33000 --heads 1 --dim 8)
_longnet_cli_label(cli_demo_small)
function(_longnet_cli_demo_error class expect)
  set(name cli_demo_error_${class})
  add_test(NAME ${name}
           COMMAND ${CMAKE_COMMAND} -DTOOL=$<TARGET_FILE:longnet_demo> -DTESTKIT=$<TARGET_FILE:longnet_cli_testkit>
                   -DWORK=${_cli_work}/${name} -DCODE=2 "-DEXPECT=${expect}" -DPROGRAM=longnet_demo
                   -P ${_cli_scripts}/attend_error.cmake -- ${ARGN})
  _longnet_cli_label(${name})
endfunction()
_longnet_cli_demo_error(tokens_zero "--tokens: 0 is out of range" --tokens 0)
_longnet_cli_demo_error(unknown_flag "unknown flag --fast" --fast)
_longnet_cli_demo_error(memory "of memory" --tokens 1099511627776 --heads 65536)

# --- backward: --dout/--dq/--dk/--dv on the attn_bwd_* fixtures, --random --backward, bad combinations ----
function(_longnet_cli_backward case tol)
  set(dir "${_cli_data}/${case}")
  file(READ "${dir}/params.json" json)
  set(flags "")
  foreach(key segments dilations)
    string(JSON count LENGTH "${json}" ${key})
    set(values "")
    math(EXPR last "${count} - 1")
    foreach(i RANGE ${last})
      string(JSON x GET "${json}" ${key} ${i})
      list(APPEND values ${x})
    endforeach()
    list(JOIN values "," values)
    list(APPEND flags --${key} ${values})
  endforeach()
  string(JSON causal GET "${json}" causal)
  if(causal)
    list(APPEND flags --causal)
  endif()
  string(JSON offsets GET "${json}" offsets)
  string(JSON tail GET "${json}" tail_mode)
  string(JSON mode GET "${json}" backward_mode)
  list(APPEND flags --offsets ${offsets} --tail ${tail} --grad-mode ${mode})
  set(name cli_attend_backward_${case})
  add_test(NAME ${name}
           COMMAND ${CMAKE_COMMAND} ${_cli_tools} -DWORK=${_cli_work}/${name} -DMODE=fixture -DCASE_DIR=${dir}
                   -DTOL=${tol} -P ${_cli_scripts}/attend_backward.cmake -- ${flags})
  _longnet_cli_label(${name})
endfunction()
if(NOT CMAKE_VERSION VERSION_LESS 3.19)
  file(GLOB _cli_bwd_cases RELATIVE "${_cli_data}" "${_cli_data}/attn_bwd_*")
  list(SORT _cli_bwd_cases)
  foreach(case IN LISTS _cli_bwd_cases)
    _longnet_cli_backward(${case} 1e-4)
  endforeach()
endif()
foreach(_mode exact stop_grad_weights)
  set(_name cli_attend_random_backward_${_mode})
  add_test(NAME ${_name}
           COMMAND ${CMAKE_COMMAND} ${_cli_tools} -DWORK=${_cli_work}/${_name} -DMODE=random
                   -P ${_cli_scripts}/attend_backward.cmake --
                   --random 1,256,2,16 --segments 32,64 --dilations 1,2 --causal --backward --grad-mode ${_mode} --repeat 2)
  _longnet_cli_label(${_name})
endforeach()
set(_grads --dq @OUT@/dq.npy --dk @OUT@/dk.npy --dv @OUT@/dv.npy)
_longnet_cli_error(backward_missing_dk 2 "missing --dk" ${_in} ${_br} ${_out} --dout @IN@/good.npy --dq @OUT@/dq.npy --dv @OUT@/dv.npy)
_longnet_cli_error(backward_missing_dout 2 "missing --dout" ${_in} ${_br} ${_out} ${_grads})
_longnet_cli_error(backward_same_file 2 "--dq and --dk name the same file" ${_in} ${_br} ${_out} --dout @IN@/good.npy
                   --dq @OUT@/g.npy --dk @OUT@/g.npy --dv @OUT@/dv.npy)
_longnet_cli_error(grad_mode_unknown 2 "--grad-mode: unknown mode 'frozen'" ${_in} ${_br} ${_out} --dout @IN@/good.npy ${_grads}
                   --grad-mode frozen)
_longnet_cli_error(grad_mode_without_backward 2 "--grad-mode needs a backward" ${_in} ${_br} ${_out} --grad-mode exact)
_longnet_cli_error(backward_without_random 2 "--backward is only for --random" ${_in} ${_br} ${_out} --backward)
_longnet_cli_error(backward_random_files 2 "with --random use --backward" --random 1,8,2,4 ${_br} --dout @IN@/good.npy ${_grads})
_longnet_cli_error(dout_shape 1 "dout (${_cli_work}/cli_attend_error_dout_shape/in/other.npy) has shape (8, 2, 8) float32 but q"
                   ${_in} ${_br} ${_out} --dout @IN@/other.npy ${_grads})

# --- examples/longnet_encode: the torchscale encoder fixtures, GigaPath config, bad inputs -----------------
#   cli_encode_fixture_<case>  tests/data/encoder_*: --mask (bool, uint8), --lengths, left padding, [N, D],
#                              --cls-out against the fixture (encode.cmake)
#   cli_encode_gigapath        --random-config gigapath = examples/configs/gigapath_slide_encoder.json
#   cli_encode_error_<class>   one bad command line or bad input: exit code and message, nothing written
if(LONGNET_WITH_EIGEN AND TARGET nlohmann_json::nlohmann_json AND NOT CMAKE_VERSION VERSION_LESS 3.19)
  set(_encode_tools -DTOOL=$<TARGET_FILE:longnet_encode> -DTESTKIT=$<TARGET_FILE:longnet_cli_testkit>)
  foreach(case encoder_00 encoder_01 encoder_02)
    set(name cli_encode_fixture_${case})
    add_test(NAME ${name} COMMAND ${CMAKE_COMMAND} ${_encode_tools} -DWORK=${_cli_work}/${name} -DMODE=fixture
                                  -DCASE_DIR=${_cli_data}/${case} -P ${_cli_scripts}/encode.cmake)
    _longnet_cli_label(${name})
  endforeach()
  add_test(NAME cli_encode_gigapath
           COMMAND ${CMAKE_COMMAND} ${_encode_tools} -DWORK=${_cli_work}/cli_encode_gigapath -DMODE=random
                   -DCASE_DIR=${_cli_data}/encoder_00 "-DCONFIG=${PROJECT_SOURCE_DIR}/examples/configs/gigapath_slide_encoder.json"
                   -P ${_cli_scripts}/encode.cmake)
  _longnet_cli_label(cli_encode_gigapath)
  # _longnet_cli_encode_error(<class> <exit code> <expected stderr text> <arguments...>) on encoder_00:
  # @IN@ the prepared inputs (encode.cmake), @OUT@ a folder that must stay empty, @CASE@ the fixture.
  function(_longnet_cli_encode_error class code expect)
    set(name cli_encode_error_${class})
    add_test(NAME ${name}
             COMMAND ${CMAKE_COMMAND} ${_encode_tools} -DWORK=${_cli_work}/${name} -DMODE=error -DCODE=${code}
                     "-DEXPECT=${expect}" -DCASE_DIR=${_cli_data}/encoder_00 -P ${_cli_scripts}/encode.cmake -- ${ARGN})
    _longnet_cli_label(${name})
  endfunction()
  set(_m --weights @CASE@/model.safetensors --config @IN@/config.json)
  set(_x --embeddings @CASE@/embeddings.npy)
  set(_o --out @OUT@/y.npy --cls-out @OUT@/cls.npy)
  # data errors: exit code 1
  _longnet_cli_encode_error(width 1 "(8, 2, 8) is 8 wide but the config's encoder_embed_dim is 32"
                            ${_m} --embeddings @IN@/other.npy ${_o})
  _longnet_cli_encode_error(embeddings_dtype 1 "expected float32 or float64, got int64" ${_m} --embeddings @IN@/int64.npy ${_o})
  _longnet_cli_encode_error(length_above_n 1 "lengths[1] = 41 is outside [0, N = 40]" ${_m} ${_x} --lengths @IN@/lengths_long.npy ${_o})
  _longnet_cli_encode_error(lengths_count 1 "expected shape (2,)" ${_m} ${_x} --lengths @IN@/lengths_three.npy ${_o})
  _longnet_cli_encode_error(lengths_dtype 1 "--lengths" ${_m} ${_x} --lengths @IN@/mask_float32.npy ${_o})
  _longnet_cli_encode_error(mask_dtype 1 "expected bool, uint8, int32 or int64 (1 = pad), got float32"
                            ${_m} ${_x} --mask @IN@/mask_float32.npy ${_o})
  _longnet_cli_encode_error(mask_shape 1 "shape (3,) does not match the embeddings' [B, N] = (2, 40)"
                            ${_m} ${_x} --mask @IN@/mask_short.npy ${_o})
  _longnet_cli_encode_error(mask_value 1 "entry [0, 39] = 2 (a mask holds 0 = token, 1 = pad)"
                            ${_m} --embeddings @IN@/x0.npy --mask @IN@/mask_two.npy ${_o})
  _longnet_cli_encode_error(mask_not_npy 1 "bad magic" ${_m} ${_x} --mask @IN@/text.npy ${_o})
  _longnet_cli_encode_error(checkpoint 1 "inner_attn_ln" --weights ${_cli_data}/encoder_02/model.safetensors
                            --config @IN@/config.json ${_x} ${_o})
  _longnet_cli_encode_error(out_folder 1 "does not exist" ${_m} ${_x} --out @OUT@/missing/y.npy)
  # usage errors: exit code 2
  _longnet_cli_encode_error(lengths_and_mask 2 "give --lengths or --mask, not both" ${_m} ${_x}
                            --lengths @IN@/lengths.npy --mask @IN@/mask_bool.npy ${_o})
  _longnet_cli_encode_error(missing_out 2 "file mode needs" ${_m} ${_x})
  _longnet_cli_encode_error(same_outputs 2 "--out and --cls-out name the same file" ${_m} ${_x} --out @OUT@/y.npy --cls-out @OUT@/y.npy)
  _longnet_cli_encode_error(random_config 2 "only 'gigapath' is known" --random-config gigantic --random-tokens 8)
  _longnet_cli_encode_error(random_with_files 2 "does not take --weights" --random-config gigapath --random-tokens 8 --weights @CASE@/model.safetensors)
  add_test(NAME cli_encode_help COMMAND longnet_encode --help)
  set_tests_properties(cli_encode_help PROPERTIES PASS_REGULAR_EXPRESSION "longnet_encode --weights")
  _longnet_cli_label(cli_encode_help)
endif()
