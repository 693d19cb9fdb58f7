// Routing attention (include/attn/routing/): each router at N = 16384, H = 8, D = 64 and about
// 12 % density, one thread, timed as router + attention against dense softmax attention of the
// same shape:
//   routing/dense/B:1/H:8/N:16384/D:64/threads:1                 the baseline (run it first)
//   routing/moba/density:12/...                               block 512, top_k 4, causal, run
//                                                                key-block-major
//   routing/moba_as_pattern/density:12/...                    the same selection as a pattern
//                                                                of attention(): per-query picks
//                                                                make 64-query tiles near dense
//   routing/sparge/density:12/...                             blocks 128 × 64, τ 0.12
//   routing/biformer/density:12/...                           a 128 × 128 map, S = 8, k = 8
//   routing/routing_transformer/density:12/...                C = 8 clusters of w = 2048
//   routing/mosa/density:12/...                               k = 8000 tokens per head, causal
// Counters: density (visible pairs / N²), GFLOPS on the visible pairs (4·D per pair), router
// (the router's share of the total time), vs_dense (total time / dense time) and goal =
// total / (ρ · dense + router), which issue 10 wants ≤ 1.2, all from the thread's CPU time.
// vs_dense and goal need the dense baseline in the same run. The inputs are uniform random, so the
// routers' choices are close to arbitrary; only the work they imply is measured.
#include <benchmark/benchmark.h>

#include <attn/attention.hpp>
#include <attn/routing/routing.hpp>
#include <cmath>
#include <ctime>
#include <functional>
#include <random>
#include <string>

#include "common.hpp"

