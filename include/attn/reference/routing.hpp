// Double-precision references of the routers (include/attn/routing/): each router's selection
// restated from its paper in double precision and turned into an explicit element mask (or
// bias), then the masked reference attention of reference/softmax.hpp or reference/sigmoid.hpp.
// Ties are broken by the lower index, as the routers do (routing/topk.hpp).
//
//   moba_mask, sparge_mask          [B, Hq, Nq, Nk] masks for attention(q, k, v, score, mask)
//   biformer_mask                   [B, 1, H·W, H·W] over the map's row-major tokens
//   biformer_attention              the masked reference over the flattened maps, scale
//                                   (heads·D)^−½ unless options::scale
//   routing_transformer_attention   per cluster a bias tensor (0 / −5·10⁴ self / −inf), the
//                                   reference attention, Σ over clusters / (count + 1e-5)
//   mosa_attention                  the mask of the kept tokens ∩ causal, outputs × r
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "attn/pattern/block_sparse.hpp"
#include "attn/pattern/tensor_mask.hpp"
#include "attn/reference/sigmoid.hpp"
#include "attn/reference/softmax.hpp"
#include "attn/routing/routing.hpp"

namespace attn::reference {

namespace detail {

/// Indices of score[0, n) ordered best first: higher score, then lower index.
inline std::vector<idx> ranked(const std::vector<double>& score, idx n) {
  std::vector<idx> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), idx{0});
  std::stable_sort(order.begin(), order.end(), [&](idx a, idx b) {
    return score[static_cast<std::size_t>(a)] > score[static_cast<std::size_t>(b)];
  });
  return order;
}

/// Mean over tokens [j0, j1) of x[b, ·, g, :] in double.
template <class X>
std::vector<double> token_mean(const X& x, idx b, idx g, idx j0, idx j1) {
  const idx D = x.dimension(3);
  std::vector<double> m(static_cast<std::size_t>(D), 0.0);
  for (idx j = j0; j < j1; ++j)
    for (idx d = 0; d < D; ++d) m[static_cast<std::size_t>(d)] += x(b, j, g, d);
  for (double& e : m) e /= static_cast<double>(j1 - j0);
  return m;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t d = 0; d < a.size(); ++d) s += a[d] * b[d];
  return s;
}

template <class X>
std::vector<double> row_of(const X& x, idx b, idx i, idx h) {
  std::vector<double> r(static_cast<std::size_t>(x.dimension(3)));
  for (idx d = 0; d < x.dimension(3); ++d) r[static_cast<std::size_t>(d)] = x(b, i, h, d);
  return r;
}

}  // namespace detail

/// MoBA (Lu et al. 2025): gate q_i · mean(K_c); causal: own block + the k − 1 best earlier
/// blocks, causal mask inside; otherwise the k best blocks.
template <class Q, class K>
bool_tensor4 moba_mask(const Q& q, const K& k, const attn::moba& p) {
  const idx B = q.dimension(0), nq = q.dimension(1), H = q.dimension(2), nk = k.dimension(1);
  const idx group = H / k.dimension(2), blocks = (nk + p.block - 1) / p.block;
  bool_tensor4 m(B, H, nq, nk);
  m.setConstant(false);
  for (idx b = 0; b < B; ++b)
    for (idx h = 0; h < H; ++h) {
      std::vector<std::vector<double>> means;
      for (idx c = 0; c < blocks; ++c)
        means.push_back(
            detail::token_mean(k, b, h / group, c * p.block, std::min(nk, (c + 1) * p.block)));
      for (idx i = 0; i < nq; ++i) {
        const idx pos = i + nk - nq;
        if (p.causal && pos < 0) continue;
        const idx own = p.causal ? pos / p.block : -1;
        const idx candidates = p.causal ? own : blocks;
        const std::vector<double> qi = detail::row_of(q, b, i, h);
        std::vector<double> gate(static_cast<std::size_t>(candidates));
        for (idx c = 0; c < candidates; ++c)
          gate[static_cast<std::size_t>(c)] = detail::dot(qi, means[static_cast<std::size_t>(c)]);
        std::vector<idx> chosen = detail::ranked(gate, candidates);
        chosen.resize(
            static_cast<std::size_t>(std::min(candidates, p.causal ? p.top_k - 1 : p.top_k)));
        if (p.causal) chosen.push_back(own);
        for (idx c : chosen)
          for (idx j = c * p.block; j < std::min(nk, (c + 1) * p.block); ++j)
            m(b, h, i, j) = !p.causal || j <= pos;
      }
    }
  return m;
}

