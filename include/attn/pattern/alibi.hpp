// ALiBi (Press et al. 2022, "Train Short, Test Long", §3): a per-head linear bias on the logit,
//   bias(i, j) = −slope_h · |p(i) − j|,
// with p(i) the query's key position under the alignment (bottom-right by default, as for
// causal). Under a causal pattern this is the paper's −slope·(i − j). Standard slopes: for H a
// power of two, the geometric sequence slope_h = 2^(−8(h+1)/H); otherwise the slopes of the
// nearest lower power of two followed by every other slope of twice that count (the authors'
// get_slopes in ofirpress/attention_with_linear_biases).
#pragma once

#include <cmath>
#include <span>
#include <vector>

#include "attn/pattern/tile.hpp"

namespace attn {

/// The standard ALiBi slopes for `heads` heads.
inline std::vector<float> alibi_slopes(idx heads) {
  auto power_of_two_slopes = [](idx n) {
    std::vector<float> s(static_cast<std::size_t>(n));
    const double start = std::exp2(-8.0 / static_cast<double>(n));
    double value = start;
    for (auto& x : s) {
      x = static_cast<float>(value);
      value *= start;
    }
    return s;
  };
  if (heads <= 0) return {};
  idx lower = 1;
  while (lower * 2 <= heads) lower *= 2;
  std::vector<float> slopes = power_of_two_slopes(lower);
  if (lower != heads) {
    const std::vector<float> extra = power_of_two_slopes(2 * lower);
    for (idx k = 0; static_cast<idx>(slopes.size()) < heads; k += 2)
      slopes.push_back(extra[static_cast<std::size_t>(k)]);
  }
  return slopes;
}

struct alibi {
  /// One slope per query head; empty = the standard slopes for the number of query heads.
  std::span<const float> slopes{};
  align alignment = align::bottom_right;

  void check(const detail::problem_shape& s) const {
    if (!slopes.empty() && static_cast<idx>(slopes.size()) != s.heads_q)
      detail::fail("alibi.slopes.size()=", slopes.size(), " does not match q.dim(2)=", s.heads_q,
                   " (heads)");
  }
  /// Called once per call on the kernel's own copy: computes the standard slopes if needed.
  void prepare(const detail::problem_shape& s) {
    if (slopes.empty()) standard_ = alibi_slopes(s.heads_q);
  }
  key_span keys(const head_ctx& c, idx, idx) const { return {0, c.seq_k}; }
  tile_kind classify(const head_ctx&, idx, idx, idx, idx) const { return tile_kind::partial; }
  key_span query_span(const head_ctx&, idx, idx q0, idx q1) const { return {q0, q1}; }
  bool visible(const head_ctx&, idx, idx) const { return true; }
  static constexpr bool has_bias = true;
  float slope(idx head) const {
    const auto h = static_cast<std::size_t>(head);
    return slopes.empty() ? standard_[h] : slopes[h];
  }
  float logit_bias(const head_ctx& c, idx i, idx j) const {
    const idx distance = c.aligned(i, alignment) - j;
    return -slope(c.head) * static_cast<float>(distance < 0 ? -distance : distance);
  }

 private:
  std::vector<float> standard_{};  // filled by prepare()
};

}  // namespace attn
