// dense: every query sees every key.
#pragma once

#include "attn/pattern/tile.hpp"

namespace attn {

struct dense {
  void check(const detail::problem_shape&) const {}
  key_span keys(const head_ctx& c, idx, idx) const { return {0, c.seq_k}; }
  tile_kind classify(const head_ctx&, idx, idx, idx, idx) const { return tile_kind::full; }
  key_span query_span(const head_ctx&, idx, idx q0, idx q1) const { return {q0, q1}; }
  bool visible(const head_ctx&, idx, idx) const { return true; }
  static constexpr bool has_bias = false;
  float logit_bias(const head_ctx&, idx, idx) const { return 0.0f; }
};

}  // namespace attn
