// attn_example_long_context — a pre-norm encoder block (long_context_block.hpp) on a long
// sequence with BigBird, Longformer or Routing Transformer attention. Per variant: the forward
// time with a per-stage breakdown, the attention's density and useful GFLOP/s, and its time
// against dense attention on the same q, k, v — measured with --dense (slow: N² work), by
// default estimated from a dense run on the first --dense-n tokens scaled by (N / dense-n)².
// First, on a small N, each variant's attention is checked against attn's double-precision
// reference with the layout as an explicit mask (Routing Transformer: the reference's own
// per-cluster masks).
//
//   attn_example_long_context [--variant bigbird|longformer|routing|all] [--batch 1] [--n 16384]
//                             [--channels 256] [--heads 4] [--layers 1] [--block 64]
//                             [--random-blocks 3] [--window 256] [--globals 1] [--clusters 32]
//                             [--threads 0] [--runs 3] [--dense | --dense-n 4096 | --no-dense]
//                             [--check-n 512 | --no-check]
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "long_context_block.hpp"

namespace {

using examples::index;
namespace lc = examples::long_context;

void usage() {
  std::puts(
      "attn_example_long_context: a pre-norm encoder block on [B, N, C] with sparse attention\n"
      "  --variant bigbird|longformer|routing|all   (default all)\n"
      "  --batch B --n N --channels C --heads h     default 1, 16384, 256, 4 (head_dim 64)\n"
      "  --layers L                                 default 1\n"
      "  --block b --random-blocks r                BigBird (default 64, 3)\n"
      "  --window w --globals g                     Longformer (default 256 each side, 1)\n"
      "  --clusters C                               Routing Transformer (default 32: N/C each)\n"
      "  --threads n --runs r                       attn threads (0 = all), timed runs (3)\n"
      "  --dense | --dense-n m | --no-dense         dense attention: measured at N (slow),\n"
      "                                             estimated from m tokens (default 4096), none\n"
      "  --check-n n | --no-check                   N of the reference check (default 512)");
}

std::vector<float> random_input(const lc::config& c) {
  std::vector<float> x(static_cast<std::size_t>(c.tokens() * c.channels));
  std::mt19937 rng(c.seed + 100);
  examples::fill_uniform(rng, x.data(), static_cast<index>(x.size()), 1.0f);
  return x;
}

/// The reference check on a small problem: the same hyper-parameters scaled to n tokens.
template <class A>
bool check(const lc::config& big, index n) {
  lc::config c = big;
  c.batch = 2;
  c.n = n;
  c.channels = 64;
  c.heads = 2;
  c.layers = 1;
  // At least 16 blocks so that the layouts are sparse; block sizes are powers of two >= 16.
  c.block = 16;
  while (c.block * 2 <= std::min<index>(n / 16, big.block)) c.block *= 2;
  c.window = std::max<index>(1, n / 8);
  c.clusters = std::min<index>(big.clusters, 4);
  lc::model<A> m(c);
  const std::vector<float> x = random_input(c);
  const auto [err, scale] = lc::check_layer(m, x.data());
  const bool ok = err <= 1e-4 * std::max(1.0, scale);
  std::printf(
      "  check %-20s N=%-5lld B=2 C=64 heads=2 (%s, density %.3f): max |attn - ref| = %.2e"
      " (max |ref| %.2f) %s\n",
      A::name, static_cast<long long>(n), m.blocks.front().attention.describe().c_str(),
      m.blocks.front().attention.density(), err, scale, ok ? "ok" : "FAILED");
  return ok;
}

/// Median time of dense attention over the first m tokens of the last layer's q, k, v.
double dense_seconds(const lc::config& c, const examples::block_workspace& ws, index m, int runs) {
  const index d = c.head_dim();
  attn::tensor4<float> q(c.batch, m, c.heads, d), k(q.dimensions()), v(q.dimensions()),
      o(q.dimensions());
  for (index b = 0; b < c.batch; ++b) {  // the prefix of every batch
    const auto from = static_cast<std::size_t>(b * c.n * c.channels);
    const index count = m * c.channels;
    std::copy_n(ws.q.begin() + static_cast<std::ptrdiff_t>(from), count, q.data() + b * count);
    std::copy_n(ws.k.begin() + static_cast<std::ptrdiff_t>(from), count, k.data() + b * count);
    std::copy_n(ws.v.begin() + static_cast<std::ptrdiff_t>(from), count, v.data() + b * count);
  }
  const attn::options opt = c.options();
  attn::attention(q, k, v, o, attn::softmax{}, attn::dense{}, opt);  // warm-up
  return examples::median_seconds(
      runs, [&] { attn::attention(q, k, v, o, attn::softmax{}, attn::dense{}, opt); });
}

struct dense_mode {
  bool measure = false, skip = false;
  index n = 4096;
};

template <class A>
void run(const lc::config& c, int runs, const dense_mode& dense) {
  lc::model<A> m(c);
  std::vector<float> x = random_input(c);
  std::printf("\n%s: B=%lld, N=%lld, C=%lld, heads=%lld, %lld layer(s); %s\n", A::name,
              static_cast<long long>(c.batch), static_cast<long long>(c.n),
              static_cast<long long>(c.channels), static_cast<long long>(c.heads),
              static_cast<long long>(c.layers), m.blocks.front().attention.describe().c_str());
  {
    examples::stage_timer first;  // the warm-up forward; Routing Transformer seeds its centroids
    std::swap(first, m.timer);
    m.forward(x.data());
    for (std::size_t i = 0; i < m.timer.names.size(); ++i)
      if (m.timer.names[i] == "kmeans_init")
        std::printf("  k-means init of the centroids (once, first batch): %.1f ms\n",
                    1e3 * m.timer.seconds[i]);
    m.timer.clear();
  }
  const double s = examples::median_seconds(runs, [&] { m.forward(x.data()); });
  double attention_s = 0;
  for (std::size_t i = 0; i < m.timer.names.size(); ++i)
    if (m.timer.names[i] == "attention") attention_s = m.timer.seconds[i] / runs;
  const double pairs = m.visible_pairs();
  const double flops = examples::attention_flops(pairs, c.head_dim());
  const double nn = static_cast<double>(c.n) * static_cast<double>(c.n);
  const double dense_pairs = nn * static_cast<double>(c.batch * c.heads * c.layers);
  std::printf("  forward %.1f ms (median of %d), %.0f tokens/s; per forward, by stage:\n", 1e3 * s,
              runs, static_cast<double>(c.tokens()) / s);
  m.timer.print(runs);
  std::printf("  attention: density %.4f, %.2f GFLOP/s useful (%.3g GFLOP per forward)\n",
              pairs / dense_pairs, attention_s > 0 ? flops / attention_s * 1e-9 : 0.0,
              flops * 1e-9);
  if (!dense.skip) {
    const index dn = dense.measure ? c.n : std::min(dense.n, c.n);
    const double ratio = static_cast<double>(c.n) / static_cast<double>(dn);
    const double dense_s = dense_seconds(c, m.ws, dn, dense.measure ? 1 : runs) * ratio * ratio *
                           static_cast<double>(c.layers);
    std::printf(
        "  dense attention on the same data: %.1f ms (%s), %.2f GFLOP/s; sparse is %.1fx faster\n",
        1e3 * dense_s,
        dn == c.n ? "measured"
                  : ("estimated: N=" + std::to_string(dn) + " x" +
                     std::to_string(static_cast<long long>(ratio * ratio)))
                        .c_str(),
        examples::attention_flops(dense_pairs, c.head_dim()) / dense_s * 1e-9,
        attention_s > 0 ? dense_s / attention_s : 0.0);
  }
  float sum = 0;
  for (float e : x) sum += e;
  std::printf("  output checksum %.4f\n", static_cast<double>(sum));
}

}  // namespace