/// SpargeAttn's predictor (Zhang et al. 2025): softmax over the pooled block map, the fewest
/// blocks whose cumulative probability reaches τ (all for τ = 1).
template <class Q, class K>
bool_tensor4 sparge_mask(const Q& q, const K& k, const attn::sparge& p) {
  const idx B = q.dimension(0), nq = q.dimension(1), H = q.dimension(2), nk = k.dimension(1);
  const idx D = q.dimension(3), group = H / k.dimension(2);
  const idx blocks = (nk + p.block_k - 1) / p.block_k, groups = (nq + p.block_q - 1) / p.block_q;
  const double scale = p.scale ? *p.scale : 1.0 / std::sqrt(static_cast<double>(D));
  bool_tensor4 m(B, H, nq, nk);
  m.setConstant(false);
  for (idx b = 0; b < B; ++b)
    for (idx h = 0; h < H; ++h)
      for (idx g = 0; g < groups; ++g) {
        const idx i0 = g * p.block_q, i1 = std::min(nq, i0 + p.block_q);
        const idx last = i1 - 1 + nk - nq;
        if (p.causal && last < 0) continue;
        const idx candidates = p.causal ? std::min(blocks, last / p.block_k + 1) : blocks;
        const std::vector<double> qm = detail::token_mean(q, b, h, i0, i1);
        std::vector<double> s(static_cast<std::size_t>(candidates));
        double top = -std::numeric_limits<double>::infinity(), z = 0;
        for (idx c = 0; c < candidates; ++c) {
          const auto km =
              detail::token_mean(k, b, h / group, c * p.block_k, std::min(nk, (c + 1) * p.block_k));
          s[static_cast<std::size_t>(c)] = scale * detail::dot(qm, km);
          top = std::max(top, s[static_cast<std::size_t>(c)]);
        }
        for (double x : s) z += std::exp(x - top);
        double cumulative = 0;
        for (idx c : detail::ranked(s, candidates)) {
          for (idx i = i0; i < i1; ++i)
            for (idx j = c * p.block_k; j < std::min(nk, (c + 1) * p.block_k); ++j)
              m(b, h, i, j) = !p.causal || j <= i + nk - nq;
          cumulative += std::exp(s[static_cast<std::size_t>(c)] - top) / z;
          if (p.tau < 1.0f && cumulative >= static_cast<double>(p.tau)) break;
        }
      }
  return m;
}

