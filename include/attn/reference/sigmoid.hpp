// attn::reference::attention for sigmoid attention, written as plainly as its formula
// (Ramapuram et al. 2024, "Theory, Analysis, and Best Practices for Sigmoid Self-Attention"),
// in double precision, with O(Nq·Nk) loops and no tiling: the oracle of score/sigmoid.hpp.
//
// For batch b, query head h (reading K/V head g = h / (Hq / Hkv)) and query row i < Lq, with
// Lq, Lk the effective lengths of batch b (options::query_lengths / key_lengths, else Nq, Nk):
//
//   s_ij  = the logit of reference/patterns.hpp: scale·q·k, soft-capped if sigmoid::softcap
//           c > 0, plus the pattern's bias (ALiBi, bias tensors)
//   V(i)  = { j < Lk : the pattern lets i see j }
//   β     = sigmoid::bias if set, else sigmoid::head_bias[h] if given, else −ln Lk
//   out[b,i,h,:] = Σ_{j∈V(i)} σ(s_ij + β) · v[b,j,g,:]        σ(x) = 1 / (1 + e^(−x))
//
// No normalisation over j and no log-sum-exp: result::lse is left empty. A row that sees no key
// and padded query rows (i ≥ Lq) output zeros.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <vector>

#include "attn/error.hpp"
#include "attn/options.hpp"
#include "attn/pattern/dense.hpp"
#include "attn/reference/patterns.hpp"
#include "attn/score/sigmoid.hpp"

namespace attn::reference {

namespace detail {

/// σ(x) = 1 / (1 + e^(−x)), through e^(−|x|) ≤ 1 on both sides: no overflow, σ(−inf) = 0.
inline double logistic(double x) {
  const double e = std::exp(-std::abs(x));
  return x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

}  // namespace detail

/// Sigmoid attention of q [B, Nq, Hq, D] over k [B, Nk, Hkv, D] and v [B, Nk, Hkv, Dv] (float
/// Eigen tensors or maps, row-major), in double precision; see the top of this file for the
/// formula. Throws attn::error on inconsistent shapes or parameters. (A template on the score
/// type so that `attention(q, k, v, {}, pattern)` keeps meaning softmax.)
template <class Q, class K, class V, std::same_as<attn::sigmoid> Score, class Pattern = attn::dense>
result attention(const Q& q, const K& k, const V& v, const Score& score,
                 const Pattern& pattern = {}, const attn::options& opt = {}) {
  using detail::neg_inf;
  const detail::problem p = detail::check_problem(q, k, v, pattern, opt);
  const attn::detail::problem_shape& s = p.shape;
  if (score.bias && !score.head_bias.empty())
    attn::detail::fail("reference: sigmoid.bias and sigmoid.head_bias are both set");
  if (score.bias && !std::isfinite(*score.bias))
    attn::detail::fail("reference: sigmoid.bias=", *score.bias, " must be finite");
  if (!score.head_bias.empty() && static_cast<idx>(score.head_bias.size()) != s.heads_q)
    attn::detail::fail("reference: sigmoid.head_bias.size()=", score.head_bias.size(), " != heads ",
                       s.heads_q);
  for (const float beta : score.head_bias)
    if (!std::isfinite(beta))
      attn::detail::fail("reference: sigmoid.head_bias holds ", beta, ", not finite");
  if (!(score.softcap >= 0.0f) || std::isinf(score.softcap))
    attn::detail::fail("reference: sigmoid.softcap=", score.softcap, " must be finite and >= 0");

  // Only the fallback for unknown pattern types uses the prepared copy's own members.
  Pattern prepared = pattern;
  attn::detail::prepare(prepared, s);

  result r{tensor4d(s.batch, s.seq_q, s.heads_q, s.head_dim_v), lse3d()};
  r.out.setZero();

  std::vector<double> logit;
  detail::for_each_head(s, opt, [&](const detail::pair_ctx& c) {
    if (c.seq_k == 0) return;  // no key: zeros (and −ln 0 is not a number)
    const idx b = c.batch, h = c.head;
    // The paper's default β = −log n (§3.3), n the sequence length: here the batch's key length.
    const double beta = score.bias ? static_cast<double>(*score.bias)
                        : !score.head_bias.empty()
                            ? static_cast<double>(score.head_bias[static_cast<std::size_t>(h)])
                            : -std::log(static_cast<double>(c.seq_k));
    for (idx i = 0; i < c.seq_q; ++i) {
      detail::row_logits(q, k, prepared, c, i, s.head_dim, p.scale,
                         static_cast<double>(score.softcap), logit);
      for (idx j = 0; j < c.seq_k; ++j) {
        const double x = logit[static_cast<std::size_t>(j)];
        if (x == neg_inf) continue;  // not visible
        const double w = detail::logistic(x + beta);
        for (idx e = 0; e < s.head_dim_v; ++e)
          r.out(b, i, h, e) += w * static_cast<double>(v(b, j, c.kv_head, e));
      }
    }
  });
  return r;
}

}  // namespace attn::reference
