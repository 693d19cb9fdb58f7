// The one fused tiled loop that softmax, sigmoid, sparse, neighborhood and routed attention
// share (docs/ARCHITECTURE.md, "The loop"):
//
//   for each (batch, head, query tile)            — spread over workers, heaviest tiles first
//     pack Qᵀ · q_factor                           — once per query tile
//     for each key tile the PATTERN does not rule out
//       pack the K and V tiles                     — once per key tile of a work item
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
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>

#include "attn/exec/executor.hpp"
#include "attn/kernel/tile_products.hpp"
#include "attn/kernel/workspace.hpp"
#include "attn/options.hpp"
#include "attn/pattern/tile.hpp"
#include "attn/simd/microkernel.hpp"
#include "attn/tensor.hpp"

namespace attn::detail {

/// Keys per key tile: Sᵀ (keys × queries floats) stays in L1 beside the streamed Qᵀ/Pᵀ rows.
template <class A>
inline constexpr idx key_tile = 64;

/// Query tiles per work item that share each K/V tile fetch: 4 × 64 queries on AVX-512, whose
/// Qᵀ and Oᵀ (≤ 256 KiB at head_dim 128) stay in the 1 MiB L2.
template <class A>
inline constexpr idx query_block = 4;

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

/// What a pattern and a score see of (batch b, query head h): its K/V head and the batch's
/// effective lengths. Every loop builds it the same way.
inline head_ctx context_of(const prefill_args& a, idx b, idx h) {
  const problem_shape& s = a.shape;
  head_ctx c;
  c.batch = b;
  c.head = h;
  c.kv_head = h / s.group();
  c.heads = s.heads_q;
  c.seq_q = a.query_lengths.empty() ? s.seq_q : a.query_lengths[static_cast<std::size_t>(b)];
  c.seq_k = a.key_lengths.empty() ? s.seq_k : a.key_lengths[static_cast<std::size_t>(b)];
  return c;
}

/// Masks (−inf) and biases one partial tile of Sᵀ [keys × ld], rows = keys, columns = queries.
/// Only tiles the pattern could not classify as full come here. Patterns whose visible rows per
/// key form one range (band patterns) mask by ranges; patterns that can say which rows see each
/// key of a whole tile at once (visible_rows: block-sparse layouts, whose visible() is a search)
/// mask by those bits; the others are asked pair by pair.
template <class A, class Pattern>
void apply_pattern(const Pattern& pattern, const head_ctx& c, idx q0, idx queries, idx k0, idx keys,
                   float bias_factor, float* st, idx ld) {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  constexpr idx most = 64;  // bits of one row mask: queries and keys of one visible_rows() call
  if constexpr (
      !requires { pattern.query_span(c, k0, q0, q0); } &&
      requires(std::uint64_t * seen) { pattern.visible_rows(c, q0, q0, k0, k0, seen); }) {
    if (queries <= most && keys <= most) {
      std::array<std::uint64_t, most> seen;
      pattern.visible_rows(c, q0, q0 + queries, k0, k0 + keys, seen.data());
      for (idx j = 0; j < keys; ++j) {
        float* row = st + j * ld;
        const std::uint64_t bits = seen[static_cast<std::size_t>(j)];
        if constexpr (Pattern::has_bias)
          for (idx i = 0; i < queries; ++i)
            if (((bits >> i) & 1u) != 0)
              row[i] += bias_factor * pattern.logit_bias(c, q0 + i, k0 + j);
        simd::fill_unkept<A>(row, queries, bits, neg_inf);
      }
      return;
    }
  }
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

/// One query tile of a work item: its rows, its packed Qᵀ, its accumulator Oᵀ, its score state.
template <class ScoreTile>
struct query_tile {
  ScoreTile score;
  float* qt = nullptr;  // Qᵀ as the products policy packs it (tile_products.hpp)
  float* ot = nullptr;  // Oᵀ [head_dim_v × M]
  idx q0 = 0;           // first row
  idx rows = 0;         // rows of the tile inside the tensor
  idx live = 0;         // rows inside the batch's query length (the others are written as 0)
  key_span keys{};      // keys the pattern lets these rows see
};

/// Writes the output rows of one query tile of (c.batch, c.head): lane i of Oᵀ [Dv × M] is
/// token token_of(i) for i < rows, scaled by the score's output factor, with its LSE; a token
/// at or past the batch's query length gets zeros and −inf. Oᵀ is transposed into `stage`
/// (M × Dv) first and then copied out row by row: whole-row stores keep many of the output
/// rows' cache misses in flight (as pack_q does for Q).
template <class A, class ScoreTile, class TokenOf>
void write_tile_out(const prefill_args& a, const head_ctx& c, const ScoreTile& score,
                    const float* ot, idx rows, TokenOf token_of, float* stage) {
  constexpr idx M = simd::tile_queries<A>;
  const problem_shape& s = a.shape;
  const idx Dv = s.head_dim_v;
  alignas(64) std::array<float, M> factor{};
  for (idx i = 0; i < rows; ++i)
    if (token_of(i) < c.seq_q)
      factor[static_cast<std::size_t>(i)] = score.output_factor(static_cast<int>(i));
  simd::transpose_scaled<A>(ot, M, Dv, rows, factor.data(), stage, Dv, Dv);
  for (idx i = 0; i < rows; ++i) {
    const idx t = token_of(i);
    std::copy(stage + i * Dv, stage + (i + 1) * Dv, a.out.row(c.batch, t, c.head));
    if (a.lse)
      a.lse[(c.batch * s.heads_q + c.head) * s.seq_q + t] =
          t < c.seq_q ? score.lse(static_cast<int>(i)) : -std::numeric_limits<float>::infinity();
  }
}

/// A work item: query_block query tiles of one (batch, head), from row q0.
struct work_item {
  idx batch = 0, head = 0, q0 = 0;
};

/// Runs the fused loop for arch A, kernel-side score type ScoreTile and a pattern.
///
/// A work item is a block of query_block consecutive query tiles of one (batch, head). Key
/// tiles are the outer loop inside it, so each K and V tile is fetched from memory (and
/// packed) once for the whole block and then reused from L1 by every query tile of it.
template <class A, class ScoreTile, class Score, class Pattern, class Products = float_products<A>>
void prefill(const prefill_args& a, const Score& score, const Pattern& pattern,
             const Products& products = {}) {
  constexpr idx M = simd::tile_queries<A>;
  constexpr idx NK = key_tile<A>;
  constexpr idx G = query_block<A>;
  const problem_shape& s = a.shape;
  const idx D = s.head_dim, Dv = s.head_dim_v;
  const idx blocks = (s.seq_q + G * M - 1) / (G * M);
  const idx heads = s.batch * s.heads_q;
  const idx items = heads * blocks;
  if (items == 0) return;
  const int workers = static_cast<int>(std::min<idx>(a.workers, items));

  // Items run head by head, and within a head heaviest first: under causal-style patterns
  // later query blocks see more keys, so they are handed out before the light ones, which fill
  // the gaps. Head by head, the K/V rows the items in flight read are those of one head (4 MiB
  // at N = 8192, D = 64), which stay in L3 between the items that revisit them: under a sparse
  // layout each item reads K/V tiles scattered over the whole sequence.
  auto item_at = [&](idx item) {
    const idx bh = item / blocks, block = blocks - 1 - item % blocks;
    return work_item{bh / s.heads_q, bh % s.heads_q, block * G * M};
  };
  std::atomic<idx> next{0};
  auto body = [&](int) {
    const idx QT = Products::qt_floats(D), tile_floats = QT + Dv * M;
    const idx stage_floats = M * std::max(D, Dv);
    aligned_floats buffer(static_cast<std::size_t>(
        G * tile_floats + NK * M + Products::kt_floats(NK, D) + Products::vt_floats(NK, Dv) +
        Products::scratch_floats(NK) + stage_floats));
    std::array<std::optional<query_tile<ScoreTile>>, G> tiles;
    for (idx g = 0; g < G; ++g) {
      auto& qt = tiles[static_cast<std::size_t>(g)].emplace(
          query_tile<ScoreTile>{ScoreTile(score, a.scale)});
      qt.qt = buffer.get() + g * tile_floats;
      qt.ot = qt.qt + QT;
    }
    float* st = buffer.get() + G * tile_floats;   // Sᵀ / Pᵀ of the tile being processed
    float* kt = st + NK * M;                      // the K tile, packed (products.pack_kv)
    float* vt = kt + Products::kt_floats(NK, D);  // the V tile, packed
    float* scratch = vt + Products::vt_floats(NK, Dv);
    float* stage = scratch + Products::scratch_floats(NK);  // M rows of Q or out, row-major
    nonfinite_values bad_values;  // its rows that hold NaN / inf, set aside
    const float q_factor = tiles[0]->score.q_factor();

    for (idx item; (item = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      const auto [b, h, block_q0] = item_at(item);
      const head_ctx c = context_of(a, b, h);

      // Q rows of one head lie heads·head_dim apart, past the reach of the hardware prefetchers:
      // ask for the whole block's rows at once so that their misses overlap.
      const idx block_rows = std::min(s.seq_q - block_q0, G * M);
      products.prefetch_q(a, b, h, block_q0, block_rows);
      key_span all_keys{c.seq_k, 0};  // union of the tiles' key ranges
      for (auto& slot : tiles) {
        query_tile<ScoreTile>& t = *slot;
        t.q0 = block_q0 + (&slot - tiles.data()) * M;
        t.rows = std::clamp<idx>(s.seq_q - t.q0, 0, M);
        t.live = std::clamp<idx>(c.seq_q - t.q0, 0, t.rows);
        t.score.begin(c);
        std::fill(t.ot, t.ot + Dv * M, 0.0f);
        t.keys = {};
        if (t.live == 0) continue;
        products.pack_q(a, b, h, t.q0, t.live, q_factor, t.qt, stage);
        t.keys = intersect(pattern.keys(c, t.q0, t.q0 + t.live), {0, c.seq_k});
        if (t.keys.empty()) continue;
        all_keys = {std::min(all_keys.begin, t.keys.begin), std::max(all_keys.end, t.keys.end)};
      }

      // Key tiles in order, each classified one step ahead: while one is computed, the K and V
      // rows of the next one some query tile needs are requested towards L2, a few lines at a
      // time between the register blocks of the products (paced_prefetch). Under a sparse
      // pattern each K/V tile serves about one query tile of the block, so its cache misses
      // are no longer shared by four and would otherwise stall every visit; such a tile's K
      // rows are also read in place rather than packed (measured on random 5 % layouts: 7–9 %
      // faster together, with a vectorised element mask; dense unchanged).
      std::array<tile_kind, G> kinds{}, next_kinds{};
      auto next_needed = [&](idx from, std::array<tile_kind, G>& out) {
        for (idx k0 = from; k0 < all_keys.end; k0 += NK) {
          bool any = false;
          for (idx g = 0; g < G; ++g) {
            const query_tile<ScoreTile>& t = *tiles[static_cast<std::size_t>(g)];
            const key_span part = intersect({k0, std::min(k0 + NK, all_keys.end)}, t.keys);
            const tile_kind kind =
                part.empty() ? tile_kind::none
                             : pattern.classify(c, t.q0, t.q0 + t.live, part.begin, part.end);
            out[static_cast<std::size_t>(g)] = kind;
            any |= kind != tile_kind::none;
          }
          if (any) return k0;
        }
        return all_keys.end;
      };
      for (idx k0 = next_needed(all_keys.begin, kinds); k0 < all_keys.end;) {
        const idx k1 = std::min(k0 + NK, all_keys.end);
        const idx k_next = next_needed(k1, next_kinds);
        paced_prefetch next_rows;
        if (k_next < all_keys.end) {
          const idx rows = std::min(k_next + NK, all_keys.end) - k_next;
          next_rows = products.prefetch(a, b, c.kv_head, k_next, rows);
        } else {  // the last key tile: the output rows are next
          prefetch_rows<true>(a.out.row(b, block_q0, h), a.out.strides[1], block_rows, Dv);
        }
        auto pace = [&] { next_rows.step(); };
        bool tile_packed = false;
        const bool shared = std::count(kinds.begin(), kinds.end(), tile_kind::none) < G - 1;
        float* k_tile = shared ? kt : nullptr;  // K read in place for a single query tile
        for (idx g = 0; g < G; ++g) {
          query_tile<ScoreTile>& t = *tiles[static_cast<std::size_t>(g)];
          const tile_kind kind = kinds[static_cast<std::size_t>(g)];
          if (kind == tile_kind::none) continue;
          // This tile's part of the key tile.
          const key_span part = intersect({k0, k1}, t.keys);
          if (!tile_packed) {
            products.pack_kv(a, b, c.kv_head, k0, k1, NK, k_tile, vt, bad_values);
            tile_packed = true;
          }
          const idx n = part.end - part.begin;
          products.scores(a, t.qt, k_tile, b, c.kv_head, k0, part.begin - k0, n, q_factor, st,
                          pace);
          t.score.transform(st, n);
          if (Pattern::has_bias || kind == tile_kind::partial)
            apply_pattern<A>(pattern, c, t.q0, t.live, part.begin, n, ScoreTile::bias_factor(), st,
                             M);
          t.score.weigh(st, n);
          products.accumulate(st, part.begin - k0, n, vt, NK, Dv, t.score.alpha, t.ot, scratch,
                              pace);
          if (!bad_values.empty())  // Pᵀ [n × M], Oᵀ [Dv × M]
            bad_values.add_to(part.begin - k0, n, st, M, M, Dv, t.ot, 1, M);
        }
        next_rows.finish();
        kinds = next_kinds;
        k0 = k_next;
      }

      for (auto& slot : tiles) {
        const query_tile<ScoreTile>& t = *slot;
        write_tile_out<A>(
            a, c, t.score, t.ot, t.rows, [&](idx i) { return t.q0 + i; }, stage);
      }
    }
  };
  a.executor.parallel(workers, body);
}

}  // namespace attn::detail