/// BiFormer (Zhu et al. 2023): region means over all heads' channels (padded regions divide by
/// their padded size), Aʳ = Qʳ·Kʳᵀ, each region's top-k; mask [B, 1, H·W, H·W].
template <class Q, class K>
bool_tensor4 biformer_mask(const Q& q, const K& k, const attn::biformer& p) {
  const idx B = q.dimension(0), Hm = q.dimension(1), Wm = q.dimension(2), heads = q.dimension(3);
  const idx D = q.dimension(4), kv_heads = k.dimension(3), group = heads / kv_heads;
  const idx S = p.regions, R = S * S, rh = (Hm + S - 1) / S, rw = (Wm + S - 1) / S;
  auto region = [&](idx y, idx x) { return (y / rh) * S + x / rw; };
  bool_tensor4 m(B, 1, Hm * Wm, Hm * Wm);
  m.setConstant(false);
  for (idx b = 0; b < B; ++b) {
    // Qʳ over q's channels, Kʳ over k's; query head h meets K/V head h / group.
    std::vector<double> qr(static_cast<std::size_t>(R * heads * D), 0.0),
        kr(static_cast<std::size_t>(R * kv_heads * D), 0.0);
    for (idx y = 0; y < Hm; ++y)
      for (idx x = 0; x < Wm; ++x) {
        const idx r = region(y, x);
        for (idx h = 0; h < heads; ++h)
          for (idx d = 0; d < D; ++d)
            qr[static_cast<std::size_t>((r * heads + h) * D + d)] += q(b, y, x, h, d);
        for (idx h = 0; h < kv_heads; ++h)
          for (idx d = 0; d < D; ++d)
            kr[static_cast<std::size_t>((r * kv_heads + h) * D + d)] += k(b, y, x, h, d);
      }
    const double t = static_cast<double>(rh * rw);
    for (idx r = 0; r < R; ++r) {
      std::vector<double> a(static_cast<std::size_t>(R), 0.0);
      for (idx r2 = 0; r2 < R; ++r2)
        for (idx h = 0; h < heads; ++h)
          for (idx d = 0; d < D; ++d)
            a[static_cast<std::size_t>(r2)] +=
                (qr[static_cast<std::size_t>((r * heads + h) * D + d)] / t) *
                (kr[static_cast<std::size_t>((r2 * kv_heads + h / group) * D + d)] / t);
      std::vector<idx> chosen = detail::ranked(a, R);
      chosen.resize(static_cast<std::size_t>(p.top_k));
      for (idx i = 0; i < Hm * Wm; ++i) {
        if (region(i / Wm, i % Wm) != r) continue;
        for (idx j = 0; j < Hm * Wm; ++j)
          m(b, 0, i, j) =
              std::find(chosen.begin(), chosen.end(), region(j / Wm, j % Wm)) != chosen.end();
      }
    }
  }
  return m;
}

/// Bi-level routing attention over the flattened maps [B, H·W, heads, D]: the masked reference
/// attention, scale (heads·D)^−½ unless options::scale; result.out is [B, H·W, heads, Dv].
template <class Q, class K, class V, class Score>
result biformer_attention(const Q& q, const K& k, const V& v, const Score& score,
                          const attn::biformer& p, attn::options opt = {}) {
  using map = Eigen::TensorMap<const tensor4<float>>;
  const auto flat = [](const auto& x) {
    return map(x.data(), x.dimension(0), x.dimension(1) * x.dimension(2), x.dimension(3),
               x.dimension(4));
  };
  if (!opt.scale) opt.scale = 1.0f / std::sqrt(static_cast<float>(q.dimension(3) * q.dimension(4)));
  const bool_tensor4 m = biformer_mask(q, k, p);
  return attention(flat(q), flat(k), flat(v), score, attn::mask{m}, opt);
}

