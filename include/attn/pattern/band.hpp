// Band patterns: causal attention and sliding windows, with optional attention-sink keys.
//
// With p(i) the key position of query i (see attn::align):
//   window{left, right}: query i sees key j  iff  p(i) − left ≤ j ≤ p(i) + right
//   causal             = window{unbounded, 0}
//   sink_keys = s      : additionally sees keys j < s that are not in its future (j ≤ p(i)+right),
//                        StreamingLLM's "attention sinks" (Xiao et al. 2023, §3.2).
// The window counts left + right + 1 keys, the query's own position included — the convention
// of FlashAttention's window_size=(left, right).
#pragma once

#include "attn/pattern/tile.hpp"

namespace attn {

struct window {
  idx left = unbounded;   ///< keys before the query's position it may see
  idx right = unbounded;  ///< keys after it
  align alignment = align::bottom_right;
  idx sink_keys = 0;  ///< the first keys every query sees (if not in its future)

  void check(const detail::problem_shape&) const {
    if (left < 0) detail::fail("window.left=", left, " must be >= 0");
    if (right < 0) detail::fail("window.right=", right, " must be >= 0");
    if (sink_keys < 0) detail::fail("window.sink_keys=", sink_keys, " must be >= 0");
  }

  /// Keys any of the rows [q0, q1) may see, as one range (the sinks widen it to 0).
  key_span keys(const head_ctx& c, idx q0, idx q1) const {
    const idx lo = c.aligned(q0, alignment) - left;
    const idx hi = c.aligned(q1 - 1, alignment) + right + 1;
    key_span band{sink_keys > 0 ? 0 : std::max<idx>(lo, 0), std::min(hi, c.seq_k)};
    return intersect(band, {0, c.seq_k});
  }

  bool visible(const head_ctx& c, idx i, idx j) const {
    const idx p = c.aligned(i, alignment);
    if (j > p + right) return false;
    return j >= p - left || j < sink_keys;
  }

  /// Rows of [q0, q1) that see key j: p(i) ≥ j − right, and p(i) ≤ j + left unless j is a sink.
  key_span query_span(const head_ctx& c, idx j, idx q0, idx q1) const {
    const idx offset = c.aligned(0, alignment);  // p(i) = i + offset
    const idx lo = j - right - offset;
    const idx hi = j < sink_keys ? q1 : j + left - offset + 1;
    return intersect({lo, hi}, {q0, q1});
  }

  tile_kind classify(const head_ctx& c, idx q0, idx q1, idx k0, idx k1) const {
    const idx first = c.aligned(q0, alignment), last = c.aligned(q1 - 1, alignment);
    // Every row sees the tile's last key and, through the band or the sinks, its first one.
    const bool right_ok = k1 - 1 <= first + right;
    const bool left_ok = k0 >= last - left || k1 <= sink_keys;
    if (right_ok && left_ok) return tile_kind::full;
    // No row sees any key: all keys in the future of the first row, or all before the band of
    // the last row and past the sinks.
    if (k0 > last + right) return tile_kind::none;
    if (k1 - 1 < first - left && k0 >= sink_keys) return tile_kind::none;
    return tile_kind::partial;
  }

  static constexpr bool has_bias = false;
  float logit_bias(const head_ctx&, idx, idx) const { return 0.0f; }
};

/// Causal attention: query i sees keys j ≤ p(i). Bottom-right aligned by default.
struct causal : window {
  constexpr causal() : window{unbounded, 0, align::bottom_right, 0} {}
  constexpr explicit causal(align a) : window{unbounded, 0, a, 0} {}
};

}  // namespace attn
