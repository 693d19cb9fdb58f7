// The main of every attn test binary. Compiled once, without any arch flags, so that it runs on
// every x86-64: it checks whether this CPU can execute the arch the binary's tests were compiled
// for (support/arch_tag.cpp) and, if not, reports every test as skipped instead of running code
// that would die of an illegal instruction.
//
// ATTN_TEST_PRETEND_CPU_LACKS=<feature> makes it believe the CPU lacks <feature> (used by the
// test of this skip path).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "support/arch.hpp"

namespace {

struct cpu_feature {
  const char* name;
  bool present;
};

/// The CPU features the code of `arch` may use (the -m flags of tests/CMakeLists.txt).
std::vector<cpu_feature> features_needed(std::string_view arch) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // __builtin_cpu_supports wants a string literal, hence a macro.
#define ATTN_CPU_FEATURE(name) \
  cpu_feature { name, __builtin_cpu_supports(name) != 0 }
  if (arch == "sse4_2") return {ATTN_CPU_FEATURE("sse4.2")};
  if (arch == "avx2") return {ATTN_CPU_FEATURE("avx2"), ATTN_CPU_FEATURE("fma")};
  if (arch == "avx512")
    return {ATTN_CPU_FEATURE("avx512f"),  ATTN_CPU_FEATURE("avx512cd"),
            ATTN_CPU_FEATURE("avx512bw"), ATTN_CPU_FEATURE("avx512dq"),
            ATTN_CPU_FEATURE("avx512vl"), ATTN_CPU_FEATURE("fma")};
  if (arch == "avx512_bf16")
    return {ATTN_CPU_FEATURE("avx512f"),   ATTN_CPU_FEATURE("avx512cd"),
            ATTN_CPU_FEATURE("avx512bw"),  ATTN_CPU_FEATURE("avx512dq"),
            ATTN_CPU_FEATURE("avx512vl"),  ATTN_CPU_FEATURE("fma"),
            ATTN_CPU_FEATURE("avx512bf16")};
#undef ATTN_CPU_FEATURE
  return {};
#else
  if (arch == "scalar" || arch == "contract") return {};
  return {{"x86-64", false}};
#endif
}

/// The first feature `arch` needs that this CPU lacks, or "" when it runs the arch.
std::string missing_feature(std::string_view arch) {
  const char* pretend = std::getenv("ATTN_TEST_PRETEND_CPU_LACKS");
  for (const cpu_feature& f : features_needed(arch)) {
    if (!f.present || (pretend != nullptr && std::string_view(pretend) == f.name)) return f.name;
  }
  return {};
}

/// Skips the whole run in its global set-up: no test body executes. The message carries
/// gtest's "[  SKIPPED ]" tag, which ctest (gtest_discover_tests) reads as a skipped test.
class skip_everything : public ::testing::Environment {
 public:
  explicit skip_everything(std::string notice) : notice_(std::move(notice)) {}
  void SetUp() override { GTEST_SKIP() << "[  SKIPPED ] " << notice_; }

 private:
  std::string notice_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const std::string_view arch = attn::test::test_arch;
  const std::string binary = "attn_tests_" + std::string(arch);
  // --gtest_list_tests output is parsed by gtest_discover_tests: print nothing else then.
  const bool listing = GTEST_FLAG_GET(list_tests);

  if (const std::string missing = missing_feature(arch); !missing.empty()) {
    const std::string notice = binary + ": skipped: this CPU lacks " + missing;
    if (!listing) std::printf("%s\n", notice.c_str());
    ::testing::AddGlobalTestEnvironment(new skip_everything(notice));
  } else if (!listing && arch != "contract") {
    std::printf("%s: testing simd arch %s\n", binary.c_str(), attn::test::simd_arch_name().c_str());
  }
  std::fflush(stdout);
  return RUN_ALL_TESTS();
}
