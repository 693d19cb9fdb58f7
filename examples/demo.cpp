// attn_demo — the README's first command runs this. It measures the machine's limits (FMA peak,
// read bandwidth), then runs each workload — softmax and sigmoid attention variants, token-by-
// token decoding against a KV cache — and prints one table: time, useful GFLOP/s, the fraction
// of the machine limit that bounds the workload, the speed-up over the plain Eigen composition
// where there is one, and the largest error against the double-precision reference on a slice
// (batch 0, query head 0) of the very output that was timed.
//
//   attn_demo [--size tiny|small|default|large] [--threads N] [--variant SUBSTRING[,...]]
//             [--json FILE] [--help]
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <attn/attn.hpp>
#include <attn/bench/peak.hpp>
#include <attn/reference/sigmoid.hpp>
#include <attn/reference/softmax.hpp>

#include "demo_cli.hpp"
#include "eigen_attention.hpp"
#include "llm/llm_block.hpp"
#include "long_context/long_context_block.hpp"
#include "vision/vision_block.hpp"

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

attn::tensor4<float> random_tensor(std::mt19937& gen, long b, long n, long h, long d) {
  attn::tensor4<float> t(b, n, h, d);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (long i = 0; i < t.size(); ++i) t.data()[i] = dist(gen);
  return t;
}

/// Head `h` of batch 0 of a [B, N, H, D] tensor, as a [1, N, 1, D] tensor.
attn::tensor4<float> head_slice(const attn::tensor4<float>& t, long h) {
  attn::tensor4<float> s(1, t.dimension(1), 1, t.dimension(3));
  for (long i = 0; i < t.dimension(1); ++i)
    for (long c = 0; c < t.dimension(3); ++c) s(0, i, 0, c) = t(0, i, h, c);
  return s;
}

/// Largest |out − reference| over batch 0, query head 0: the reference recomputes that slice in
/// double precision from the same inputs (the K/V head query head 0 reads is head 0).
template <class Score, class Pattern>
double slice_error(const attn::tensor4<float>& q, const attn::tensor4<float>& k,
                   const attn::tensor4<float>& v, const attn::tensor4<float>& out, Score score,
                   Pattern pattern) {
  const auto ref = attn::reference::attention(head_slice(q, 0), head_slice(k, 0), head_slice(v, 0),
                                              score, pattern);
  double worst = 0;
  for (long i = 0; i < out.dimension(1); ++i)
    for (long c = 0; c < out.dimension(3); ++c)
      worst = std::max(worst, std::abs(static_cast<double>(out(0, i, 0, c)) - ref.out(0, i, 0, c)));
  return worst;
}

/// One attention workload of the softmax/sigmoid section.
struct workload {
  std::string name;
  int threads;
  double flops;
  double eigen_seconds;  // 0: no Eigen counterpart
  std::function<void(const attn::options&)> run;
  std::function<double()> error;  // of the last run's output
};

template <class Score, class Pattern>
workload make_workload(std::string name, int threads, double flops, double eigen_seconds,
                       const attn::tensor4<float>& q, const attn::tensor4<float>& k,
                       const attn::tensor4<float>& v, attn::tensor4<float>& out, Score score,
                       Pattern pattern) {
  return {std::move(name),
          threads,
          flops,
          eigen_seconds,
          [&q, &k, &v, &out, score, pattern](const attn::options& o) {
            attn::attention(q, k, v, out, score, pattern, o);
          },
          [&q, &k, &v, &out, score, pattern] { return slice_error(q, k, v, out, score, pattern); }};
}

