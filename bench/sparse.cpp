// Block-sparse softmax attention (pattern/block_sparse.hpp) against dense attention of the same
// shape, one thread, N = 8192, H = 8, D = 64, block 64 unless named; counter GFLOPS on the visible
// pairs only (4·d FLOPs per visible pair and head), so a layout whose time is proportional to its
// density shows the dense GFLOPS:
//   softmax/dense/B:1/H:8/N:8192/D:64/threads:1                       the baseline
//   sparse/random/density:<pct>/B:1/H:8/N:8192/D:64/threads:1         ⌈ρ·nb⌉ random key blocks per
//                                                                     query block, per head
//   sparse/random/block:128/density:<pct>/…                          the same at block 128: a
//                                                                     fetched K/V tile feeds twice
//                                                                     the work of one at block 64
//   sparse/bigbird/density:<pct>/B:1/H:8/N:8192/D:64/threads:1        BigBird (global first/last,
//                                                                     3-block window, r random)
//   sparse/longformer/density:<pct>/B:1/H:8/N:8192/D:64/threads:1     w = 256 each side: the
//                                                                     band's edge tiles are masked
//   sparse/all/density:100/B:1/H:8/N:8192/D:64/threads:1              every block: the layout's
//                                                                     overhead over dense
// <pct> is the layout's measured density (visible pairs / N²), rounded to a whole percent. The
// goal: time ≤ 1.2 · ρ · (dense time), i.e. GFLOPS ≥ dense GFLOPS / 1.2.
#include <benchmark/benchmark.h>

#include <attn/attn.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include "common.hpp"

namespace {

const attn_bench::shape shape{1, 8, 8192, 64};
constexpr attn::idx block = 64;

template <class Pattern>
void run(benchmark::State& state, Pattern pattern, double pairs_per_head) {
  attn_bench::problem p(shape);
  attn::options opt;
  opt.threads = 1;
  for (auto _ : state) {
    attn::attention(p.q, p.k, p.v, p.out, attn::softmax{}, pattern, opt);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  attn_bench::set_gflops(state, attn_bench::attention_flops(shape, pairs_per_head));
  state.counters["density"] = pairs_per_head / attn_bench::dense_pairs(shape.seq, shape.seq);
}

/// k = ⌈density · nb⌉ distinct random key blocks per query block, drawn per head.
attn::block_layout random_layout(double density, attn::idx block_size, std::uint64_t seed) {
  const attn::idx nb = shape.seq / block_size;
  const auto k = static_cast<attn::idx>(std::ceil(density * static_cast<double>(nb)));
  attn::bool_tensor3 blocks(shape.heads, nb, nb);
  blocks.setConstant(false);
  std::mt19937_64 rng(seed);
  for (attn::idx h = 0; h < shape.heads; ++h)
    for (attn::idx bi = 0; bi < nb; ++bi)
      for (attn::idx taken = 0; taken < k;) {
        bool& b = blocks(h, bi, static_cast<attn::idx>(rng() % static_cast<std::uint64_t>(nb)));
        if (!b) b = ++taken > 0;
      }
  return attn::block_layout::from_block_mask(blocks, block_size, shape.seq, shape.seq);
}

void add(const std::string& layout_name, const attn::block_layout& layout) {
  const double pairs_per_head = layout.density() * attn_bench::dense_pairs(shape.seq, shape.seq);
  const std::string name = "sparse/" + layout_name +
                           "/density:" + std::to_string(std::lround(100.0 * layout.density())) +
                           "/" + shape.name() + "/threads:1";
  attn_bench::configure(
      benchmark::RegisterBenchmark(name.c_str(), run<attn::block_layout>, layout, pairs_per_head));
}

[[maybe_unused]] const bool registered = [] {
  attn_bench::configure(benchmark::RegisterBenchmark(
      ("softmax/dense/" + shape.name() + "/threads:1").c_str(), run<attn::dense>, attn::dense{},
      attn_bench::dense_pairs(shape.seq, shape.seq)));
  for (double density : {0.05, 0.10, 0.25}) add("random", random_layout(density, block, 1));
  for (double density : {0.05, 0.10, 0.25}) add("random/block:128", random_layout(density, 128, 1));
  // BigBird at block 64, N = 8192 (128 blocks): r = 6 gives 10 %, r = 26 gives 25 %; with no
  // random block at all it is already 5.4 %.
  for (attn::idx r : {6, 26})
    add("bigbird", attn::bigbird_layout(shape.seq, block,
                                        {.random_blocks = r, .seed = 1, .heads = shape.heads}));
  add("longformer", attn::longformer_layout(shape.seq, block, {.window = 256}));
  add("all", attn::dense_layout(shape.seq, shape.seq, block));
  return true;
}();

}  // namespace
