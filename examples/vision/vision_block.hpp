// Vision transformer blocks on a 2D token map [B, H, W, C], with attn's grid kernels as the
// attention: a few pre-norm blocks (examples/common/layers.hpp: LayerNorm, Q/K/V projections,
// attention, output projection, residual, LayerNorm, GELU MLP, residual), the attention chosen
// by a policy type:
//
//   neighborhood_policy   Neighborhood Attention (Hassani et al. 2023, "Neighborhood Attention
//                         Transformer", NAT): each token sees the kernel × kernel tokens around
//                         it (shifted inwards at the borders). With `dilate`, layers alternate
//                         dilation 1 and δ = ⌊min(H, W)/kernel⌋ as DiNAT does (Hassani & Shi
//                         2022, "Dilated Neighborhood Attention Transformer", §3.2: local and
//                         sparse global context in turn; k·δ ≤ H keeps the window on the map).
//                         attn::neighborhood<2> runs it fused, no gathered windows.
//   biformer_policy       Bi-level routing attention (Zhu et al. CVPR 2023, "BiFormer", §3.2):
//                         S × S regions, region-level routing keeps each region's top-k regions,
//                         then token attention within the gathered regions (attn::biformer +
//                         attn::biformer_attention), plus the local context enhancement (LCE,
//                         §3.3): a depthwise 5 × 5 convolution of V over the whole map, added to
//                         the attention output before the output projection — as the official
//                         BiLevelRoutingAttention's `lepe` branch (side_dwconv = 5, zero padding,
//                         with bias). BiFormer's logit scale is the official qk_dim^−½ (attn's
//                         default for biformer_attention).
//
// Not reproduced (they do not change what the attention kernel does): NAT's relative position
// bias, BiFormer's 3 × 3 depthwise positional embedding before each block, patch embedding,
// downsampling between stages, drop-path and layer scale.
//
// Channel c of a token is head c / D, dimension c mod D (the usual multi-head split), so the
// [B, H, W, C] buffers are exactly attn's rank-5 maps [B, H, W, heads, D]: no copies.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <attn/attn.hpp>
#include <attn/reference/neighborhood.hpp>
#include <attn/reference/routing.hpp>

#include "../common/layers.hpp"

namespace examples::vision {

using map5 = Eigen::Tensor<float, 5, Eigen::RowMajor>;
using map5_view = Eigen::TensorMap<map5>;
using const_map5_view = Eigen::TensorMap<const map5>;

/// The shape and hyper-parameters of a stage of vision blocks.
struct config {
  index batch = 1, height = 56, width = 56;  // NAT/BiFormer stage 1 at 224 × 224 input: 56 × 56
  index channels = 128, heads = 4;           // head_dim 32, as NAT and BiFormer use
  index layers = 4;
  index mlp_ratio = 3;   // NAT and BiFormer use 3
  index kernel = 7;      // NAT/DiNAT kernel 7 × 7
  bool dilate = true;    // DiNAT: alternate dilation 1 and ⌊min(H, W)/kernel⌋
  index regions = 7;     // BiFormer S (n_win = 7)
  index top_k = 4;       // BiFormer top-k regions (BiFormer-T/S: 1, 4, 16, all per stage)
  index lce_kernel = 5;  // BiFormer side_dwconv
  int threads = 0;       // attn's worker threads, 0 = all
  std::uint32_t seed = 1;

  index tokens() const { return batch * height * width; }
  index head_dim() const { return channels / heads; }
  attn::options options() const {
    attn::options o;
    o.threads = threads;
    return o;
  }
  map5_view view(float* x) const { return {x, batch, height, width, heads, head_dim()}; }
  const_map5_view view(const float* x) const {
    return {x, batch, height, width, heads, head_dim()};
  }
};

/// NAT / DiNAT neighborhood attention of one layer. A dilated layer is as cheap as an
/// undilated one: attn runs it as one undilated problem per residue class
/// (include/attn/dilation_groups.hpp explains why).
struct neighborhood_policy {
  static constexpr const char* name = "neighborhood (NAT/DiNAT)";
  config cfg;
  attn::neighborhood<2> pattern;

  neighborhood_policy(const config& c, index layer, std::mt19937&) : cfg(c) {
    // DiNAT §3.2: even layers local (dilation 1), odd layers dilated by the largest δ with
    // kernel·δ ≤ the map's side, so the dilated window spans the whole map.
    const index most = std::max<index>(1, std::min(c.height, c.width) / c.kernel);
    const index d = c.dilate && layer % 2 == 1 ? most : 1;
    pattern = attn::neighborhood<2>{.kernel = {c.kernel, c.kernel}, .dilation = {d, d}};
  }

  std::string describe() const {
    return "kernel " + std::to_string(pattern.kernel[0]) + "x" + std::to_string(pattern.kernel[1]) +
           ", dilation " + std::to_string(pattern.dilation[0]);
  }

  void attend(const float* q, const float* k, const float* v, float* out, stage_timer& t) {
    auto o = cfg.view(out);
    t.time("attention", [&] {
      attn::attention(cfg.view(q), cfg.view(k), cfg.view(v), o, attn::softmax{}, pattern,
                      cfg.options());
    });
  }

