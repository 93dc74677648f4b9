# SPDX-License-Identifier: Apache-2.0
# Sequence parallelism over MPI (include/longnet/distributed.hpp), kept out of the core target:
#
#   LONGNET_ENABLE_MPI   ON by default when longnet is the top-level project and MPI (C++) is found.
#   longnet::mpi         INTERFACE target: longnet::longnet + MPI::MPI_CXX. Link it to use
#                        longnet/distributed.hpp; longnet::longnet itself never depends on MPI.
#
# With tests enabled, tests/mpi runs test_distributed under mpiexec with 1, 2 and 4 ranks.
# Included by the top-level CMakeLists.txt after the longnet target exists.

include_guard(GLOBAL)

find_package(MPI COMPONENTS CXX QUIET)
set(_longnet_mpi_default OFF)
if(LONGNET_IS_TOP_LEVEL AND MPI_CXX_FOUND)
  set(_longnet_mpi_default ON)
endif()
option(LONGNET_ENABLE_MPI "Build longnet::mpi (sequence parallelism over MPI), its tests and example" ${_longnet_mpi_default})

if(LONGNET_ENABLE_MPI)
  if(NOT MPI_CXX_FOUND)
    find_package(MPI REQUIRED COMPONENTS CXX)
  endif()
  add_library(longnet_mpi INTERFACE)
  add_library(longnet::mpi ALIAS longnet_mpi)
  set_target_properties(longnet_mpi PROPERTIES EXPORT_NAME mpi)  # installed as longnet::mpi, like the alias
  target_link_libraries(longnet_mpi INTERFACE longnet::longnet MPI::MPI_CXX)
  message(STATUS "longnet: MPI ${MPI_CXX_VERSION} found; longnet::mpi (sequence parallelism) is available")

  if(LONGNET_INSTALL)
    # A separate export set, so longnetTargets.cmake keeps no MPI dependency. A consumer's
    # find_package(longnet) gets longnet::mpi when longnetConfig.cmake includes this file (after
    # find_dependency(MPI COMPONENTS CXX)).
    if(NOT DEFINED LONGNET_CONFIG_INSTALL_DIR)
      set(_longnet_mpi_config_dir "${CMAKE_INSTALL_LIBDIR}/cmake/longnet")
    else()
      set(_longnet_mpi_config_dir "${LONGNET_CONFIG_INSTALL_DIR}")
    endif()
    install(TARGETS longnet_mpi EXPORT longnetMpiTargets)
    install(EXPORT longnetMpiTargets NAMESPACE longnet:: FILE longnetMpiTargets.cmake
            DESTINATION "${_longnet_mpi_config_dir}")
  endif()

  if(LONGNET_BUILD_TESTS)
    include("${PROJECT_SOURCE_DIR}/cmake/longnetProjectOptions.cmake")
    enable_testing()
    add_subdirectory("${PROJECT_SOURCE_DIR}/tests/mpi" "${PROJECT_BINARY_DIR}/tests/mpi")
    # The header self-containment check (tests/) compiles longnet/distributed.hpp; give it <mpi.h> so
    # the real header is checked, not the stub it falls back to without MPI. It is created later.
    if(COMMAND cmake_language)
      function(_longnet_mpi_header_check)
        if(TARGET longnet_header_check)
          target_link_libraries(longnet_header_check PRIVATE MPI::MPI_CXX)
        endif()
      endfunction()
      cmake_language(DEFER DIRECTORY "${PROJECT_SOURCE_DIR}" CALL _longnet_mpi_header_check)
    endif()
  endif()
else()
  message(STATUS "longnet: LONGNET_ENABLE_MPI is OFF (MPI found: ${MPI_CXX_FOUND}); no longnet::mpi")
endif()
