// The one fused tiled loop that softmax, sigmoid, sparse, neighborhood and routed attention
// share (docs/ARCHITECTURE.md, "The loop"):
//
//   for each (batch, head, query tile)            — spread over workers, heaviest tiles first
//     pack Qᵀ · q_factor                           — once per query tile
//     for each key tile the PATTERN does not rule out
//       Sᵀ = K_tile · Qᵀ                           — simd::scores_tile
//       SCORE.transform(Sᵀ)                        — e.g. soft-capping
//       mask / bias                                — only on tiles the pattern calls partial
//       SCORE.weigh(Sᵀ) → Pᵀ, α                    — online softmax, or a stateless sigmoid
//       Oᵀ = α ⊙ Oᵀ + V_tileᵀ · Pᵀ                 — simd::accumulate_tile
//     out = Oᵀᵀ · SCORE.output_factor, LSE         — unpack once per query tile
//
// Everything that varies is a template parameter (arch, score tile, pattern), so the hot loop
// has no run-time branch on a policy; the only per-tile branch is the tile kind.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "attn/exec/executor.hpp"
#include "attn/kernel/workspace.hpp"
#include "attn/options.hpp"
#include "attn/pattern/tile.hpp"
#include "attn/simd/microkernel.hpp"
#include "attn/tensor.hpp"

