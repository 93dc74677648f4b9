# SPDX-License-Identifier: Apache-2.0
# Command-line tests of examples/longnet_data and `longnet_lm perplexity` (cmake -P script), registered
# from tests/CMakeLists.txt as cli_data_perplexity.
#   -DLM=<longnet_lm> -DDATA_TOOL=<longnet_data> -DTRAIN=<longnet_train> -DDATA=<tests/data/decoder_00> -DWORK=<scratch>
# The fixture's 100 tokens written as 4 shards give the same perplexity as the .npy (ctx 16 and 32, with
# the table); --save-logits then --kl-base on the same model: KL exactly 0; bf16 weights: KL > 0; bad
# shards (magic, truncation, token >= vocab), too few tokens: exit 1 naming file/offset/value; usage: 2;
# longnet_train --data: the losses of --text on the same bytes, --heldout shards, token >= vocab refused,
# --resume bitwise equal to the run that never stopped.

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
file(READ "${DATA}/params.json" json)
string(JSON config GET "${json}" decoder_config_all_fields)
file(WRITE "${WORK}/config.json" "${config}")
set(model --weights "${DATA}/model.safetensors" --config "${WORK}/config.json")

function(run expected_rc)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL expected_rc)
    message(FATAL_ERROR "${ARGN}: exit ${rc}, expected ${expected_rc}\nstdout: ${out}\nstderr: ${err}")
  endif()
  set(last_out "${out}" PARENT_SCOPE)
  set(last_err "${err}" PARENT_SCOPE)
