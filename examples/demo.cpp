// attn_demo — the README's first command runs this. It measures the machine's FMA peak, checks
// the fused kernel against the double-precision reference, then times softmax attention
// variants on one workload and prints each as GFLOP/s, as a fraction of the peak and against
// the plain Eigen composition (Q·Kᵀ GEMM, row softmax, ·V GEMM) of the same work; then
// generates tokens one at a time against a KV cache (fp32, bf16, q8_0) and prints tokens/s and
// the cache's read rate against the machine's bandwidth.
//
//   attn_demo [seq_len [head_dim]]        default: 2048 64 (B=1, H=8)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <attn/attn.hpp>
#include <attn/reference/softmax.hpp>

#include "eigen_attention.hpp"
#include "fma_chains.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Median wall time of `runs` calls of f.
double median_seconds(int runs, const std::function<void()>& f) {
  std::vector<double> t;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = clock_type::now();
    f();
    t.push_back(seconds_since(t0));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

/// FMA throughput of `threads` threads running the peak probe, GFLOP/s (best of 3).
double fma_peak_gflops(int threads) {
  using probe = attn_bench::fma_chains<>;
  constexpr long rounds = 4'000'000;
  volatile float mul = 0.9999999f, add = 1e-7f;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<std::thread> pool;
    std::vector<float> sink(static_cast<std::size_t>(threads));
    const auto t0 = clock_type::now();
    for (int t = 0; t < threads; ++t)
      pool.emplace_back(
          [&, t] { sink[static_cast<std::size_t>(t)] = probe::run(rounds, mul, add); });
    for (auto& th : pool) th.join();
    const double s = seconds_since(t0);
    best = std::max(best, probe::flops_per_round * rounds * threads / s * 1e-9);
    if (sink[0] == 12345.0f) std::puts("");  // keep the result alive
  }
  return best;
}

attn::tensor4<float> random_tensor(std::mt19937& gen, long b, long n, long h, long d) {
  attn::tensor4<float> t(b, n, h, d);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (long i = 0; i < t.size(); ++i) t.data()[i] = dist(gen);
  return t;
}

/// Largest |attn − reference| on a small awkward problem: causal, GQA 8:2, Nq ≠ Nk.
double reference_check() {
  std::mt19937 gen(7);
  const auto q = random_tensor(gen, 2, 257, 8, 64);
  const auto k = random_tensor(gen, 2, 300, 2, 64);
  const auto v = random_tensor(gen, 2, 300, 2, 48);
  attn::tensor4<float> out(2, 257, 8, 48);
  attn::attention(q, k, v, out, attn::softmax{}, attn::causal{});
  const auto ref = attn::reference::attention(q, k, v, attn::softmax{}, attn::causal{});
  double worst = 0;
  for (long i = 0; i < out.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(out.data()[i]) - ref.out.data()[i]));
  return worst;
}

/// DRAM read bandwidth of one thread, GB/s: sums of a 256 MiB buffer, best of 3.
double read_bandwidth_gbps() {
  std::vector<float> buffer(std::size_t{64} << 20, 1.0f);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = clock_type::now();
    float sums[8] = {};
    for (std::size_t i = 0; i + 8 <= buffer.size(); i += 8)
      for (int u = 0; u < 8; ++u) sums[u] += buffer[i + static_cast<std::size_t>(u)];
    const double s = seconds_since(t0);
    best = std::max(best, static_cast<double>(buffer.size() * sizeof(float)) / s * 1e-9);
    if (sums[0] == 0.5f) std::puts("");  // keep the sums alive
  }
  return best;
}