int main(int argc, char** argv) {
  examples::arguments args(argc, argv);
  if (args.flag("--help") || args.flag("-h")) {
    usage();
    return 0;
  }
  lc::config c;
  const std::string variant = args.text("--variant", "all");
  c.batch = args.integer("--batch", c.batch);
  c.n = args.integer("--n", c.n);
  c.channels = args.integer("--channels", c.channels);
  c.heads = args.integer("--heads", c.heads);
  c.layers = args.integer("--layers", c.layers);
  c.block = args.integer("--block", c.block);
  c.random_blocks = args.integer("--random-blocks", c.random_blocks);
  c.window = args.integer("--window", c.window);
  c.global_tokens = args.integer("--globals", c.global_tokens);
  c.clusters = args.integer("--clusters", c.clusters);
  c.threads = static_cast<int>(args.integer("--threads", 0));
  const int runs = static_cast<int>(args.integer("--runs", 3));
  dense_mode dense;
  dense.measure = args.flag("--dense");
  dense.skip = args.flag("--no-dense");
  dense.n = args.integer("--dense-n", dense.n);
  const examples::index check_n = args.integer("--check-n", 512);
  const bool no_check = args.flag("--no-check");
  if (!args.all_used()) return 2;
  const bool bigbird = variant == "bigbird" || variant == "all";
  const bool longformer = variant == "longformer" || variant == "all";
  const bool routing = variant == "routing" || variant == "all";
  if (!bigbird && !longformer && !routing) {
    std::fprintf(stderr, "unknown --variant %s (bigbird, longformer, routing, all)\n",
                 variant.c_str());
    return 2;
  }
  if (c.heads < 1 || c.channels % c.heads != 0) {
    std::fprintf(stderr, "--channels %lld must be a multiple of --heads %lld\n",
                 static_cast<long long>(c.channels), static_cast<long long>(c.heads));
    return 2;
  }
  std::printf(
      "attn_example_long_context (timings on a shared machine are noisy: compare within a run)\n");
  try {
    bool ok = true;
    if (!no_check) {
      std::puts("reference check (attn vs attn::reference, double precision, explicit masks):");
      if (bigbird) ok &= check<lc::bigbird_policy>(c, check_n);
      if (longformer) ok &= check<lc::longformer_policy>(c, check_n);
      if (routing) ok &= check<lc::routing_policy>(c, check_n);
    }
    if (bigbird) run<lc::bigbird_policy>(c, runs, dense);
    if (longformer) run<lc::longformer_policy>(c, runs, dense);
    if (routing) run<lc::routing_policy>(c, runs, dense);
    return ok ? 0 : 1;
  } catch (const attn::error& e) {
    std::fprintf(stderr, "attn::error: %s\n", e.what());
    return 2;
  }
}