endfunction()
function(expect_message text)
  string(FIND "${last_err}" "${text}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "stderr does not mention '${text}':\n${last_err}")
  endif()
endfunction()
# The JSON lines of stdout without the timing field.
function(numbers out)
  string(REGEX REPLACE ", \"tokens_per_second\": [^,}]*" "" text "${last_out}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

# longnet_data: 100 tokens -> 30 + 30 + 30 + 10
run(0 "${DATA_TOOL}" --tokens "${DATA}/tokens.npy" --out "${WORK}/val" --shard-tokens 30)
file(GLOB shards "${WORK}/val_*.bin")
list(LENGTH shards n)
if(NOT n EQUAL 4)
  message(FATAL_ERROR "longnet_data wrote ${n} shards, expected 4: ${shards}")
endif()
file(SIZE "${WORK}/val_000003.bin" size)
if(NOT size EQUAL 1044)  # 1024-byte header + 10 uint16 tokens
  message(FATAL_ERROR "val_000003.bin has ${size} bytes, expected 1044")
endif()

# the same perplexity from the .npy and from the shards; a table for two contexts
run(0 "${LM}" perplexity ${model} --tokens "${DATA}/tokens.npy" --ctx 16,32)
numbers(from_npy)
expect_message("| 32 | 3 | 45 |")
expect_message("final estimate PPL")
if(NOT from_npy MATCHES "\"ctx\": 16, \"stride\": 0, \"windows\": 6, \"scored\": 42, \"ppl\": [0-9]")
  message(FATAL_ERROR "unexpected JSON: ${from_npy}")
endif()
run(0 "${LM}" perplexity ${model} --data "${WORK}/val_*.bin" --ctx 16,32)
numbers(from_shards)
if(NOT from_npy STREQUAL from_shards)
  message(FATAL_ERROR "--data and --tokens differ:\n${from_shards}\n${from_npy}")
endif()

# KL: the model against its own logits is 0; bf16 weights against float is not
run(0 "${LM}" perplexity ${model} --data "${WORK}/val_*.bin" --ctx 16 --stride 4 --save-logits "${WORK}/base.npy")
run(0 "${LM}" perplexity ${model} --data "${WORK}/val_*.bin" --ctx 16 --stride 4 --kl-base "${WORK}/base.npy")
if(NOT last_out MATCHES "\"kl\": 0,")
  message(FATAL_ERROR "KL against its own logits is not 0: ${last_out}")
endif()
run(0 "${LM}" perplexity ${model} --data "${WORK}/val_*.bin" --ctx 16 --stride 4 --kl-base "${WORK}/base.npy" --weights-dtype bf16)
if(NOT last_out MATCHES "\"kl\": [1-9][0-9.]*e-0[3-7],")
  message(FATAL_ERROR "KL of bf16 weights is not small and positive: ${last_out}")
endif()
run(1 "${LM}" perplexity ${model} --data "${WORK}/val_*.bin" --ctx 16 --kl-base "${WORK}/base.npy")
expect_message("the KL reference has 84 rows")

# bad data: exit 1, the file, the offset, the value
file(WRITE "${WORK}/text.txt" "the byte z = 122 is outside the fixture's vocabulary of 97 tokens, and this line is long enough")
run(0 "${DATA_TOOL}" --text "${WORK}/text.txt" --out "${WORK}/bytes")
run(1 "${LM}" perplexity ${model} --data "${WORK}/bytes_*.bin" --ctx 16)
expect_message("bytes_000000.bin: offset 1024: token 116 at position 0 is not below the vocabulary size 97")
run(1 "${LM}" perplexity ${model} --text "${WORK}/text.txt" --ctx 16)
expect_message("not below the model's vocabulary size 97")
file(WRITE "${WORK}/bad_000000.bin" "not a shard")
run(1 "${LM}" perplexity ${model} --data "${WORK}/bad_*.bin")
expect_message("bad_000000.bin: offset 11: truncated header")
run(1 "${LM}" perplexity ${model} --data "${WORK}/none_*.bin")
expect_message("no file matches")
run(1 "${LM}" perplexity ${model} --tokens "${DATA}/tokens.npy" --ctx 64)
expect_message("need at least 2 x ctx = 128")

# usage: exit 2
run(2 "${LM}" perplexity ${model})
expect_message("exactly one of --tokens")
run(2 "${LM}" perplexity ${model} --tokens "${DATA}/tokens.npy" --ctx 16 --stride 16)
expect_message("--stride 16 must be below")
run(2 "${LM}" perplexity ${model} --tokens "${DATA}/tokens.npy" --ctx 16,32 --kl-base "${WORK}/base.npy")
expect_message("single --ctx")
run(2 "${DATA_TOOL}" --text "${WORK}/text.txt")
expect_message("--out")
run(2 "${DATA_TOOL}" --text "${WORK}/text.txt" --out "${WORK}/x" --width 24)
expect_message("--width")

# longnet_train --data: the same windows (so the same losses) as --text on the same bytes; --heldout shards;
# a token >= vocab refused before training with the file and offset
file(READ "${DATA}/params.json" corpus)  # a few KB of text
file(WRITE "${WORK}/corpus.txt" "${corpus}")
run(0 "${DATA_TOOL}" --text "${WORK}/corpus.txt" --out "${WORK}/train" --shard-tokens 700)
run(0 "${DATA_TOOL}" --text "${WORK}/text.txt" --out "${WORK}/heldout")
set(tiny --random-config tiny --vocab 256 --seq-len 32 --batch 2 --steps 2 --seed 5)
run(0 "${TRAIN}" ${tiny} --data "${WORK}/train_*.bin")
string(REGEX MATCHALL "loss [0-9.]+" from_shards "${last_out}${last_err}")
run(0 "${TRAIN}" ${tiny} --text "${WORK}/corpus.txt" --heldout 0)
string(REGEX MATCHALL "loss [0-9.]+" from_text "${last_out}${last_err}")
list(LENGTH from_shards n)
if(NOT n EQUAL 2 OR NOT from_shards STREQUAL from_text)
  message(FATAL_ERROR "longnet_train --data and --text differ: ${from_shards} vs ${from_text}")
endif()
run(0 "${TRAIN}" ${tiny} --data "${WORK}/train_*.bin" --heldout "${WORK}/heldout_*.bin" --eval-every 2 --eval-batches 2)
string(FIND "${last_out}${last_err}" "held-out loss" at)
if(at EQUAL -1)
  message(FATAL_ERROR "no held-out loss with --heldout shards: ${last_out}${last_err}")
endif()
run(1 "${TRAIN}" --config "${WORK}/config.json" --data "${WORK}/train_*.bin" --seq-len 32 --steps 1)
expect_message("train_000000.bin: offset 1024: token 123 at position 0 is not below the vocabulary size 97")
run(2 "${TRAIN}" --random-config tiny --data "${WORK}/train_*.bin" --steps 1)
expect_message("--data needs --seq-len")

# --resume with --data continues the same window stream: 2 steps + resume to 4 = 4 steps, bitwise
set(run_args --random-config tiny --vocab 256 --data "${WORK}/train_*.bin" --seq-len 32 --batch 2 --seed 3
             --schedule constant --save-every 2)
run(0 "${TRAIN}" ${run_args} --steps 4 --out "${WORK}/run_a")
run(0 "${TRAIN}" ${run_args} --steps 2 --out "${WORK}/run_b")
run(0 "${TRAIN}" --resume "${WORK}/run_b" --steps 4)
execute_process(COMMAND "${CMAKE_COMMAND}" -E compare_files "${WORK}/run_a/model.safetensors" "${WORK}/run_b/model.safetensors"
                RESULT_VARIABLE differ)
if(differ)
  message(FATAL_ERROR "--data: the resumed run's model differs from the run that never stopped")
endif()
