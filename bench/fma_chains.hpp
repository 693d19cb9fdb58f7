// The FMA-throughput probe shared by the `peak` benchmark and the demo: independent chains of
// fused multiply-adds on the widest registers of the compiled arch.
//
// An FMA's result is needed again only `chains` FMAs later. Zen 4 issues two 256-bit FMAs per
// cycle (one 512-bit) with a latency of 4 cycles, so 8 chains keep it busy; 24 leave headroom
// for cores with more or longer pipes and still fit the 32 vector registers of AVX-512 (12 for
// the 16-register arches) with the two operands.
#pragma once

#include "attn/simd/ops.hpp"

namespace attn_bench {

template <class Arch = attn::simd::default_arch>
struct fma_chains {
  using vec = attn::simd::vec<Arch>;
  static constexpr int lanes = attn::simd::lanes<Arch>;
  static constexpr int chains = lanes >= 16 ? 24 : 12;
  /// Useful FLOPs of one round: one FMA (2 FLOPs per lane) on every chain.
  static constexpr double flops_per_round = 2.0 * lanes * chains;

  /// Runs `rounds` rounds and returns a value that depends on every FMA. `mul` and `add` should
  /// be opaque to the compiler (e.g. passed through benchmark::DoNotOptimize or volatile).
  static float run(long rounds, float mul, float add) {
    const vec m = attn::simd::splat<Arch>(mul), a = attn::simd::splat<Arch>(add);
    vec acc[chains];
#pragma GCC unroll 32
    for (int c = 0; c < chains; ++c) acc[c] = attn::simd::splat<Arch>(static_cast<float>(c));
    for (long i = 0; i < rounds; ++i) {
#pragma GCC unroll 32
      for (int c = 0; c < chains; ++c) acc[c] = attn::simd::fma(acc[c], m, a);
    }
    vec total = acc[0];
    for (int c = 1; c < chains; ++c) total = total + acc[c];
    float lane[lanes];
    attn::simd::store<Arch>(lane, total);
    float sum = 0.0f;
    for (float x : lane) sum += x;
    return sum;
  }
};

}  // namespace attn_bench
