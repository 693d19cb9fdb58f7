// Compiled into every test binary with that binary's arch flags: tells the shared main which
// arch the binary was built for. Nothing here runs before main checks the CPU (test_arch is a
// constant, simd_arch_name is only called once the arch is known to be supported).
#include "support/arch.hpp"

#ifndef ATTN_TEST_ARCH
#error "ATTN_TEST_ARCH must name the arch this test binary is compiled for"
#endif

namespace attn::test {

extern const char* const test_arch = ATTN_TEST_ARCH;

std::string simd_arch_name() { return attn::simd::arch_name<arch>(); }

}  // namespace attn::test