/// Routing Transformer (Roy et al. 2021; lucidrains/routing-transformer): per centroid the w
/// queries and the w keys of highest normalised-token · centroid score; inside a cluster raw
/// logits, causal on positions, self −5·10⁴ with shared Q/K; Σ over clusters / (count + 1e-5).
template <class Q, class K, class V, class Score>
result routing_transformer_attention(const Q& q, const K& k, const V& v, const Score& score,
                                     const attn::centroid_tensor& mu,
                                     const attn::routing_transformer& p,
                                     const attn::options& opt = {}) {
  const idx B = q.dimension(0), n = q.dimension(1), H = q.dimension(2), D = q.dimension(3);
  const idx Dv = v.dimension(3), group = H / k.dimension(2), C = mu.dimension(1);
  const idx w = std::min(p.window, n);
  auto normalised = [&](const std::vector<double>& x) {
    std::vector<double> y = x;
    if (p.norm == attn::routing_norm::l2) {
      const double len = std::max(std::sqrt(detail::dot(x, x)), 1e-12);
      for (double& e : y) e /= len;
    } else {
      const double mean = std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(D);
      double var = 0;
      for (double e : x) var += (e - mean) * (e - mean);
      var /= static_cast<double>(D);
      for (double& e : y) e = (e - mean) / std::sqrt(var + 1e-5);
    }
    return y;
  };
  result r{tensor4d(B, n, H, Dv), lse3d()};
  r.out.setZero();
  tensor4d count(B, n, H, 1);
  count.setZero();
  for (idx c = 0; c < C; ++c) {
    tensor4<float> bias(B, H, n, n);
    bias.setConstant(-std::numeric_limits<float>::infinity());
    std::vector<std::vector<idx>> members(static_cast<std::size_t>(B * H));
    for (idx b = 0; b < B; ++b)
      for (idx h = 0; h < H; ++h) {
        std::vector<double> centroid(static_cast<std::size_t>(D));
        for (idx d = 0; d < D; ++d) centroid[static_cast<std::size_t>(d)] = mu(h, c, d);
        std::vector<double> sq(static_cast<std::size_t>(n)), sk(sq.size());
        for (idx i = 0; i < n; ++i) {
          sq[static_cast<std::size_t>(i)] =
              detail::dot(normalised(detail::row_of(q, b, i, h)), centroid);
          sk[static_cast<std::size_t>(i)] =
              detail::dot(normalised(detail::row_of(k, b, i, h / group)), centroid);
        }
        std::vector<idx> qs = detail::ranked(sq, n), ks = detail::ranked(sk, n);
        qs.resize(static_cast<std::size_t>(w));
        ks.resize(static_cast<std::size_t>(w));
        for (idx i : qs)
          for (idx j : ks)
            if (!p.causal || j <= i) bias(b, h, i, j) = p.shared_qk && i == j ? -5e4f : 0.0f;
        members[static_cast<std::size_t>(b * H + h)] = qs;
      }
    const result part = attention(q, k, v, score, attn::bias{bias}, opt);
    for (idx b = 0; b < B; ++b)
      for (idx h = 0; h < H; ++h)
        for (idx i : members[static_cast<std::size_t>(b * H + h)]) {
          count(b, i, h, 0) += 1;
          for (idx e = 0; e < Dv; ++e) r.out(b, i, h, e) += part.out(b, i, h, e);
        }
  }
  for (idx b = 0; b < B; ++b)
    for (idx i = 0; i < n; ++i)
      for (idx h = 0; h < H; ++h)
        for (idx e = 0; e < Dv; ++e) r.out(b, i, h, e) /= count(b, i, h, 0) + 1e-5;
  return r;
}

/// MoSA (Piękos et al. 2025): each head keeps the top_k tokens by r (token 0 forced with
/// include_first), causal attention among them, outputs × r; other tokens 0.
template <class Q, class K, class V, class R, class Score>
result mosa_attention(const Q& q, const K& k, const V& v, const Score& score, const R& r,
                      const attn::mosa& p, const attn::options& opt = {}) {
  const idx B = q.dimension(0), n = q.dimension(1), H = q.dimension(2), Dv = v.dimension(3);
  bool_tensor4 m(B, H, n, n);
  m.setConstant(false);
  std::vector<bool> kept(static_cast<std::size_t>(B * H * n), false);
  for (idx b = 0; b < B; ++b)
    for (idx h = 0; h < H; ++h) {
      std::vector<double> s(static_cast<std::size_t>(n));
      for (idx i = 0; i < n; ++i) s[static_cast<std::size_t>(i)] = r(b, i, h);
      if (p.include_first) s[0] = std::numeric_limits<double>::infinity();
      std::vector<idx> chosen = detail::ranked(s, n);
      chosen.resize(static_cast<std::size_t>(p.top_k));
      for (idx i : chosen) kept[static_cast<std::size_t>((b * H + h) * n + i)] = true;
      for (idx i : chosen)
        for (idx j : chosen) m(b, h, i, j) = j <= i;
    }
  result out = attention(q, k, v, score, attn::mask{m}, opt);
  for (idx b = 0; b < B; ++b)
    for (idx i = 0; i < n; ++i)
      for (idx h = 0; h < H; ++h) {
        const bool in = kept[static_cast<std::size_t>((b * H + h) * n + i)];
        for (idx e = 0; e < Dv; ++e)
          out.out(b, i, h, e) = in ? out.out(b, i, h, e) * r(b, i, h) : 0.0;
      }
  out.lse = lse3d();
  return out;
}

}  // namespace attn::reference
