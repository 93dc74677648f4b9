# SPDX-License-Identifier: Apache-2.0
# CTest tests proving each way to consume longnet: consumer_subdirectory, consumer_fetchcontent,
# consumer_find_package (cmake --install into a prefix under the build dir) and consumer_build_tree
# (find_package against this build's export()). Each configures, builds and runs tests/consumer.
foreach(mode IN ITEMS subdirectory fetchcontent find_package build_tree)
  add_test(NAME consumer_${mode}
           COMMAND "${CMAKE_COMMAND}"
                   "-DMODE=${mode}"
                   "-DSOURCE_DIR=${PROJECT_SOURCE_DIR}"
                   "-DCONSUMER_DIR=${CMAKE_CURRENT_LIST_DIR}"
                   "-DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumer/${mode}"
                   "-DGENERATOR=${CMAKE_GENERATOR}"
                   "-DCXX_COMPILER=${CMAKE_CXX_COMPILER}"
                   "-DLONGNET_BUILD_DIR=${PROJECT_BINARY_DIR}"
                   -P "${CMAKE_CURRENT_LIST_DIR}/run_consumer.cmake")
  set_tests_properties(consumer_${mode} PROPERTIES LABELS "consumer" TIMEOUT 600)
endforeach()
if(NOT LONGNET_INSTALL)
  set_tests_properties(consumer_find_package PROPERTIES DISABLED TRUE)
endif()