void attention_section(const demo::settings& cfg, const demo::machine& m, demo::table& t) {
  const long n = cfg.size.seq, d = cfg.size.head_dim, batch = 1, heads = 8;
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
  const attn::window window{.left = w - 1, .right = 0};

  const bool wants_eigen = cfg.selects("softmax dense") || cfg.selects("softmax causal");
  const double eigen_dense =
      wants_eigen
          ? median_seconds(3, [&] { attn_bench::eigen_reference_attention(q, k, v, out, false); })
          : 0;
  const double eigen_causal =
      wants_eigen
          ? median_seconds(3, [&] { attn_bench::eigen_reference_attention(q, k, v, out, true); })
          : 0;

  const int all = cfg.threads;
  std::vector<workload> rows = {
      make_workload("softmax dense", 1, dense_flops, eigen_dense, q, k, v, out, attn::softmax{},
                    attn::dense{}),
      make_workload("softmax causal", 1, dense_flops / 2, eigen_causal, q, k, v, out,
                    attn::softmax{}, attn::causal{}),
      make_workload("softmax window " + std::to_string(w), 1, window_flops, 0, q, k, v, out,
                    attn::softmax{}, window),
      make_workload("softmax dense GQA 8:2", 1, dense_flops, 0, q, k_gqa, v_gqa, out,
                    attn::softmax{}, attn::dense{}),
      make_workload("sigmoid causal", 1, dense_flops / 2, 0, q, k, v, out, attn::sigmoid{},
                    attn::causal{}),
  };
  if (all > 1) {
    rows.push_back(make_workload("softmax dense", all, dense_flops, 0, q, k, v, out,
                                 attn::softmax{}, attn::dense{}));
    rows.push_back(make_workload("softmax causal", all, dense_flops / 2, 0, q, k, v, out,
                                 attn::softmax{}, attn::causal{}));
  }
  const std::string shape = "B1 H8 N" + std::to_string(n) + " D" + std::to_string(d);
  for (const workload& r : rows) {
    if (!cfg.selects(r.name)) continue;
    t.progress(r.name, r.threads);
    attn::options opt;
    opt.threads = r.threads;
    const double s = median_seconds(cfg.size.runs, [&] { r.run(opt); });
    const double gflops = r.flops / s * 1e-9;
    t.add({.variant = r.name,
           .shape = shape,
           .threads = r.threads,
           .seconds = s,
           .gflops = gflops,
           .limit = "FMA",
           .fraction = gflops / m.fma_gflops(r.threads),
           .vs_eigen = r.eigen_seconds > 0 ? r.eigen_seconds / s : 0,
           .max_error = r.error()});
  }
}

/// Token-by-token generation against a KV cache of element type T: a prompt of `context`
/// tokens, then `steps` tokens each appended and attended to (one query per head, GQA 32:8,
/// D = 128). Memory-bound: the row reports the cache's read rate against the bandwidth.
template <class T>
void decode_row(const demo::settings& cfg, const demo::machine& m, demo::table& t, int threads) {
  const std::string name = std::string("decode ") + attn::detail::element_name<T>() + " cache";
  if (!cfg.selects(name)) return;
  t.progress(name, threads);
  constexpr long heads_q = 32, heads_kv = 8, d = 128;
  const long context = cfg.size.context;
  const int steps = cfg.size.decode_steps;
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
  const double s = seconds_since(t0) / steps;
  const double per_value = std::is_same_v<T, attn::q8_0>
                               ? 1.0 + 4.0 / 32.0
                               : static_cast<double>(sizeof(attn::detail::stored_t<T>));
  const double bytes = static_cast<double>(context + steps / 2) * heads_kv * 2 * d * per_value;
  const double flops = 4.0 * static_cast<double>(context + steps / 2) * heads_q * d;

  // The last step's output against the reference over the cache's decoded rows: head 0 reads
  // K/V head 0.
  const auto& stored = std::as_const(cache);
  const long len = stored.lengths()[0];
  attn::tensor4<float> k0(1, len, 1, d), v0(1, len, 1, d);
  for (long j = 0; j < len; ++j) {
    const auto row = stored.row_of(0, j);
    attn::detail::decode_row<T>(stored.key_row(row, 0), stored.key_scales(row, 0), d,
                                k0.data() + j * d);
    attn::detail::decode_row<T>(stored.value_row(row, 0), stored.value_scales(row, 0), d,
                                v0.data() + j * d);
  }
  const double error = slice_error(q, k0, v0, out, attn::softmax{}, attn::causal{});
  t.add({.variant = name,
         .shape = "Hq32 Hkv8 D128 ctx" + std::to_string(context),
         .threads = threads,
         .seconds = s,
         .gflops = flops / s * 1e-9,
         .limit = "BW",
         .fraction = bytes / s * 1e-9 / m.bandwidth_gbps(threads),
         .vs_eigen = 0,
         .max_error = error});
}

