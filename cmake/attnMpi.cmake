# attn::mpi — the optional distributed component (include/attn/dist/: ring attention over MPI).
#
# An INTERFACE target that adds MPI to attn::attn. It exists only when ATTN_WITH_MPI is on (the
# default) and find_package(MPI COMPONENTS CXX) succeeds; tests/dist, the ring example and the
# ring benchmark check `if(TARGET attn::mpi)`. Nothing extra is installed: the dist/ headers
# travel with include/attn, and a consumer links MPI itself (find_package(MPI) + MPI::MPI_CXX).
include_guard(GLOBAL)

if(NOT ATTN_WITH_MPI)
  return()
endif()

find_package(MPI COMPONENTS CXX QUIET)
if(NOT MPI_CXX_FOUND)
  message(STATUS "attn: MPI (C++) not found, attn::mpi and its tests are not built "
                 "(scripts/install-deps.sh --mpi installs Open MPI)")
  return()
endif()

add_library(attn_mpi INTERFACE)
add_library(attn::mpi ALIAS attn_mpi)
target_link_libraries(attn_mpi INTERFACE attn::attn MPI::MPI_CXX)
# Open MPI's C++ bindings are deprecated and not needed: dist/ uses the C API only.
target_compile_definitions(attn_mpi INTERFACE OMPI_SKIP_MPICXX MPICH_SKIP_MPICXX)

# Flags for running attn's own MPI tests, example and benchmark through MPIEXEC_EXECUTABLE:
# Open MPI refuses more ranks than cores and running as root (containers, CI) unless told;
# other MPIs do not know these flags.
set(ATTN_MPIEXEC_FLAGS "")
if(MPIEXEC_EXECUTABLE)
  execute_process(COMMAND "${MPIEXEC_EXECUTABLE}" --version OUTPUT_VARIABLE _attn_mpiexec_version
                  ERROR_QUIET RESULT_VARIABLE _attn_mpiexec_result)
  if(_attn_mpiexec_result EQUAL 0 AND _attn_mpiexec_version MATCHES "Open MPI|OpenRTE")
    set(ATTN_MPIEXEC_FLAGS --oversubscribe --allow-run-as-root)
  endif()
endif()
message(STATUS "attn: MPI ${MPI_CXX_VERSION} found, building attn::mpi (${MPIEXEC_EXECUTABLE})")
