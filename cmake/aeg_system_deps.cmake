# Debian packages that ship no CMake config, found by path and wrapped in imported targets:
#   aeg_deps::expected     tl-expected headers (libexpected-dev); aeg::coro's headers use it
#   aeg_deps::pcre2        PCRE2, 8-bit (libpcre2-dev); linked privately by aeg::models
# The build includes this file, and so does the installed aegaeonConfig.cmake, so that the
# exported targets name these targets rather than paths into one machine's file system.
# Sets AEG_DEPS_MISSING to the names of what was not found; the includer decides what that means.
set(AEG_DEPS_MISSING "")

find_path(EXPECTED_INCLUDE_DIR tl/expected.hpp)
find_path(PCRE2_INCLUDE_DIR pcre2.h)
find_library(PCRE2_8_LIBRARY NAMES pcre2-8)
foreach(var EXPECTED_INCLUDE_DIR PCRE2_INCLUDE_DIR PCRE2_8_LIBRARY)
  if(NOT ${var})
    list(APPEND AEG_DEPS_MISSING ${var})
  endif()
endforeach()

if(NOT AEG_DEPS_MISSING AND NOT TARGET aeg_deps::expected)
  add_library(aeg_deps::expected INTERFACE IMPORTED)
  set_target_properties(aeg_deps::expected PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES ${EXPECTED_INCLUDE_DIR})
  add_library(aeg_deps::pcre2 UNKNOWN IMPORTED)
  set_target_properties(aeg_deps::pcre2 PROPERTIES
    IMPORTED_LOCATION ${PCRE2_8_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${PCRE2_INCLUDE_DIR})
endif()
