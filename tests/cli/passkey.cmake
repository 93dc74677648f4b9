# SPDX-License-Identifier: Apache-2.0
# Passkey retrieval end to end (cmake -P script), registered from tests/CMakeLists.txt as cli_passkey:
# `longnet_train --task passkey` trains a tiny byte-level model on fresh documents, then `longnet_lm
# passkey` evaluates it with the bounded cache at the same length: one JSON line per trial, exit 0, and
# an accuracy of at least 0.8 over all depths (a model that has not learned the task scores ~0: a key is
# one of PASSKEY_MAX numbers). Also the usage errors of both tools.
#   -DTRAIN=<longnet_train> -DLM=<longnet_lm> -DWORK=<scratch> -DTRAIN_ARGS=<flags> -DEVAL_ARGS=<flags> (each one string, split as a shell would)

include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
cli_require_vars(TRAIN LM WORK TRAIN_ARGS EVAL_ARGS)
separate_arguments(TRAIN_ARGS UNIX_COMMAND "${TRAIN_ARGS}")
separate_arguments(EVAL_ARGS UNIX_COMMAND "${EVAL_ARGS}")
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

function(run expected_rc)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL expected_rc)
    cli_fail("${ARGN}: exit ${rc}, expected ${expected_rc}\nstdout: ${out}\nstderr: ${err}")
  endif()
  set(last_out "${out}" PARENT_SCOPE)
  set(last_err "${err}" PARENT_SCOPE)
endfunction()
function(expect_message text)
  string(FIND "${last_err}" "${text}" at)
  if(at EQUAL -1)
    cli_fail("stderr does not mention '${text}':\n${last_err}")
  endif()
endfunction()

# usage errors: exit 2, the bad value named
run(2 "${TRAIN}" --random-config tiny --task passkey --seq-len 300)
expect_message("300")
expect_message("too short")
run(2 "${TRAIN}" --random-config tiny --task recall --passkey-max 9)
expect_message("--passkey-max is for --task passkey")
run(2 "${TRAIN}" --random-config tiny --task passkey --passkey-loss some)
expect_message("some")
run(2 "${LM}" passkey --weights w --config c --length 512)
expect_message("--trials")
run(2 "${LM}" passkey --weights w --config c --length 512 --trials 2 --depths 0,1.5)
expect_message("1.5")

# train, then evaluate
string(TIMESTAMP t0 "%s")
run(0 "${TRAIN}" ${TRAIN_ARGS} --out "${WORK}/run")
string(TIMESTAMP t1 "%s")
run(0 "${LM}" passkey --weights "${WORK}/run/model.safetensors" --config "${WORK}/run/config.json" ${EVAL_ARGS})
string(TIMESTAMP t2 "%s")
message(STATUS "${last_err}")
string(REGEX MATCHALL "\"correct\": (true|false)" verdicts "${last_out}")
string(REGEX MATCHALL "\"correct\": true" right "${last_out}")
list(LENGTH verdicts trials)
list(LENGTH right correct)
if(trials LESS 20)
  cli_fail("expected at least 20 JSON lines with \"correct\", got ${trials}:\n${last_out}")
endif()
math(EXPR t_train "${t1} - ${t0}")
math(EXPR t_eval "${t2} - ${t1}")
message(STATUS "passkey: ${correct} of ${trials} correct (training ${t_train} s, evaluation ${t_eval} s)")
math(EXPR need "(${trials} * 8 + 9) / 10")  # ceil(0.8 trials)
if(correct LESS need)
  cli_fail("passkey accuracy ${correct}/${trials} is below 0.8 (need ${need})\n${last_out}")
endif()
