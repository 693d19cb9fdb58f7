# Compiler settings for attn's own targets (tests, benchmarks, examples) — never for the
# installed attn::attn, whose users choose their own flags.
#
#   attn_warnings(<target>)       the warning set, plus -Werror with ATTN_WERROR
#   attn_native(<target>)         -march=native, with ATTN_NATIVE
#   attn_own_targets(<dir> [NATIVE <bool>])
#                                 attn_warnings (and attn_native) on every executable and
#                                 library defined in <dir> and its subdirectories
#
# Eigen's and xsimd's headers come in through imported targets, hence as -isystem: the
# warnings below report attn's code only.
include_guard(GLOBAL)

function(attn_warnings target)
  get_target_property(_done ${target} ATTN_WARNINGS_APPLIED)
  if(_done)
    return()
  endif()
  set_property(TARGET ${target} PROPERTY ATTN_WARNINGS_APPLIED ON)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 $<$<BOOL:${ATTN_WERROR}>:/WX>)
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                                             $<$<BOOL:${ATTN_WERROR}>:-Werror>)
    # GCC 12.1-12.2 (Debian bookworm) reports its own AVX-512 intrinsics (_mm512_max_ps, ...)
    # as reading an uninitialized variable once inlined: GCC bug 105593, fixed in 12.3.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 12
       AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 12.3)
      target_compile_options(${target} PRIVATE -Wno-uninitialized)
    endif()
  endif()
endfunction()

function(attn_native target)
  if(NOT ATTN_NATIVE OR MSVC)
    return()
  endif()
  get_target_property(_done ${target} ATTN_NATIVE_APPLIED)
  if(_done)
    return()
  endif()
  set_property(TARGET ${target} PROPERTY ATTN_NATIVE_APPLIED ON)
  target_compile_options(${target} PRIVATE -march=native)
endfunction()

function(attn_own_targets dir)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "NATIVE" "")
  get_property(_targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_type ${_target} TYPE)
    if(_type MATCHES "^(EXECUTABLE|STATIC_LIBRARY|SHARED_LIBRARY|MODULE_LIBRARY|OBJECT_LIBRARY)$")
      attn_warnings(${_target})
      if(ARG_NATIVE)
        attn_native(${_target})
      endif()
    endif()
  endforeach()
  get_property(_subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(_subdir IN LISTS _subdirs)
    attn_own_targets("${_subdir}" NATIVE "${ARG_NATIVE}")
  endforeach()
endfunction()