namespace {

const attn_bench::shape shape{1, 8, 16384, 64};
double dense_seconds = 0;  // per call, set by the baseline

attn::options one_thread() {
  attn::options opt;
  opt.threads = 1;
  return opt;
}

/// CPU seconds of the calling thread: with options::threads = 1 every router and kernel runs
/// on it, and on a shared machine its CPU time is steadier than wall time.
double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

void dense(benchmark::State& state) {
  attn_bench::problem p(shape);
  const attn::options opt = one_thread();
  double total = 0;
  for (auto _ : state) {
    const double t0 = thread_seconds();
    attn::attention(p.q, p.k, p.v, p.out, attn::softmax{}, attn::dense{}, opt);
    total += thread_seconds() - t0;
    benchmark::DoNotOptimize(p.out.data());
  }
  dense_seconds = total / static_cast<double>(state.iterations());
  attn_bench::set_gflops(
      state, attn_bench::attention_flops(shape, attn_bench::dense_pairs(shape.seq, shape.seq)));
}

/// One routed call: route() returns the density, attend() runs the attention with the result.
struct routed {
  std::function<double()> route;
  std::function<void()> attend;
};

void report(benchmark::State& state, double router, double attention, double density) {
  const double n = static_cast<double>(state.iterations());
  const double total = (router + attention) / n;
  state.counters["density"] = density;
  state.counters["router"] = router / (router + attention);
  if (dense_seconds > 0) {
    state.counters["vs_dense"] = total / dense_seconds;
    state.counters["goal"] = total / (density * dense_seconds + router / n);
  }
  attn_bench::set_gflops(
      state,
      attn_bench::attention_flops(shape, density * attn_bench::dense_pairs(shape.seq, shape.seq)));
}

void run(benchmark::State& state, const std::function<routed()>& make) {
  routed call = make();
  double router = 0, attention = 0, density = 0;
  for (auto _ : state) {
    const double t0 = thread_seconds();
    density = call.route();
    const double t1 = thread_seconds();
    call.attend();
    router += t1 - t0;
    attention += thread_seconds() - t1;
  }
  report(state, router, attention, density);
}

/// Shared inputs of the rank-4 routers.
struct inputs {
  attn_bench::problem p{shape};
};

/// A block router's selection, run as a pattern of attention() or key-block-major.
template <bool key_block_major, class Router>
routed block_call(Router router) {
  auto in = std::make_shared<inputs>();
  auto sel = std::make_shared<attn::block_selection>();
  return {[in, sel, router] {
            *sel = router.route(in->p.q, in->p.k, one_thread());
            return sel->density();
          },
          [in, sel] {
            if constexpr (key_block_major)
              attn::selection_attention(in->p.q, in->p.k, in->p.v, in->p.out, attn::softmax{}, *sel,
                                        one_thread());
            else
              attn::attention(in->p.q, in->p.k, in->p.v, in->p.out, attn::softmax{}, *sel,
                              one_thread());
          }};
}

routed biformer_call() {
  struct maps {
    attn::biformer_map q, k, v, out;
  };
  auto m = std::make_shared<maps>();
  const attn_bench::problem p(shape);  // the same numbers, viewed as a 128 × 128 map
  const auto as_map = [](const attn::tensor4<float>& t) {
    return attn::biformer_map(Eigen::TensorMap<const attn::biformer_map>(
        t.data(), 1, 128, 128, shape.heads, shape.head_dim));
  };
  m->q = as_map(p.q);
  m->k = as_map(p.k);
  m->v = as_map(p.v);
  m->out = attn::biformer_map(1, 128, 128, shape.heads, shape.head_dim);
  auto sel = std::make_shared<attn::region_selection>();
  return {[m, sel] {
            *sel = attn::biformer{.regions = 8, .top_k = 8}.route(m->q, m->k, one_thread());
            return sel->density();
          },
          [m, sel] {
            attn::biformer_attention(m->q, m->k, m->v, m->out, attn::softmax{}, *sel, one_thread());
          }};
}

routed routing_transformer_call() {
  auto in = std::make_shared<inputs>();
  auto mu = std::make_shared<attn::centroid_tensor>(
      attn::kmeans_init(in->p.q, in->p.k, 8, 2, attn::routing_norm::l2, 1, one_thread()));
  auto sel = std::make_shared<attn::cluster_selection>();
  return {[in, mu, sel] {
            *sel = attn::routing_transformer{.window = 2048}.route(in->p.q, in->p.k, *mu,
                                                                   one_thread());
            return sel->density();
          },
          [in, sel] {
            attn::routing_transformer_attention(in->p.q, in->p.k, in->p.v, in->p.out,
                                                attn::softmax{}, *sel, one_thread());
          }};
}

routed mosa_call() {
  auto in = std::make_shared<inputs>();
  auto r = std::make_shared<attn::token_scores>(1, shape.seq, shape.heads);
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> dist(0.0f, 1.0f);
  for (Eigen::Index e = 0; e < r->size(); ++e) r->data()[e] = dist(rng);
  auto sel = std::make_shared<attn::token_selection>();
  return {[in, r, sel] {
            *sel = attn::mosa{.top_k = 8000}.route(*r, one_thread());
            return sel->density();
          },
          [in, sel] {
            attn::mosa_attention(in->p.q, in->p.k, in->p.v, in->p.out, attn::softmax{}, *sel,
                                 one_thread());
          }};
}

void add(const std::string& router, std::function<routed()> make) {
  const std::string name = "routing/" + router + "/density:12/" + shape.name() + "/threads:1";
  attn_bench::configure(benchmark::RegisterBenchmark(
      name.c_str(), [make](benchmark::State& state) { run(state, make); }));
}

[[maybe_unused]] const bool registered = [] {
  attn_bench::configure(benchmark::RegisterBenchmark(
      ("routing/dense/" + shape.name() + "/threads:1").c_str(), dense));
  const attn::moba moba{.block = 512, .top_k = 4};
  add("moba", [moba] { return block_call<true>(moba); });
  add("moba_as_pattern", [moba] { return block_call<false>(moba); });
  add("sparge",
      [] { return block_call<false>(attn::sparge{.block_q = 128, .block_k = 64, .tau = 0.12f}); });
  add("biformer", biformer_call);
  add("routing_transformer", routing_transformer_call);
  add("mosa", mosa_call);
  return true;
}();

}  // namespace
