# SPDX-License-Identifier: Apache-2.0
# Configure, build and run the consumer project in one mode, from scratch:
#   cmake -DMODE=<subdirectory|fetchcontent|find_package|build_tree> -DSOURCE_DIR=<longnet source>
#         -DCONSUMER_DIR=<tests/consumer> -DWORK_DIR=<scratch dir> -DGENERATOR=<generator>
#         -DCXX_COMPILER=<c++> [-DLONGNET_BUILD_DIR=<configured longnet build dir>] -P run_consumer.cmake
# find_package installs LONGNET_BUILD_DIR into WORK_DIR/prefix first; build_tree points longnet_DIR at
# LONGNET_BUILD_DIR (the build-tree export).
foreach(var MODE SOURCE_DIR CONSUMER_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run step)
  message(STATUS "[${MODE}] ${step}: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[${MODE}] ${step} failed (${rc})")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(build "${WORK_DIR}/build")
set(args -S "${CONSUMER_DIR}" -B "${build}" -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
         -DCMAKE_BUILD_TYPE=Release "-DLONGNET_CONSUMER_MODE=${MODE}")

if(MODE STREQUAL "subdirectory")
  list(APPEND args "-DLONGNET_SOURCE_DIR=${SOURCE_DIR}")
elseif(MODE STREQUAL "fetchcontent")
  list(APPEND args "-DFETCHCONTENT_SOURCE_DIR_LONGNET=${SOURCE_DIR}" -DFETCHCONTENT_FULLY_DISCONNECTED=ON)
elseif(MODE STREQUAL "find_package")
  set(prefix "${WORK_DIR}/prefix")
  run(install "${CMAKE_COMMAND}" --install "${LONGNET_BUILD_DIR}" --prefix "${prefix}")
  if(NOT EXISTS "${prefix}/include/longnet/longnet.hpp")
    message(FATAL_ERROR "[${MODE}] install did not put include/longnet/longnet.hpp under ${prefix}")
  endif()
  file(GLOB_RECURSE config_files "${prefix}/*/longnetConfig.cmake")
  if(NOT config_files)
    message(FATAL_ERROR "[${MODE}] install did not put longnetConfig.cmake under ${prefix}")
  endif()
  list(APPEND args "-DCMAKE_PREFIX_PATH=${prefix}")
elseif(MODE STREQUAL "build_tree")
  list(APPEND args -DLONGNET_CONSUMER_MODE=find_package "-Dlongnet_DIR=${LONGNET_BUILD_DIR}")
else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()

run(configure "${CMAKE_COMMAND}" ${args})
run(build "${CMAKE_COMMAND}" --build "${build}" --config Release)
set(exe "${build}/consumer")
if(NOT EXISTS "${exe}" AND EXISTS "${build}/Release/consumer.exe")
  set(exe "${build}/Release/consumer.exe")
endif()
run(run "${exe}")
