// Decoding: a few new queries per head against a long KV cache, the memory-bound shape of text
// generation (kernel/decode.hpp, split-KV). Counter GBps = the K and V bytes a call must read,
// counted once per KV head (grouped-query heads share them), over the wall time; the report
// puts it against peak/bandwidth of the same run.
//   decode/fp32/B:1/Hq:32/Hkv:8/Nk:32768/D:128/Nq:1/threads:<1|all>   the main shape
//   decode/fp32/B:1/Hq:32/Hkv:8/Nk:<1024…65536>/D:128/Nq:1/threads:<1|all>
//                        the cache-length sweep (Nk ≤ 4096 is cache-resident)
//   decode/fp32/B:4/Hq:32/Hkv:8/Nk:8192/D:128/Nq:1/threads:all        ragged key lengths
//   decode/fp32/B:1/Hq:32/Hkv:8/Nk:32768/D:128/Nq:4/threads:all       speculative decoding
//   decode/cache_<elem>/B:1/Hq:32/Hkv:8/Nk:32768/D:128/Nq:1/threads:<1|all>
//                        an attn::kv_cache of fp32, bf16, fp16 or q8_0 rows (GBps on the bytes
//                        of that format)
#include <benchmark/benchmark.h>

#include <attn/attn.hpp>
#include <cstdint>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "common.hpp"

namespace {

struct decode_shape {
  std::ptrdiff_t batch = 1, heads_q = 32, heads_kv = 8, keys = 32768, head_dim = 128, queries = 1;
  bool ragged = false;  ///< batch b holds keys·(b+1)/batch keys

  std::string name() const {
    return "B:" + std::to_string(batch) + "/Hq:" + std::to_string(heads_q) +
           "/Hkv:" + std::to_string(heads_kv) + "/Nk:" + std::to_string(keys) +
           "/D:" + std::to_string(head_dim) + "/Nq:" + std::to_string(queries);
  }
  std::vector<std::int32_t> key_lengths() const {
    std::vector<std::int32_t> lengths;
    if (ragged)
      for (std::ptrdiff_t b = 0; b < batch; ++b)
        lengths.push_back(static_cast<std::int32_t>(keys * (b + 1) / batch));
    return lengths;
  }
};

/// K and V bytes one call reads: every key of every KV head once, at `bytes_per_value`.
double bytes_read(const decode_shape& s, const std::vector<std::int32_t>& lengths,
                  double bytes_per_value) {
  const double keys =
      lengths.empty() ? static_cast<double>(s.batch * s.keys)
                      : static_cast<double>(std::accumulate(lengths.begin(), lengths.end(), 0.0));
  return keys * static_cast<double>(s.heads_kv * 2 * s.head_dim) * bytes_per_value;
}

void set_gbps(benchmark::State& state, double bytes) {
  state.counters["GBps"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * bytes * 1e-9, benchmark::Counter::kIsRate);
}

/// fp32 K and V tensors, read in place.
void decode(benchmark::State& state, decode_shape s, int threads) {
  using attn_bench::random_tensor;
  const auto q = random_tensor(s.batch, s.queries, s.heads_q, s.head_dim, 1);
  const auto k = random_tensor(s.batch, s.keys, s.heads_kv, s.head_dim, 2);
  const auto v = random_tensor(s.batch, s.keys, s.heads_kv, s.head_dim, 3);
  attn::tensor4<float> out(s.batch, s.queries, s.heads_q, s.head_dim);
  const std::vector<std::int32_t> lengths = s.key_lengths();
  attn::options opt;
  opt.threads = threads;
  opt.key_lengths = lengths;
  for (auto _ : state) {
    attn::attention(q, k, v, out, attn::softmax{}, attn::causal{}, opt);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_gbps(state, bytes_read(s, lengths, 4.0));
}

/// A kv_cache of element type T filled with the same keys, read in place.
template <class T>
void decode_cache(benchmark::State& state, decode_shape s, int threads) {
  using attn_bench::random_tensor;
  const auto q = random_tensor(s.batch, s.queries, s.heads_q, s.head_dim, 1);
  attn::kv_cache<T> cache(
      {.batch = s.batch, .capacity = s.keys, .heads = s.heads_kv, .head_dim = s.head_dim});
  cache.append(random_tensor(s.batch, s.keys, s.heads_kv, s.head_dim, 2),
               random_tensor(s.batch, s.keys, s.heads_kv, s.head_dim, 3));
  attn::tensor4<float> out(s.batch, s.queries, s.heads_q, s.head_dim);
  attn::options opt;
  opt.threads = threads;
  for (auto _ : state) {
    attn::attention(q, cache, out, attn::softmax{}, attn::causal{}, opt);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  // Bytes per value including the q8_0 scales (4 bytes per 32 values).
  const double per_value = std::is_same_v<T, attn::q8_0>
                               ? 1.0 + 4.0 / 32.0
                               : static_cast<double>(sizeof(attn::detail::stored_t<T>));
  set_gbps(state, bytes_read(s, {}, per_value));
}

template <class T>
void add_cache(const decode_shape& s, int threads) {
  const std::string name = std::string("decode/cache_") + attn::detail::element_name<T>() + "/" +
                           s.name() + "/threads:" + std::to_string(threads);
  attn_bench::configure(benchmark::RegisterBenchmark(name.c_str(), decode_cache<T>, s, threads));
}

void add(const decode_shape& s, int threads) {
  const std::string name = "decode/fp32/" + s.name() + "/threads:" + std::to_string(threads);
  attn_bench::configure(benchmark::RegisterBenchmark(name.c_str(), decode, s, threads));
}

[[maybe_unused]] const bool registered = [] {
  const int all = attn_bench::all_threads();
  const decode_shape main_shape{};
  for (int threads : {1, all}) {
    // The cache-length sweep of docs/perf (GB/s vs Nk): cache-resident up to ~8k keys.
    for (std::ptrdiff_t keys : {1024, 4096, 16384, 32768, 65536}) add({.keys = keys}, threads);
    if (all == 1) break;
  }
  add({.batch = 4, .keys = 8192, .ragged = true}, all);
  add({.queries = 4}, all);
  for (int threads : {1, all}) {
    add_cache<float>(main_shape, threads);
    add_cache<Eigen::bfloat16>(main_shape, threads);
    add_cache<Eigen::half>(main_shape, threads);
    add_cache<attn::q8_0>(main_shape, threads);
    if (all == 1) break;
  }
  return true;
}();

}  // namespace
