// Benchmarking your own set of attention variants: one Google Benchmark case per (variant,
// shape, thread count), each reporting useful GFLOP/s, bytes/s and the % of this machine's FMA
// peak and read bandwidth (attn/bench/variants.hpp). Run with --benchmark_filter=... etc.
#include <attn/attn.hpp>
#include <attn/bench/variants.hpp>

int main(int argc, char** argv) {
  namespace ab = attn::bench;
  const ab::shape prefill{.seq_q = 1024, .heads_kv = 2}, decode{.seq_q = 1, .seq_k = 16384};
  ab::register_variants({prefill}, {1, 2},
                        ab::variant{"softmax/causal", attn::softmax{}, attn::causal{}},
                        ab::variant{"sigmoid/causal", attn::sigmoid{}, attn::causal{}},
                        ab::variant{"softmax/window256", attn::softmax{.softcap = 30},
                                    attn::window{.left = 255, .right = 0}},
                        ab::make_variant<attn::simd::scalar>("softmax/causal/scalar",
                                                             attn::softmax{}, attn::causal{}));
  ab::register_variants({decode}, {2}, ab::variant{"decode/fp32", attn::softmax{}, attn::causal{}},
                        ab::make_variant<attn::simd::default_arch, Eigen::bfloat16>(
                            "decode/bf16", attn::softmax{}, attn::causal{}));
  return ab::run_benchmarks(argc, argv);
}
