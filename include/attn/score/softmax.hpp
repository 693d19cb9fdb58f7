// Softmax attention's score function: how a logit becomes a weight, with the online softmax of
// FlashAttention (Dao et al. 2022, Alg. 1; FlashAttention-2, Dao 2023, Alg. 1).
//
// For a query row, over the key tiles it sees in order, with s the logits of one tile:
//   m' = max(m, max_j s_j)              running maximum
//   α  = exp(m − m')                    rescales what was accumulated under the old maximum
//   p_j = exp(s_j − m')                 the tile's unnormalised weights
//   l' = α·l + Σ_j p_j                  running denominator
//   O' = α·O + Σ_j p_j v_j              (done by the kernel with α)
// and at the end O / l, LSE = m + log l. The kernel works in base 2 (log2 e folded into the Q
// scale), so every exp is an exp2 of a non-positive number.
//
// Modifiers (run-time fields, dispatched once per call):
//   softcap > 0: s = softcap · tanh(s / softcap) before any bias (Gemma 2 report, §2; the order
//                of FlashAttention's softcap).
//   sinks[h]:    a learned per-head logit that joins the denominator only (gpt-oss): the state
//                starts at m = sink, l = 1, O = 0, so a row that sees no key outputs 0.
#pragma once

#include <cmath>
#include <limits>
#include <numbers>
#include <span>

#include "attn/pattern/tile.hpp"
#include "attn/simd/exp.hpp"
#include "attn/simd/microkernel.hpp"

namespace attn {

struct softmax {
  float softcap = 0.0f;            ///< > 0: cap logits with softcap·tanh(s/softcap)
  std::span<const float> sinks{};  ///< empty, or one sink logit per query head

  void check(const detail::problem_shape& s) const {
    if (!(softcap >= 0.0f) || std::isinf(softcap))
      detail::fail("softmax.softcap=", softcap, " must be finite and >= 0 (0 = off)");
    if (!sinks.empty() && static_cast<idx>(sinks.size()) != s.heads_q)
      detail::fail("softmax.sinks.size()=", sinks.size(), " does not match q.dim(2)=", s.heads_q,
                   " (heads)");
  }
  /// Softmax defines a log-sum-exp per row.
  static constexpr bool has_lse = true;
};

namespace detail {

/// The kernel side of softmax for one query tile of Rows queries on arch A (the prefill tile by
/// default; split-KV decoding uses 16): per-query running state in lanes.
/// Capped = softcap active (chosen once per call).
template <class A, bool Capped, int Rows = simd::tile_queries<A>>
struct softmax_tile {
  static constexpr int L = simd::lanes<A>;
  static constexpr int M = Rows;
  static constexpr int QV = M / L;
  static_assert(M % L == 0, "a tile holds whole vectors of queries");
  static constexpr float log2e = std::numbers::log2e_v<float>;

  const softmax& params;
  float scale;
  alignas(64) float max[M];    // running maximum, base-2 logit units
  alignas(64) float sum[M];    // running denominator
  alignas(64) float alpha[M];  // rescale of the accumulator for the current tile

  softmax_tile(const softmax& p, float logit_scale) : params(p), scale(logit_scale) {}

  /// What the kernel multiplies Q by when it packs it.
  float q_factor() const { return Capped ? scale / params.softcap : scale * log2e; }
  /// What a pattern's additive bias (natural-log units) is multiplied by.
  static constexpr float bias_factor() { return log2e; }

  /// Starts a row set. first_part = false for the later key chunks of a split-KV row: a sink is
  /// a term of the whole row's denominator, so only the first part counts it (the LSE merge of
  /// the parts then counts it exactly once).
  void begin(const head_ctx& c, bool first_part = true) { begin_rows(c, 0, M, first_part); }
  /// Starts rows [first, first + count) only, as rows of head c.head: split-KV decoding puts
  /// the query heads of one KV group side by side in a tile.
  void begin_rows(const head_ctx& c, int first, int count, bool first_part = true) {
    const bool sink = first_part && !params.sinks.empty();
    const float m0 = sink ? params.sinks[static_cast<std::size_t>(c.head)] * log2e
                          : -std::numeric_limits<float>::infinity();
    for (int i = first; i < first + count; ++i) {
      max[i] = m0;
      sum[i] = sink ? 1.0f : 0.0f;
    }
  }

  /// Raw tile logits (Q pre-multiplied by q_factor) → base-2 logits, before masks and biases.
  void transform(float* st, idx keys) const {
    if constexpr (Capped) {
      const auto c = simd::splat<A>(params.softcap * log2e);
      for (idx j = 0; j < keys * QV; ++j) {
        float* p = st + j * L;
        simd::store<A>(p, simd::tanh(simd::load<A>(p)) * c);
      }
    } else {
      (void)st;
      (void)keys;
    }
  }

  /// Logits → weights in place, updating the running state and alpha.
  void weigh(float* st, idx keys) {
    using V = simd::vec<A>;
    const V neg_inf = simd::splat<A>(-std::numeric_limits<float>::infinity());
    for (int v = 0; v < QV; ++v) {
      const int lane0 = v * L;
      const V old_max = simd::load<A>(max + lane0);
      V tile_max = neg_inf;
      for (idx j = 0; j < keys; ++j)
        tile_max = simd::max(tile_max, simd::load<A>(st + j * M + lane0));
      const V new_max = simd::max(old_max, tile_max);
      // A row that has seen nothing yet keeps max = −inf; subtract 0 instead so that masked
      // logits (−inf) give weight 0 and never −inf − (−inf) = NaN.
      const V safe_max = simd::select(new_max == neg_inf, simd::splat<A>(0.0f), new_max);
      V tile_sum = simd::splat<A>(0.0f);
      for (idx j = 0; j < keys; ++j) {
        float* p = st + j * M + lane0;
        const V w = simd::exp2(simd::load<A>(p) - safe_max);
        simd::store<A>(p, w);
        tile_sum = tile_sum + w;
      }
      const V a = simd::exp2(old_max - safe_max);
      simd::store<A>(alpha + lane0, a);
      simd::store<A>(max + lane0, new_max);
      simd::store<A>(sum + lane0, simd::fma(simd::load<A>(sum + lane0), a, tile_sum));
    }
  }

  /// Factor the accumulated output of query i is multiplied by: 1/l, or 0 for an empty row.
  float output_factor(int i) const { return sum[i] > 0.0f ? 1.0f / sum[i] : 0.0f; }
  /// Natural-log LSE of query i (−inf for a row that saw nothing).
  float lse(int i) const {
    return sum[i] > 0.0f ? max[i] * std::numbers::ln2_v<float> + std::log(sum[i])
                         : -std::numeric_limits<float>::infinity();
  }
};

/// Calls f(tile_type_tag) with the kernel-side type for these parameters: the one run-time
/// dispatch on softmax's fields.
template <class A, int Rows = simd::tile_queries<A>, class F>
decltype(auto) with_score_tile(const softmax& s, F&& f) {
  if (s.softcap > 0.0f) return f(std::type_identity<softmax_tile<A, true, Rows>>{});
  return f(std::type_identity<softmax_tile<A, false, Rows>>{});
}

}  // namespace detail
}  // namespace attn
