// attn::reference::attention — softmax attention written as plainly as its formula, in double
// precision, with O(Nq·Nk) loops and no tiling. It is the oracle the fused kernels are tested
// against, and a public, readable statement of what every option and pattern means.
//
// For batch b, query head h (reading K/V head g = h / (Hq / Hkv), grouped-query attention) and
// query row i, with Lq, Lk the effective lengths of batch b (options::query_lengths /
// key_lengths, else Nq, Nk):
//
//   s_ij  = scale · Σ_d q[b,i,h,d] · k[b,j,g,d]          scale = options::scale or 1/√D
//   s_ij ← c · tanh(s_ij / c)                            if softmax::softcap c > 0 (Gemma 2)
//   s_ij ← s_ij + bias_ij                                ALiBi and bias-tensor patterns
//   V(i)  = { j < Lk : the pattern lets i see j }
//   Z_i   = Σ_{j∈V(i)} e^{s_ij}  (+ e^{σ_h} with a sink logit σ_h = softmax::sinks[h], gpt-oss)
//   out[b,i,h,:] = Σ_{j∈V(i)} e^{s_ij} · v[b,j,g,:] / Z_i
//   lse[b,h,i]   = ln Z_i
//
// A row with Z_i = 0 (it sees no key and there is no sink) outputs zeros and LSE = −inf; with a
// sink but no key it outputs zeros and LSE = σ_h. Padded query rows (i ≥ Lq) output zeros and
// LSE = −inf, sink or not: they are not rows of the problem.
//
// The tensor contract, the lengths, the logits s_ij and the rules of every pattern are shared
// with the other references: reference/patterns.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "attn/error.hpp"
#include "attn/options.hpp"
#include "attn/pattern/dense.hpp"
#include "attn/reference/patterns.hpp"
#include "attn/score/softmax.hpp"

namespace attn::reference {

/// Softmax attention of q [B, Nq, Hq, D] over k [B, Nk, Hkv, D] and v [B, Nk, Hkv, Dv] (float
/// Eigen tensors or maps, row-major), in double precision; see the top of this file for the
/// formula. Throws attn::error on inconsistent shapes or parameters.
template <class Q, class K, class V, class Pattern = attn::dense>
result attention(const Q& q, const K& k, const V& v, const attn::softmax& score = {},
                 const Pattern& pattern = {}, const attn::options& opt = {}) {
  using detail::neg_inf;
  const detail::problem p = detail::check_problem(q, k, v, pattern, opt);
  const attn::detail::problem_shape& s = p.shape;
  if (!(score.softcap >= 0.0f) || std::isinf(score.softcap))
    attn::detail::fail("reference: softmax.softcap=", score.softcap, " must be finite and >= 0");
  if (!score.sinks.empty() && static_cast<idx>(score.sinks.size()) != s.heads_q)
    attn::detail::fail("reference: softmax.sinks.size()=", score.sinks.size(), " != heads ",
                       s.heads_q);

  // Only the fallback for unknown pattern types uses the prepared copy's own members.
  Pattern prepared = pattern;
  attn::detail::prepare(prepared, s);

  result r{tensor4d(s.batch, s.seq_q, s.heads_q, s.head_dim_v), lse3d(s.batch, s.heads_q, s.seq_q)};
  r.out.setZero();
  r.lse.setConstant(neg_inf);

  std::vector<double> logit;
  detail::for_each_head(s, opt, [&](const detail::pair_ctx& c) {
    const idx b = c.batch, h = c.head;
    const bool has_sink = !score.sinks.empty();
    const double sink =
        has_sink ? static_cast<double>(score.sinks[static_cast<std::size_t>(h)]) : neg_inf;
    for (idx i = 0; i < c.seq_q; ++i) {
      // The logits of the visible keys (−inf elsewhere) and their maximum m, which the
      // exponentials are taken relative to: e^{s−m} ≤ 1 never overflows, and the common factor
      // e^m cancels between numerator and denominator (ln Z = m + ln Σ e^{s−m}).
      const double m =
          std::max(sink, detail::row_logits(q, k, prepared, c, i, s.head_dim, p.scale,
                                            static_cast<double>(score.softcap), logit));
      if (m == neg_inf) continue;  // sees no key, no sink: zeros, LSE −inf
      // Z = Σ_j e^{s_j} + e^{σ}: the sink logit σ only joins the denominator (gpt-oss model
      // card, OpenAI 2025, "attention sinks").
      double z = has_sink ? std::exp(sink - m) : 0.0;
      for (idx j = 0; j < c.seq_k; ++j) {
        const double x = logit[static_cast<std::size_t>(j)];
        if (x == neg_inf) continue;
        const double w = std::exp(x - m);
        z += w;
        for (idx e = 0; e < s.head_dim_v; ++e)
          r.out(b, i, h, e) += w * static_cast<double>(v(b, j, c.kv_head, e));
      }
      for (idx e = 0; e < s.head_dim_v; ++e) r.out(b, i, h, e) /= z;
      r.lse(b, h, i) = m + std::log(z);
    }
  });
  return r;
}

}  // namespace attn::reference
