// Attention inside token subsets, for routers that pick sets of tokens rather than blocks
// (Routing Transformer's clusters, MoSA's expert-choice heads): the picked rows are gathered
// into contiguous tensors, one "batch" entry per subset, the fused loop runs once over all of
// them with the pattern below, and the caller scatters the outputs back with its own weights.
// The gather is O(picked tokens · head_dim), far below the attention cost, and the one kernel
// call spreads every subset of every (batch, head) over the workers.
//
// Inside subset s (queries at positions pq[0..wq), keys at pk[0..wk), both increasing):
//   causal:     query a sees key e iff pk[e] ≤ pq[a] — the original positions, so the visible
//               keys of a are a prefix [0, limit[a]) and limit does not decrease with a;
//   self bias:  a key at the query's own position gets logit bias −5·10⁴ (the Routing
//               Transformer port's TOKEN_SELF_ATTN_VALUE for shared Q/K: a token attends to
//               itself only when it sees nothing else).
#pragma once

#include <algorithm>
#include <span>
#include <vector>

#include "attn/attention.hpp"
#include "attn/routing/common.hpp"

namespace attn::detail {

/// Subsets of one routed call: item s = (b · heads + h) · per_head + c holds the query
/// positions queries[s · wq .. (s+1) · wq) and key positions keys[s · wk ..), increasing.
struct token_subsets {
  idx batch = 0, heads = 0, per_head = 0, wq = 0, wk = 0;
  std::vector<idx> queries, keys;
  idx items() const { return batch * heads * per_head; }
  std::span<const idx> query_positions(idx s) const {
    return std::span<const idx>(queries).subspan(static_cast<std::size_t>(s * wq),
                                                 static_cast<std::size_t>(wq));
  }
  std::span<const idx> key_positions(idx s) const {
    return std::span<const idx>(keys).subspan(static_cast<std::size_t>(s * wk),
                                              static_cast<std::size_t>(wk));
  }
};

/// The causal limits of every subset: limit[s · wq + a] = #{e : pk[e] ≤ pq[a]}.
inline std::vector<idx> causal_limits(const token_subsets& t) {
  std::vector<idx> limit(static_cast<std::size_t>(t.items() * t.wq));
  for (idx s = 0; s < t.items(); ++s) {
    const auto pq = t.query_positions(s);
    const auto pk = t.key_positions(s);
    for (idx a = 0; a < t.wq; ++a)
      limit[static_cast<std::size_t>(s * t.wq + a)] =
          std::upper_bound(pk.begin(), pk.end(), pq[static_cast<std::size_t>(a)]) - pk.begin();
  }
  return limit;
}

/// Visible pairs of every subset together.
inline double subset_pairs(const token_subsets& t, bool causal) {
  if (!causal) return static_cast<double>(t.items()) * static_cast<double>(t.wq * t.wk);
  double pairs = 0;
  for (idx l : causal_limits(t)) pairs += static_cast<double>(l);
  return pairs;
}

/// The pattern of the gathered problem (batch index = subset); see the top of this file.
template <bool SelfBias>
struct subset_pattern {
  const token_subsets* sets = nullptr;
  const idx* limit = nullptr;  ///< causal limits, or null when not causal