void decode_section(const demo::settings& cfg, const demo::machine& m, demo::table& t) {
  for (int threads : {1, cfg.threads}) {
    decode_row<float>(cfg, m, t, threads);
    decode_row<Eigen::bfloat16>(cfg, m, t, threads);
    decode_row<attn::q8_0>(cfg, m, t, threads);
    if (cfg.threads == 1) break;
  }
}

/// The Llama-style decoder of examples/llm generating tokens with one attention variant: time
/// per decoded token, useful GFLOP/s (2 per weight, 4·D per cached key and query head), and
/// as "error" the largest |decoded − prefilled| hidden state (decode through the cache or
/// state must equal a fresh prefill of the whole sequence).
template <class Attention>
void llm_row(const demo::settings& cfg, const demo::machine& m, demo::table& t, const char* name,
             Attention attention) {
  const std::string variant = std::string("llm decode ") + name;
  if (!cfg.selects(variant)) return;
  t.progress(variant, cfg.threads);
  llm::config model;
  model.threads = cfg.threads;
  const llm::idx prompt = cfg.size.seq / 4, generate = cfg.size.decode_steps;
  model.max_seq = prompt + generate;
  const llm::generation g = llm::generate_and_check(model, 1, attention, prompt, generate);
  const double per_layer =
      static_cast<double>(model.d_model * model.head_dim * (2 * model.heads + 2 * model.kv_heads) +
                          3 * model.d_model * model.d_ff);
  const double weights = per_layer * static_cast<double>(model.layers) +
                         static_cast<double>(model.d_model * model.vocab);
  const double attention_flops = 4.0 * static_cast<double>(model.heads * model.head_dim) *
                                 static_cast<double>(prompt + generate / 2) *
                                 static_cast<double>(model.layers);
  const double s = g.decode_seconds / static_cast<double>(generate);
  const double gflops = (2.0 * weights + attention_flops) / s * 1e-9;
  t.add({.variant = variant,
         .shape = "L4 d256 GQA8:2 ctx" + std::to_string(prompt),
         .threads = cfg.threads,
         .seconds = s,
         .gflops = gflops,
         .limit = "FMA",
         .fraction = gflops / m.fma_gflops(cfg.threads),
         .vs_eigen = 0,
         .max_error = static_cast<double>(g.max_diff)});
}

void llm_section(const demo::settings& cfg, const demo::machine& m, demo::table& t) {
  llm_row(cfg, m, t, "softmax", llm::softmax_attention{});
  llm_row(cfg, m, t, "window+sinks", llm::window_attention{.window = 64, .sinks = 4});
  llm_row(cfg, m, t, "linear", llm::linear_attention{});
}

/// One forward of a block model (examples/vision, examples/long_context): time, the attention
/// stage's useful GFLOP/s against the FMA peak, and the first layers' attention error against
/// the double reference (`check` returns it).
template <class Model, class Check>
void block_row(const demo::settings& cfg, const demo::machine& m, demo::table& t,
               const std::string& variant, const std::string& shape, Model& model,
               std::vector<float> x, examples::index head_dim, Check check) {
  t.progress(variant, cfg.threads);
  model.forward(x.data());  // warm-up: first-touch allocations
  model.timer.clear();
  const int runs = cfg.size.runs;
  const double s = median_seconds(runs, [&] { model.forward(x.data()); });
  double attention_s = 0;
  for (std::size_t i = 0; i < model.timer.names.size(); ++i)
    if (model.timer.names[i] == "attention") attention_s = model.timer.seconds[i] / runs;
  const double gflops =
      attention_s > 0
          ? examples::attention_flops(model.visible_pairs(), head_dim) / attention_s * 1e-9
          : 0.0;
  t.add({.variant = variant,
         .shape = shape,
         .threads = cfg.threads,
         .seconds = s,
         .gflops = gflops,
         .limit = "FMA",
         .fraction = gflops / m.fma_gflops(cfg.threads),
         .vs_eigen = 0,
         .max_error = check()});
}

std::vector<float> uniform_input(std::size_t n, std::uint32_t seed) {
  std::vector<float> x(n);
  std::mt19937 rng(seed);
  examples::fill_uniform(rng, x.data(), static_cast<examples::index>(n), 1.0f);
  return x;
}

