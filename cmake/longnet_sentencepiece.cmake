# SPDX-License-Identifier: Apache-2.0
# SentencePiece for the tokenizer of longnet/text/tokenizer.hpp, kept out of the core target like
# longnet::onednn:
#
#   LONGNET_USE_SENTENCEPIECE   ON by default: look for SentencePiece (Debian: libsentencepiece-dev) and, when
#                               a test program compiles and links against it, build longnet::sentencepiece.
#                               OFF: the byte-level tokenizer only; --tokenizer is refused by the tools.
#   longnet::sentencepiece      INTERFACE target: longnet::longnet + libsentencepiece +
#                               LONGNET_WITH_SENTENCEPIECE=1. Link it to load SentencePiece models with
#                               text::tokenizer::load; longnet::longnet itself never needs it.
#   longnet_link_sentencepiece(<target>)   links longnet::sentencepiece PRIVATE when it exists (the tools
#                               and tests that take --tokenizer).
#
# Looked up by library and header (find_library/find_path), not by pkg-config: Debian 12 does ship
# sentencepiece.pc, but its Libs also name libsentencepiece_train, which longnet never needs, and
# pkg-config itself is not a build dependency. Installed: longnetConfig.cmake looks for SentencePiece
# again on the consumer's side and offers longnet::sentencepiece when it is there
# (cmake/longnetConfig.cmake.in). Included by the top-level CMakeLists.txt.

include_guard(GLOBAL)

option(LONGNET_USE_SENTENCEPIECE
       "Build longnet::sentencepiece (SentencePiece tokenizers, longnet/text/tokenizer.hpp) when SentencePiece is found; the tools link it" ON)
set(LONGNET_WITH_SENTENCEPIECE OFF)
set(_longnet_spm_why "LONGNET_USE_SENTENCEPIECE=OFF")
if(LONGNET_USE_SENTENCEPIECE)
  find_library(LONGNET_SENTENCEPIECE_LIBRARY NAMES sentencepiece DOC "SentencePiece library (longnet::sentencepiece)")
  find_path(LONGNET_SENTENCEPIECE_INCLUDE_DIR NAMES sentencepiece_processor.h DOC "SentencePiece headers (longnet::sentencepiece)")
  if(LONGNET_SENTENCEPIECE_LIBRARY AND LONGNET_SENTENCEPIECE_INCLUDE_DIR)
    include(CheckCXXSourceCompiles)
    include(CMakePushCheckState)
    cmake_push_check_state(RESET)
    set(CMAKE_REQUIRED_QUIET ON)
    set(CMAKE_REQUIRED_INCLUDES "${LONGNET_SENTENCEPIECE_INCLUDE_DIR}")
    set(CMAKE_REQUIRED_LIBRARIES "${LONGNET_SENTENCEPIECE_LIBRARY}")
    check_cxx_source_compiles([[
      #include <sentencepiece_processor.h>
      int main() { sentencepiece::SentencePieceProcessor p; return p.LoadFromSerializedProto("").ok() ? 1 : 0; }
    ]] LONGNET_SENTENCEPIECE_LINKS)
    cmake_pop_check_state()
    if(LONGNET_SENTENCEPIECE_LINKS)
      set(LONGNET_WITH_SENTENCEPIECE ON)
    else()
      set(_longnet_spm_why "${LONGNET_SENTENCEPIECE_LIBRARY} found, but a test program does not compile and link against it")
    endif()
  else()
    set(_longnet_spm_why "libsentencepiece-dev not found")
  endif()
endif()

if(LONGNET_WITH_SENTENCEPIECE)
  add_library(longnet_sentencepiece INTERFACE)
  add_library(longnet::sentencepiece ALIAS longnet_sentencepiece)
  target_link_libraries(longnet_sentencepiece INTERFACE longnet::longnet "${LONGNET_SENTENCEPIECE_LIBRARY}")
  target_include_directories(longnet_sentencepiece INTERFACE "${LONGNET_SENTENCEPIECE_INCLUDE_DIR}")
  target_compile_definitions(longnet_sentencepiece INTERFACE LONGNET_WITH_SENTENCEPIECE=1)
  message(STATUS "longnet: SentencePiece found (${LONGNET_SENTENCEPIECE_LIBRARY}); longnet::sentencepiece loads its models, the tools take --tokenizer")
else()
  message(STATUS "longnet: longnet::sentencepiece is OFF (${_longnet_spm_why}); byte-level tokenizer only, the tools refuse --tokenizer")
endif()
unset(_longnet_spm_why)

function(longnet_link_sentencepiece target)
  if(TARGET longnet::sentencepiece)
    target_link_libraries(${target} PRIVATE longnet::sentencepiece)
  endif()
endfunction()