  void check(const problem_shape&) const {}
  idx limit_of(idx s, idx a) const { return limit[s * sets->wq + a]; }
  key_span keys(const head_ctx& c, idx, idx q1) const {
    return {0, limit ? limit_of(c.batch, q1 - 1) : sets->wk};
  }
  tile_kind classify(const head_ctx& c, idx q0, idx q1, idx k0, idx k1) const {
    if (!limit) return tile_kind::full;
    if (limit_of(c.batch, q1 - 1) <= k0) return tile_kind::none;
    return limit_of(c.batch, q0) >= k1 ? tile_kind::full : tile_kind::partial;
  }
  key_span query_span(const head_ctx& c, idx j, idx q0, idx q1) const {
    if (!limit) return {q0, q1};
    const idx* row = limit + c.batch * sets->wq;
    return {std::partition_point(row + q0, row + q1, [j](idx l) { return l <= j; }) - row, q1};
  }
  bool visible(const head_ctx& c, idx i, idx j) const { return !limit || j < limit_of(c.batch, i); }
  static constexpr bool has_bias = SelfBias;
  float logit_bias(const head_ctx& c, idx i, idx j) const {
    if constexpr (SelfBias) {
      return sets->queries[static_cast<std::size_t>(c.batch * sets->wq + i)] ==
                     sets->keys[static_cast<std::size_t>(c.batch * sets->wk + j)]
                 ? -5e4f
                 : 0.0f;
    } else {
      (void)c, (void)i, (void)j;
      return 0.0f;
    }
  }
};

/// The views and shape of a subset router's call, checked before anything is written: the
/// tensor contract, one sequence (self-attention), a selection routed for this batch, heads and
/// length, options and score parameters the gathered run honours.
struct subset_call {
  view4<const float> q, k, v;
  view4<float> out;
  problem_shape shape;
};
template <class Q, class K, class V, class O, class Score>
subset_call check_subset_call(const char* who, const Q& q, const K& k, const V& v, O& out,
                              const Score& score, const char* selection, idx batch, idx heads,
                              idx seq, const options& opt) {
  subset_call c{view_of(q), view_of(k), view_of(v), view_of(out), {}};
  c.shape = check_qkvo(c.q, c.k, c.v, c.out);
  check_out_disjoint(c.q, c.k, c.v, c.out);
  const problem_shape& s = c.shape;
  if (s.seq_q != s.seq_k)
    fail(who, ": q.dim(1)=", s.seq_q, " does not match k.dim(1)=", s.seq_k,
         " (self-attention: one sequence)");
  if (batch != s.batch || heads != s.heads_q || seq != s.seq_q)
    fail(who, ": the ", selection, " was routed for batch=", batch, ", seq=", seq,
         ", heads=", heads, " but q is [", s.batch, ", ", s.seq_q, ", ", s.heads_q, ", ...]");
  reject_gathered_options(who, opt);
  reject_per_head_score(who, score);
  score.check(s);
  return c;
}

/// Gathers the subsets' rows of q, k, v, runs attention with `score` over each subset and
/// returns the outputs [items, wq, 1, Dv] (row a of item s = the output of query pq[a]).
template <class Arch, class Score>
tensor4<float> subset_attention(const view4<const float>& q, const view4<const float>& k,
                                const view4<const float>& v, const Score& score,
                                const token_subsets& t, bool causal, bool self_bias,
                                const options& opt) {
  const idx D = q.head_dim(), Dv = v.head_dim(), items = t.items();
  const idx group = q.heads() / std::max<idx>(k.heads(), 1);
  tensor4<float> qg(items, t.wq, 1, D), kg(items, t.wk, 1, D), vg(items, t.wk, 1, Dv),
      og(items, t.wq, 1, Dv);
  parallel_items(opt, items, [&](idx s) {
    const idx bh = s / t.per_head, b = bh / t.heads, h = bh % t.heads;
    const auto pq = t.query_positions(s);
    const auto pk = t.key_positions(s);
    for (idx a = 0; a < t.wq; ++a) {
      const float* row = q.row(b, pq[static_cast<std::size_t>(a)], h);
      std::copy(row, row + D, qg.data() + (s * t.wq + a) * D);
    }
    for (idx e = 0; e < t.wk; ++e) {
      const idx j = pk[static_cast<std::size_t>(e)];
      std::copy(k.row(b, j, h / group), k.row(b, j, h / group) + D, kg.data() + (s * t.wk + e) * D);
      std::copy(v.row(b, j, h / group), v.row(b, j, h / group) + Dv,
                vg.data() + (s * t.wk + e) * Dv);
    }
  });
  options inner = opt;
  if (!inner.scale && D > 0) inner.scale = 1.0f / std::sqrt(static_cast<float>(D));
  const std::vector<idx> limit = causal ? causal_limits(t) : std::vector<idx>{};
  const Score pinned = with_key_length_bias(score, k.seq());
  auto run = [&]<bool SelfBias>() {
    subset_pattern<SelfBias> pattern{&t, causal ? limit.data() : nullptr};
    attention<Arch>(qg, kg, vg, og, pinned, pattern, inner);
  };
  if (self_bias)
    run.template operator()<true>();
  else
    run.template operator()<false>();
  return og;
}

}  // namespace attn::detail
