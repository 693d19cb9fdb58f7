// attn_bench's main(): Google Benchmark's, plus a default --benchmark_min_time of 0.5 s (so the
// whole default run stays short and benchmark names carry no "min_time:" component) and the
// build's SIMD arch in the JSON "context" block, which scripts/bench-report prints.
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

#include "attn/simd/arch.hpp"
#include "common.hpp"

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  static char default_min_time[] = "--benchmark_min_time=0.5";
  bool has_min_time = false;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--benchmark_min_time", 20) == 0) has_min_time = true;
  if (!has_min_time) args.insert(args.begin() + 1, default_min_time);
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);

  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  using arch = attn::simd::default_arch;
  benchmark::AddCustomContext("attn_simd_arch", attn::simd::arch_name<arch>());
  benchmark::AddCustomContext("attn_simd_lanes", std::to_string(attn::simd::lanes<arch>));
  benchmark::AddCustomContext("attn_hardware_threads", std::to_string(attn_bench::all_threads()));
#if defined(NDEBUG)
  benchmark::AddCustomContext("attn_bench_build", "release (NDEBUG)");
#else
  benchmark::AddCustomContext("attn_bench_build", "debug (assertions on): timings not meaningful");
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
