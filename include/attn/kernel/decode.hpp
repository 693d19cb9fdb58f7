// Split-KV decoding: the loop for a few queries per head over a long key range — generating
// text one token (or a handful of speculative tokens) at a time against a KV cache.
//
// That shape is memory-bound: each key and value row is used by only a few dot products, so
// the limit is how fast K and V stream from DRAM. Two things decide it (the ideas of
// FlashDecoding, Dao et al. 2023, and of ggml's CPU flash-attention path):
//   * Every K/V row is read once, not once per query head: a work item takes every head and
//     reads each block of K/V rows in place, in their stored format, for all of them
//     (kv_source.hpp); the query heads of a KV group (grouped-query attention) share its rows,
//     and a narrow format is widened to float only in registers (decode_microkernels.hpp).
//   * The key range of each batch is cut into chunks, so that a single sequence still keeps
//     every worker streaming. Each chunk produces a partial result
//     normalised over its own keys plus its log-sum-exp; the parts are merged exactly:
//       L = log Σ_c e^{L_c},   O = Σ_c e^{L_c − L} · O_c                 (softmax)
//       O = Σ_c O_c                                                     (sigmoid: no normaliser)
//     The same score tiles (score/*.hpp) and patterns (pattern/*.hpp) as the prefill loop run
//     on each chunk, so every pattern and score modifier works here unchanged; a softmax sink
//     is counted by the first chunk only (softmax_tile::begin).

#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "attn/kernel/decode_microkernels.hpp"
#include "attn/kernel/kv_source.hpp"
#include "attn/kernel/prefill.hpp"
#include "attn/kernel/workspace.hpp"
#include "attn/merge.hpp"
#include "attn/options.hpp"

namespace attn::detail {

/// Fewest keys a chunk is cut down to: below that the per-chunk set-up and the merge cost more
/// than the parallelism gains.
inline constexpr idx decode_min_chunk = 256;

/// Into how many chunks the key range of each (batch, query block) is cut.
inline idx plan_kv_chunks(const problem_shape& s, idx query_blocks, int workers, int requested) {
  if (requested > 0) return requested;
  const idx items = std::max<idx>(1, s.batch * query_blocks);
  // Four items per worker even out the chunks' unequal work (ragged lengths, windows).
  const idx wanted = (4 * workers + items - 1) / items;
  return std::clamp<idx>(wanted, 1, std::max<idx>(1, s.seq_k / decode_min_chunk));
}

/// Where the chunks of a split row leave their normalised partial outputs and LSEs before the
/// merge: [batch, heads_q, seq_q, chunks] × head_dim_v.
struct split_parts {
  idx chunks = 1;
  std::vector<float> out, lse;
  float* out_of(const problem_shape& s, idx b, idx h, idx i, idx chunk) {
    return out.data() + (((b * s.heads_q + h) * s.seq_q + i) * chunks + chunk) * s.head_dim_v;
  }
  float* lse_of(const problem_shape& s, idx b, idx h, idx i) {
    return lse.data() + ((b * s.heads_q + h) * s.seq_q + i) * chunks;
  }
};

/// Merges the chunks of every row into out (and lse): see the file comment.
template <bool Normalised>
void merge_parts(const prefill_args& a, split_parts& parts) {
  const problem_shape& s = a.shape;
  std::vector<float> weights(static_cast<std::size_t>(parts.chunks), 1.0f);  // sigmoid: sum
  for (idx b = 0; b < s.batch; ++b)
    for (idx h = 0; h < s.heads_q; ++h)
      for (idx i = 0; i < s.seq_q; ++i) {
        float* orow = a.out.row(b, i, h);
        std::fill(orow, orow + s.head_dim_v, 0.0f);
        if constexpr (Normalised) {
          const float lse =
              lse_merge_weights(parts.lse_of(s, b, h, i), parts.chunks, weights.data());
          if (a.lse) a.lse[(b * s.heads_q + h) * s.seq_q + i] = lse;
        }
        for (idx c = 0; c < parts.chunks; ++c) {
          const float w = weights[static_cast<std::size_t>(c)];
          const float* part = parts.out_of(s, b, h, i, c);
          for (idx e = 0; e < s.head_dim_v; ++e) orow[e] += w * part[e];
        }
      }
}

/// Keys per block: about 128 KiB of staged K and V for all KV heads, which stays in L2 while
/// every query head reads its part (fp32 at 8 KV heads × 128 values: 16 keys; bf16: 32).
inline idx decode_block_keys(idx heads_kv, idx row_bytes) {
  constexpr idx budget = 128 * 1024;
  return std::clamp<idx>(budget / std::max<idx>(1, heads_kv * row_bytes), 8, 64);
}

/// Staging memory of one worker for a row source's block: NB keys of `heads` rows in the stored
/// format, one cache line of padding after each key so that the rows of one head, ld apart,
/// do not all fall into the same few L1 sets; and for q8_0 their scales.
template <class T>
struct staged_block {
  idx ld = 0, scale_ld = 0, width = 0, scales_per_row = 0;
  aligned_floats values_memory, scales_memory;