/// Token-by-token generation against a KV cache of element type T: a prompt of `context`
/// tokens, then `steps` tokens each appended and attended to (one query per head, GQA 32:8,
/// D = 128). Prints tokens/s and the K/V bytes read per second against the bandwidth.
template <class T>
void decode_demo(long context, int steps, int threads, double bandwidth) {
  constexpr long heads_q = 32, heads_kv = 8, d = 128;
  std::mt19937 gen(3);
  attn::kv_cache<T> cache(
      {.batch = 1, .capacity = context + steps, .heads = heads_kv, .head_dim = d});
  cache.append(random_tensor(gen, 1, context, heads_kv, d),
               random_tensor(gen, 1, context, heads_kv, d));
  const auto q = random_tensor(gen, 1, 1, heads_q, d);
  const auto k = random_tensor(gen, 1, 1, heads_kv, d);
  const auto v = random_tensor(gen, 1, 1, heads_kv, d);
  attn::tensor4<float> out(1, 1, heads_q, d);
  attn::options opt;
  opt.threads = threads;
  const auto t0 = clock_type::now();
  for (int step = 0; step < steps; ++step) {
    cache.append(k, v);
    attn::attention(q, cache, out, attn::softmax{}, attn::causal{}, opt);
  }
  const double s = seconds_since(t0);
  const double per_value = std::is_same_v<T, attn::q8_0>
                               ? 1.0 + 4.0 / 32.0
                               : static_cast<double>(sizeof(attn::detail::stored_t<T>));
  const double bytes = static_cast<double>(context + steps / 2) * heads_kv * 2 * d * per_value;
  const double gbps = bytes * steps / s * 1e-9;
  std::printf("| %-6s | %7d | %8.0f | %6.1f | %6.1f %% |\n", attn::detail::element_name<T>(),
              threads, steps / s, gbps, 100.0 * gbps / bandwidth);
}

}  // namespace

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 2048;
  const long d = argc > 2 ? std::atol(argv[2]) : 64;
  const long batch = 1, heads = 8;
  const int all = attn::exec::hardware_threads();
  using arch = attn::simd::default_arch;

  std::printf("attn %s: CPU attention kernels over Eigen tensors\n", attn::version);
  std::printf("SIMD arch %s (%d floats per register), %d hardware threads\n\n",
              attn::simd::arch_name<arch>().c_str(), attn::simd::lanes<arch>, all);

  const double peak1 = fma_peak_gflops(1), peak_all = fma_peak_gflops(all);
  std::printf("Machine FMA peak, measured now: %.1f GFLOP/s on 1 thread, %.1f on %d\n", peak1,
              peak_all, all);
  std::printf("Max |attn - double reference| (causal, GQA 8:2, 257 x 300 keys): %.2g\n\n",
              reference_check());

  std::mt19937 gen(1);
  const auto q = random_tensor(gen, batch, n, heads, d);
  const auto k = random_tensor(gen, batch, n, heads, d);
  const auto v = random_tensor(gen, batch, n, heads, d);
  const auto k_gqa = random_tensor(gen, batch, n, 2, d);
  const auto v_gqa = random_tensor(gen, batch, n, 2, d);
  attn::tensor4<float> out(batch, n, heads, d);

  const double dense_flops = 4.0 * static_cast<double>(n * n * d * heads * batch);
  const long w = std::min<long>(512, n);
  double window_pairs = 0;
  for (long i = 0; i < n; ++i) window_pairs += static_cast<double>(std::min(i + 1, w));
  const double window_flops = 4.0 * window_pairs * static_cast<double>(d * heads * batch);

  const int runs = 5;
  const double eigen_dense =
      median_seconds(3, [&] { attn_bench::eigen_reference_attention(q, k, v, out, false); });
  const double eigen_causal =
      median_seconds(3, [&] { attn_bench::eigen_reference_attention(q, k, v, out, true); });

  struct row {
    std::string name;
    int threads;
    double flops;
    double eigen_seconds;  // 0: no Eigen counterpart
    std::function<void(const attn::options&)> run;
  };
  const std::vector<row> rows = {
      {"dense", 1, dense_flops, eigen_dense,
       [&](const attn::options& o) {
         attn::attention(q, k, v, out, attn::softmax{}, attn::dense{}, o);
       }},
      {"causal", 1, dense_flops / 2, eigen_causal,
       [&](const attn::options& o) {
         attn::attention(q, k, v, out, attn::softmax{}, attn::causal{}, o);
       }},
      {"sliding window 512", 1, window_flops, 0,
       [&](const attn::options& o) {
         attn::attention(q, k, v, out, attn::softmax{}, attn::window{.left = w - 1, .right = 0}, o);
       }},
      {"dense, GQA 8:2", 1, dense_flops, 0,
       [&](const attn::options& o) {
         attn::attention(q, k_gqa, v_gqa, out, attn::softmax{}, attn::dense{}, o);
       }},
      {"dense", all, dense_flops, 0,
       [&](const attn::options& o) {
         attn::attention(q, k, v, out, attn::softmax{}, attn::dense{}, o);
       }},
      {"causal", all, dense_flops / 2, 0,
       [&](const attn::options& o) {
         attn::attention(q, k, v, out, attn::softmax{}, attn::causal{}, o);
       }},
  };

  std::printf("Softmax attention, B=%ld H=%ld N=%ld D=%ld fp32, median of %d runs\n\n", batch,
              heads, n, d, runs);
  std::printf("| variant            | threads |    ms | GFLOP/s | %% of FMA peak | vs Eigen |\n");
  std::printf("|--------------------|--------:|------:|--------:|--------------:|---------:|\n");
  for (const row& r : rows) {
    attn::options opt;
    opt.threads = r.threads;
    const double s = median_seconds(runs, [&] { r.run(opt); });
    const double gflops = r.flops / s * 1e-9;
    const double peak = r.threads == 1 ? peak1 : peak_all;
    char versus[32] = "";
    if (r.eigen_seconds > 0) std::snprintf(versus, sizeof versus, "%.1fx", r.eigen_seconds / s);
    std::printf("| %-18s | %7d | %5.1f | %7.1f | %12.1f %% | %8s |\n", r.name.c_str(), r.threads,
                s * 1e3, gflops, 100.0 * gflops / peak, versus);
  }
  std::printf("\nUseful FLOPs: 4*Nq*Nk*D per head over the visible pairs (causal: half).\n");
  std::printf("vs Eigen: time of the plain Eigen composition (one thread) / time of attn.\n");

  // Decoding is memory-bound: what counts is how fast the cache streams.
  const long context = 8 * n;
  const double bandwidth = read_bandwidth_gbps();
  std::printf("\nDecoding: 1 query per head, GQA 32:8, D=128, KV cache of %ld tokens, 32 steps\n",
              context);
  std::printf("(read bandwidth of one thread, measured now: %.1f GB/s)\n\n", bandwidth);
  std::printf("| cache  | threads | tokens/s |   GB/s | %% of bw  |\n");
  std::printf("|--------|--------:|---------:|-------:|---------:|\n");
  for (int threads : {1, all}) {
    decode_demo<float>(context, 32, threads, bandwidth);
    decode_demo<Eigen::bfloat16>(context, 32, threads, bandwidth);
    decode_demo<attn::q8_0>(context, 32, threads, bandwidth);
    if (all == 1) break;
  }
  return 0;
}