  /// Visible (query, key) pairs over every head and batch: every query sees kernel² keys (the
  /// window shifts inwards at the borders, NAT §3.1, it is never clipped).
  double visible_pairs() const {
    return static_cast<double>(cfg.tokens() * cfg.heads * pattern.kernel[0] * pattern.kernel[1]);
  }

  /// attn's double-precision reference of the same attention, [B, H·W, heads, D].
  attn::reference::result reference(const float* q, const float* k, const float* v) const {
    return attn::reference::grid_attention(cfg.view(q), cfg.view(k), cfg.view(v), attn::softmax{},
                                           pattern);
  }
};

/// A depthwise 2D convolution with zero padding and bias over maps [B, H, W, C], stride 1:
/// BiFormer's LCE (one k × k filter per channel).
struct depthwise_conv {
  index kernel = 5;
  matrix weight;    // [k·k, C]: tap (dy, dx) is row dy·k + dx
  row_vector bias;  // [C]

  depthwise_conv() = default;
  depthwise_conv(std::mt19937& rng, index k, index channels)
      : kernel(k), weight(k * k, channels), bias(channels) {
    // PyTorch's default Conv2d bound: 1/√fan_in with fan_in = k·k for a depthwise filter.
    const float bound = 1.0f / static_cast<float>(k);
    fill_uniform(rng, weight.data(), weight.size(), bound);
    fill_uniform(rng, bias.data(), bias.size(), bound);
  }

  /// out[b, y, x, :] += bias + Σ_taps weight[tap, :] ⊙ in[b, y + dy − k/2, x + dx − k/2, :];
  /// taps outside the map read zeros. Vectorised over channels.
  void add_to(const float* in, float* out, index batch, index height, index width) const {
    const index c = bias.size(), half = kernel / 2;
    for (index b = 0; b < batch; ++b)
      for (index y = 0; y < height; ++y)
        for (index x = 0; x < width; ++x) {
          Eigen::Map<row_vector> o(out + ((b * height + y) * width + x) * c, c);
          o += bias;
          for (index dy = 0; dy < kernel; ++dy) {
            const index sy = y + dy - half;
            if (sy < 0 || sy >= height) continue;
            for (index dx = 0; dx < kernel; ++dx) {
              const index sx = x + dx - half;
              if (sx < 0 || sx >= width) continue;
              const Eigen::Map<const row_vector> s(in + ((b * height + sy) * width + sx) * c, c);
              o.array() += weight.row(dy * kernel + dx).array() * s.array();
            }
          }
        }
  }
};

/// BiFormer's bi-level routing attention with local context enhancement, one layer.
struct biformer_policy {
  static constexpr const char* name = "bi-level routing (BiFormer)";
  config cfg;
  attn::biformer router;
  depthwise_conv lce;
  attn::region_selection last;  // the latest routing, for density() and inspection

  biformer_policy(const config& c, index, std::mt19937& rng)
      : cfg(c),
        router{.regions = c.regions, .top_k = c.top_k},
        lce(rng, c.lce_kernel, c.channels) {}

  std::string describe() const {
    return std::to_string(router.regions) + "x" + std::to_string(router.regions) +
           " regions, top-" + std::to_string(router.top_k) + ", LCE " + std::to_string(lce.kernel) +
           "x" + std::to_string(lce.kernel);
  }

  void attend(const float* q, const float* k, const float* v, float* out, stage_timer& t) {
    auto o = cfg.view(out);
    // Routing reads the data (region means of q and k), so it runs on every forward (§3.2).
    t.time("route", [&] { last = router.route(cfg.view(q), cfg.view(k), cfg.options()); });
    t.time("attention", [&] {
      attn::biformer_attention(cfg.view(q), cfg.view(k), cfg.view(v), o, attn::softmax{}, last,
                               cfg.options());
    });
    t.time("lce", [&] { lce.add_to(v, out, cfg.batch, cfg.height, cfg.width); });
  }

  double visible_pairs() const {
    const double n = static_cast<double>(cfg.height * cfg.width);
    return last.density() * n * n * static_cast<double>(cfg.batch * cfg.heads);
  }

  /// attn's double-precision reference of the routed attention, plus the same LCE (computed in
  /// float: the check is about the attention), [B, H·W, heads, D].
  attn::reference::result reference(const float* q, const float* k, const float* v) const {
    attn::reference::result r = attn::reference::biformer_attention(
        cfg.view(q), cfg.view(k), cfg.view(v), attn::softmax{}, router);
    std::vector<float> side(static_cast<std::size_t>(cfg.tokens() * cfg.channels), 0.0f);
    lce.add_to(v, side.data(), cfg.batch, cfg.height, cfg.width);
    for (index i = 0; i < r.out.size(); ++i) r.out.data()[i] += side[static_cast<std::size_t>(i)];
    return r;
  }
};

/// `layers` blocks with attention policy A on maps [B, H, W, C].
template <class A>
using model = block_stack<config, A>;
using examples::check_layer;  // of a model: one layer's attention against the reference

}  // namespace examples::vision
