// Split-KV decoding: the loop for a few queries per head over a long key range — generating
// text one token (or a handful of speculative tokens) at a time against a KV cache.
//
// That shape is memory-bound: each key and value row is used by only a few dot products, so
// the limit is how fast K and V stream from DRAM. Two things decide it (the ideas of
// FlashDecoding, Dao et al. 2023, and of ggml's CPU flash-attention path):
//   * Every K/V row is read once, not once per query head: a work item takes every head and
//     packs each block of K/V rows once, in memory order, for all of them (kv_source.hpp says
//     why packed); the query heads of a KV group (grouped-query attention) share its rows.
//   * The key range of each batch is cut into chunks, so that a single sequence still keeps
//     every worker streaming. Each chunk produces a partial result
//     normalised over its own keys plus its log-sum-exp; the parts are merged exactly:
//       L = log Σ_c e^{L_c},   O = Σ_c e^{L_c − L} · O_c                 (softmax)
//       O = Σ_c O_c                                                     (sigmoid: no normaliser)
//     The same score tiles (score/*.hpp) and patterns (pattern/*.hpp) as the prefill loop run
//     on each chunk, so every pattern and score modifier works here unchanged; a softmax sink
//     is counted by the first chunk only (softmax_tile::begin).
//
// Queries stay in rows here, not in lanes: with one query per head, the prefill tile's
// "broadcast a key element across 64 query lanes" would compute 63 empty lanes. A score is a
// dot product of a query row with a packed key row, reduced across lanes; the accumulator is
// O[i, :] = α_i·O[i, :] + Σ_j p_ij·V[j, :] with V rows streamed from L1.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "attn/kernel/kv_source.hpp"
#include "attn/kernel/prefill.hpp"
#include "attn/kernel/workspace.hpp"
#include "attn/merge.hpp"
#include "attn/options.hpp"
#include "attn/simd/microkernel.hpp"

namespace attn::detail {

/// Queries of one head in a decode tile: the lanes of its score state.
inline constexpr idx decode_rows = decode_max_queries;

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

/// st[j·decode_rows + i] = q_i · k_j for KB keys × RB query rows of `width` floats (a multiple
/// of lanes<A>, zero-padded); q rows are `width` apart, k rows `k_stride`.
template <class A, int KB, int RB>
inline void dot_block(const float* q, const float* k, idx k_stride, idx width, float* st) {
  constexpr int L = simd::lanes<A>;
  simd::vec<A> acc[KB][RB];
#pragma GCC unroll 8
  for (int j = 0; j < KB; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) acc[j][i] = simd::splat<A>(0.0f);
  for (idx d = 0; d < width; d += L) {
    simd::vec<A> kv[KB];
#pragma GCC unroll 8
    for (int j = 0; j < KB; ++j) kv[j] = simd::load<A>(k + j * k_stride + d);
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) {
      const simd::vec<A> qv = simd::load<A>(q + i * width + d);
#pragma GCC unroll 8
      for (int j = 0; j < KB; ++j) acc[j][i] = simd::fma(qv, kv[j], acc[j][i]);
    }
  }
  // KB·RB sums, in groups of L reduced together when they fill whole vectors.
  constexpr int N = KB * RB;
  alignas(64) float sums[N];
  if constexpr (N % L == 0) {
    const simd::vec<A>* flat = &acc[0][0];
#pragma GCC unroll 8
    for (int g = 0; g < N / L; ++g)
      simd::store<A>(sums + g * L, simd::reduce_add_each(flat + g * L));
  } else {
#pragma GCC unroll 8
    for (int n = 0; n < N; ++n) sums[n] = simd::reduce_add(acc[n / RB][n % RB]);
  }
#pragma GCC unroll 8
  for (int j = 0; j < KB; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) st[j * decode_rows + i] = sums[j * RB + i];
}

