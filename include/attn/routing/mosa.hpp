// MoSA: Mixture of Sparse Attention (Piękos et al. 2025, "Mixture of Sparse Attention:
// Content-Based Learnable Sparse Attention via Expert-Choice Routing", §3).
//
// Per head a router scores every token, r_t = σ(x_t · w_h) (computed by the caller: this
// kernel-level API takes the scores r [B, N, H]). Expert choice: each head keeps the top_k
// tokens of highest r (ties: lower position) — optionally always token 0 (include_first, then
// the top_k − 1 best of the others) — runs causal attention among them in their original order
// (q, k, v rows of the kept tokens only, logits q · k / √D), and scatters its outputs back
// multiplied by r: out_t = r_t · Attn(t) for kept tokens, 0 for the others.
// Grouped-query attention: query head h reads the kept rows of K/V head h / (H / Hkv).
//
//   auto sel = attn::mosa{.top_k = 1024}.route(r);
//   attn::mosa_attention(q, k, v, out, attn::softmax{}, sel);
#pragma once

#include <algorithm>
#include <span>
#include <vector>

#include "attn/attention.hpp"
#include "attn/routing/common.hpp"
#include "attn/routing/subsets.hpp"
#include "attn/routing/topk.hpp"

namespace attn {

/// Per-token router scores [batch, seq, heads].
using token_scores = Eigen::Tensor<float, 3, Eigen::RowMajor>;

/// The tokens each (batch, head) kept, with their router scores; reusable across calls.
class token_selection {
 public:
  idx batch() const { return t_.batch; }
  idx heads() const { return t_.heads; }
  idx seq() const { return seq_; }
  idx top_k() const { return t_.wq; }
  /// Positions kept by (b, h), increasing.
  std::span<const idx> tokens(idx b, idx h) const { return t_.query_positions(b * t_.heads + h); }
  /// r of those tokens, in the same order.
  std::span<const float> weights(idx b, idx h) const {
    return std::span<const float>(weights_).subspan(
        static_cast<std::size_t>((b * t_.heads + h) * t_.wq), static_cast<std::size_t>(t_.wq));
  }
  /// Causal pairs among the kept tokens / (batch · heads · N²).
  double density() const { return density_; }
  const detail::token_subsets& subsets() const { return t_; }

 private:
  friend struct mosa;
  detail::token_subsets t_;
  std::vector<float> weights_;
  idx seq_ = 0;
  double density_ = 0;
};

struct mosa {
  idx top_k = 64;              ///< tokens each head keeps (the paper's k)
  bool include_first = false;  ///< always keep token 0

  /// Selects from r [B, N, H]. Throws attn::error for top_k outside [1, N].
  template <class R>
  requires detail::row_major_tensor<R, 3> token_selection route(const R& r, const options& opt = {})
  const {
    const idx B = r.dimension(0), n = r.dimension(1), H = r.dimension(2);
    if (top_k < 1 || top_k > n)
      detail::fail("mosa: top_k=", top_k, " must be in [1, ", n, "] (r.dim(1)=", n, " tokens)");
    token_selection sel;
    detail::token_subsets& t = sel.t_;
    t.batch = B;
    t.heads = H;
    t.per_head = 1;
    t.wq = t.wk = top_k;
    t.queries.resize(static_cast<std::size_t>(B * H * top_k));
    sel.weights_.resize(t.queries.size());
    const auto* data = r.data();
    detail::parallel_items(opt, B * H, [&](idx item) {
      const idx b = item / H, h = item % H;
      std::vector<float> score(static_cast<std::size_t>(n));
      for (idx i = 0; i < n; ++i) score[static_cast<std::size_t>(i)] = data[(b * n + i) * H + h];
      std::vector<idx> best;
      if (include_first) {  // token 0, then the best top_k − 1 of tokens 1 .. N − 1
        detail::top_k(score.data() + 1, n - 1, top_k - 1, best);
        for (idx& i : best) ++i;
        best.insert(best.begin(), 0);
      } else {
        detail::top_k(score.data(), n, top_k, best);
      }
      for (idx a = 0; a < top_k; ++a) {
        const idx i = best[static_cast<std::size_t>(a)];
        t.queries[static_cast<std::size_t>(item * top_k + a)] = i;
        sel.weights_[static_cast<std::size_t>(item * top_k + a)] =
            score[static_cast<std::size_t>(i)];
      }
    });
    t.keys = t.queries;
    sel.seq_ = n;
    const double all = static_cast<double>(B * H) * static_cast<double>(n) * static_cast<double>(n);
    sel.density_ = all > 0 ? static_cast<double>(B * H) * static_cast<double>(top_k) *
                                 static_cast<double>(top_k + 1) / 2.0 / all
                           : 0.0;
    return sel;
  }
};

/// MoSA attention of q [B, N, H, D] over k, v [B, N, Hkv, D|Dv] into out [B, N, H, Dv] with the
/// tokens `sel` kept; see the top of this file. Per-head score parameters, options::lse and
/// lengths are not supported. Throws attn::error before writing anything.
template <class Arch = simd::default_arch, class Q, class K, class V, class O,
          class Score = softmax>
void mosa_attention(const Q& q, const K& k, const V& v, O& out, const Score& score,
                    const token_selection& sel, const options& opt = {}) {
  const auto [qv, kv, vv, ov, s] =
      detail::check_subset_call("mosa_attention", q, k, v, out, score, "token_selection",
                                sel.batch(), sel.heads(), sel.seq(), opt);
  const tensor4<float> og =
      detail::subset_attention<Arch>(qv, kv, vv, score, sel.subsets(), true, false, opt);
  const idx w = sel.top_k(), Dv = s.head_dim_v;
  detail::parallel_items(opt, s.batch * s.heads_q, [&](idx item) {
    const idx b = item / s.heads_q, h = item % s.heads_q;
    for (idx i = 0; i < s.seq_q; ++i) std::fill(ov.row(b, i, h), ov.row(b, i, h) + Dv, 0.0f);
    const auto tokens = sel.tokens(b, h);
    const auto r = sel.weights(b, h);
    for (idx a = 0; a < w; ++a) {
      const float* o = og.data() + (item * w + a) * Dv;
      float* row = ov.row(b, tokens[static_cast<std::size_t>(a)], h);
      for (idx e = 0; e < Dv; ++e) row[e] = r[static_cast<std::size_t>(a)] * o[e];
    }
  });
}

}  // namespace attn
