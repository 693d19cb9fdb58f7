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
// σ(x + β) is evaluated as 1 / (1 + 2^y) with y = −(x + β)·log2 e (one FMA, then one exp2 and
// one division per weight; measured on Zen 4 per 64 × 64 tile of logits: 0.84 µs, against
// 1.03 µs for e^(−|x|) with a select between 1/(1 + e) and e/(1 + e), 0.94 µs with an rcp14
// reciprocal and a Newton step, 1.8 µs for ½ + ½·tanh(x/2); softmax's online update: 0.81 µs).
// There is no cancellation on either side: for large y, 1 + 2^y is exact to an ulp; for very
// negative y it rounds to 1 and σ to 1. simd::exp2 clamps its argument at 127, so 2^y never
// overflows; weights below FLT_MIN = 2^−126 (x + β < −87.3) are flushed to exactly 0 by one
// compare, which gives masked keys (x = −inf) weight exactly 0 and keeps denormals out of both
// the division and the accumulator.
//
// softcap > 0: s = softcap · tanh(s / softcap) before any bias, as for softmax.
#pragma once

#include <algorithm>
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

/// The kernel side of sigmoid for one query tile of Rows queries on arch A: a stateless
/// elementwise map.
/// Capped = softcap active (chosen once per call). Same interface as softmax_tile.
template <class A, bool Capped, int Rows = simd::tile_queries<A>>
struct sigmoid_tile {
  static constexpr int L = simd::lanes<A>;
  static constexpr int M = Rows;
  static constexpr int QV = M / L;
  static_assert(M % L == 0, "a tile holds whole vectors of queries");
  static constexpr float log2e = std::numbers::log2e_v<float>;

  const sigmoid& params;
  float scale;
  alignas(64) float offset[M];  // −β·log2 e of each row's (batch, head)
  alignas(64) float alpha[M];   // always 1: nothing accumulated is ever rescaled

  sigmoid_tile(const sigmoid& p, float logit_scale) : params(p), scale(logit_scale) {
    for (float& a : alpha) a = 1.0f;
  }

  /// What the kernel multiplies Q by when it packs it: the logit scale (÷ softcap when capped,
  /// so that transform() only needs tanh).
  float q_factor() const { return Capped ? scale / params.softcap : scale; }
  /// Pattern biases are in natural-log units, as sigmoid's logits: added unchanged.
  static constexpr float bias_factor() { return 1.0f; }

  /// Selects β for this (batch, head): the scalar, the head's entry, or −ln(key length).
  /// first_part: see softmax_tile::begin; sigmoid has no row-level term, parts simply add.
  void begin(const head_ctx& c, bool first_part = true) { begin_rows(c, 0, M, first_part); }
  /// Starts rows [first, first + count) only, as rows of head c.head (see softmax_tile).
  void begin_rows(const head_ctx& c, int first, int count, bool /*first_part*/ = true) {
    float beta = 0.0f;
    if (params.bias)
      beta = *params.bias;
    else if (!params.head_bias.empty())
      beta = params.head_bias[static_cast<std::size_t>(c.head)];
    else  // n = 0: no key is visible and β is never used; 0 keeps it finite
      beta = c.seq_k > 0 ? -std::log(static_cast<float>(c.seq_k)) : 0.0f;
    std::fill(offset + first, offset + first + count, -beta * log2e);
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
    const V minus_log2e = simd::splat<A>(-log2e);
    const V one = simd::splat<A>(1.0f),
            inf = simd::splat<A>(std::numeric_limits<float>::infinity());
    // y ≤ 126 keeps σ ≥ FLT_MIN; beyond (and at y = +inf, a masked key) the denominator is made
    // +inf, so that the weight is exactly 0 and no division ever yields a denormal (a slow path
    // on x86: 3× the time of a whole tile when every key is masked). A NaN logit stays NaN.
    const V last = simd::splat<A>(126.0f);
    V offsets[QV];
    for (int v = 0; v < QV; ++v) offsets[v] = simd::load<A>(offset + v * L);
    for (idx j = 0; j < keys; ++j)
      for (int v = 0; v < QV; ++v) {
        float* p = st + j * M + v * L;
        const V y = simd::fma(simd::load<A>(p), minus_log2e, offsets[v]);  // −(s + β)·log2 e
        simd::store<A>(p, one / simd::select(y > last, inf, one + simd::exp2(y)));
      }
  }

  /// Factor the accumulated output of query i is multiplied by: 1, sigmoid does not normalise.
  float output_factor(int) const { return 1.0f; }
  /// Never asked for (has_lse = false).
  float lse(int) const { return -std::numeric_limits<float>::infinity(); }
};

/// Calls f(tile_type_tag) with the kernel-side type for these parameters: the one run-time
/// dispatch on sigmoid's fields.
template <class A, int Rows = simd::tile_queries<A>, class F>
decltype(auto) with_score_tile(const sigmoid& s, F&& f) {
  if (s.softcap > 0.0f) return f(std::type_identity<sigmoid_tile<A, true, Rows>>{});
  return f(std::type_identity<sigmoid_tile<A, false, Rows>>{});
}

}  // namespace detail
}  // namespace attn
