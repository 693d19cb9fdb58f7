// The machine's limits, measured in the same run as the kernels they are compared with:
//   peak/fma/threads:<n>        fp32 FMA throughput (counter GFLOPS, 2 FLOPs per lane per FMA)
//   peak/bandwidth/threads:<n>  read bandwidth from a buffer far larger than the last-level
//                               cache (counter GBps = bytes/s / 1e9)
// for one thread and for all hardware threads (aggregate over the threads). Both use attn's
// own SIMD layer at the arch the bench is compiled for, so they are the ceilings of that build.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <string>

#include "attn/bench/peak.hpp"
#include "common.hpp"

namespace {

using arch = attn::simd::default_arch;

// ---- FMA throughput -------------------------------------------------------------------------

constexpr long rounds_per_iteration =
    65536;  // ~0.4 ms: long enough to hide the threads' start barrier

void fma_peak(benchmark::State& state) {
  // Read through volatile at every iteration: opaque to the compiler, which can then neither fold
  // the chains nor hoist the (pure) run out of the loop. Not benchmark::DoNotOptimize on the
  // float locals: with GCC 12 and Debian's Google Benchmark 1.7 its "+m,r" asm handed the chains
  // garbage (seen: mul = 4.6e-41, a subnormal), and on Intel cores every FMA on a subnormal
  // takes a microcode assist — the 2-thread peak read 2 GFLOP/s instead of 270.
  volatile float mul = 0.9999999f, add = 1e-7f;
  float sink = 0.0f;
  for (auto _ : state) sink += attn::bench::fma_chains<arch>::run(rounds_per_iteration, mul, add);
  benchmark::DoNotOptimize(sink);
  attn_bench::set_gflops(state, attn::bench::fma_chains<arch>::flops_per_round *
                                    static_cast<double>(rounds_per_iteration));
}

// ---- read bandwidth -------------------------------------------------------------------------

/// Bytes read per pass: 1 GiB, or ATTN_BENCH_BANDWIDTH_MIB mebibytes. Zen 4's L3 is 32 MiB.
std::size_t buffer_bytes() {
  static const std::size_t bytes = [] {
    std::size_t mib = 1024;
    if (const char* env = std::getenv("ATTN_BENCH_BANDWIDTH_MIB"))
      mib = std::max<std::size_t>(64, static_cast<std::size_t>(std::strtoull(env, nullptr, 10)));
    return mib << 20;
  }();
  return bytes;
}

/// The buffer, allocated and written once (so every page is mapped), shared by all threads.
const float* buffer() {
  static const float* data = [] {
    auto* p = static_cast<float*>(::operator new (buffer_bytes(), std::align_val_t{64}));
    std::fill(p, p + buffer_bytes() / sizeof(float), 1.0f);
    return p;  // lives until exit
  }();
  return data;
}

void read_bandwidth(benchmark::State& state) {
  // Each thread streams its own contiguous share.
  constexpr std::size_t step = 8 * static_cast<std::size_t>(attn::simd::lanes<arch>);
  const std::size_t floats = buffer_bytes() / sizeof(float);
  const auto threads = static_cast<std::size_t>(state.threads());
  const auto index = static_cast<std::size_t>(state.thread_index());
  const std::size_t share = floats / threads / step * step;
  const float* begin = buffer() + index * share;

  for (auto _ : state) benchmark::DoNotOptimize(attn::bench::stream_sum<arch>(begin, share));

  const double bytes = static_cast<double>(share * sizeof(float));
  state.counters["GBps"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * bytes * 1e-9, benchmark::Counter::kIsRate);
}

[[maybe_unused]] const bool registered = [] {
  const int all = attn_bench::all_threads();
  auto* f = benchmark::RegisterBenchmark("peak/fma", fma_peak)->UseRealTime()->Threads(1);
  auto* b = benchmark::RegisterBenchmark("peak/bandwidth", read_bandwidth)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime()
                ->Threads(1);
  if (all > 1) {
    f->Threads(all);
    b->Threads(all);
  }
  return true;
}();

}  // namespace
