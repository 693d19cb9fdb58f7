# Debian's xsimd 8.1 package exports the target `xsimd` with INTERFACE_LINK_LIBRARIES "xtl", but
# its xsimdConfig.cmake never looks for xtl. Without an `xtl` target every consumer then links
# with -lxtl, which does not exist (xtl is header-only). xsimd needs xtl only for its optional
# xtl::xcomplex support, which attn does not use, so the dangling name is dropped.
#
# Included after find_package(xsimd) by attn's CMakeLists.txt and by the installed
# attnConfig.cmake.
if(TARGET xsimd AND NOT TARGET xtl)
  get_target_property(_attn_xsimd_libs xsimd INTERFACE_LINK_LIBRARIES)
  if(_attn_xsimd_libs AND "xtl" IN_LIST _attn_xsimd_libs)
    list(REMOVE_ITEM _attn_xsimd_libs xtl)
    set_target_properties(xsimd PROPERTIES INTERFACE_LINK_LIBRARIES "${_attn_xsimd_libs}")
  endif()
  unset(_attn_xsimd_libs)
endif()
