// Routing Transformer: content-based sparse attention by online k-means (Roy et al. 2021,
// "Efficient Content-Based Sparse Attention with Routing Transformers", TACL, §4; semantics of
// the widely used port lucidrains/routing-transformer, KmeansAttention).
//
// Per head, C centroids μ_c (a [heads, C, D] tensor, state that lives across calls). Queries
// and keys are normalised for routing only — the paper's LayerNorm without affine parameters
// (routing_norm::layer_norm, ε = 1e-5) or the port's L2 normalisation (routing_norm::l2, the
// default, ε = 1e-12). Balanced clusters: each centroid takes the w = min(window, N) queries
// with the highest norm(q_i) · μ_c, and separately the w keys with the highest norm(k_j) · μ_c
// (the port's top-k over the sequence; ties by the lower position). Inside cluster c the
// logits are q · k / √D of the raw q and k (options::scale overrides), causal on the original
// positions if asked, and, with shared Q/K, a token's logit to itself is −5·10⁴ (the port's
// TOKEN_SELF_ATTN_VALUE; we add it as a bias, which gives the same weights). The port with
// shared_qk also L2-normalises the keys inside the logits and reuses the query clusters for the
// keys; here logits always use the k passed in (pass a normalised k to reproduce the port), and
// with q = k both selections coincide anyway. A token in several clusters gets
// Σ outputs / (count + 1e-5) (the port's scatter_mean), a token in none gets 0.
// A query that sees no key of its cluster contributes 0 (the port's finite mask value would
// average every key of the cluster instead).
//
// State: kmeans_init() seeds centroids from data (k-means with the port's cosine assignment),
// ema_update() is the paper's exponential moving average (decay 0.999) towards the normalised
// mean of the tokens each centroid wins, a separate call as in training.
//
//   attn::centroid_tensor mu = attn::kmeans_init(q, k, 8);
//   auto sel = attn::routing_transformer{.window = 2048}.route(q, k, mu);
//   attn::routing_transformer_attention(q, k, v, out, attn::softmax{}, sel);
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "attn/attention.hpp"
#include "attn/pattern/block_sparse.hpp"
#include "attn/routing/common.hpp"
#include "attn/routing/subsets.hpp"
#include "attn/routing/topk.hpp"

