// Prefill on bfloat16 Q, K, V tensors (narrow_tensors.hpp) against the same problem in float:
// with AVX512-BF16 compiled in (-march=native on Zen 4 / Sapphire Rapids) both tile products
// run on vdpbf16ps (kernel/tile_products.hpp, bf16_products); elsewhere K and V are widened
// once and the float loop runs.
//   bf16_tensors/<dense|causal>/B:1/H:8/N:2048/D:128/threads:1    (float output)
// Compare with softmax/<dense|causal>/B:1/H:8/N:2048/D:128/threads:1 registered here too
// (attention.cpp's D = 128 shape is N = 4096). GFLOPS counts the useful FLOPs as everywhere.
#include <benchmark/benchmark.h>

#include <attn/attn.hpp>
#include <string>

#include "common.hpp"

namespace {

using bf16_tensor = Eigen::Tensor<Eigen::bfloat16, 4, Eigen::RowMajor>;

template <class Element, class Pattern>
void prefill(benchmark::State& state, attn_bench::shape s, Pattern pattern, double pairs) {
  const attn_bench::problem p(s);
  const Eigen::Tensor<Element, 4, Eigen::RowMajor> q = p.q.cast<Element>(), k = p.k.cast<Element>(),
                                                   v = p.v.cast<Element>();
  attn::tensor4<float> out(s.batch, s.seq, s.heads, s.head_dim);
  attn::options opt;
  opt.threads = 1;
  for (auto _ : state) {
    attn::attention(q, k, v, out, attn::softmax{}, pattern, opt);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  attn_bench::set_gflops(state, attn_bench::attention_flops(s, pairs));
}

template <class Pattern>
void add(const std::string& pattern_name, Pattern pattern, double pairs, attn_bench::shape s) {
  const std::string tail = "/" + pattern_name + "/" + s.name() + "/threads:1";
  attn_bench::configure(benchmark::RegisterBenchmark(
      ("bf16_tensors" + tail).c_str(), prefill<Eigen::bfloat16, Pattern>, s, pattern, pairs));
  attn_bench::configure(benchmark::RegisterBenchmark(("softmax" + tail).c_str(),
                                                     prefill<float, Pattern>, s, pattern, pairs));
}

[[maybe_unused]] const bool registered = [] {
  const attn_bench::shape s{.seq = 2048, .head_dim = 128};
  add("dense", attn::dense{}, attn_bench::dense_pairs(s.seq, s.seq), s);
  add("causal", attn::causal{}, attn_bench::causal_pairs(s.seq, s.seq), s);
  return true;
}();

}  // namespace
