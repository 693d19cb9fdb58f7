// attn::selection_attention — a block_selection run key-block-major, the execution of the
// official MoBA kernel (MoonshotAI/MoBA, moba_efficient.py: the queries that picked a key block
// are gathered and attend to it as one varlen problem, and the partial results are merged by
// their log-sum-exp).
//
// Why. attention(q, k, v, out, score, sel) visits, for a tile of 64 consecutive queries, every
// key block some query of the tile picked. With a per-query gate (MoBA) the picks of 64
// queries differ, their union covers most blocks, and the work approaches dense attention
// however small the density. Here every (query, picked block) pair becomes one row of a
// gathered query tensor, rows ordered by block then position: consecutive rows read the same
// key block, so the fused loop's tiles are full, and the work is the selection's pairs plus
// the tiles cut by block edges and the causal diagonal.
//
//   row r of head (b, h):  query i_r, key block c_r, sees keys j of block c_r with
//                          j ≤ i_r + Nk − Nq (causal) and j valid — one contiguous range of
//                          rows per key, so the pattern masks partial tiles by row ranges.
//
// Rows are merged per query in row order: softmax by log-sum-exp (attn/merge.hpp's rule),
// sigmoid by a plain sum. Same result as attention() with the selection, up to rounding.
// softmax.sinks (one sink per row would count once per block) and options::key_lengths /
// query_lengths are not supported; options::lse is.
//
// Memory: the gathered rows, (selected blocks per query) × the size of q and of out.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "attn/attention.hpp"
#include "attn/routing/common.hpp"
#include "attn/routing/selection.hpp"

namespace attn {

namespace detail {

/// The gathered rows of every (batch, head), `rows` each (heads with fewer are padded at the
/// end with rows that see nothing: block = key_blocks, query = −1).
struct block_rows {
  idx heads = 0, rows = 0;
  std::vector<std::int32_t> block;  ///< [batch · heads · rows]
  std::vector<std::int32_t> query;  ///< the query row, −1 for padding
  std::vector<std::uint8_t> copy;   ///< 1: a copy of the previous row or padding, not merged
};

/// The pattern of the gathered rows; see the top of this file.
struct block_rows_pattern {
  const selection_data* sel = nullptr;
  const block_rows* rows = nullptr;
  idx item = 0;  ///< the (batch, head) b · heads + h this one-head call runs

  void check(const problem_shape&) const {}
  idx base(const head_ctx&) const { return item * rows->rows; }
  idx block_of(idx base_row, idx r) const {
    return rows->block[static_cast<std::size_t>(base_row + r)];
  }
  /// The last key row r may see, + 1 (its block's end, cut at the causal diagonal).
  idx end_of(idx base_row, idx r) const {
    const idx c = block_of(base_row, r);
    idx end = std::min((c + 1) * sel->block, sel->seq_k);
    if (sel->causal)
      end = std::min(end, rows->query[static_cast<std::size_t>(base_row + r)] + sel->offset + 1);
    return end;
  }