namespace attn {

/// k-means centroids [heads, clusters, head_dim].
using centroid_tensor = Eigen::Tensor<float, 3, Eigen::RowMajor>;

/// How tokens are normalised before they meet the centroids.
enum class routing_norm {
  l2,         ///< x / max(‖x‖, 1e-12): lucidrains/routing-transformer
  layer_norm  ///< (x − mean) / √(var + 1e-5), no affine parameters: the paper
};

namespace detail {

/// Normalises one token of D floats into out (double).
inline void routing_normalise(const float* x, idx D, routing_norm norm, double* out) {
  if (norm == routing_norm::l2) {
    double ss = 0;
    for (idx d = 0; d < D; ++d) ss += static_cast<double>(x[d]) * x[d];
    const double inv = 1.0 / std::max(std::sqrt(ss), 1e-12);
    for (idx d = 0; d < D; ++d) out[d] = x[d] * inv;
    return;
  }
  double mean = 0, var = 0;
  for (idx d = 0; d < D; ++d) mean += x[d];
  mean /= static_cast<double>(std::max<idx>(D, 1));
  for (idx d = 0; d < D; ++d) var += (x[d] - mean) * (x[d] - mean);
  var /= static_cast<double>(std::max<idx>(D, 1));
  const double inv = 1.0 / std::sqrt(var + 1e-5);
  for (idx d = 0; d < D; ++d) out[d] = (x[d] - mean) * inv;
}

/// dist[c · n + t] = norm(x_t) · μ_c for the n tokens of (b, head g) of x and head h's centroids
/// (normalised in double, the C dot products in float over a transposed centroid block so that
/// they vectorise over c).
inline void centroid_scores(const view4<const float>& x, idx b, idx g, const centroid_tensor& mu,
                            idx h, routing_norm norm, std::vector<float>& dist) {
  const idx n = x.seq(), D = x.head_dim(), C = mu.dimension(1);
  dist.assign(static_cast<std::size_t>(C * n), 0.0f);
  std::vector<float> mu_t(static_cast<std::size_t>(D * C)), acc(static_cast<std::size_t>(C));
  for (idx c = 0; c < C; ++c)
    for (idx d = 0; d < D; ++d) mu_t[static_cast<std::size_t>(d * C + c)] = mu(h, c, d);
  std::vector<double> t(static_cast<std::size_t>(D));
  for (idx i = 0; i < n; ++i) {
    routing_normalise(x.row(b, i, g), D, norm, t.data());
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (idx d = 0; d < D; ++d) {
      const auto td = static_cast<float>(t[static_cast<std::size_t>(d)]);
      const float* m = mu_t.data() + d * C;
      for (idx c = 0; c < C; ++c) acc[static_cast<std::size_t>(c)] += td * m[c];
    }
    for (idx c = 0; c < C; ++c)
      dist[static_cast<std::size_t>(c * n + i)] = acc[static_cast<std::size_t>(c)];
  }
}

inline void check_centroids(const char* who, const centroid_tensor& mu, const problem_shape& s) {
  if (mu.dimension(0) != s.heads_q)
    fail(who, ": centroids.dim(0)=", mu.dimension(0), " does not match q.dim(2)=", s.heads_q,
         " (heads)");
  if (mu.dimension(1) < 1)
    fail(who, ": centroids.dim(1)=", mu.dimension(1), " (clusters C) must be >= 1");
  if (mu.dimension(2) != s.head_dim)
    fail(who, ": centroids.dim(2)=", mu.dimension(2), " does not match q.dim(3)=", s.head_dim,
         " (head_dim)");
}

inline problem_shape check_self_attention(const char* who, const view4<const float>& q,
                                          const view4<const float>& k) {
  const problem_shape s = check_qkvo(q, k, k, q);
  if (s.seq_q != s.seq_k)
    fail(who, ": q.dim(1)=", s.seq_q, " does not match k.dim(1)=", s.seq_k,
         " (self-attention: one sequence)");
  return s;
}

}  // namespace detail

/// Which tokens each cluster of each (batch, head) holds; reusable across calls.
class cluster_selection {
 public:
  idx batch() const { return t_.batch; }
  idx heads() const { return t_.heads; }
  idx clusters() const { return t_.per_head; }
  idx window() const { return t_.wq; }  ///< w = min(window, N): tokens per cluster and side
  idx seq() const { return seq_; }
  bool causal() const { return causal_; }
  bool shared_qk() const { return shared_qk_; }
  /// Positions of the queries / keys of cluster c of (b, h), increasing.
  std::span<const idx> queries(idx b, idx h, idx c) const {
    return t_.query_positions((b * t_.heads + h) * t_.per_head + c);
  }
  std::span<const idx> keys(idx b, idx h, idx c) const {
    return t_.key_positions((b * t_.heads + h) * t_.per_head + c);
  }
  /// Computed (query, key) pairs over every cluster / (batch · heads · N²); a pair in two
  /// clusters counts twice.
  double density() const { return density_; }
  const detail::token_subsets& subsets() const { return t_; }

 private:
  friend struct routing_transformer;
  detail::token_subsets t_;
  idx seq_ = 0;
  bool causal_ = false, shared_qk_ = false;
  double density_ = 0;
};

struct routing_transformer {
  idx window = 256;                      ///< w: tokens per cluster (port: window_size)
  bool causal = false;                   ///< causal on original positions
  bool shared_qk = false;                ///< Q and K are the same tensor: self logit −5·10⁴
  routing_norm norm = routing_norm::l2;  ///< routing-only normalisation

