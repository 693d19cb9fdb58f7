// A pre-norm transformer encoder block (examples/common/layers.hpp: LayerNorm, Q/K/V
// projections, attention, output projection, residual, LayerNorm, GELU MLP, residual) over a
// long sequence [B, N, C], N = 16384 by default, with sparse attention chosen by a policy type:
//
//   bigbird_policy     BigBird (Zaheer et al. 2020, "Big Bird", §2, appendix D): blocks of b
//                      tokens; each query block sees the first and last blocks (global), its
//                      3-block window and r random blocks, drawn per head as the paper does.
//                      attn::bigbird_layout, run by the fused loop in time ∝ density.
//   longformer_policy  Longformer (Beltagy et al. 2020, §3.1): a sliding window of w keys on
//                      each side (w = 256: the paper's 512-token window) plus a few global tokens
//                      (the [CLS] of a classifier) that see, and are seen by, every token.
//                      attn::longformer_layout, element-exact.
//   routing_policy     Routing Transformer (Roy et al. 2021, §4): queries and keys routed to
//                      C k-means centroids, each cluster holding the w = N/C best-matching
//                      queries and keys, attention within clusters. The centroids are the layer's
//                      state: seeded by k-means on the first batch (attn::kmeans_init; in training
//                      they follow an EMA, attn::ema_update), then every forward routes
//                      (attn::routing_transformer) and attends within clusters.
//
// Channel c is head c / D, dimension c mod D, so the [B, N, C] buffers are attn's rank-4
// tensors [B, N, heads, D] as they are: no copies.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <attn/attn.hpp>
#include <attn/reference/routing.hpp>
#include <attn/reference/softmax.hpp>

#include "../common/layers.hpp"

namespace examples::long_context {

using seq_view = attn::tensor4_map<float>;
using const_seq_view = attn::const_tensor4_map<float>;

struct config {
  index batch = 1, n = 16384;
  index channels = 256, heads = 4;  // head_dim 64
  index layers = 1;
  index mlp_ratio = 4;
  index block = 64;         // BigBird's block b; also the Longformer layout's block size
  index random_blocks = 3;  // BigBird r (ITC: 3)
  index window = 256;       // Longformer w, keys on each side
  index global_tokens = 1;  // Longformer: the first g tokens are global ([CLS])
  index clusters = 32;      // Routing Transformer C; w = N / C tokens per cluster
  index kmeans_iterations = 10;
  int threads = 0;
  std::uint32_t seed = 1;

  index tokens() const { return batch * n; }
  index head_dim() const { return channels / heads; }
  attn::options options() const {
    attn::options o;
    o.threads = threads;
    return o;
  }
  seq_view view(float* x) const { return {x, batch, n, heads, head_dim()}; }
  const_seq_view view(const float* x) const { return {x, batch, n, heads, head_dim()}; }
};

/// The shared part of the two block-layout policies: run the layout, report its density.
struct layout_policy {
  config cfg;
  attn::block_layout layout;

  void attend(const float* q, const float* k, const float* v, float* out, stage_timer& t) const {
    auto o = cfg.view(out);
    t.time("attention", [&] {
      attn::attention(cfg.view(q), cfg.view(k), cfg.view(v), o, attn::softmax{}, layout,
                      cfg.options());
    });
  }
  double density() const { return layout.density(); }
  /// Visible pairs over every batch and head (a shared layout serves every head).
  double visible_pairs() const {
    const double heads = layout.heads() == 1 ? static_cast<double>(cfg.heads) : 1.0;
    return layout.visible_pairs() * heads * static_cast<double>(cfg.batch);
  }
  /// The reference with the layout as an explicit element mask [1, heads, N, N].
  attn::reference::result reference(const float* q, const float* k, const float* v) const {
    const attn::bool_tensor4 m = layout.to_mask();
    return attn::reference::attention(cfg.view(q), cfg.view(k), cfg.view(v), attn::softmax{},
                                      attn::mask{m});
  }
};

struct bigbird_policy : layout_policy {
  static constexpr const char* name = "BigBird";
  bigbird_policy(const config& c, index layer)
      : layout_policy{c, attn::bigbird_layout(c.n, c.block,
                                              {.random_blocks = c.random_blocks,
                                               .seed = c.seed + static_cast<std::uint64_t>(layer),
                                               .heads = c.heads})} {}
  std::string describe() const {
    return "block " + std::to_string(cfg.block) + ", 2 global + 3 window + " +
           std::to_string(cfg.random_blocks) + " random blocks per head";
  }
};

struct longformer_policy : layout_policy {
  static constexpr const char* name = "Longformer";
  longformer_policy(const config& c, index) : layout_policy{c, make(c)} {}
  static attn::block_layout make(const config& c) {
    std::vector<attn::idx> global(static_cast<std::size_t>(std::min(c.global_tokens, c.n)));
    for (std::size_t i = 0; i < global.size(); ++i) global[i] = static_cast<attn::idx>(i);
    return attn::longformer_layout(c.n, c.block,
                                   {.window = c.window, .dilation = 1, .global_tokens = global});
  }
  std::string describe() const {
    return "window +-" + std::to_string(cfg.window) + ", " + std::to_string(cfg.global_tokens) +
           " global token(s)";
  }
};

struct routing_policy {
  static constexpr const char* name = "Routing Transformer";
  config cfg;
  attn::routing_transformer router;
  attn::centroid_tensor centroids;  // [heads, C, D]; empty until the first forward
  attn::cluster_selection last;

  routing_policy(const config& c, index)
      : cfg(c), router{.window = std::max<index>(1, c.n / std::max<index>(c.clusters, 1))} {}

  std::string describe() const {
    return std::to_string(cfg.clusters) + " clusters of " + std::to_string(router.window) +
           " tokens";
  }

  void attend(const float* q, const float* k, const float* v, float* out, stage_timer& t) {
    auto o = cfg.view(out);
    if (centroids.size() == 0)
      t.time("kmeans_init", [&] {
        centroids = attn::kmeans_init(cfg.view(q), cfg.view(k), cfg.clusters, cfg.kmeans_iterations,
                                      attn::routing_norm::l2, cfg.seed, cfg.options());
      });
    t.time("route",
           [&] { last = router.route(cfg.view(q), cfg.view(k), centroids, cfg.options()); });
    t.time("attention", [&] {
      attn::routing_transformer_attention(cfg.view(q), cfg.view(k), cfg.view(v), o, attn::softmax{},
                                          last, cfg.options());
    });
  }
  double density() const { return last.density(); }
  double visible_pairs() const {
    const double n = static_cast<double>(cfg.n);
    return last.density() * n * n * static_cast<double>(cfg.batch * cfg.heads);
  }
  attn::reference::result reference(const float* q, const float* k, const float* v) const {
    return attn::reference::routing_transformer_attention(cfg.view(q), cfg.view(k), cfg.view(v),
                                                          attn::softmax{}, centroids, router);
  }
};

/// `layers` blocks with attention policy A on sequences [B, N, C].
template <class A>
using model = block_stack<config, A>;
using examples::check_layer;  // of a model: one layer's attention against the reference

}  // namespace examples::long_context
