// The vocabulary every pattern speaks: which (query, key) pairs are visible, asked per tile so
// the kernel can skip invisible tiles and run fully visible ones without any mask code.
//
// A pattern P is a small struct of run-time parameters with these members (see dense.hpp for
// the smallest one, band.hpp for causal and sliding windows):
//
//   void check(const detail::problem_shape&) const;            throws attn::error on bad params
//   key_span keys(const head_ctx&, idx q0, idx q1) const;       keys rows [q0,q1) may see (bound)
//   tile_kind classify(const head_ctx&, idx q0, idx q1, idx k0, idx k1) const;
//   bool visible(const head_ctx&, idx i, idx j) const;          the exact rule, one pair
//   static constexpr bool has_bias;                              adds a logit bias?
//   float logit_bias(const head_ctx&, idx i, idx j) const;            that bias (ALiBi, bias
//   tensor)
//
//   key_span query_span(const head_ctx&, idx j, idx q0, idx q1) const;
//                                                               optional: the rows of [q0,q1) that
//                                                               see key j, when they form one range
//                                                               (lets partial tiles mask by ranges)
//   void visible_rows(const head_ctx&, idx q0, idx q1, idx k0, idx k1, uint64_t* rows) const;
//                                                               optional: per key of a ≤64×64 tile,
//                                                               a bit mask of the rows that see it
//                                                               (block-sparse layouts)
//   void prepare(const detail::problem_shape&);                 optional: precompute, on the
//                                                               kernel's own copy of the pattern
// Patterns know nothing about SIMD or score functions; combine.hpp intersects them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <limits>

#include "attn/tensor.hpp"

namespace attn {

/// How much of a (query tile × key tile) block a pattern lets through.
enum class tile_kind {
  none,     ///< no pair visible: the kernel never visits the tile
  partial,  ///< some pairs visible: the kernel evaluates visible()/bias() per pair
  full      ///< every pair visible and no bias: the kernel runs it with no mask code at all
};

/// Which corner causal-style patterns align to when seq_q != seq_k.
enum class align {
  bottom_right,  ///< query i is at key position i + seq_k − seq_q (FlashAttention ≥ 2.1, KV cache)
  top_left       ///< query i is at key position i (PyTorch's is_causal)
};

/// The (batch, head) a pattern is asked about, with the effective lengths of that batch
/// (options::key_lengths / query_lengths already applied).
struct head_ctx {
  idx batch = 0;
  idx head = 0;     ///< query head
  idx kv_head = 0;  ///< the K/V head it reads (grouped-query attention)
  idx heads = 0;    ///< number of query heads
  idx seq_q = 0;    ///< effective query length of this batch
  idx seq_k = 0;    ///< effective key length of this batch

  /// Key position of query i under an alignment.
  idx aligned(idx i, align a) const { return a == align::bottom_right ? i + seq_k - seq_q : i; }
};

/// A half-open range of key indices.
struct key_span {
  idx begin = 0;
  idx end = 0;
  bool empty() const { return end <= begin; }
};

inline key_span intersect(key_span a, key_span b) {
  return {std::max(a.begin, b.begin), std::min(a.end, b.end)};
}

/// "No limit" for window extents.
inline constexpr idx unbounded = std::numeric_limits<idx>::max() / 4;

/// Combines two tile kinds of patterns that must both allow a pair.
inline tile_kind meet(tile_kind a, tile_kind b) {
  if (a == tile_kind::none || b == tile_kind::none) return tile_kind::none;
  if (a == tile_kind::full && b == tile_kind::full) return tile_kind::full;
  return tile_kind::partial;
}

namespace detail {
/// Runs P::prepare(shape) where the pattern has one.
template <class P>
void prepare(P& pattern, const problem_shape& s) {
  if constexpr (requires { pattern.prepare(s); }) pattern.prepare(s);
}
}  // namespace detail

}  // namespace attn
