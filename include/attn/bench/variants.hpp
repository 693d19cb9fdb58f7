// Micro-benchmarking your own set of attention variants with Google Benchmark.
//
// Optional: nothing else in attn includes this header, and it is the only one that needs Google
// Benchmark (link benchmark::benchmark). A variant is a compile-time combination of a score, a
// pattern, a SIMD arch and a K/V element type, with its run-time parameters in the policy objects;
// register_variants() adds one benchmark per (variant, shape, thread count):
//
//   #include <attn/attn.hpp>
//   #include <attn/bench/variants.hpp>
//
//   int main(int argc, char** argv) {
//     namespace ab = attn::bench;
//     ab::register_variants({{.seq_q = 2048}, {.seq_q = 4096, .head_dim = 128}}, {1, 2},
//                           ab::variant{"softmax/causal", attn::softmax{}, attn::causal{}},
//                           ab::variant{"sigmoid/causal", attn::sigmoid{}, attn::causal{}},
//                           ab::make_variant<attn::simd::avx2>("softmax/causal/avx2",
//                                                              attn::softmax{}, attn::causal{}));
//     return ab::run_benchmarks(argc, argv);
//   }
//
// Each benchmark is named "<variant>/B:1/H:8/N:2048/D:64/threads:1" (the convention of attn's
// own bench/ and of scripts/bench-report; shapes with Nq ≠ Nk, GQA or Dv ≠ D say so) and reports
// wall-clock time and the counters
//   GFLOPS        useful FLOPs per second: 4·D per visible (query, key) pair and query head
//                 (2·D for Q·Kᵀ, 2·Dv for P·V), pairs counted exactly from the pattern;
//   GBps          compulsory bytes per second: Q, K, V (as stored) read once, O written once;
//   pct_fma_peak  GFLOPS as a % of this machine's FMA peak at the same thread count,
//   pct_bandwidth GBps as a % of its DRAM read bandwidth at the same thread count — both
//                 measured in-process (attn/bench/peak.hpp) the first time they are needed.
// A compute-bound variant is judged by pct_fma_peak, a memory-bound one (decoding: one or a few
// queries against a long K/V) by pct_bandwidth.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "attn/attention.hpp"
#include "attn/bench/peak.hpp"
#include "attn/cache/attention.hpp"
#include "attn/cache/kv_cache.hpp"
#include "attn/pattern/dense.hpp"
#include "attn/score/softmax.hpp"

namespace attn::bench {

/// One attention problem. Zeros mean "same as": seq_k = seq_q, heads_kv = heads_q,
/// head_dim_v = head_dim.
struct shape {
  idx batch = 1, seq_q = 2048, seq_k = 0, heads_q = 8, heads_kv = 0, head_dim = 64, head_dim_v = 0;

  idx keys() const { return seq_k ? seq_k : seq_q; }
  idx kv_heads() const { return heads_kv ? heads_kv : heads_q; }
  idx value_dim() const { return head_dim_v ? head_dim_v : head_dim; }

  /// "B:1/H:8/N:2048/D:64", plus "/Nk:…", "/Hkv:…", "/Dv:…" where they differ.
  std::string name() const {
    std::string s = "B:" + std::to_string(batch) + "/H:" + std::to_string(heads_q) +
                    "/N:" + std::to_string(seq_q) + "/D:" + std::to_string(head_dim);
    if (keys() != seq_q) s += "/Nk:" + std::to_string(keys());
    if (kv_heads() != heads_q) s += "/Hkv:" + std::to_string(kv_heads());
    if (value_dim() != head_dim) s += "/Dv:" + std::to_string(value_dim());
    return s;
  }
};

/// A compile-time combination: Score × Pattern × Arch × Element (the type K and V are stored
/// in: float tensors, or a kv_cache<Element> of bfloat16 / half / q8_0 rows read in place).
template <class Score, class Pattern, class Arch = simd::default_arch, class Element = float>
struct variant {
  std::string name;
  Score score{};
  Pattern pattern{};
};
template <class Score, class Pattern>
variant(const char*, Score, Pattern) -> variant<Score, Pattern>;
template <class Score, class Pattern>
variant(std::string, Score, Pattern) -> variant<Score, Pattern>;

/// A variant with an explicit arch and/or K/V element type.
template <class Arch, class Element = float, class Score, class Pattern>
variant<Score, Pattern, Arch, Element> make_variant(std::string name, Score score,
                                                    Pattern pattern) {
  return {std::move(name), std::move(score), std::move(pattern)};
}

/// Visible (query, key) pairs of `pattern` on `s`, summed over batch and query heads: whole
/// tiles from classify(), per-pair visible() only on partial tiles, so it is exact and cheap.
template <class Pattern>
double visible_pairs(Pattern pattern, const shape& s) {
  const attn::detail::problem_shape ps{s.batch,      s.seq_q,    s.keys(),     s.heads_q,
                                       s.kv_heads(), s.head_dim, s.value_dim()};
  pattern.check(ps);
  attn::detail::prepare(pattern, ps);
  constexpr idx tile = 64;
  double pairs = 0;
  for (idx b = 0; b < s.batch; ++b)
    for (idx h = 0; h < s.heads_q; ++h) {
      const head_ctx c{.batch = b,
                       .head = h,
                       .kv_head = h / (s.heads_q / s.kv_heads()),
                       .heads = s.heads_q,
                       .seq_q = s.seq_q,
                       .seq_k = s.keys()};
      for (idx q0 = 0; q0 < s.seq_q; q0 += tile) {
        const idx q1 = std::min(q0 + tile, s.seq_q);
        for (idx k0 = 0; k0 < s.keys(); k0 += tile) {
          const idx k1 = std::min(k0 + tile, s.keys());
          const tile_kind kind = pattern.classify(c, q0, q1, k0, k1);
          if (kind == tile_kind::full) pairs += static_cast<double>((q1 - q0) * (k1 - k0));
          if (kind != tile_kind::partial) continue;
          for (idx i = q0; i < q1; ++i)
            for (idx j = k0; j < k1; ++j) pairs += pattern.visible(c, i, j) ? 1.0 : 0.0;
        }
      }
    }
  return pairs;
}

/// The machine's FMA peak (GFLOP/s) and read bandwidth (GB/s) at a thread count, measured once.
struct machine_limits {
  double fma_gflops = 0, bandwidth_gbps = 0;

