// The SIMD arch under test. Every file of tests/unit/ is compiled once per arch (see
// tests/CMakeLists.txt): attn_tests_scalar, _sse4_2, _avx2, _avx512. Tests instantiate the
// kernels with attn::test::arch, i.e. attn::simd::default_arch of this binary's compiler flags.
#pragma once

#include <string>

#include "attn/simd/arch.hpp"

namespace attn::test {

/// The arch the kernels of this binary are compiled for.
using arch = attn::simd::default_arch;

/// This binary's ATTN_TEST_ARCH: "scalar", "sse4_2", "avx2", "avx512" or "contract"
/// (defined in support/arch_tag.cpp, compiled with the binary's flags).
extern const char* const test_arch;

/// xsimd's name of attn::test::arch ("avx512bw", "fma3<avx2>", "sse4.2", "scalar").
std::string simd_arch_name();

}  // namespace attn::test
