# `cmake --install BUILD --prefix P` installs the layers as static libraries, their headers under
# P/include in the repository's layout ("actors/instance.hpp"), the aegaeon binary, and the CMake
# package P/lib/cmake/aegaeon, which find_package(aegaeon CONFIG) reads. Exported targets are
# aegaeon::coro, ::gpu, ::kernels, ::models, ::sched, ::planner, ::actors, ::server and the
# executable aegaeon::aegaeon. tests/package builds an outside project against it.
include(CMakePackageConfigHelpers)

set(AEG_INSTALLED_LIBS aeg_coro aeg_gpu aeg_kernels aeg_models aeg_sched aeg_planner aeg_actors
                       aeg_server)
foreach(lib ${AEG_INSTALLED_LIBS})
  string(REGEX REPLACE "^aeg_" "" name ${lib})
  set_target_properties(${lib} PROPERTIES EXPORT_NAME ${name})
endforeach()
set_target_properties(aegaeon PROPERTIES EXPORT_NAME aegaeon
                                         INSTALL_RPATH_USE_LINK_PATH ON) # e.g. CUDA's lib folder

# Consumers compile the headers as C++20 whatever their own default is.
target_compile_features(aeg_coro INTERFACE cxx_std_20)
# A sanitizer build's libraries call into the sanitizer runtime: whoever links them links it too.
# (The build tree sets the flags directory-wide, so this is for the installed targets only.)
if(AEG_SAN_FLAGS)
  target_link_options(aeg_coro INTERFACE "$<INSTALL_INTERFACE:${AEG_SAN_FLAGS}>")
endif()

install(TARGETS ${AEG_INSTALLED_LIBS} aegaeon
        EXPORT aegaeon-targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The headers of the installed libraries, nothing else (no sources, no apps/aegaeon internals).
foreach(dir coro gpu kernels models actors apps/server)
  get_filename_component(parent ${dir} DIRECTORY)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/${parent}
          FILES_MATCHING PATTERN "*.hpp" PATTERN "*.h" PATTERN "*.inc")
endforeach()

set(AEG_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/aegaeon)
install(EXPORT aegaeon-targets
        NAMESPACE aegaeon::
        FILE aegaeonTargets.cmake
        DESTINATION ${AEG_CMAKE_DIR})
if(AEG_HAS_CUDA)
  get_filename_component(AEG_CUDA_ROOT ${CUDAToolkit_BIN_DIR} DIRECTORY)
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/aegaeonConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/aegaeonConfig.cmake
                              INSTALL_DESTINATION ${AEG_CMAKE_DIR})
# 0.x: a minor version may break the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/aegaeonConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/aegaeonConfig.cmake
              ${PROJECT_BINARY_DIR}/aegaeonConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindCAF.cmake
              ${PROJECT_SOURCE_DIR}/cmake/aeg_system_deps.cmake
        DESTINATION ${AEG_CMAKE_DIR})
