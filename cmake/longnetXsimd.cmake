# SPDX-License-Identifier: Apache-2.0
# Finds the xsimd headers and defines the IMPORTED INTERFACE target longnet::xsimd that carries only
# their include directory. Used by the top-level CMakeLists.txt and, installed next to it, by
# longnetConfig.cmake, so a build and its consumers run the same lookup.
#
# Why not link xsimd's own target: Debian 12's libxsimd-dev 8.1 exports a target named `xsimd`
# (no `xsimd::xsimd`) whose link interface names `xtl`, a package it does not depend on.
# Linking it fails without xtl; its headers alone are all longnet needs.
#
# Result: longnet_xsimd_FOUND (TRUE/FALSE) and, when found, the target longnet::xsimd.

set(longnet_xsimd_FOUND FALSE)
if(TARGET longnet::xsimd)
  set(longnet_xsimd_FOUND TRUE)
  return()
endif()

set(_longnet_xsimd_hints "")
find_package(xsimd CONFIG QUIET)
foreach(_longnet_xsimd_target IN ITEMS xsimd::xsimd xsimd)
  if(TARGET ${_longnet_xsimd_target})
    get_target_property(_longnet_xsimd_dirs ${_longnet_xsimd_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(_longnet_xsimd_dirs)
      list(APPEND _longnet_xsimd_hints ${_longnet_xsimd_dirs})
    endif()
    break()
  endif()
endforeach()
if(xsimd_INCLUDE_DIRS)
  list(APPEND _longnet_xsimd_hints ${xsimd_INCLUDE_DIRS})
endif()

find_path(LONGNET_XSIMD_INCLUDE_DIR NAMES xsimd/xsimd.hpp HINTS ${_longnet_xsimd_hints}
          DOC "Directory that contains xsimd/xsimd.hpp")

if(LONGNET_XSIMD_INCLUDE_DIR)
  add_library(longnet::xsimd INTERFACE IMPORTED)
  set_target_properties(longnet::xsimd PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${LONGNET_XSIMD_INCLUDE_DIR}")
  set(longnet_xsimd_FOUND TRUE)
endif()

unset(_longnet_xsimd_hints)
unset(_longnet_xsimd_dirs)
unset(_longnet_xsimd_target)
