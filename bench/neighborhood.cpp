// Neighborhood attention (attn/neighborhood.hpp), softmax, one thread, on rank-(3+K) tensors:
//   neighborhood/dense/B:1/H:4/N:4096/D:<d>/threads:1            dense softmax on the same 64×64
//                                                                  tokens: the baseline
//   neighborhood/2d_k<k>x<k>/B:1/H:4/N:4096/D:<d>/threads:1       64×64 grid, k = 7, 13, 31
//   neighborhood/1d_k257/B:1/H:4/N:16384/D:32/threads:1           1-D, N = 16384
//   neighborhood/3d_k3x7x7/B:1/H:4/N:16384/D:32/threads:1         16×32×32 grid
// Counter GFLOPS counts the visible pairs only (4·d FLOPs per pair and head; the windows are
// counted from the reference definition), so the goal, time ≤ 1.5·(k²/N)·dense time,
// reads GFLOPS ≥ dense GFLOPS / 1.5. Counter `visited` is the fraction of the dense key tiles
// × query tiles the kernel computes — the work it does, useful or masked.
#include <benchmark/benchmark.h>

#include <array>
#include <attn/neighborhood.hpp>
#include <attn/reference/neighborhood.hpp>
#include <string>

#include "common.hpp"

namespace {

using attn::idx;

/// Visible pairs of a neighborhood pattern on a grid: the product over dimensions of the summed
/// window sizes (the pattern is separable).
template <int K>
double visible_pairs(const attn::neighborhood<K>& p, const std::array<idx, K>& x) {
  double pairs = 1;
  for (std::size_t i = 0; i < K; ++i) {
    double sum = 0;
    for (idx c = 0; c < x[i]; ++c)
      sum += static_cast<double>(attn::reference::neighborhood_window(
                                     c, x[i], p.kernel[i], p.dilation[i], p.stride[i], p.causal[i])
                                     .size());
    pairs *= sum;
  }
  return pairs;
}

/// Fraction of the 64 × 64 (query tile, key tile) pairs the pattern does not rule out.
template <int K>
double visited_tiles(attn::neighborhood<K> p, const std::array<idx, K>& x) {
  idx n = 1;
  for (idx e : x) n *= e;
  p.extent = x;
  attn::detail::problem_shape s;
  s.seq_q = s.seq_k = n;
  p.prepare(s);
  const attn::head_ctx c{};
  double visited = 0, all = 0;
  for (idx q0 = 0; q0 < n; q0 += 64)
    for (idx k0 = 0; k0 < n; k0 += 64) {
      all += 1;
      visited += p.classify(c, q0, std::min(n, q0 + 64), k0, std::min(n, k0 + 64)) !=
                 attn::tile_kind::none;
    }
  return visited / all;
}

template <int K>
void run(benchmark::State& state, attn::neighborhood<K> pattern, std::array<idx, K> x,
         attn_bench::shape s, bool dense) {
  attn_bench::problem p(s);
  std::array<Eigen::Index, K + 3> dims{};
  dims[0] = s.batch;
  for (std::size_t i = 0; i < K; ++i) dims[i + 1] = x[i];
  dims[K + 1] = s.heads;
  dims[K + 2] = s.head_dim;
  using grid = Eigen::Tensor<float, K + 3, Eigen::RowMajor>;
  Eigen::TensorMap<const grid> q(p.q.data(), dims), k(p.k.data(), dims), v(p.v.data(), dims);
  Eigen::TensorMap<grid> out(p.out.data(), dims);
  attn::options opt;
  opt.threads = 1;
  for (auto _ : state) {
    if (dense)
      attn::attention(p.q, p.k, p.v, p.out, attn::softmax{}, attn::dense{}, opt);
    else
      attn::attention(q, k, v, out, attn::softmax{}, pattern, opt);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  const double pairs = dense ? attn_bench::dense_pairs(s.seq, s.seq) : visible_pairs<K>(pattern, x);
  attn_bench::set_gflops(state, attn_bench::attention_flops(s, pairs));
  state.counters["density"] = pairs / attn_bench::dense_pairs(s.seq, s.seq);
  state.counters["visited"] = dense ? 1.0 : visited_tiles<K>(pattern, x);
}

template <int K>
void add(const std::string& label, const attn::neighborhood<K>& pattern,
         const std::array<idx, K>& x, idx head_dim, bool dense = false) {
  idx n = 1;
  for (idx e : x) n *= e;
  const attn_bench::shape s{1, 4, n, head_dim};
  const std::string name = "neighborhood/" + label + "/" + s.name() + "/threads:1";
  attn_bench::configure(benchmark::RegisterBenchmark(name.c_str(), run<K>, pattern, x, s, dense));
}

[[maybe_unused]] const bool registered = [] {
  const std::array<idx, 2> image{64, 64};
  for (const idx d : {32, 64}) {
    add<2>("dense", {}, image, d, true);
    for (const idx k : {7, 13, 31})
      add<2>("2d_k" + std::to_string(k) + "x" + std::to_string(k),
             attn::neighborhood<2>{.kernel = {k, k}}, image, d);
  }
  add<1>("1d_k257", attn::neighborhood<1>{.kernel = {257}}, {16384}, 32);
  add<3>("3d_k3x7x7", attn::neighborhood<3>{.kernel = {3, 7, 7}}, {16, 32, 32}, 32);
  return true;
}();

}  // namespace