template <class A>
void vision_row(const demo::settings& cfg, const demo::machine& m, demo::table& t,
                const char* name) {
  const std::string variant = std::string("vision ") + name;
  if (!cfg.selects(variant)) return;
  namespace vision = examples::vision;
  vision::config c;
  c.height = c.width = cfg.size.seq >= 1024 ? 56 : 14;
  c.threads = cfg.threads;
  vision::model<A> model(c);
  auto x = uniform_input(static_cast<std::size_t>(c.tokens() * c.channels), 3);
  const std::string shape = std::to_string(c.height) + "x" + std::to_string(c.width) + " C" +
                            std::to_string(c.channels) + " " + std::to_string(c.layers) + " layers";
  block_row(cfg, m, t, variant, shape, model, x, c.head_dim(),
            [&] { return vision::check_layer(model, x.data(), 1).first; });
}

template <class A>
void long_context_row(const demo::settings& cfg, const demo::machine& m, demo::table& t,
                      const char* name) {
  const std::string variant = std::string("long-context ") + name;
  if (!cfg.selects(variant)) return;
  namespace lc = examples::long_context;
  lc::config c;
  c.n = 2 * cfg.size.seq;
  c.threads = cfg.threads;
  lc::model<A> model(c);
  auto x = uniform_input(static_cast<std::size_t>(c.tokens() * c.channels), 4);
  block_row(cfg, m, t, variant, "N" + std::to_string(c.n) + " C" + std::to_string(c.channels),
            model, x, c.head_dim(), [&] { return lc::check_layer(model, x.data()).first; });
}

void block_section(const demo::settings& cfg, const demo::machine& m, demo::table& t) {
  vision_row<examples::vision::neighborhood_policy>(cfg, m, t, "NAT/DiNAT");
  vision_row<examples::vision::biformer_policy>(cfg, m, t, "BiFormer");
  long_context_row<examples::long_context::bigbird_policy>(cfg, m, t, "BigBird");
  long_context_row<examples::long_context::longformer_policy>(cfg, m, t, "Longformer");
}

}  // namespace

int main(int argc, char** argv) {
  demo::settings cfg;
  if (const int exit_code = demo::parse(argc, argv, cfg); exit_code >= 0) return exit_code;
  using arch = attn::simd::default_arch;

  std::printf("attn %s: CPU attention kernels over Eigen tensors\n", attn::version);
  std::printf("SIMD arch %s (%d floats per register), %d threads (--threads), size %s\n",
              attn::simd::arch_name<arch>().c_str(), attn::simd::lanes<arch>, cfg.threads,
              cfg.size.name);
  const demo::machine m = demo::machine::measure(cfg.threads, cfg.size.bandwidth_mib);
  std::printf(
      "Machine limits, measured now: FMA %.1f GFLOP/s (1 thread), %.1f (%d); read "
      "bandwidth %.1f GB/s (1 thread), %.1f (%d)\n\n",
      m.fma_gflops(1), m.fma_gflops(cfg.threads), cfg.threads, m.bandwidth_gbps(1),
      m.bandwidth_gbps(cfg.threads), cfg.threads);

  demo::table table;
  attention_section(cfg, m, table);
  decode_section(cfg, m, table);
  llm_section(cfg, m, table);
  block_section(cfg, m, table);
  table.print();
  std::printf(
      "\nGFLOP/s: useful FLOPs (4·D per visible query-key pair and head; causal counts half).\n"
      "%% of limit: of the FMA peak for compute-bound rows, of the read bandwidth (K/V bytes "
      "read per token) for decoding.\nvs Eigen: time of the plain Eigen composition (one "
      "thread) / time of attn. max error: batch 0, head 0 against the double reference; llm rows:\n"
      "a Llama-style decoder (examples/llm), ms per generated token, error = decode vs prefill;\n"
      "vision and long-context rows: one forward of the block stack (examples/), GFLOP/s of its\n"
      "attention stage, error of one layer's attention against the double reference.\n");
  if (!cfg.json_path.empty() && !table.write_json(cfg.json_path, m)) {
    std::fprintf(stderr, "attn_demo: cannot write %s\n", cfg.json_path.c_str());
    return 1;
  }
  return table.rows.empty() ? 1 : 0;
}
