// The machine's own limits, measured in-process: fp32 FMA throughput and DRAM read bandwidth.
// Kernels are reported as a fraction of these (DESIGN.md §3), so they are measured on the same
// machine, in the same run, with attn's own SIMD layer at the arch the caller is compiled for.
//
// Used by attn/bench/variants.hpp (the "% of peak" counters), by bench/peak.cpp (the
// peak/fma and peak/bandwidth benchmarks) and by the demo. No Google Benchmark dependency.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#include "attn/simd/ops.hpp"

namespace attn::bench {

/// Independent chains of fused multiply-adds on the widest registers of Arch.
///
/// An FMA's result is needed again only `chains` FMAs later. Zen 4 issues two 256-bit FMAs per
/// cycle (one 512-bit) with a latency of 4 cycles, so 8 chains keep it busy; 24 leave headroom
/// for cores with more or longer pipes and still fit the 32 vector registers of AVX-512 (12 for
/// the 16-register arches) with the two operands.
template <class Arch = simd::default_arch>
struct fma_chains {
  using vec = simd::vec<Arch>;
  static constexpr int lanes = simd::lanes<Arch>;
  static constexpr int chains = lanes >= 16 ? 24 : 12;
  /// Useful FLOPs of one round: one FMA (2 FLOPs per lane) on every chain.
  static constexpr double flops_per_round = 2.0 * lanes * chains;

  /// Runs `rounds` rounds and returns a value that depends on every FMA. `mul` and `add` should
  /// be opaque to the compiler (e.g. read from volatile variables: bench/peak.cpp says why not
  /// benchmark::DoNotOptimize).
  static float run(long rounds, float mul, float add) {
    const vec m = simd::splat<Arch>(mul), a = simd::splat<Arch>(add);
    vec acc[chains];
#pragma GCC unroll 32
    for (int c = 0; c < chains; ++c) acc[c] = simd::splat<Arch>(static_cast<float>(c));
    for (long i = 0; i < rounds; ++i) {
#pragma GCC unroll 32
      for (int c = 0; c < chains; ++c) acc[c] = simd::fma(acc[c], m, a);
    }
    vec total = acc[0];
    for (int c = 1; c < chains; ++c) total = total + acc[c];
    float lane[lanes];
    simd::store<Arch>(lane, total);
    float sum = 0.0f;
    for (float x : lane) sum += x;
    return sum;
  }
};

/// Sums `count` floats (a multiple of 8·lanes) with independent accumulators, so the loads, not
/// the add latency, set the pace.
template <class Arch = simd::default_arch>
float stream_sum(const float* data, std::size_t count) {
  constexpr int unroll = 8;
  constexpr std::size_t lanes = static_cast<std::size_t>(simd::lanes<Arch>);
  simd::vec<Arch> sum[unroll];
#pragma GCC unroll 16
  for (int u = 0; u < unroll; ++u) sum[u] = simd::splat<Arch>(0.0f);
  for (std::size_t i = 0; i + unroll * lanes <= count; i += unroll * lanes) {
#pragma GCC unroll 16
    for (int u = 0; u < unroll; ++u)
      sum[u] = sum[u] + simd::load<Arch>(data + i + static_cast<std::size_t>(u) * lanes);
  }
  simd::vec<Arch> total = sum[0];
  for (int u = 1; u < unroll; ++u) total = total + sum[u];
  float lane[lanes];
  simd::store<Arch>(lane, total);
  float s = 0.0f;
  for (float x : lane) s += x;
  return s;
}

namespace detail {
/// Runs body(thread_index) on `threads` threads at once; returns the wall time in seconds.
template <class Body>
double time_on_threads(int threads, const Body& body) {
  std::vector<std::thread> pool;
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 1; t < threads; ++t) pool.emplace_back([&body, t] { body(t); });
  body(0);
  for (auto& th : pool) th.join();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace detail

/// FMA throughput of `threads` threads, GFLOP/s: best of `repeats` runs of ~0.1 s each.
template <class Arch = simd::default_arch>
double measure_fma_peak(int threads, int repeats = 3) {
  using probe = fma_chains<Arch>;
  constexpr long rounds = 4'000'000;
  threads = std::max(1, threads);
  volatile float mul = 0.9999999f, add = 1e-7f;  // opaque: the chains cannot be folded
  std::vector<float> sink(static_cast<std::size_t>(threads));
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    const double s = detail::time_on_threads(
        threads, [&](int t) { sink[static_cast<std::size_t>(t)] = probe::run(rounds, mul, add); });
    best = std::max(best, probe::flops_per_round * rounds * threads / s * 1e-9);
  }
  volatile float keep = sink[0];  // the result is observed
  static_cast<void>(keep);
  return best;
}

/// DRAM read bandwidth of `threads` threads streaming a `mib`-MiB buffer (far larger than the
/// last-level cache: Zen 4 has 32 MiB of L3), GB/s: best of `repeats` passes.
template <class Arch = simd::default_arch>
double measure_read_bandwidth(int threads, std::size_t mib = 512, int repeats = 3) {
  threads = std::max(1, threads);
  const std::size_t floats = (mib << 20) / sizeof(float);
  const std::unique_ptr<float[]> buffer(new float[floats]);
  std::fill(buffer.get(), buffer.get() + floats, 1.0f);  // maps every page before timing
  const std::size_t share = floats / static_cast<std::size_t>(threads);
  std::vector<float> sink(static_cast<std::size_t>(threads));
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    const double s = detail::time_on_threads(threads, [&](int t) {
      const auto i = static_cast<std::size_t>(t);
      sink[i] = stream_sum<Arch>(buffer.get() + i * share, share);
    });
    best = std::max(best, static_cast<double>(share * sizeof(float)) * threads / s * 1e-9);
  }
  volatile float keep = sink[0];
  static_cast<void>(keep);
  return best;
}

}  // namespace attn::bench
