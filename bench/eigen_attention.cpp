// The plain Eigen composition of softmax attention (attn_bench::eigen_reference_attention in
// eigen_attention.hpp) at the shapes of the attn softmax benchmarks, one thread:
//   eigen/<dense|causal>/B:1/H:8/N:<n>/D:<d>            blocks of 128 queries
//   eigen_unblocked/<dense|causal>/B:1/H:8/N:<n>/D:<d>  a head's whole N × N score matrix at once
// scripts/bench-report divides the eigen/ times by the matching
// softmax/<pattern>/<shape>/threads:1.
#include <benchmark/benchmark.h>

#include <string>

#include "common.hpp"

namespace {

void eigen_attention(benchmark::State& state, attn_bench::shape s, bool causal,
                     Eigen::Index block_rows) {
  Eigen::setNbThreads(1);
  attn_bench::problem p(s);
  for (auto _ : state) {
    attn_bench::eigen_reference_attention(p.q, p.k, p.v, p.out, causal, {}, block_rows);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  const double pairs =
      causal ? attn_bench::causal_pairs(s.seq, s.seq) : attn_bench::dense_pairs(s.seq, s.seq);
  attn_bench::set_gflops(state, attn_bench::attention_flops(s, pairs));
}

[[maybe_unused]] const bool registered = [] {
  for (const attn_bench::shape s :
       {attn_bench::shape{1, 8, 2048, 64}, attn_bench::shape{1, 8, 4096, 128}})
    for (const bool causal : {false, true}) {
      const std::string pattern = causal ? "causal/" : "dense/";
      attn_bench::configure(benchmark::RegisterBenchmark(("eigen/" + pattern + s.name()).c_str(),
                                                         eigen_attention, s, causal, 128));
      // The same composition written the most direct way: the whole N × N score matrix of a
      // head at once (S = Q·Kᵀ for all queries, softmax, P·V).
      attn_bench::configure(benchmark::RegisterBenchmark(
          ("eigen_unblocked/" + pattern + s.name()).c_str(), eigen_attention, s, causal, s.seq));
    }
  return true;
}();

}  // namespace