  static const machine_limits& at(int threads) {
    static std::map<int, machine_limits> measured;  // benchmarks run one at a time
    auto it = measured.find(threads);
    if (it == measured.end())
      it = measured
               .emplace(threads, machine_limits{measure_fma_peak(threads),
                                                measure_read_bandwidth(threads, 512, 2)})
               .first;
    return it->second;
  }
};

namespace detail {

inline tensor4<float> seeded_tensor(idx b, idx n, idx h, idx d, std::uint32_t seed) {
  tensor4<float> t(b, n, h, d);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = dist(gen);
  return t;
}

/// Bytes of one stored K or V value.
template <class Element>
double bytes_per_value() {
  if constexpr (std::is_same_v<Element, q8_0>)
    return 1.0 + 4.0 / 32.0;  // int8 plus one float scale per 32 values
  else
    return static_cast<double>(sizeof(attn::detail::stored_t<Element>));
}

template <class Score, class Pattern, class Arch, class Element>
void run_variant(benchmark::State& state, const variant<Score, Pattern, Arch, Element>& v,
                 const shape& s, int threads) {
  const idx nk = s.keys(), hkv = s.kv_heads(), dv = s.value_dim();
  const tensor4<float> q = seeded_tensor(s.batch, s.seq_q, s.heads_q, s.head_dim, 1);
  const tensor4<float> k = seeded_tensor(s.batch, nk, hkv, s.head_dim, 2);
  const tensor4<float> val = seeded_tensor(s.batch, nk, hkv, dv, 3);
  tensor4<float> out(s.batch, s.seq_q, s.heads_q, dv);
  out.setZero();
  options opt;
  opt.threads = threads;

  double seconds = 0;
  auto timed = [&](auto&& call) {
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : state) {
      call();
      benchmark::DoNotOptimize(out.data());
      benchmark::ClobberMemory();
    }
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  if constexpr (std::is_same_v<Element, float>) {
    timed([&] { attention<Arch>(q, k, val, out, v.score, v.pattern, opt); });
  } else {
    kv_cache<Element> cache(
        {.batch = s.batch, .capacity = nk, .heads = hkv, .head_dim = s.head_dim, .head_dim_v = dv});
    cache.append(k, val);
    timed([&] { attention<Arch>(q, std::as_const(cache), out, v.score, v.pattern, opt); });
  }

  const double iterations = static_cast<double>(state.iterations());
  const double flops =
      2.0 * static_cast<double>(s.head_dim + dv) * visible_pairs(v.pattern, s) * iterations;
  const double bytes = (4.0 * static_cast<double>(q.size() + out.size()) +
                        bytes_per_value<Element>() * static_cast<double>(k.size() + val.size())) *
                       iterations;
  const machine_limits& limits = machine_limits::at(threads);
  const double gflops = flops / seconds * 1e-9, gbps = bytes / seconds * 1e-9;
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsRate);
  state.counters["GBps"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsRate);
  state.counters["pct_fma_peak"] = 100.0 * gflops / limits.fma_gflops;
  state.counters["pct_bandwidth"] = 100.0 * gbps / limits.bandwidth_gbps;
}

}  // namespace detail

/// Registers one benchmark per (variant, shape, thread count): milliseconds, wall-clock time
/// (the kernel runs on its own threads, whose CPU time Google Benchmark would not see).
template <class... Variants>
void register_variants(const std::vector<shape>& shapes, const std::vector<int>& thread_counts,
                       const Variants&... variants) {
  auto add = [&](const auto& v) {
    for (const shape& s : shapes)
      for (int threads : thread_counts) {
        const std::string name = v.name + "/" + s.name() + "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(
            name.c_str(),
            [v, s, threads](benchmark::State& state) { detail::run_variant(state, v, s, threads); })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
  };
  (add(variants), ...);
}

/// Google Benchmark's main: parses its flags, runs what was registered, returns the exit code.
inline int run_benchmarks(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace attn::bench