  key_span keys(const head_ctx& c, idx q0, idx q1) const {
    const idx at = base(c);
    const idx first = block_of(at, q0);
    if (first >= sel->key_blocks) return {};
    idx last = q1 - 1;  // padding rows sort last
    while (block_of(at, last) >= sel->key_blocks) --last;
    return {first * sel->block, std::min((block_of(at, last) + 1) * sel->block, sel->seq_k)};
  }
  tile_kind classify(const head_ctx& c, idx q0, idx q1, idx k0, idx k1) const {
    const idx at = base(c);
    const idx c0 = k0 / sel->block, c1 = (k1 - 1) / sel->block;
    const idx first = block_of(at, q0), last = block_of(at, q1 - 1);
    if (last < c0 || first > c1) return tile_kind::none;
    if (sel->valid_in(k0, k1) == 0) return tile_kind::none;
    // Rows of one block reach further with each row (increasing queries): none if the last
    // row's diagonal is before the tile.
    if (first == last && end_of(at, q1 - 1) <= k0) return tile_kind::none;
    // Full: one block for every row, holding the whole key tile, before every row's diagonal.
    const bool full = first == last && c0 == first && c1 == first &&
                      sel->valid_in(k0, k1) == k1 - k0 && end_of(at, q0) >= k1;
    return full ? tile_kind::full : tile_kind::partial;
  }
  /// Rows of [q0, q1) that see key j: block ⌊j / block⌋, and past the diagonal of j.
  key_span query_span(const head_ctx& c, idx j, idx q0, idx q1) const {
    if (!sel->key_valid(j)) return {q0, q0};
    const idx at = base(c), cj = j / sel->block;
    const std::int32_t* blk = rows->block.data() + at;
    const std::int32_t* query = rows->query.data() + at;
    idx lo = std::lower_bound(blk + q0, blk + q1, cj) - blk;
    const idx hi = std::upper_bound(blk + lo, blk + q1, cj) - blk;
    if (sel->causal)  // rows of block cj are in increasing query order
      lo = std::partition_point(query + lo, query + hi,
                                [&](std::int32_t i) { return i + sel->offset < j; }) -
           query;
    return {lo, hi};
  }
  bool visible(const head_ctx& c, idx i, idx j) const {
    const idx at = base(c);
    return block_of(at, i) == j / sel->block && j < end_of(at, i) && sel->key_valid(j);
  }
  static constexpr bool has_bias = false;
  float logit_bias(const head_ctx&, idx, idx) const { return 0.0f; }
};

/// Lists the (query, block) rows of every (batch, head), by block then query (a counting sort).
/// Each block's rows start at a multiple of `align` (the kernel's query tile) so that no tile
/// mixes two blocks; the gaps repeat the block's last row, flagged as copies (their outputs are
/// dropped), which keeps those tiles full.
inline block_rows gather_block_rows(const selection_data& d, idx heads, idx align,
                                    const options& opt) {
  block_rows out;
  out.heads = heads;
  const idx items = d.batch * heads;
  auto for_each_pick = [&](idx item, auto&& f) {  // (group, block) pairs of the item
    const idx b = item / heads, h = item % heads;
    for (idx g = 0; g < d.groups; ++g) {
      const std::uint64_t* bits = d.row(b, h, g);
      for (idx w = 0; w < d.words; ++w)
        for (std::uint64_t x = bits[w]; x != 0; x &= x - 1) f(g, w * 64 + std::countr_zero(x));
    }
  };
  auto rows_of_group = [&](idx g) { return std::min(d.group, d.seq_q - g * d.group); };
  // Rows per block of every item, rounded up to `align`.
  std::vector<idx> start(static_cast<std::size_t>(items * (d.key_blocks + 1)), 0);
  parallel_items(opt, items, [&](idx item) {
    idx* st = start.data() + item * (d.key_blocks + 1);
    for_each_pick(item, [&](idx g, idx c) { st[c + 1] += rows_of_group(g); });
    for (idx c = 0; c < d.key_blocks; ++c)
      st[c + 1] = st[c] + (st[c + 1] + align - 1) / align * align;
  });
  out.rows = 0;
  for (idx item = 0; item < items; ++item)
    out.rows = std::max(out.rows,
                        start[static_cast<std::size_t>(item * (d.key_blocks + 1) + d.key_blocks)]);
  out.block.assign(static_cast<std::size_t>(items * out.rows),
                   static_cast<std::int32_t>(d.key_blocks));
  out.query.assign(out.block.size(), -1);
  out.copy.assign(out.block.size(), 1);
  parallel_items(opt, items, [&](idx item) {
    const idx* st = start.data() + item * (d.key_blocks + 1);
    std::vector<idx> next(st, st + d.key_blocks);
    const idx at = item * out.rows;
    for_each_pick(item, [&](idx g, idx c) {
      for (idx i = g * d.group; i < g * d.group + rows_of_group(g); ++i) {
        const auto r = static_cast<std::size_t>(at + next[static_cast<std::size_t>(c)]++);
        out.block[r] = static_cast<std::int32_t>(c);
        out.query[r] = static_cast<std::int32_t>(i);
        out.copy[r] = 0;
      }
    });
    for (idx c = 0; c < d.key_blocks; ++c)  // fill the gap up to the next block's start
      for (idx r = next[static_cast<std::size_t>(c)]; r < st[c + 1]; ++r) {
        out.block[static_cast<std::size_t>(at + r)] =
            out.block[static_cast<std::size_t>(at + r - 1)];
        out.query[static_cast<std::size_t>(at + r)] =
            out.query[static_cast<std::size_t>(at + r - 1)];
      }
  });
  return out;
}

}  // namespace detail

/// Attention of q over (k, v) into out with the key blocks `sel` picked, run key-block-major;
/// see the top of this file. Same shapes and rules as attention(q, k, v, out, score, sel, opt).
template <class Arch = simd::default_arch, detail::float_input Q, detail::float_input K,
          detail::float_input V, detail::float_output O, class Score = softmax>
void selection_attention(const Q& q, const K& k, const V& v, O& out, const Score& score,
                         const block_selection& sel, const options& opt = {}) {
  constexpr const char* who = "selection_attention";
  const auto qv = detail::view_of(q), kv = detail::view_of(k), vv = detail::view_of(v);
  const auto ov = detail::view_of(out);
  const detail::problem_shape s = detail::check_qkvo(qv, kv, vv, ov);
  detail::check_out_disjoint(qv, kv, vv, ov);
  sel.check(s);
  score.check(s);
  (void)detail::check_options(opt, s);
  if constexpr (requires { score.sinks; })
    if (!score.sinks.empty())
      detail::fail(who, ": softmax.sinks (size ", score.sinks.size(), ") is not supported");
  if (!opt.key_lengths.empty() || !opt.query_lengths.empty())
    detail::fail(who, ": options.key_lengths / query_lengths are not supported");
  if (opt.lse && !Score::has_lse)
    detail::fail("options.lse is set, but this score function defines no log-sum-exp");
  if (s.seq_q > std::numeric_limits<std::int32_t>::max())
    detail::fail(who, ": q.dim(1)=", s.seq_q, " is too long for 32-bit row indices");

  const detail::selection_data& d = sel.data();
  const detail::block_rows rows =
      detail::gather_block_rows(d, s.heads_q, simd::tile_queries<Arch>, opt);
  // One (batch, head) at a time: its rows, its K/V head copied contiguous, one kernel call (its
  // R / 256 work items keep the workers busy) — buffers of one head, reused, not of all heads.
  const idx R = rows.rows, H = s.heads_q, N = s.seq_k, D = s.head_dim, Dv = s.head_dim_v;
  tensor4<float> qg(1, R, 1, D), og(1, R, 1, Dv), kh(1, N, 1, D), vh(1, N, 1, Dv);
  lse_tensor lse(1, 1, Score::has_lse ? R : 0);
  options inner = opt;
  inner.lse.reset();
  if constexpr (Score::has_lse) inner.lse = lse_map(lse.data(), 1, 1, R);
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  float* lse_out = opt.lse ? opt.lse->data() : nullptr;
  std::vector<float> m(static_cast<std::size_t>(s.seq_q)), z(m.size());
  for (idx item = 0; item < s.batch * H; ++item) {
    const idx b = item / H, h = item % H, g = h / s.group();
    if (h % s.group() == 0)
      for (idx j = 0; j < N; ++j) {
        std::copy(kv.row(b, j, g), kv.row(b, j, g) + D, kh.data() + j * D);
        std::copy(vv.row(b, j, g), vv.row(b, j, g) + Dv, vh.data() + j * Dv);
      }
    for (idx r = 0; r < R; ++r) {
      const std::int32_t i = rows.query[static_cast<std::size_t>(item * R + r)];
      float* to = qg.data() + r * D;
      if (i < 0)
        std::fill(to, to + D, 0.0f);
      else
        std::copy(qv.row(b, i, h), qv.row(b, i, h) + D, to);
    }
    attention<Arch>(qg, kh, vh, og, detail::score_of_head(score, h),
                    detail::block_rows_pattern{&d, &rows, item}, inner);

    // Merge each query's rows in row order: online log-sum-exp (softmax; one exponential per
    // row, the first row of a query copied) or a sum (sigmoid).
    std::fill(m.begin(), m.end(), neg_inf);
    std::fill(z.begin(), z.end(), 0.0f);
    std::vector<char> seen(static_cast<std::size_t>(s.seq_q), 0);
    for (idx r = 0; r < R; ++r) {
      if (rows.copy[static_cast<std::size_t>(item * R + r)] != 0) continue;
      const auto i = static_cast<std::size_t>(rows.query[static_cast<std::size_t>(item * R + r)]);
      const float* o = og.data() + r * Dv;
      float* acc = ov.row(b, static_cast<idx>(i), h);
      float weight = 1.0f;  // of this row; the accumulator is rescaled by `old`
      float old = 1.0f;
      if constexpr (Score::has_lse) {
        const float l = lse(0, 0, r);
        if (l == neg_inf) continue;
        if (l > m[i]) {
          old = std::exp(m[i] - l);
          m[i] = l;
        } else {
          weight = std::exp(l - m[i]);
        }
        z[i] = z[i] * old + weight;
      }
      if (!seen[i]) {
        seen[i] = 1;
        for (idx e = 0; e < Dv; ++e) acc[e] = o[e] * weight;
      } else {
        for (idx e = 0; e < Dv; ++e) acc[e] = acc[e] * old + o[e] * weight;
      }
    }
    for (idx i = 0; i < s.seq_q; ++i)  // queries no row reached (or only rows that saw nothing)
      if (!seen[static_cast<std::size_t>(i)])
        std::fill(ov.row(b, i, h), ov.row(b, i, h) + Dv, 0.0f);
    if constexpr (Score::has_lse)
      for (idx i = 0; i < s.seq_q; ++i) {
        const float zi = z[static_cast<std::size_t>(i)];
        float* acc = ov.row(b, i, h);
        const float f = zi > 0.0f ? 1.0f / zi : 0.0f;
        for (idx e = 0; e < Dv; ++e) acc[e] *= f;
        if (lse_out)
          lse_out[(b * H + h) * s.seq_q + i] =
              zi > 0.0f ? m[static_cast<std::size_t>(i)] + std::log(zi) : neg_inf;
      }
  }
}

}  // namespace attn
