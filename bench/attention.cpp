// attn's softmax and sigmoid attention (the fused loop with each score function) through the
// public API, on the same shapes so that the report puts them side by side; counter GFLOPS on
// useful FLOPs (4·Nq·Nk·d per head over the visible pairs):
//   <softmax|sigmoid>/<dense|causal>/B:1/H:8/N:2048/D:64/threads:1   and N:4096/D:128
//   <softmax|sigmoid>/window512/B:1/H:8/N:8192/D:64/threads:1        window{left = 511, right = 0}
//   <softmax|sigmoid>/dense/B:1/H:8/N:2048/D:64/threads:<all>        all hardware threads
// Sigmoid runs with its default bias −ln N. The matching Eigen compositions are in
// eigen_attention.cpp.
#include <benchmark/benchmark.h>

#include <attn/attn.hpp>
#include <string>

#include "common.hpp"

namespace {

template <class Score, class Pattern>
void fused_attention(benchmark::State& state, Score score, attn_bench::shape s, Pattern pattern,
                     int threads, double pairs_per_head) {
  attn_bench::problem p(s);
  attn::options opt;
  opt.threads = threads;
  for (auto _ : state) {
    attn::attention(p.q, p.k, p.v, p.out, score, pattern, opt);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  attn_bench::set_gflops(state, attn_bench::attention_flops(s, pairs_per_head));
}

template <class Score, class Pattern>
void add(const char* family, Score score, const char* pattern_name, const attn_bench::shape& s,
         Pattern pattern, int threads, double pairs_per_head) {
  const std::string name = std::string(family) + "/" + pattern_name + "/" + s.name() +
                           "/threads:" + std::to_string(threads);
  attn_bench::configure(benchmark::RegisterBenchmark(name.c_str(), fused_attention<Score, Pattern>,
                                                     score, s, pattern, threads, pairs_per_head));
}

template <class Score>
void add_family(const char* family, Score score) {
  using attn_bench::causal_pairs;
  using attn_bench::dense_pairs;
  const attn_bench::shape small{1, 8, 2048, 64}, large{1, 8, 4096, 128}, long_seq{1, 8, 8192, 64};
  for (const attn_bench::shape& s : {small, large}) {
    add(family, score, "dense", s, attn::dense{}, 1, dense_pairs(s.seq, s.seq));
    add(family, score, "causal", s, attn::causal{}, 1, causal_pairs(s.seq, s.seq));
  }
  add(family, score, "window512", long_seq, attn::window{.left = 511, .right = 0}, 1,
      attn_bench::window_pairs(long_seq.seq, long_seq.seq, 511, 0));
  if (const int all = attn_bench::all_threads(); all > 1)
    add(family, score, "dense", small, attn::dense{}, all, dense_pairs(small.seq, small.seq));
}

[[maybe_unused]] const bool registered = [] {
  add_family("softmax", attn::softmax{});
  add_family("sigmoid", attn::sigmoid{});
  return true;
}();

}  // namespace
