# SPDX-License-Identifier: Apache-2.0
# CTest tests proving each way to consume longnet: consumer_subdirectory, consumer_fetchcontent,
# consumer_find_package (cmake --install into a prefix under the build dir) and consumer_build_tree
# (find_package against this build's export()). Each configures, builds and runs tests/consumer.
# With Eigen and nlohmann/json in this build, each route must also offer longnet/nn, and the full routes
# (subdirectory, find_package) build and run consumer_decoding and consumer_training (run_consumer.cmake).
find_package(nlohmann_json 3 CONFIG QUIET)
if(LONGNET_WITH_EIGEN AND TARGET nlohmann_json::nlohmann_json)
  set(_longnet_consumer_expect_nn ON)
else()
  set(_longnet_consumer_expect_nn OFF)
endif()
# With oneDNN in this build (longnet::onednn), each route must also offer longnet::onednn and build
# consumer_training_onednn (the nn GEMMs on oneDNN).
set(_longnet_consumer_expect_onednn OFF)
if(TARGET longnet::onednn AND _longnet_consumer_expect_nn)
  set(_longnet_consumer_expect_onednn ON)
endif()
# With SentencePiece in this build (longnet::sentencepiece), each route must offer it and build
# consumer_tokenizer (longnet/text/tokenizer.hpp linked against libsentencepiece).
set(_longnet_consumer_expect_spm OFF)
if(TARGET longnet::sentencepiece)
  set(_longnet_consumer_expect_spm ON)
endif()
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
                   "-DEXPECT_NN=${_longnet_consumer_expect_nn}"
                   "-DEXPECT_ONEDNN=${_longnet_consumer_expect_onednn}"
                   "-DEXPECT_SENTENCEPIECE=${_longnet_consumer_expect_spm}"
                   -P "${CMAKE_CURRENT_LIST_DIR}/run_consumer.cmake")
  set_tests_properties(consumer_${mode} PROPERTIES LABELS "consumer" TIMEOUT 600)
endforeach()
if(NOT LONGNET_INSTALL)
  set_tests_properties(consumer_find_package PROPERTIES DISABLED TRUE)
endif()