/// Scores of `rows` packed query rows against `keys` packed key rows into Sᵀ [keys × 16]; the
/// lanes past `rows` are −inf, so the score tile gives them weight 0.
template <class A>
inline void decode_scores(const float* q, idx rows, const float* k, idx k_stride, idx keys,
                          idx width, float* st) {
  constexpr int KB = 4, RB = 4;
  if (rows < decode_rows)
    std::fill(st, st + keys * decode_rows, -std::numeric_limits<float>::infinity());
  for (idx i = 0; i < rows; i += RB) {
    const int rb = static_cast<int>(std::min<idx>(RB, rows - i));
    simd::detail::with_rows<RB + 1>(rb, [&]<int R>() {
      idx j = 0;
      for (; j + KB <= keys; j += KB)
        dot_block<A, KB, R>(q + i * width, k + j * k_stride, k_stride, width,
                            st + j * decode_rows + i);
      if (j < keys)
        simd::detail::with_rows<KB>(static_cast<int>(keys - j), [&]<int K>() {
          dot_block<A, K, R>(q + i * width, k + j * k_stride, k_stride, width,
                             st + j * decode_rows + i);
        });
    });
  }
}

/// o[:] = α·o[:] + Σ_j p[j·16]·v_j[:] over VB vectors of one output row; v rows `v_stride`
/// floats apart.
template <class A, int VB>
inline void accumulate_row_block(const float* p, idx keys, const float* v, idx v_stride,
                                 float alpha, float* o) {
  constexpr int L = simd::lanes<A>;
  simd::vec<A> acc[VB];
  const simd::vec<A> a = simd::splat<A>(alpha);
#pragma GCC unroll 8
  for (int x = 0; x < VB; ++x) acc[x] = simd::load<A>(o + x * L) * a;
  for (idx j = 0; j < keys; ++j) {
    const simd::vec<A> w = simd::splat<A>(p[j * decode_rows]);
#pragma GCC unroll 8
    for (int x = 0; x < VB; ++x)
      acc[x] = simd::fma(w, simd::load<A>(v + j * v_stride + x * L), acc[x]);
  }
#pragma GCC unroll 8
  for (int x = 0; x < VB; ++x) simd::store<A>(o + x * L, acc[x]);
}

