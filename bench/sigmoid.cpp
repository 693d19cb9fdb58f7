// attn's sigmoid attention (FlashSigmoid, score/sigmoid.hpp) through the public API, with the
// default bias −ln N, on the shapes of softmax.cpp so that the report puts them side by side;
// counter GFLOPS on useful FLOPs (the same 4·Nq·Nk·d per head as softmax):
//   sigmoid/<dense|causal>/B:1/H:8/N:2048/D:64/threads:1   and N:4096/D:128
//   sigmoid/window512/B:1/H:8/N:8192/D:64/threads:1        window{left = 511, right = 0}
//   sigmoid/dense/B:1/H:8/N:2048/D:64/threads:<all>        all hardware threads
#include <benchmark/benchmark.h>

#include <attn/attn.hpp>
#include <string>

#include "common.hpp"

namespace {

template <class Pattern>
void sigmoid_attention(benchmark::State& state, attn_bench::shape s, Pattern pattern, int threads,
                       double pairs_per_head) {
  attn_bench::problem p(s);
  attn::options opt;
  opt.threads = threads;
  for (auto _ : state) {
    attn::attention(p.q, p.k, p.v, p.out, attn::sigmoid{}, pattern, opt);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  attn_bench::set_gflops(state, attn_bench::attention_flops(s, pairs_per_head));
}

template <class Pattern>
void add(const char* pattern_name, const attn_bench::shape& s, Pattern pattern, int threads,
         double pairs_per_head) {
  const std::string name = std::string("sigmoid/") + pattern_name + "/" + s.name() +
                           "/threads:" + std::to_string(threads);
  attn_bench::configure(benchmark::RegisterBenchmark(name.c_str(), sigmoid_attention<Pattern>, s,
                                                     pattern, threads, pairs_per_head));
}

[[maybe_unused]] const bool registered = [] {
  using attn_bench::causal_pairs;
  using attn_bench::dense_pairs;
  const attn_bench::shape small{1, 8, 2048, 64}, large{1, 8, 4096, 128}, long_seq{1, 8, 8192, 64};
  for (const attn_bench::shape& s : {small, large}) {
    add("dense", s, attn::dense{}, 1, dense_pairs(s.seq, s.seq));
    add("causal", s, attn::causal{}, 1, causal_pairs(s.seq, s.seq));
  }
  add("window512", long_seq, attn::window{.left = 511, .right = 0}, 1,
      attn_bench::window_pairs(long_seq.seq, long_seq.seq, 511, 0));
  if (const int all = attn_bench::all_threads(); all > 1)
    add("dense", small, attn::dense{}, all, dense_pairs(small.seq, small.seq));
  return true;
}();

}  // namespace
