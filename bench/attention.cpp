// attn's softmax and sigmoid attention (the fused loop with each score function) through the
// public API, on the same shapes so that the report puts them side by side. Registered with
// attn/bench/variants.hpp, the header users benchmark their own variant sets with:
//   <softmax|sigmoid>/<dense|causal>/B:1/H:8/N:2048/D:64/threads:1   and N:4096/D:128
//   <softmax|sigmoid>/window512/B:1/H:8/N:8192/D:64/threads:1        window{left = 511, right = 0}
//   <softmax|sigmoid>/dense/B:1/H:8/N:2048/D:64/threads:<all>        all hardware threads
//   <softmax|sigmoid>/causal/B:1/H:8/N:<512…8192>/D:64/threads:1     the sequence-length sweep
// Counters: GFLOPS on useful FLOPs (4·D per visible pair and head), GBps, pct_fma_peak,
// pct_bandwidth. Sigmoid runs with its default bias −ln N. The matching Eigen compositions are
// in eigen_attention.cpp.
#include <attn/attn.hpp>
#include <attn/bench/variants.hpp>

#include "common.hpp"

namespace {

template <class Score>
void add_family(const std::string& family, Score score) {
  namespace ab = attn::bench;
  const ab::shape small{.seq_q = 2048}, large{.seq_q = 4096, .head_dim = 128},
      long_seq{.seq_q = 8192};
  ab::register_variants({small, large}, {1}, ab::variant{family + "/dense", score, attn::dense{}},
                        ab::variant{family + "/causal", score, attn::causal{}});
  ab::register_variants(
      {long_seq}, {1},
      ab::variant{family + "/window512", score, attn::window{.left = 511, .right = 0}});
  // The sequence-length sweep of docs/perf (GFLOP/s vs N).
  ab::register_variants({{.seq_q = 512}, {.seq_q = 1024}, {.seq_q = 4096}, {.seq_q = 8192}}, {1},
                        ab::variant{family + "/causal", score, attn::causal{}});
  if (const int all = attn_bench::all_threads(); all > 1)
    ab::register_variants({small}, {all}, ab::variant{family + "/dense", score, attn::dense{}});
}

[[maybe_unused]] const bool registered = [] {
  add_family("softmax", attn::softmax{});
  add_family("sigmoid", attn::sigmoid{});
  return true;
}();

}  // namespace
