// SpargeAttn's sparse-block predictor (Zhang et al. 2025, "SpargeAttn: Accurate Sparse
// Attention Accelerating Any Model Inference", §3.2 "selective token compression";
// thu-ml/SpargeAttn, utils.py get_block_map_meansim).
//
// For each (batch, head): queries are pooled into blocks of block_q, keys into blocks of
// block_k (means over the block's tokens); the block-level attention map is
//   P̂ = softmax_row(scale · Q̄ · K̄ᵀ)         over the key blocks a query block may see
// and each query block keeps the fewest key blocks, taken in decreasing P̂ (ties: lower index),
// whose cumulative probability reaches τ (the official cdfthreshd). τ = 1 keeps every block
// (in exact arithmetic only all blocks sum to 1; rounding must not drop the smallest ones).
// Causal: a key block is a candidate iff its first key is not after the block's last query
// (official: the block-level causal mask before the softmax), and the element mask cuts it.
//
// Not reproduced: the official predictor also keeps every block whose tokens are not
// self-similar (mean cosine similarity below θ) and skips P·V tiles by λ in the kernel; this is
// the cumulative-threshold selection alone, the part that decides the pattern from the
// pooled map.
//
//   auto sel = attn::sparge{.tau = 0.9f}.route(q, k);
//   attn::attention(q, k, v, out, attn::softmax{}, sel);
#pragma once

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "attn/routing/common.hpp"
#include "attn/routing/moba.hpp"
#include "attn/routing/selection.hpp"
#include "attn/routing/topk.hpp"

namespace attn {

struct sparge {
  idx block_q = 128;             ///< queries per pooled block (official BLKQ)
  idx block_k = 64;              ///< keys per pooled block (official BLKK)
  float tau = 0.9f;              ///< cumulative probability to reach, in (0, 1]
  bool causal = false;           ///< bottom-right causal, as attn::causal
  std::optional<float> scale{};  ///< the block map's logit scale; default 1/√D

  template <class Q, class K>
  requires detail::row_major_tensor<Q, 4> && detail::row_major_tensor<K, 4> block_selection
  route(const Q& q, const K& k, const options& opt = {})
  const {
    const detail::router_inputs in = detail::router_views(q, k);
    const detail::view4<const float>&qv = in.q, &kv = in.k;
    const detail::problem_shape& s = in.shape;
    detail::require_positive("sparge", "block_q", block_q);
    detail::require_positive("sparge", "block_k", block_k);
    if (!(tau > 0.0f && tau <= 1.0f)) detail::fail("sparge: tau=", tau, " must be in (0, 1]");
    const float logit_scale =
        scale.value_or(s.head_dim > 0 ? 1.0f / std::sqrt(static_cast<float>(s.head_dim)) : 1.0f);
    if (!std::isfinite(logit_scale)) detail::fail("sparge: scale=", logit_scale, " must be finite");
    detail::selection_builder builder("sparge", s.batch, s.heads_q, s.seq_q, s.seq_k, block_q,
                                      block_k, causal);
    const idx blocks = detail::blocks_of(s.seq_k, block_k), groups = builder.data().groups;
    const idx offset = s.seq_k - s.seq_q, group = s.heads_q / s.heads_kv, D = s.head_dim;
    detail::parallel_items(opt, s.batch * s.heads_q, [&](idx item) {
      const idx b = item / s.heads_q, h = item % s.heads_q;
      std::vector<float> means, score, pooled(static_cast<std::size_t>(D));
      std::vector<double> p(static_cast<std::size_t>(blocks));
      std::vector<idx> order;
      detail::key_block_means(kv, b, h / group, block_k, means);
      for (idx g = 0; g < groups; ++g) {
        const idx i0 = g * block_q, i1 = std::min(s.seq_q, i0 + block_q);
        idx candidates = blocks;
        if (causal) {
          const idx last = i1 - 1 + offset;
          if (last < 0) continue;
          candidates = std::min(blocks, last / block_k + 1);
        }
        for (idx d = 0; d < D; ++d) {
          double sum = 0;
          for (idx i = i0; i < i1; ++i) sum += qv.row(b, i, h)[d];
          pooled[static_cast<std::size_t>(d)] =
              static_cast<float>(sum / static_cast<double>(i1 - i0)) * logit_scale;
        }
        detail::gate_scores(pooled.data(), D, means, detail::gate_stride(blocks), candidates,
                            score);
        if (tau >= 1.0f) {
          for (idx c = 0; c < candidates; ++c) builder.select(b, h, g, c);
          continue;
        }
        double top = -std::numeric_limits<double>::infinity(), z = 0;
        for (idx c = 0; c < candidates; ++c)
          top = std::max(top, static_cast<double>(score[static_cast<std::size_t>(c)]));
        for (idx c = 0; c < candidates; ++c)
          z += p[static_cast<std::size_t>(c)] =
              std::exp(static_cast<double>(score[static_cast<std::size_t>(c)]) - top);
        detail::rank_all(score.data(), candidates, order);
        double cumulative = 0;
        for (idx c : order) {
          builder.select(b, h, g, c);
          cumulative += p[static_cast<std::size_t>(c)] / z;
          if (cumulative >= static_cast<double>(tau)) break;
        }
      }
    });
    return detail::finish_selection(builder, opt);
  }
};

}  // namespace attn
