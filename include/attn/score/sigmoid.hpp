// Sigmoid attention's score function: FlashSigmoid (Ramapuram et al. 2024, "Theory, Analysis,
// and Best Practices for Sigmoid Self-Attention", §3 and §4).
//
// For query row i of head h in batch b, over the keys j it sees:
//   O_i = Σ_j σ(s_ij + β) · v_j          σ(x) = 1 / (1 + e^(−x))
// where s_ij is the same logit softmax uses (scale·q_i·k_j, soft-capped if softcap > 0, then
// the pattern's biases such as ALiBi or a bias tensor) and β is sigmoid's own bias:
//   sigmoid{.bias = β}          one scalar for every head;
//   sigmoid{.head_bias = span}  β_h per query head (size Hq);
//   sigmoid{}                   β = −ln n, n = the effective key length of batch b
//                               (options::key_lengths[b] if given, else Nk) — the paper's
//                               b = −log(n) with n the sequence length (§3.3). Under a causal,
//                               window or mask pattern n is still that key length, not the
//                               number of keys row i sees. A batch with n = 0 sees no key.
//
// How this differs from softmax (score/softmax.hpp), one line each:
//   - no running state: each weight depends on its own logit only, so weigh() is a pure
//     elementwise map with nothing carried from one key tile to the next;
//   - no rescaling: α = 1 always (set once), the accumulator is never multiplied down;
//   - no final division: output_factor = 1, O is the plain sum Σ_j σ(·)·v_j; the weights of a
//     row need not sum to 1 (with β = −ln n they sum to about 1 for small logits);
//   - no log-sum-exp: has_lse = false, and asking for options::lse is an attn::error;
//   - the bias β above, which softmax would not notice (it cancels in the normalisation);
//   - natural-log units: the logits are not pre-multiplied by log2 e, pattern biases are
//     added as they are (bias_factor = 1).
// Masked keys arrive as −inf and get weight exactly σ(−inf) = 0, so a row that sees no key
// outputs exactly 0.
//
// σ is evaluated as e = e^(−|x|) ∈ [0, 1] (one exp2 of a non-positive number: it never
// overflows, and it is exactly 0 for x = ±inf) and then
//   σ(x) = 1 / (1 + e)  for x ≥ 0,      σ(x) = e / (1 + e)  for x < 0,
// i.e. select(x ≥ 0, 1, e) / (1 + e): no cancellation on either side, exact 0 and 1 at ±inf.
//
// softcap > 0: s = softcap · tanh(s / softcap) before any bias, as for softmax.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <numbers>
#include <optional>
#include <span>
#include <type_traits>

#include "attn/error.hpp"
#include "attn/pattern/tile.hpp"
#include "attn/simd/exp.hpp"
#include "attn/simd/microkernel.hpp"

namespace attn {

struct sigmoid {
  /// β for every head. At most one of bias and head_bias may be set; neither = −ln(key length).
  std::optional<float> bias{};
  std::span<const float> head_bias{};  ///< empty, or β_h for each query head h
  float softcap = 0.0f;                ///< > 0: cap logits with softcap·tanh(s/softcap)

  void check(const detail::problem_shape& s) const {
    if (bias && !head_bias.empty())
      detail::fail("sigmoid.bias=", *bias, " and sigmoid.head_bias (size ", head_bias.size(),
                   ") are both set; set at most one");
    if (bias && !std::isfinite(*bias)) detail::fail("sigmoid.bias=", *bias, " must be finite");
    if (!head_bias.empty() && static_cast<idx>(head_bias.size()) != s.heads_q)
      detail::fail("sigmoid.head_bias.size()=", head_bias.size(),
                   " does not match q.dim(2)=", s.heads_q, " (heads)");
    for (std::size_t h = 0; h < head_bias.size(); ++h)
      if (!std::isfinite(head_bias[h]))
        detail::fail("sigmoid.head_bias[", h, "]=", head_bias[h], " must be finite");
    if (!(softcap >= 0.0f) || std::isinf(softcap))
      detail::fail("sigmoid.softcap=", softcap, " must be finite and >= 0 (0 = off)");
  }
  /// Sigmoid does not normalise: there is no log-sum-exp to report.
  static constexpr bool has_lse = false;
};

namespace detail {

/// The kernel side of sigmoid for one query tile on arch A: a stateless elementwise map.
/// Capped = softcap active (chosen once per call). Same interface as softmax_tile.
template <class A, bool Capped>
struct sigmoid_tile {
  static constexpr int L = simd::lanes<A>;
  static constexpr int QV = simd::tile_shape<A>::query_vectors;
  static constexpr int M = simd::tile_queries<A>;

