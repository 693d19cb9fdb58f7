// Merging two partial attention results over disjoint key sets of the same queries — the
// building block of split-KV decoding and of sequence-parallel (ring) attention.
//
// With (O_a, L_a) and (O_b, L_b) each normalised over its own keys (L = natural-log LSE):
//   L = log(e^{L_a} + e^{L_b}) = m + log(e^{L_a−m} + e^{L_b−m}),  m = max(L_a, L_b)
//   O = (e^{L_a−m}·O_a + e^{L_b−m}·O_b) / (e^{L_a−m} + e^{L_b−m})
// A side with L = −inf saw no key and contributes nothing; both −inf gives O = 0, L = −inf.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "attn/tensor.hpp"

namespace attn {

namespace detail {

/// The weights e^{L_c − L} of n parts with log-sum-exps lse[0..n) and their merged
/// L = log Σ_c e^{L_c} (returned). Parts with L_c = −inf saw no key and weigh 0; when all do,
/// every weight is 0 and L = −inf.
inline float lse_merge_weights(const float* lse, idx n, float* weights) {
  const float top = *std::max_element(lse, lse + n);
  if (top == -std::numeric_limits<float>::infinity()) {
    std::fill(weights, weights + n, 0.0f);
    return top;
  }
  float total = 0.0f;
  for (idx c = 0; c < n; ++c) total += weights[c] = std::exp(lse[c] - top);
  for (idx c = 0; c < n; ++c) weights[c] /= total;
  return top + std::log(total);
}

}  // namespace detail

/// Merges (out_b, lse_b) into (out_a, lse_a) in place. out: [batch, seq_q, heads, head_dim_v],
/// lse: [batch, heads, seq_q].
template <class OA, class LA, class OB, class LB>
void merge(OA& out_a, LA& lse_a, const OB& out_b, const LB& lse_b) {
  const auto a = detail::view_of(out_a);
  const auto b = detail::view_of(out_b);
  for (int d = 0; d < 4; ++d) detail::require_equal_dim("out_b", b, d, "out_a", a, d);
  const idx want[3] = {a.dims[0], a.dims[2], a.dims[1]};
  for (int d = 0; d < 3; ++d) {
    if (lse_a.dimensions()[static_cast<std::size_t>(d)] != want[d])
      detail::fail("lse_a.dim(", d, ")=", lse_a.dimensions()[static_cast<std::size_t>(d)],
                   " does not match ", want[d], " (lse is [batch, heads, seq_q])");
    if (lse_b.dimensions()[static_cast<std::size_t>(d)] != want[d])
      detail::fail("lse_b.dim(", d, ")=", lse_b.dimensions()[static_cast<std::size_t>(d)],
                   " does not match ", want[d], " (lse is [batch, heads, seq_q])");
  }
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  float* la = lse_a.data();
  const float* lb = lse_b.data();
  for (idx bt = 0; bt < a.dims[0]; ++bt)
    for (idx h = 0; h < a.dims[2]; ++h)
      for (idx i = 0; i < a.dims[1]; ++i) {
        const idx l = (bt * a.dims[2] + h) * a.dims[1] + i;
        const float both[2] = {la[l], lb[l]};
        float w[2];
        la[l] = detail::lse_merge_weights(both, 2, w);
        float* oa = a.row(bt, i, h);
        const float* ob = b.row(bt, i, h);
        if (la[l] == neg_inf) {
          std::fill(oa, oa + a.dims[3], 0.0f);
          continue;
        }
        for (idx e = 0; e < a.dims[3]; ++e) oa[e] = w[0] * oa[e] + w[1] * ob[e];
      }
}

}  // namespace attn