namespace attn::detail {

/// Keys per key tile: Sᵀ (keys × queries floats) stays in L1 beside the streamed Qᵀ/Pᵀ rows.
template <class A>
inline constexpr idx key_tile = 64;

/// Everything the loop reads, validated.
struct prefill_args {
  view4<const float> q, k, v;
  view4<float> out;
  problem_shape shape;
  float scale = 1.0f;
  std::span<const std::int32_t> key_lengths, query_lengths;
  float* lse = nullptr;  ///< [batch, heads_q, seq_q] or null
  int workers = 1;
  exec::executor executor;
};

/// Masks (−inf) and biases one partial tile of Sᵀ [keys × ld], rows = keys, columns = queries.
/// Only tiles the pattern could not classify as full come here. Patterns whose visible rows per
/// key form one range (band patterns) mask by ranges; the others are asked pair by pair.
template <class Pattern>
void apply_pattern(const Pattern& pattern, const head_ctx& c, idx q0, idx queries, idx k0, idx keys,
                   float bias_factor, float* st, idx ld) {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  for (idx j = 0; j < keys; ++j) {
    float* row = st + j * ld;
    if constexpr (requires { pattern.query_span(c, j, q0, q0); }) {
      const key_span seen = pattern.query_span(c, k0 + j, q0, q0 + queries);
      const idx lo = std::clamp<idx>(seen.begin - q0, 0, queries);
      const idx hi = std::clamp<idx>(seen.end - q0, lo, queries);
      std::fill(row, row + lo, neg_inf);
      std::fill(row + hi, row + queries, neg_inf);
      if constexpr (Pattern::has_bias)
        for (idx i = lo; i < hi; ++i) row[i] += bias_factor * pattern.logit_bias(c, q0 + i, k0 + j);
    } else {
      for (idx i = 0; i < queries; ++i) {
        if (!pattern.visible(c, q0 + i, k0 + j))
          row[i] = neg_inf;
        else if constexpr (Pattern::has_bias)
          row[i] += bias_factor * pattern.logit_bias(c, q0 + i, k0 + j);
      }
    }
  }
}

/// Runs the fused loop for arch A, kernel-side score type ScoreTile and a pattern.
template <class A, class ScoreTile, class Score, class Pattern>
void prefill(const prefill_args& a, const Score& score, const Pattern& pattern) {
  constexpr idx M = simd::tile_queries<A>;
  constexpr idx NK = key_tile<A>;
  const problem_shape& s = a.shape;
  const idx D = s.head_dim, Dv = s.head_dim_v;
  const idx q_tiles = (s.seq_q + M - 1) / M;
  const idx items = s.batch * s.heads_q * q_tiles;
  if (items == 0) return;
  const int workers = static_cast<int>(std::min<idx>(a.workers, items));

  std::atomic<idx> next{0};
  auto body = [&](int) {
    aligned_floats buffer(static_cast<std::size_t>((D + NK + Dv) * M + NK * Dv));
    float* qt = buffer.get();
    float* st = qt + D * M;
    float* ot = st + NK * M;
    float* vt = ot + Dv * M;  // the V tile, rows packed contiguously
    ScoreTile tile(score, a.scale);
    const float q_factor = tile.q_factor();

    for (idx item; (item = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      // Heaviest first: under causal-style patterns later query tiles see more keys, so hand
      // them out before the light ones and let the light ones fill the gaps.
      const idx t = q_tiles - 1 - item / (s.batch * s.heads_q);
      const idx bh = item % (s.batch * s.heads_q);
      const idx b = bh / s.heads_q, h = bh % s.heads_q;
      head_ctx c;
      c.batch = b;
      c.head = h;
      c.kv_head = h / s.group();
      c.heads = s.heads_q;
      c.seq_q = a.query_lengths.empty() ? s.seq_q : a.query_lengths[static_cast<std::size_t>(b)];
      c.seq_k = a.key_lengths.empty() ? s.seq_k : a.key_lengths[static_cast<std::size_t>(b)];

      const idx q0 = t * M;
      const idx rows = std::min(M, s.seq_q - q0);               // rows of this tile in the tensor
      const idx live = std::clamp<idx>(c.seq_q - q0, 0, rows);  // rows inside the query length

      tile.begin(c);
      std::fill(ot, ot + Dv * M, 0.0f);
      if (live > 0) {
        // Qᵀ, scaled, zero-padded to M columns.
        std::fill(qt, qt + D * M, 0.0f);
        for (idx i = 0; i < live; ++i) {
          const float* qrow = a.q.row(b, q0 + i, h);
          for (idx d = 0; d < D; ++d) qt[d * M + i] = qrow[d] * q_factor;
        }
        const key_span ks = intersect(pattern.keys(c, q0, q0 + live), {0, c.seq_k});
        for (idx k0 = ks.begin; k0 < ks.end; k0 += NK) {
          const idx k1 = std::min(k0 + NK, ks.end);
          const tile_kind kind = pattern.classify(c, q0, q0 + live, k0, k1);
          if (kind == tile_kind::none) continue;
          simd::scores_tile<A>(qt, D, a.k.row(b, k0, c.kv_head), a.k.strides[1], k1 - k0, st);
          tile.transform(st, k1 - k0);
          if (Pattern::has_bias || kind == tile_kind::partial)
            apply_pattern(pattern, c, q0, live, k0, k1 - k0, ScoreTile::bias_factor(), st, M);
          tile.weigh(st, k1 - k0);
          // V rows sit heads·head_dim_v apart in the tensor: at power-of-two strides the walk
          // down one tile's rows hits a handful of L1 sets and evicts itself. Packed, the tile
          // is one contiguous block that stays in L1 for all of its column blocks.
          for (idx j = k0; j < k1; ++j) {
            const float* vrow = a.v.row(b, j, c.kv_head);
            std::copy(vrow, vrow + Dv, vt + (j - k0) * Dv);
          }
          simd::accumulate_tile<A>(st, k1 - k0, vt, Dv, Dv, tile.alpha, ot);
        }
      }
      for (idx i = 0; i < rows; ++i) {
        float* orow = a.out.row(b, q0 + i, h);
        const bool in_length = i < live;
        const float f = in_length ? tile.output_factor(static_cast<int>(i)) : 0.0f;
        for (idx e = 0; e < Dv; ++e) orow[e] = ot[e * M + i] * f;
        if (a.lse)
          a.lse[(b * s.heads_q + h) * s.seq_q + q0 + i] =
              in_length ? tile.lse(static_cast<int>(i)) : -std::numeric_limits<float>::infinity();
      }
    }
  };
  if (workers == 1)
    body(0);
  else
    a.executor.parallel(workers, body);
}

}  // namespace attn::detail
