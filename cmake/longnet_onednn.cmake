# SPDX-License-Identifier: Apache-2.0
# oneDNN for the nn GEMMs (include/longnet/nn/gemm.hpp), kept out of the core target like longnet::mpi:
#
#   LONGNET_USE_ONEDNN   ON by default: look for oneDNN (Debian: libdnnl-dev) and, when a test program
#                        compiles and links against it, build longnet::onednn. OFF: Eigen's GEMMs only.
#   longnet::onednn      INTERFACE target: longnet::longnet + libdnnl + LONGNET_WITH_ONEDNN=1. Link it to run
#                        the float GEMMs of longnet/nn (training, the full forward, decoding) on oneDNN's
#                        runtime-dispatched kernels; longnet::longnet itself stays header-only without it.
#   longnet_link_onednn(<target>)   links longnet::onednn PRIVATE when it exists (longnet's own targets).
#
# Not find_package(dnnl CONFIG): Debian 12's libdnnl-dev ships a package config that calls
# find_package(OpenCL REQUIRED) without depending on OpenCL's development files, so on a machine without
# them that config stops the whole configure. We look for the library and the header ourselves.
# Installed: longnetConfig.cmake looks for oneDNN again on the consumer's side and offers longnet::onednn
# when it is there (cmake/longnetConfig.cmake.in). Included by the top-level CMakeLists.txt.

include_guard(GLOBAL)

option(LONGNET_USE_ONEDNN "Build longnet::onednn (nn GEMMs on oneDNN) when oneDNN is found; longnet's own targets link it" ON)
set(LONGNET_WITH_ONEDNN OFF)
set(_longnet_onednn_why "LONGNET_USE_ONEDNN=OFF")
if(LONGNET_USE_ONEDNN)
  find_library(LONGNET_DNNL_LIBRARY NAMES dnnl DOC "oneDNN library (longnet::onednn)")
  find_path(LONGNET_DNNL_INCLUDE_DIR NAMES oneapi/dnnl/dnnl.h DOC "oneDNN headers (longnet::onednn)")
  if(LONGNET_DNNL_LIBRARY AND LONGNET_DNNL_INCLUDE_DIR)
    include(CheckCXXSourceCompiles)
    include(CMakePushCheckState)
    cmake_push_check_state(RESET)
    set(CMAKE_REQUIRED_QUIET ON)
    set(CMAKE_REQUIRED_INCLUDES "${LONGNET_DNNL_INCLUDE_DIR}")
    set(CMAKE_REQUIRED_LIBRARIES "${LONGNET_DNNL_LIBRARY}")
    check_cxx_source_compiles([[
      #include <oneapi/dnnl/dnnl.h>
      int main() { float a = 1, b = 1, c = 0; return dnnl_sgemm('N', 'N', 1, 1, 1, 1.f, &a, 1, &b, 1, 0.f, &c, 1) == dnnl_success ? 0 : 1; }
    ]] LONGNET_DNNL_LINKS)
    cmake_pop_check_state()
    if(LONGNET_DNNL_LINKS)
      set(LONGNET_WITH_ONEDNN ON)
    else()
      set(_longnet_onednn_why "${LONGNET_DNNL_LIBRARY} found, but a test program does not compile and link against it")
    endif()
  else()
    set(_longnet_onednn_why "libdnnl-dev not found")
  endif()
endif()

if(LONGNET_WITH_ONEDNN)
  add_library(longnet_onednn INTERFACE)
  add_library(longnet::onednn ALIAS longnet_onednn)
  target_link_libraries(longnet_onednn INTERFACE longnet::longnet "${LONGNET_DNNL_LIBRARY}")
  target_include_directories(longnet_onednn INTERFACE "${LONGNET_DNNL_INCLUDE_DIR}")
  target_compile_definitions(longnet_onednn INTERFACE LONGNET_WITH_ONEDNN=1)
  message(STATUS "longnet: oneDNN found (${LONGNET_DNNL_LIBRARY}); longnet::onednn runs the nn GEMMs on it, and longnet's own targets link it")
else()
  message(STATUS "longnet: longnet::onednn is OFF (${_longnet_onednn_why}); the nn GEMMs are Eigen's")
endif()
unset(_longnet_onednn_why)

function(longnet_link_onednn target)
  if(TARGET longnet::onednn)
    target_link_libraries(${target} PRIVATE longnet::onednn)
  endif()
endfunction()
