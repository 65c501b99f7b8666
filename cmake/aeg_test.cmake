# aeg_add_test(name SOURCES ... [LIBS ...] [LABELS ...] [GPU])
# One GoogleTest executable; each TEST becomes a ctest case. GPU tests carry the `gpu` label and
# skip themselves (GTEST_SKIP) where no device is visible. Tests that pass messages through CAF carry
# the `caf` label: the TSan lane leaves them out, since Debian's libcaf_core is not instrumented.
include(GoogleTest)
function(aeg_add_test name)
  cmake_parse_arguments(ARG "GPU" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main aeg_warnings)
  set(labels ${ARG_LABELS})
  if(ARG_GPU)
    list(APPEND labels gpu)
  endif()
  set(props TIMEOUT 600)
  if(labels)
    list(APPEND props LABELS "${labels}")
  endif()
  gtest_discover_tests(${name} PROPERTIES ${props} DISCOVERY_TIMEOUT 120)
endfunction()