  const sigmoid& params;
  float scale;
  float beta = 0.0f;           // β of the current (batch, head)
  alignas(64) float alpha[M];  // always 1: nothing accumulated is ever rescaled

  sigmoid_tile(const sigmoid& p, float logit_scale) : params(p), scale(logit_scale) {
    for (float& a : alpha) a = 1.0f;
  }

  /// What the kernel multiplies Q by when it packs it: the logit scale (÷ softcap when capped,
  /// so that transform() only needs tanh).
  float q_factor() const { return Capped ? scale / params.softcap : scale; }
  /// Pattern biases are in natural-log units, as sigmoid's logits: added unchanged.
  static constexpr float bias_factor() { return 1.0f; }

  /// Selects β for this (batch, head): the scalar, the head's entry, or −ln(key length).
  void begin(const head_ctx& c) {
    if (params.bias)
      beta = *params.bias;
    else if (!params.head_bias.empty())
      beta = params.head_bias[static_cast<std::size_t>(c.head)];
    else  // n = 0: no key is visible and β is never used; 0 keeps it finite
      beta = c.seq_k > 0 ? -std::log(static_cast<float>(c.seq_k)) : 0.0f;
  }

  /// Raw tile logits (Q pre-multiplied by q_factor) → logits, before masks and biases.
  void transform(float* st, idx keys) const {
    if constexpr (Capped) {
      const auto c = simd::splat<A>(params.softcap);
      for (idx n = 0; n < keys * QV; ++n) {
        float* p = st + n * L;
        simd::store<A>(p, simd::tanh(simd::load<A>(p)) * c);
      }
    } else {
      (void)st;
      (void)keys;
    }
  }

  /// Logits → weights σ(s + β) in place. No state, no α: every element on its own.
  void weigh(float* st, idx keys) const {
    using V = simd::vec<A>;
    const V b = simd::splat<A>(beta);
    const V zero = simd::splat<A>(0.0f), one = simd::splat<A>(1.0f);
    const V minus_log2e = simd::splat<A>(-std::numbers::log2e_v<float>);
    for (idx n = 0; n < keys * QV; ++n) {
      float* p = st + n * L;
      const V x = simd::load<A>(p) + b;
      // e = e^(−|x|) = 2^(−|x|·log2 e): 0 for x = ±inf (masked keys), never above 1.
      const V e = simd::exp2(simd::max(x, -x) * minus_log2e);
      simd::store<A>(p, simd::select(x >= zero, one, e) / (one + e));
    }
  }

  /// Factor the accumulated output of query i is multiplied by: 1, sigmoid does not normalise.
  float output_factor(int) const { return 1.0f; }
  /// Never asked for (has_lse = false).
  float lse(int) const { return -std::numeric_limits<float>::infinity(); }
};

/// Calls f(tile_type_tag) with the kernel-side type for these parameters: the one run-time
/// dispatch on sigmoid's fields.
template <class A, class F>
decltype(auto) with_score_tile(const sigmoid& s, F&& f) {
  if (s.softcap > 0.0f) return f(std::type_identity<sigmoid_tile<A, true>>{});
  return f(std::type_identity<sigmoid_tile<A, false>>{});
}

}  // namespace detail
}  // namespace attn
