// Helpers shared by the attention benchmarks: shapes and their names, seeded random tensors,
// useful-FLOP counts and the GFLOPS counter, and the plain Eigen composition of attention that
// every attn kernel is compared with ("eigen/..." benchmarks).
//
// Benchmark names. scripts/bench-report keys on names of the form
//   <family>/<pattern>/B:1/H:8/N:2048/D:64/threads:1      (an attn kernel)
//   eigen/<pattern>/B:1/H:8/N:2048/D:64                   (the Eigen composition, one thread)
//   peak/fma/threads:<n>, peak/bandwidth/threads:<n>      (the machine's limits)
// Google Benchmark appends "/real_time" (UseRealTime) and "/min_time:…" (MinTime) to them; the
// report drops those components before matching, so they do not matter. attn_bench's main()
// sets a default --benchmark_min_time of 0.5 s, so MinTime() is not needed per benchmark.
#pragma once

#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "attn/tensor.hpp"
#include "eigen_attention.hpp"

namespace attn_bench {

/// Hardware threads, at least 1: the thread count of the "all threads" benchmarks.
inline int all_threads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

/// One self-attention problem: Q, K, V, O all [batch, seq, heads, head_dim].
struct shape {
  std::ptrdiff_t batch = 1, heads = 8, seq = 2048, head_dim = 64;

  /// "B:1/H:8/N:2048/D:64", the middle part of every attention benchmark's name.
  std::string name() const {
    return "B:" + std::to_string(batch) + "/H:" + std::to_string(heads) +
           "/N:" + std::to_string(seq) + "/D:" + std::to_string(head_dim);
  }
};

/// A [batch, seq, heads, head_dim] tensor of uniform values in [-1, 1], the same for a seed.
inline attn::tensor4<float> random_tensor(std::ptrdiff_t batch, std::ptrdiff_t seq,
                                          std::ptrdiff_t heads, std::ptrdiff_t head_dim,
                                          std::uint32_t seed) {
  attn::tensor4<float> t(batch, seq, heads, head_dim);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  float* p = t.data();
  for (Eigen::Index i = 0; i < t.size(); ++i) p[i] = dist(gen);
  return t;
}

/// Q, K, V (seeds 1, 2, 3) and a zeroed output for one shape.
struct problem {
  attn::tensor4<float> q, k, v, out;
  explicit problem(const shape& s)
      : q(random_tensor(s.batch, s.seq, s.heads, s.head_dim, 1)),
        k(random_tensor(s.batch, s.seq, s.heads, s.head_dim, 2)),
        v(random_tensor(s.batch, s.seq, s.heads, s.head_dim, 3)),
        out(s.batch, s.seq, s.heads, s.head_dim) {
    out.setZero();
  }
};

// ---- useful work ----------------------------------------------------------------------------
// Useful FLOPs are 2·head_dim (Q·Kᵀ) + 2·head_dim_v (P·V) per visible (query, key) pair and
// head — 4·Nq·Nk·d per head for dense attention. Causal counts half the pairs (the usual
// FlashAttention convention, DESIGN.md §3); windows count the visible pairs exactly.

inline double dense_pairs(std::ptrdiff_t nq, std::ptrdiff_t nk) {
  return static_cast<double>(nq) * static_cast<double>(nk);
}

inline double causal_pairs(std::ptrdiff_t nq, std::ptrdiff_t nk) {
  return 0.5 * dense_pairs(nq, nk);
}

/// Pairs visible under window{left, right}, bottom-right aligned (query i at key position
/// i + nk − nq), no sinks.
inline double window_pairs(std::ptrdiff_t nq, std::ptrdiff_t nk, std::ptrdiff_t left,
                           std::ptrdiff_t right) {
  double pairs = 0;
  for (std::ptrdiff_t i = 0; i < nq; ++i) {
    const std::ptrdiff_t p = i + nk - nq;
    const std::ptrdiff_t lo = std::max<std::ptrdiff_t>(0, p - left);
    const std::ptrdiff_t hi = std::min<std::ptrdiff_t>(nk - 1, p + right);
    if (hi >= lo) pairs += static_cast<double>(hi - lo + 1);
  }
  return pairs;
}

/// Useful FLOPs of one call: `pairs_per_head` visible pairs in each of batch·heads heads.
inline double attention_flops(const shape& s, double pairs_per_head) {
  return 4.0 * static_cast<double>(s.head_dim) * pairs_per_head * static_cast<double>(s.batch) *
         static_cast<double>(s.heads);
}

/// Sets the counter GFLOPS = flops_per_iteration · iterations / elapsed seconds (real time
/// under UseRealTime). Call after the timing loop. Safe under ->Threads(n): each thread adds
/// its own work and the library sums the counters, giving the aggregate rate.
inline void set_gflops(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOPS"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * flops_per_iteration * 1e-9,
                         benchmark::Counter::kIsRate);
}

/// The settings every attention benchmark uses: milliseconds, wall-clock time (the kernel may
/// run on its own threads, whose CPU time the library would not see).
inline benchmark::internal::Benchmark* configure(benchmark::internal::Benchmark* b) {
  return b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace attn_bench