  /// Clusters q [B, N, H, D] and k [B, N, Hkv, D] with centroids [H, C, D]. Throws attn::error
  /// for window < 1, C = 0, mismatched centroids or Nq ≠ Nk.
  template <class Q, class K>
  requires detail::row_major_tensor<Q, 4> && detail::row_major_tensor<K, 4> cluster_selection
  route(const Q& q, const K& k, const centroid_tensor& centroids, const options& opt = {})
  const {
    constexpr const char* who = "routing_transformer";
    const detail::view4<const float> qv = detail::view_of(q), kv = detail::view_of(k);
    const detail::problem_shape s = detail::check_self_attention(who, qv, kv);
    detail::check_centroids(who, centroids, s);
    detail::require_positive(who, "window", window);
    cluster_selection sel;
    detail::token_subsets& t = sel.t_;
    const idx C = centroids.dimension(1), n = s.seq_q, w = std::min(window, n);
    t.batch = s.batch;
    t.heads = s.heads_q;
    t.per_head = C;
    t.wq = t.wk = w;
    t.queries.resize(static_cast<std::size_t>(t.items() * w));
    t.keys.resize(t.queries.size());
    const idx group = s.heads_q / s.heads_kv;
    detail::parallel_items(opt, s.batch * s.heads_q, [&](idx item) {
      const idx b = item / s.heads_q, h = item % s.heads_q;
      std::vector<float> dist;
      std::vector<idx> best;
      for (int side = 0; side < 2; ++side) {
        detail::centroid_scores(side == 0 ? qv : kv, b, side == 0 ? h : h / group, centroids, h,
                                norm, dist);
        std::vector<idx>& out = side == 0 ? t.queries : t.keys;
        for (idx c = 0; c < C; ++c) {
          detail::top_k(dist.data() + c * n, n, w, best);
          std::copy(best.begin(), best.end(), out.begin() + (item * C + c) * w);
        }
      }
    });
    sel.seq_ = n;
    sel.causal_ = causal;
    sel.shared_qk_ = shared_qk;
    const double all =
        static_cast<double>(s.batch * s.heads_q) * static_cast<double>(n) * static_cast<double>(n);
    sel.density_ = all > 0 ? detail::subset_pairs(t, causal) / all : 0.0;
    return sel;
  }
};

/// Routing attention of q [B, N, H, D] over k, v [B, N, Hkv, D|Dv] into out [B, N, H, Dv] with
/// the clusters `sel` picked; see the top of this file. Per-head score parameters
/// (sigmoid.head_bias, softmax.sinks), options::lse and lengths are not supported. Throws
/// attn::error before writing anything.
template <class Arch = simd::default_arch, class Q, class K, class V, class O,
          class Score = softmax>
void routing_transformer_attention(const Q& q, const K& k, const V& v, O& out, const Score& score,
                                   const cluster_selection& sel, const options& opt = {}) {
  const auto [qv, kv, vv, ov, s] =
      detail::check_subset_call("routing_transformer_attention", q, k, v, out, score,
                                "cluster_selection", sel.batch(), sel.heads(), sel.seq(), opt);
  const tensor4<float> og = detail::subset_attention<Arch>(qv, kv, vv, score, sel.subsets(),
                                                           sel.causal(), sel.shared_qk(), opt);
  // Σ outputs / (count + 1e-5) per token, per (batch, head) in cluster order: the port's
  // scatter_mean, deterministic.
  const idx C = sel.clusters(), w = sel.window(), Dv = s.head_dim_v;
  detail::parallel_items(opt, s.batch * s.heads_q, [&](idx item) {
    const idx b = item / s.heads_q, h = item % s.heads_q;
    std::vector<float> count(static_cast<std::size_t>(s.seq_q), 0.0f);
    for (idx i = 0; i < s.seq_q; ++i) std::fill(ov.row(b, i, h), ov.row(b, i, h) + Dv, 0.0f);
    for (idx c = 0; c < C; ++c) {
      const auto pq = sel.queries(b, h, c);
      for (idx a = 0; a < w; ++a) {
        const idx i = pq[static_cast<std::size_t>(a)];
        const float* o = og.data() + ((item * C + c) * w + a) * Dv;
        float* row = ov.row(b, i, h);
        for (idx e = 0; e < Dv; ++e) row[e] += o[e];
        count[static_cast<std::size_t>(i)] += 1.0f;
      }
    }
    for (idx i = 0; i < s.seq_q; ++i) {
      const float f = 1.0f / (count[static_cast<std::size_t>(i)] + 1e-5f);
      for (idx e = 0; e < Dv; ++e) ov.row(b, i, h)[e] *= f;
    }
  });
}

namespace detail {

/// For head h: every normalised query and key token of every batch (the port clusters the
/// concatenation of q and k), as rows of D doubles.
inline std::vector<double> routing_points(const view4<const float>& q, const view4<const float>& k,
                                          idx h, routing_norm norm) {
  const idx D = q.head_dim(), n = q.seq(), group = q.heads() / k.heads();
  std::vector<double> points(static_cast<std::size_t>(2 * q.batch() * n * D));
  double* at = points.data();
  for (idx b = 0; b < q.batch(); ++b)
    for (idx i = 0; i < n; ++i, at += D) routing_normalise(q.row(b, i, h), D, norm, at);
  for (idx b = 0; b < q.batch(); ++b)
    for (idx i = 0; i < n; ++i, at += D) routing_normalise(k.row(b, i, h / group), D, norm, at);
  return points;
}

/// One cosine k-means step for head h: each point joins its best centroid (ties: lower index),
/// and each centroid that won any point becomes the normalised sum of its points (the port's
/// kmeans_iter); returns the new centroids [C · D] (empty clusters keep theirs).
inline std::vector<double> kmeans_step(const std::vector<double>& points, idx D,
                                       const std::vector<double>& mu, idx C) {
  std::vector<double> sum(static_cast<std::size_t>(C * D), 0.0);
  std::vector<idx> won(static_cast<std::size_t>(C), 0);
  const idx count = static_cast<idx>(points.size()) / std::max<idx>(D, 1);
  for (idx p = 0; p < count; ++p) {
    const double* x = points.data() + p * D;
    idx best = 0;
    double best_dot = -std::numeric_limits<double>::infinity();
    for (idx c = 0; c < C; ++c) {
      double dot = 0;
      for (idx d = 0; d < D; ++d) dot += x[d] * mu[static_cast<std::size_t>(c * D + d)];
      if (dot > best_dot) best_dot = dot, best = c;
    }
    ++won[static_cast<std::size_t>(best)];
    for (idx d = 0; d < D; ++d) sum[static_cast<std::size_t>(best * D + d)] += x[d];
  }
  std::vector<double> next = mu;
  for (idx c = 0; c < C; ++c) {
    if (won[static_cast<std::size_t>(c)] == 0) continue;
    double ss = 0;
    for (idx d = 0; d < D; ++d)
      ss += sum[static_cast<std::size_t>(c * D + d)] * sum[static_cast<std::size_t>(c * D + d)];
    const double inv = 1.0 / std::max(std::sqrt(ss), 1e-12);
    for (idx d = 0; d < D; ++d)
      next[static_cast<std::size_t>(c * D + d)] = sum[static_cast<std::size_t>(c * D + d)] * inv;
  }
  return next;
}

}  // namespace detail

/// Centroids [H, clusters, D] from data: per head, `clusters` distinct normalised tokens of q
/// and k drawn with std::mt19937_64(seed) (the port samples them at random too), then
/// `iterations` cosine k-means steps (the port's KMEAN_INIT_ITERS = 10).
template <class Q, class K>
centroid_tensor kmeans_init(const Q& q, const K& k, idx clusters, idx iterations = 10,
                            routing_norm norm = routing_norm::l2, std::uint64_t seed = 0,
                            const options& opt = {}) {
  constexpr const char* who = "kmeans_init";
  const detail::view4<const float> qv = detail::view_of(q), kv = detail::view_of(k);
  const detail::problem_shape s = detail::check_self_attention(who, qv, kv);
  if (clusters < 1) detail::fail(who, ": clusters=", clusters, " (C) must be >= 1");
  if (clusters > 2 * s.batch * s.seq_q)
    detail::fail(who, ": clusters=", clusters, " exceeds the ", 2 * s.batch * s.seq_q,
                 " tokens of q and k to draw them from");
  if (iterations < 0) detail::fail(who, ": iterations=", iterations, " must be >= 0");
  const idx D = s.head_dim;
  centroid_tensor mu(s.heads_q, clusters, D);
  detail::parallel_items(opt, s.heads_q, [&](idx h) {
    const std::vector<double> points = detail::routing_points(qv, kv, h, norm);
    const idx count = static_cast<idx>(points.size()) / std::max<idx>(D, 1);
    std::mt19937_64 rng(seed + static_cast<std::uint64_t>(h));
    std::vector<idx> pool(static_cast<std::size_t>(count));
    for (idx p = 0; p < count; ++p) pool[static_cast<std::size_t>(p)] = p;
    std::vector<double> m(static_cast<std::size_t>(clusters * D));
    for (idx c = 0; c < clusters; ++c) {  // partial Fisher–Yates: distinct draws
      const idx pick = c + detail::draw_below(rng, count - c);
      std::swap(pool[static_cast<std::size_t>(c)], pool[static_cast<std::size_t>(pick)]);
      std::copy_n(points.begin() + pool[static_cast<std::size_t>(c)] * D, D, m.begin() + c * D);
    }
    for (idx it = 0; it < iterations; ++it) m = detail::kmeans_step(points, D, m, clusters);
    for (idx c = 0; c < clusters; ++c)
      for (idx d = 0; d < D; ++d)
        mu(h, c, d) = static_cast<float>(m[static_cast<std::size_t>(c * D + d)]);
  });
  return mu;
}

/// The paper's exponential moving average (§4, decay 0.999): μ ← decay·μ + (1 − decay)·μ̂ with
/// μ̂ the normalised sum of the normalised q and k tokens (every batch) each centroid wins;
/// centroids that win nothing stay. Throws attn::error for decay ∉ [0, 1].
template <class Q, class K>
void ema_update(centroid_tensor& centroids, const Q& q, const K& k, double decay = 0.999,
                routing_norm norm = routing_norm::l2, const options& opt = {}) {
  constexpr const char* who = "ema_update";
  const detail::view4<const float> qv = detail::view_of(q), kv = detail::view_of(k);
  const detail::problem_shape s = detail::check_self_attention(who, qv, kv);
  detail::check_centroids(who, centroids, s);
  if (!(decay >= 0.0 && decay <= 1.0)) detail::fail(who, ": decay=", decay, " must be in [0, 1]");
  const idx C = centroids.dimension(1), D = s.head_dim;
  detail::parallel_items(opt, s.heads_q, [&](idx h) {
    std::vector<double> m(static_cast<std::size_t>(C * D));
    for (idx c = 0; c < C; ++c)
      for (idx d = 0; d < D; ++d) m[static_cast<std::size_t>(c * D + d)] = centroids(h, c, d);
    const std::vector<double> next =
        detail::kmeans_step(detail::routing_points(qv, kv, h, norm), D, m, C);
    for (idx c = 0; c < C; ++c)
      for (idx d = 0; d < D; ++d)
        centroids(h, c, d) =
            static_cast<float>(decay * m[static_cast<std::size_t>(c * D + d)] +
                               (1.0 - decay) * next[static_cast<std::size_t>(c * D + d)]);
  });
}

}  // namespace attn
