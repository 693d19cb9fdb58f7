# Runs one step of the packaging tests (see CMakeLists.txt next to this file):
#   cmake -DSTEP=<install|find_package|add_subdirectory|pkg_config> -DSOURCE_DIR=... -P driver.cmake
cmake_minimum_required(VERSION 3.20)

foreach(var IN ITEMS STEP SOURCE_DIR ATTN_SOURCE_DIR BUILD_DIR WORK_DIR PREFIX GENERATOR
                     CXX_COMPILER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "driver.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()

# Runs a command, echoing it; stops the test with its output when it fails.
function(run)
  string(REPLACE ";" " " _shown "${ARGN}")
  message(STATUS "$ ${_shown}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "failed (${_rc}): ${_shown}")
  endif()
endfunction()

# Configures, builds and runs the consumer project in ${SOURCE_DIR}/<project>.
function(consumer project)
  set(_build "${WORK_DIR}/${project}")
  file(REMOVE_RECURSE "${_build}")
  run("${CMAKE_COMMAND}" -S "${SOURCE_DIR}/${project}" -B "${_build}" -G "${GENERATOR}"
      "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" "-DCMAKE_BUILD_TYPE=${CONFIG}" ${ARGN})
  run("${CMAKE_COMMAND}" --build "${_build}" --config "${CONFIG}")
  find_program(
    _exe attn_consumer
    PATHS "${_build}" "${_build}/${CONFIG}"
    NO_DEFAULT_PATH NO_CACHE)
  if(NOT _exe)
    message(FATAL_ERROR "attn_consumer was not built in ${_build}")
  endif()
  run("${_exe}")
endfunction()

if(STEP STREQUAL "install")
  file(REMOVE_RECURSE "${PREFIX}")
  run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" --config "${CONFIG}")
  foreach(file IN ITEMS include/attn/attn.hpp share/cmake/attn/attnConfig.cmake
                        share/cmake/attn/attnConfigVersion.cmake share/pkgconfig/attn.pc)
    if(NOT EXISTS "${PREFIX}/${file}")
      message(FATAL_ERROR "the install lacks ${file}")
    endif()
  endforeach()

elseif(STEP STREQUAL "find_package")
  consumer(find_package "-DCMAKE_PREFIX_PATH=${PREFIX}")

elseif(STEP STREQUAL "add_subdirectory")
  consumer(add_subdirectory "-DATTN_SOURCE_DIR=${ATTN_SOURCE_DIR}")

elseif(STEP STREQUAL "pkg_config")
  if(NOT PKG_CONFIG)
    message(FATAL_ERROR "driver.cmake: -DPKG_CONFIG=... is required")
  endif()
  set(ENV{PKG_CONFIG_PATH} "${PREFIX}/share/pkgconfig")
  execute_process(
    COMMAND "${PKG_CONFIG}" --cflags --libs attn
    OUTPUT_VARIABLE _flags
    OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
  message(STATUS "pkg-config --cflags --libs attn: ${_flags}")
  separate_arguments(_flags UNIX_COMMAND "${_flags}")
  set(_build "${WORK_DIR}/pkg_config")
  file(REMOVE_RECURSE "${_build}")
  file(MAKE_DIRECTORY "${_build}")
  run("${CXX_COMPILER}" -std=c++20 -O2 "-DATTN_CONSUMER=\"pkg-config\"" "${SOURCE_DIR}/main.cpp"
      -o "${_build}/attn_consumer" ${_flags})
  run("${_build}/attn_consumer")

else()
  message(FATAL_ERROR "driver.cmake: unknown STEP '${STEP}'")
endif()
