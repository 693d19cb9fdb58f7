// Decoding: a few new queries per head against a long KV cache, the memory-bound shape of text
// generation (kernel/decode.hpp, split-KV). Counter GBps = the K and V bytes a call must read,
// counted once per KV head (grouped-query heads share them), over the wall time; the report
// puts it against peak/bandwidth of the same run.
//   decode/<elem>/B:1/Hq:32/Hkv:8/Nk:32768/D:128/Nq:1/threads:<1|all>   the main shape
//   decode/<elem>/B:1/Hq:32/Hkv:8/Nk:4096/D:128/Nq:1/threads:<1|all>    cache-resident
//   decode/<elem>/B:4/Hq:32/Hkv:8/Nk:8192/D:128/Nq:1/threads:all        ragged key lengths
//   decode/<elem>/B:1/Hq:32/Hkv:8/Nk:32768/D:128/Nq:4/threads:all       speculative decoding
#include <benchmark/benchmark.h>

#include <attn/attn.hpp>
#include <cstdint>
#include <numeric>
#include <string>
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
  const double keys_read =
      lengths.empty() ? static_cast<double>(s.batch * s.keys)
                      : static_cast<double>(std::accumulate(lengths.begin(), lengths.end(), 0.0));
  const double bytes = keys_read * static_cast<double>(s.heads_kv * 2 * s.head_dim) * 4.0;
  state.counters["GBps"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * bytes * 1e-9, benchmark::Counter::kIsRate);
}

void add(const decode_shape& s, int threads) {
  const std::string name = "decode/fp32/" + s.name() + "/threads:" + std::to_string(threads);
  attn_bench::configure(benchmark::RegisterBenchmark(name.c_str(), decode, s, threads));
}

[[maybe_unused]] const bool registered = [] {
  const int all = attn_bench::all_threads();
  const decode_shape main_shape{}, resident{.keys = 4096};
  for (int threads : {1, all}) {
    add(main_shape, threads);
    add(resident, threads);
    if (all == 1) break;
  }
  add({.batch = 4, .keys = 8192, .ragged = true}, all);
  add({.queries = 4}, all);
  return true;
}();

}  // namespace