/// O[i, :] = α_i·O[i, :] + Σ_j Pᵀ[j, i]·V[j, :] for rows i < rows; O rows `width` floats apart,
/// V rows `v_stride`.
template <class A>
inline void decode_accumulate(const float* pt, idx rows, idx keys, const float* v, idx v_stride,
                              idx width, const float* alpha, float* o) {
  constexpr int L = simd::lanes<A>, VB = 8;  // 8 independent FMA chains hide the FMA latency
  for (idx i = 0; i < rows; ++i) {
    float* orow = o + i * width;
    idx e = 0;
    for (; e + VB * L <= width; e += VB * L)
      accumulate_row_block<A, VB>(pt + i, keys, v + e, v_stride, alpha[i], orow + e);
    if (e < width)
      simd::detail::with_rows<VB>(static_cast<int>((width - e) / L), [&]<int X>() {
        accumulate_row_block<A, X>(pt + i, keys, v + e, v_stride, alpha[i], orow + e);
      });
  }
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

/// Keys per packed block: about 128 KiB of K and V for all KV heads, which stays in L2 while
/// every query head reads its part (at 8 KV heads × 128 floats: 16 keys).
inline idx decode_block_keys(idx heads_kv, idx row_floats) {
  constexpr idx budget = 32 * 1024;  // floats
  return std::clamp<idx>(budget / std::max<idx>(1, heads_kv * row_floats), 8, 64);
}

/// Runs split-KV attention for arch A and kernel-side score type ScoreTile (instantiated with
/// decode_rows rows). keys / values: row sources (kv_source.hpp).
///
/// A work item is (batch, block of ≤ 16 queries, key chunk) with every head: each block of
/// keys is read from memory once, in memory order, and packed for all KV heads, then every
/// query head computes its part from the packed copy.
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
  const idx NB = decode_block_keys(Hkv, Dp + Dvp);
  // A packed block keeps the memory's order, one key's heads after each other, so that packing
  // is a sequential copy; one cache line of padding per key staggers the rows of one head over
  // the L1 sets (at 8 heads × 128 floats they would be 4 KiB apart: all in the same few sets).
  const idx kld = Hkv * Dp + 16, vld = Hkv * Dvp + 16;
  const int workers = static_cast<int>(std::min<idx>(a.workers, items));

  split_parts parts;
  parts.chunks = chunks;
  if (chunks > 1) {
    parts.out.resize(static_cast<std::size_t>(s.batch * Hq * s.seq_q * chunks * Dv));
    parts.lse.resize(static_cast<std::size_t>(s.batch * Hq * s.seq_q * chunks));
  }

  std::atomic<idx> next{0};
  auto body = [&](int) {
    aligned_floats buffer(
        static_cast<std::size_t>(Hq * rows_max * (Dp + Dvp) + NB * (kld + vld) + NB * R));
    float* qpack = buffer.get();                // [Hq][live][Dp]: scaled query rows
    float* opack = qpack + Hq * rows_max * Dp;  // [Hq][live][Dvp]: accumulators
    float* kbuf = opack + Hq * rows_max * Dvp;  // [NB][kld]: key j, head h at j·kld + h·Dp
    float* vbuf = kbuf + NB * kld;              // [NB][vld]
    float* st = vbuf + NB * vld;                // Sᵀ / Pᵀ [NB][R]
    nonfinite_values bad_values;                // packed V rows with NaN / inf, set aside
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
      head_ctx base;
      base.batch = b;
      base.heads = Hq;
      base.seq_q = a.query_lengths.empty() ? s.seq_q : a.query_lengths[static_cast<std::size_t>(b)];
      base.seq_k = a.key_lengths.empty() ? s.seq_k : a.key_lengths[static_cast<std::size_t>(b)];
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
        keys.pack(b, k0, k1 - k0, kbuf, kld, Dp);
        values.pack(b, k0, k1 - k0, vbuf, vld, Dvp);
        bad_values.clear();  // packed row (j, kvh) is number j·Hkv + kvh
        for (idx j = 0; j < k1 - k0; ++j)
          for (idx kvh = 0; kvh < Hkv; ++kvh)
            bad_values.scan(j * Hkv + kvh, vbuf + j * vld + kvh * Dvp, Dv);
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
            const idx n = part.end - part.begin, off = part.begin - k0;
            ScoreTile& tile = tiles[static_cast<std::size_t>(kvh * tiles_per_kv + t)];
            decode_scores<A>(qpack + h0 * live * Dp, (h1 - h0) * live, kbuf + off * kld + kvh * Dp,
                             kld, n, Dp, st);
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
                  apply_pattern(pattern, context(base, h), q0, live, mine.begin,
                                mine.end - mine.begin, ScoreTile::bias_factor(),
                                lanes + (mine.begin - part.begin) * R, R);
              }
            tile.weigh(st, n);
            decode_accumulate<A>(st, (h1 - h0) * live, n, vbuf + off * vld + kvh * Dvp, vld, Dvp,
                                 tile.alpha, opack + h0 * live * Dvp);
            if (!bad_values.empty())  // Pᵀ [n × R], O rows Dvp apart; this KV head's keys only
              for (idx j = off; j < off + n; ++j)
                bad_values.add_to(j * Hkv + kvh, 1, st + (j - off) * R, R, (h1 - h0) * live, Dv,
                                  opack + h0 * live * Dvp, Dvp, 1);
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
  if (workers == 1)
    body(0);
  else
    a.executor.parallel(workers, body);
  if (chunks > 1) merge_parts<Score::has_lse>(a, parts);
}

}  // namespace attn::detail
