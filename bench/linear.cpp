// Linear attention (attn/linear/) through the public API, counter GFLOPS on 4·N·D² useful FLOPs
// per head (2·N·D² for φ(K)ᵀV, 2·N·D² for φ(Q)·S; the causal form's intra-chunk products are
// extra work it does not get credit for):
//   linear/dense/<elu1|identity>/B:1/H:8/N:8192/D:<64|128>/threads:<1|all>   non-causal
//   linear/causal/<elu1|identity>/B:1/H:8/N:<1024|8192>/D:<64|128>/threads:<1|all>
//                                                                 chunked (time(8N) / time(N))
//   linear/step/elu1/B:1/H:32/N:1/D:128/threads:1                 decoding one token: counter
//                                                                 GBps = state bytes read and
//                                                                 written per second
// and, for the crossover with softmax attention, per D (32, 64, 128) and form (dense, causal):
//   linear/<form>/elu1/B:1/H:8/N:<n>/D:<d>/threads:1      and
//   linear/<form>/softmax/B:1/H:8/N:<n>/D:<d>/threads:1   the fused softmax kernel on the same
//                                                          shape (GFLOPS on its own useful FLOPs)
// for n = 32 … 2048: linear wins from the n where its time drops below softmax's.
#include <benchmark/benchmark.h>

#include <attn/attn.hpp>
#include <string>
#include <vector>

#include "common.hpp"

namespace {

double linear_flops(const attn_bench::shape& s) {
  return 4.0 * static_cast<double>(s.seq) * static_cast<double>(s.head_dim) *
         static_cast<double>(s.head_dim) * static_cast<double>(s.batch * s.heads);
}

template <class Map, class Pattern>
void linear_attention(benchmark::State& state, attn_bench::shape s, Map map, Pattern pattern,
                      int threads) {
  attn_bench::problem p(s);
  attn::linear::options opt;
  opt.threads = threads;
  for (auto _ : state) {
    attn::linear_attention(p.q, p.k, p.v, p.out, map, pattern, opt);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  attn_bench::set_gflops(state, linear_flops(s));
}

template <class Pattern>
void softmax_attention(benchmark::State& state, attn_bench::shape s, Pattern pattern,
                       double pairs_per_head) {
  attn_bench::problem p(s);
  attn::options opt;
  opt.threads = 1;
  for (auto _ : state) {
    attn::attention(p.q, p.k, p.v, p.out, attn::softmax{}, pattern, opt);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  attn_bench::set_gflops(state, attn_bench::attention_flops(s, pairs_per_head));
}

/// Decoding: one token of B·H heads against a state of B·H·D·D floats (plus z).
void linear_step(benchmark::State& state, attn_bench::shape s) {
  attn_bench::problem p(s);  // s.seq = 1: one token
  attn::linear::state st(s.batch, s.heads, s.head_dim, s.head_dim);
  const std::vector<float> decay = attn::linear::retnet_decay(s.heads);
  attn::linear::options opt;
  opt.threads = 1;
  opt.decay = decay;
  for (auto _ : state) {
    attn::linear_attention_step(p.q, p.k, p.v, p.out, attn::linear::elu1{}, st, opt);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  const double bytes = 2.0 * 4.0 * static_cast<double>(s.batch * s.heads * s.head_dim) *
                       static_cast<double>(s.head_dim + 1);
  state.counters["GBps"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * bytes * 1e-9, benchmark::Counter::kIsRate);
}

std::string name(const char* form, const char* map, const attn_bench::shape& s, int threads) {
  return std::string("linear/") + form + "/" + map + "/" + s.name() +
         "/threads:" + std::to_string(threads);
}

template <class Map, class Pattern>
void add(const char* form, const char* map_name, const attn_bench::shape& s, Map map,
         Pattern pattern, int threads) {
  const std::string n = name(form, map_name, s, threads);
  attn_bench::configure(benchmark::RegisterBenchmark(n.c_str(), linear_attention<Map, Pattern>, s,
                                                     map, pattern, threads));
}

template <class Pattern>
void add_softmax(const char* form, const attn_bench::shape& s, Pattern pattern,
                 double pairs_per_head) {
  const std::string n = name(form, "softmax", s, 1);
  attn_bench::configure(benchmark::RegisterBenchmark(n.c_str(), softmax_attention<Pattern>, s,
                                                     pattern, pairs_per_head));
}

[[maybe_unused]] const bool registered = [] {
  const int all = attn_bench::all_threads();
  for (const std::ptrdiff_t d : {64, 128}) {
    const attn_bench::shape big{1, 8, 8192, d};
    add("dense", "elu1", big, attn::linear::elu1{}, attn::dense{}, 1);
    add("dense", "identity", big, attn::linear::identity{}, attn::dense{}, 1);
    add("causal", "elu1", big, attn::linear::elu1{}, attn::causal{}, 1);
    add("causal", "identity", big, attn::linear::identity{}, attn::causal{}, 1);
    if (all > 1) {
      add("dense", "elu1", big, attn::linear::elu1{}, attn::dense{}, all);
      add("causal", "elu1", big, attn::linear::elu1{}, attn::causal{}, all);
    }
  }
  // The crossover with the fused softmax kernel; N:1024 doubles as the causal form's 1/8.
  for (const std::ptrdiff_t d : {32, 64, 128})
    for (const std::ptrdiff_t n : {32, 64, 96, 128, 192, 256, 512, 1024, 2048}) {
      const attn_bench::shape s{1, 8, n, d};
      add("dense", "elu1", s, attn::linear::elu1{}, attn::dense{}, 1);
      add_softmax("dense", s, attn::dense{}, attn_bench::dense_pairs(n, n));
      add("causal", "elu1", s, attn::linear::elu1{}, attn::causal{}, 1);
      add_softmax("causal", s, attn::causal{}, attn_bench::causal_pairs(n, n));
    }
  const attn_bench::shape decode{1, 32, 1, 128};
  const std::string n = name("step", "elu1", decode, 1);
  attn_bench::configure(benchmark::RegisterBenchmark(n.c_str(), linear_step, decode))
      ->Unit(benchmark::kMicrosecond);
  return true;
}();

}  // namespace