  staged_block(idx keys, idx heads, idx w)
      : ld(heads * w + 64 / static_cast<idx>(sizeof(stored_t<T>))),
        scale_ld(heads * element_format<T>::scales(w)),
        width(w),
        scales_per_row(element_format<T>::scales(w)),
        values_memory(
            static_cast<std::size_t>((keys * ld * static_cast<idx>(sizeof(stored_t<T>)) + 3) / 4)),
        scales_memory(static_cast<std::size_t>(keys * scale_ld)) {}
  stored_t<T>* values() const { return reinterpret_cast<stored_t<T>*>(values_memory.get()); }
  float* scales() const { return scales_memory.get(); }
  /// Head h of staged key j.
  row_ref<T> row(idx j, idx h) const {
    return {values() + j * ld + h * width, scales() + j * scale_ld + h * scales_per_row};
  }
};

/// Runs split-KV attention for arch A and kernel-side score type ScoreTile (instantiated with
/// decode_rows rows). keys / values: row sources (kv_source.hpp).
///
/// A work item is (batch, block of ≤ 16 queries, key chunk) with every head: each block of
/// keys is read from memory once, by the tile of each KV head's query heads.
template <class A, class ScoreTile, class Score, class Pattern, class Keys, class Values>
void decode(const prefill_args& a, const Score& score, const Pattern& pattern, const Keys& keys,
            const Values& values, int requested_chunks) {
  constexpr idx R = decode_rows, L = simd::lanes<A>;
  const problem_shape& s = a.shape;
  const idx query_blocks = (s.seq_q + R - 1) / R;
  const idx chunks = plan_kv_chunks(s, query_blocks, a.workers, requested_chunks);
  const idx items = s.batch * query_blocks * chunks;
  if (items == 0 || s.heads_q == 0) return;
  const idx group = s.group(), Hq = s.heads_q, Hkv = s.heads_kv;
  const idx D = s.head_dim, Dv = s.head_dim_v;
  const idx Dp = (D + L - 1) / L * L, Dvp = (Dv + L - 1) / L * L;  // lane-padded row widths
  const idx rows_max = std::min(R, s.seq_q);  // query rows per head a worker holds
  using KeyT = typename Keys::element;
  using ValueT = typename Values::element;
  const idx NB = decode_block_keys(Hkv, D * static_cast<idx>(sizeof(stored_t<KeyT>)) +
                                            Dv * static_cast<idx>(sizeof(stored_t<ValueT>)));
  const int workers = static_cast<int>(std::min<idx>(a.workers, items));

  split_parts parts;
  parts.chunks = chunks;
  if (chunks > 1) {
    parts.out.resize(static_cast<std::size_t>(s.batch * Hq * s.seq_q * chunks * Dv));
    parts.lse.resize(static_cast<std::size_t>(s.batch * Hq * s.seq_q * chunks));
  }

  std::atomic<idx> next{0};
  auto body = [&](int) {
    aligned_floats buffer(static_cast<std::size_t>(Hq * rows_max * (Dp + 2 * Dvp) + NB * R));
    float* qpack = buffer.get();                  // [Hq][live][Dp]: scaled query rows
    float* opack = qpack + Hq * rows_max * Dp;    // [Hq][live][Dvp]: accumulators
    float* before = opack + Hq * rows_max * Dvp;  // one tile's accumulators before a block
    float* st = before + Hq * rows_max * Dvp;     // Sᵀ / Pᵀ [NB][R]
    staged_block<KeyT> staged_keys(NB, Hkv, D);
    staged_block<ValueT> staged_values(NB, Hkv, Dv);
    std::vector<row_ref<KeyT>> key_rows(static_cast<std::size_t>(NB));
    std::vector<row_ref<ValueT>> value_rows(static_cast<std::size_t>(NB));
    std::vector<ScoreTile> tiles;
    tiles.reserve(static_cast<std::size_t>(Hq));
    for (idx h = 0; h < Hq; ++h) tiles.emplace_back(score, a.scale);
    std::vector<key_span> spans(static_cast<std::size_t>(Hq)), parts_of(spans);
    std::vector<tile_kind> kinds(static_cast<std::size_t>(Hq));
    const float q_factor = tiles[0].q_factor();
    constexpr float neg_inf = -std::numeric_limits<float>::infinity();
    auto context = [&](head_ctx c, idx h) {
      c.head = h;
      c.kv_head = h / group;
      return c;
    };

    for (idx item; (item = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      const idx chunk = item % chunks;
      const idx qb = (item / chunks) % query_blocks;
      const idx b = item / chunks / query_blocks;
      const head_ctx base = context_of(a, b, 0);  // context() sets the head
      const idx q0 = qb * R;
      const idx rows = std::min(R, s.seq_q - q0);
      const idx live = std::clamp<idx>(base.seq_q - q0, 0, rows);
      // This chunk's share of the batch's keys: equal parts of its own length.
      const idx per_chunk = (base.seq_k + chunks - 1) / chunks;
      const key_span chunk_keys{std::min(chunk * per_chunk, base.seq_k),
                                std::min((chunk + 1) * per_chunk, base.seq_k)};
      // A tile holds the `live` query rows of up to `span` heads of one KV group side by side
      // (lane (h − h0)·live + i), so that one vector of softmax state serves several heads and
      // one key row load serves all their dot products.
      const idx span = live > 0 ? std::min(group, R / live) : 1;
      const idx tiles_per_kv = (group + span - 1) / span;

      key_span all{chunk_keys.end, chunk_keys.begin};
      for (idx h = 0; h < Hq && live > 0; ++h) {
        const auto hi = static_cast<std::size_t>(h);
        const head_ctx c = context(base, h);
        const idx g = h % group;
        tiles[static_cast<std::size_t>(c.kv_head * tiles_per_kv + g / span)].begin_rows(
            c, static_cast<int>(g % span * live), static_cast<int>(live), chunk == 0);
        float* q = qpack + h * live * Dp;
        std::fill(opack + h * live * Dvp, opack + (h + 1) * live * Dvp, 0.0f);
        for (idx i = 0; i < live; ++i) {
          const float* src = a.q.row(b, q0 + i, h);
          for (idx d = 0; d < D; ++d) q[i * Dp + d] = src[d] * q_factor;
          std::fill(q + i * Dp + D, q + (i + 1) * Dp, 0.0f);
        }
        spans[hi] = intersect(pattern.keys(c, q0, q0 + live), chunk_keys);
        if (!spans[hi].empty())
          all = {std::min(all.begin, spans[hi].begin), std::max(all.end, spans[hi].end)};
      }

      for (idx k0 = all.begin; k0 < all.end; k0 += NB) {
        const idx k1 = std::min(k0 + NB, all.end);
        bool any = false;
        for (idx h = 0; h < Hq; ++h) {
          const auto hi = static_cast<std::size_t>(h);
          parts_of[hi] = intersect({k0, k1}, spans[hi]);
          kinds[hi] = parts_of[hi].empty() ? tile_kind::none
                                           : pattern.classify(context(base, h), q0, q0 + live,
                                                              parts_of[hi].begin, parts_of[hi].end);
          any |= kinds[hi] != tile_kind::none;
        }
        if (!any) continue;
        keys.stage(b, k0, k1 - k0, staged_keys.values(), staged_keys.ld, staged_keys.scales(),
                   staged_keys.scale_ld);
        values.stage(b, k0, k1 - k0, staged_values.values(), staged_values.ld,
                     staged_values.scales(), staged_values.scale_ld);
        const idx next_n = std::min(NB, all.end - k1), tiles_n = Hkv * tiles_per_kv;
        for (idx kvh = 0; kvh < Hkv; ++kvh)
          for (idx t = 0; t < tiles_per_kv; ++t) {
            // This tile's share of the next block's prefetches (kv_source.hpp says why).
            const idx ti = kvh * tiles_per_kv + t;
            const idx from = k1 + ti * next_n / tiles_n, to = k1 + (ti + 1) * next_n / tiles_n;
            keys.prefetch(b, from, to - from);
            values.prefetch(b, from, to - from);
            const idx h0 = kvh * group + t * span, h1 = std::min(h0 + span, (kvh + 1) * group);
            // The keys of this block any head of the tile sees, and whether all see all of them.
            key_span part{k1, k0};
            bool uniform = true;
            for (idx h = h0; h < h1; ++h) {
              const auto hi = static_cast<std::size_t>(h);
              if (kinds[hi] == tile_kind::none) continue;
              part = {std::min(part.begin, parts_of[hi].begin),
                      std::max(part.end, parts_of[hi].end)};
            }
            if (part.empty()) continue;
            for (idx h = h0; h < h1; ++h) {
              const auto hi = static_cast<std::size_t>(h);
              uniform &= kinds[hi] == tile_kind::full && parts_of[hi].begin == part.begin &&
                         parts_of[hi].end == part.end;
            }
            const idx n = part.end - part.begin;
            ScoreTile& tile = tiles[static_cast<std::size_t>(kvh * tiles_per_kv + t)];
            for (idx j = 0; j < n; ++j) {
              const auto u = static_cast<std::size_t>(j);
              key_rows[u] = staged_keys.row(part.begin - k0 + j, kvh);
              value_rows[u] = staged_values.row(part.begin - k0 + j, kvh);
            }
            const idx tile_rows = (h1 - h0) * live;
            float* o = opack + h0 * live * Dvp;
            decode_scores<A>(qpack + h0 * live * Dp, tile_rows, Dp, key_rows.data(), n, D, st);
            tile.transform(st, n);
            if (Pattern::has_bias || !uniform)
              for (idx h = h0; h < h1; ++h) {
                const auto hi = static_cast<std::size_t>(h);
                float* lanes = st + (h - h0) * live;
                const key_span mine =
                    kinds[hi] == tile_kind::none ? key_span{part.begin, part.begin} : parts_of[hi];
                for (idx j = part.begin; j < part.end; ++j)  // keys this head does not see
                  if (j < mine.begin || j >= mine.end)
                    std::fill(lanes + (j - part.begin) * R, lanes + (j - part.begin) * R + live,
                              neg_inf);
                if (!mine.empty() && (Pattern::has_bias || kinds[hi] == tile_kind::partial))
                  apply_pattern<A>(pattern, context(base, h), q0, live, mine.begin,
                                   mine.end - mine.begin, ScoreTile::bias_factor(),
                                   lanes + (mine.begin - part.begin) * R, R);
              }
            tile.weigh(st, n);
            std::copy(o, o + tile_rows * Dvp, before);
            if (!decode_accumulate<A>(st, tile_rows, n, value_rows.data(), Dv, tile.alpha, o, Dvp))
              accumulate_seen_only<A>(st, tile_rows, n, value_rows.data(), Dv, tile.alpha, before,
                                      o, Dvp);
          }
      }

      for (idx h = 0; h < Hq; ++h) {
        const idx g = h % group;
        const ScoreTile& tile =
            tiles[static_cast<std::size_t>(h / group * tiles_per_kv + g / span)];
        for (idx i = 0; i < rows; ++i) {
          const bool in_length = i < live;
          const int lane = static_cast<int>(g % span * live + i);
          const float f = in_length ? tile.output_factor(lane) : 0.0f;
          const float lse = in_length ? tile.lse(lane) : neg_inf;
          float* dst = chunks == 1 ? a.out.row(b, q0 + i, h) : parts.out_of(s, b, h, q0 + i, chunk);
          if (in_length) {
            const float* o = opack + (h * live + i) * Dvp;
            for (idx e = 0; e < Dv; ++e) dst[e] = o[e] * f;
          } else {
            std::fill(dst, dst + Dv, 0.0f);
          }
          if (chunks > 1)
            parts.lse_of(s, b, h, q0 + i)[chunk] = lse;
          else if (a.lse)
            a.lse[(b * Hq + h) * s.seq_q + q0 + i] = lse;
        }
      }
    }
  };
  a.executor.parallel(workers, body);
  if (chunks > 1) merge_parts<Score::has_lse>(a, parts);
}

}  // namespace attn::detail
