# SPDX-License-Identifier: Apache-2.0
# cmake -DCLANGXX=<clang++> -DFLAGS=<list> -DSOURCES=<list> -P test_headers_clang.cmake
# Runs clang++ <FLAGS> on each generated header-check source; fails listing every header that does not
# compile on its own.
set(failed "")
list(LENGTH SOURCES count)
foreach(source IN LISTS SOURCES)
  execute_process(COMMAND "${CLANGXX}" ${FLAGS} "${source}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  get_filename_component(name "${source}" NAME_WE)
  if(rc EQUAL 0)
    message(STATUS "ok      ${name}")
  else()
    message(STATUS "FAILED  ${name}\n${out}${err}")
    list(APPEND failed "${name}")
  endif()
endforeach()
if(failed)
  message(FATAL_ERROR "clang++ header self-containment: ${failed} failed (of ${count})")
endif()
message(STATUS "clang++ header self-containment: all ${count} headers compile on their own")
