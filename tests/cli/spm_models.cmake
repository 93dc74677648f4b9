# SPDX-License-Identifier: Apache-2.0
# CTest fixture tokenizer_spm_models (cmake -P): the SentencePiece models and references the tokenizer tests
# read, made at test time with the sentencepiece package's tools (nothing binary is committed):
#   -DSPM_TRAIN=<spm_train> -DSPM_ENCODE=<spm_encode> -DSPM_DECODE=<spm_decode> -DCORPUS=<LICENSE> -DWORK=<dir>
# WORK/tok.model (vocabulary 300) and WORK/tok2.model (250, another tokenizer), both trained on CORPUS (the
# repository's Apache-2.0 LICENSE: 11 KB of English); WORK/text.txt, the first ~3 KB of it (whole lines);
# WORK/ids.txt, spm_encode's ids of text.txt (one line per line); WORK/decoded.txt, spm_decode of those.
foreach(v SPM_TRAIN SPM_ENCODE SPM_DECODE CORPUS WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "missing -D${v}=...")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${ARGN}: exit ${rc}\n${out}${err}")
  endif()
endfunction()
run("${SPM_TRAIN}" "--input=${CORPUS}" "--model_prefix=${WORK}/tok" --vocab_size=300 --num_threads=1 --minloglevel=2)
run("${SPM_TRAIN}" "--input=${CORPUS}" "--model_prefix=${WORK}/tok2" --vocab_size=250 --num_threads=1 --minloglevel=2)

file(READ "${CORPUS}" corpus)
string(SUBSTRING "${corpus}" 0 3000 head)
string(FIND "${head}" "\n" last_newline REVERSE)
math(EXPR keep "${last_newline} + 1")
string(SUBSTRING "${head}" 0 ${keep} head)
file(WRITE "${WORK}/text.txt" "${head}")

execute_process(COMMAND "${SPM_ENCODE}" "--model=${WORK}/tok.model" --output_format=id
                INPUT_FILE "${WORK}/text.txt" OUTPUT_FILE "${WORK}/ids.txt" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "spm_encode: exit ${rc}")
endif()
execute_process(COMMAND "${SPM_DECODE}" "--model=${WORK}/tok.model" --input_format=id
                INPUT_FILE "${WORK}/ids.txt" OUTPUT_FILE "${WORK}/decoded.txt" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "spm_decode: exit ${rc}")
endif()
