// attn_example_vision — a stage of vision transformer blocks (vision_block.hpp) on a 2D token
// map, with neighborhood attention (NAT, alternating DiNAT dilation) or BiFormer's bi-level
// routing attention (+ LCE). Prints the forward time with a per-stage breakdown and the
// attention's useful GFLOP/s, after checking one layer's attention output against attn's
// double-precision reference on a small map.
//
//   attn_example_vision [--variant nat|biformer|all] [--batch 1] [--size 56 | --height H --width W]
//                       [--channels 128] [--heads 4] [--layers 4] [--kernel 7] [--no-dilation]
//                       [--regions 7] [--topk 4] [--threads 0] [--runs 3]
//                       [--check-size 14] [--no-check]
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "vision_block.hpp"

namespace {

using examples::index;
namespace vision = examples::vision;

void usage() {
  std::puts(
      "attn_example_vision: a stage of NAT/DiNAT or BiFormer blocks on a [B, H, W, C] map\n"
      "  --variant nat|biformer|all   attention policy (default all)\n"
      "  --batch B --size S           map B x S x S (or --height H --width W; default 1, 56)\n"
      "  --channels C --heads h       default 128, 4 (head_dim 32)\n"
      "  --layers L --kernel k        default 4, 7; --no-dilation: plain NAT (DiNAT alternates)\n"
      "  --regions S --topk k         BiFormer: S x S regions, top-k (default 7, 4)\n"
      "  --threads n --runs r         attn threads (0 = all), timed runs (median; default 3)\n"
      "  --check-size s | --no-check  map side of the reference check (default 14)");
}

std::vector<float> random_input(const vision::config& c) {
  std::vector<float> x(static_cast<std::size_t>(c.tokens() * c.channels));
  std::mt19937 rng(c.seed + 100);
  examples::fill_uniform(rng, x.data(), static_cast<index>(x.size()), 1.0f);
  return x;
}

/// Reference check on a small map, on layer 1 (the dilated one under DiNAT).
template <class A>
bool check(const vision::config& big, index side) {
  vision::config c = big;
  c.batch = 2;
  c.height = c.width = side;
  c.channels = 64;
  c.heads = 2;
  c.layers = 2;
  c.regions = std::min<index>(big.regions, side);
  while (side % c.regions != 0) --c.regions;  // BiFormer needs S | H, W (no auto_pad here)
  c.top_k = std::min(c.top_k, c.regions * c.regions);
  vision::model<A> m(c);
  const std::vector<float> x = random_input(c);
  const index layer = std::min<index>(1, c.layers - 1);
  const auto [err, scale] = vision::check_layer(m, x.data(), layer);
  const bool ok = err <= 1e-4 * std::max(1.0, scale);
  std::printf(
      "  check %-28s %2lldx%-2lld B=2 C=64 heads=2, layer %lld (%s): max |attn - ref| = %.2e"
      " (max |ref| %.2f) %s\n",
      A::name, static_cast<long long>(side), static_cast<long long>(side),
      static_cast<long long>(layer),
      m.blocks[static_cast<std::size_t>(layer)].attention.describe().c_str(), err, scale,
      ok ? "ok" : "FAILED");
  return ok;
}

template <class A>
void run(const vision::config& c, int runs) {
  vision::model<A> m(c);
  std::vector<float> x = random_input(c);
  std::printf("\n%s: B=%lld, %lldx%lld tokens, C=%lld, heads=%lld, %lld layers\n", A::name,
              static_cast<long long>(c.batch), static_cast<long long>(c.height),
              static_cast<long long>(c.width), static_cast<long long>(c.channels),
              static_cast<long long>(c.heads), static_cast<long long>(c.layers));
  for (std::size_t l = 0; l < m.blocks.size(); ++l)
    std::printf("  layer %zu: %s\n", l, m.blocks[l].attention.describe().c_str());
  m.forward(x.data());  // warm-up (first-touch allocations)
  m.timer.clear();
  const double s = examples::median_seconds(runs, [&] { m.forward(x.data()); });
  double attention_s = 0;
  for (std::size_t i = 0; i < m.timer.names.size(); ++i)
    if (m.timer.names[i] == "attention") attention_s = m.timer.seconds[i] / runs;
  const double n = static_cast<double>(c.height * c.width);
  const double pairs = m.visible_pairs();
  const double dense_pairs = n * n * static_cast<double>(c.batch * c.heads * c.layers);
  std::printf("  forward %.2f ms (median of %d), %.0f tokens/s; per forward, by stage:\n", 1e3 * s,
              runs, static_cast<double>(c.tokens()) / s);
  m.timer.print(runs);
  std::printf(
      "  attention: density %.4f of dense, %.2f GFLOP/s useful (%.3g GFLOP per forward)\n",
      pairs / dense_pairs,
      attention_s > 0 ? examples::attention_flops(pairs, c.head_dim()) / attention_s * 1e-9 : 0.0,
      examples::attention_flops(pairs, c.head_dim()) * 1e-9);
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
  vision::config c;
  const std::string variant = args.text("--variant", "all");
  c.batch = args.integer("--batch", c.batch);
  c.height = c.width = args.integer("--size", c.height);
  c.height = args.integer("--height", c.height);
  c.width = args.integer("--width", c.width);
  c.channels = args.integer("--channels", c.channels);
  c.heads = args.integer("--heads", c.heads);
  c.layers = args.integer("--layers", c.layers);
  c.kernel = args.integer("--kernel", c.kernel);
  c.dilate = !args.flag("--no-dilation");
  c.regions = args.integer("--regions", c.regions);
  c.top_k = args.integer("--topk", c.top_k);
  c.threads = static_cast<int>(args.integer("--threads", 0));
  const int runs = static_cast<int>(args.integer("--runs", 3));
  const examples::index check_side = args.integer("--check-size", 14);
  const bool no_check = args.flag("--no-check");
  if (!args.all_used()) return 2;
  const bool nat = variant == "nat" || variant == "all";
  const bool bra = variant == "biformer" || variant == "all";
  if (!nat && !bra) {
    std::fprintf(stderr, "unknown --variant %s (nat, biformer, all)\n", variant.c_str());
    return 2;
  }
  if (c.heads < 1 || c.channels % c.heads != 0) {
    std::fprintf(stderr, "--channels %lld must be a multiple of --heads %lld\n",
                 static_cast<long long>(c.channels), static_cast<long long>(c.heads));
    return 2;
  }
  std::printf(
      "attn_example_vision (timings on a shared machine are noisy: compare within a run)\n");
  try {
    bool ok = true;
    if (!no_check) {
      std::puts("reference check (attn vs attn::reference, double precision):");
      if (nat) ok &= check<vision::neighborhood_policy>(c, check_side);
      if (bra) ok &= check<vision::biformer_policy>(c, check_side);
    }
    if (nat) run<vision::neighborhood_policy>(c, runs);
    if (bra) run<vision::biformer_policy>(c, runs);
    return ok ? 0 : 1;
  } catch (const attn::error& e) {
    std::fprintf(stderr, "attn::error: %s\n", e.what());
    return 2;
  }
}
