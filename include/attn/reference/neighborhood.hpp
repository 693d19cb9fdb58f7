// The double-precision references of the grid patterns — neighborhood attention (Hassani et al.
// 2023 NAT, 2022 DiNAT, 2025 GNA; NATTEN's reference mask) and HaloNet's blocked local attention
// (Vaswani et al. 2021) — written from their definitions, independently of the tables
// pattern/neighborhood.hpp and pattern/halo.hpp build:
//
//   window(x)         the keys of query coordinate x in one dimension, as the definition states
//                     them (group, group coordinate, stride leader, centre or causal end);
//   logit_term(...)   query i sees key j iff in every dimension j's coordinate is one of
//                     window(i's coordinate) — the rule reference/softmax.hpp and sigmoid.hpp
//                     apply to every pair (found by argument-dependent lookup);
//   grid_attention()  the rank-(3+K) entry: the tensors flattened row-major, extents filled, and
//                     optionally additional keys/values every query sees (concatenated after
//                     the grid's keys: one softmax over window ∪ additional keys).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

#include <unsupported/Eigen/CXX11/Tensor>

#include "attn/pattern/halo.hpp"
#include "attn/pattern/neighborhood.hpp"
#include "attn/reference/patterns.hpp"
#include "attn/reference/sigmoid.hpp"
#include "attn/reference/softmax.hpp"

namespace attn::reference {

/// The keys of a query coordinate in one dimension: first, first + step, …, last.
struct axis_window {
  idx first = 0, last = -1, step = 1;
  bool contains(idx y) const { return y >= first && y <= last && (y - first) % step == 0; }
  idx size() const { return last < first ? 0 : (last - first) / step + 1; }
};

/// Neighborhood window of coordinate x in a dimension of extent L (kernel k, dilation d,
/// stride s), from the definition:
///   dilation groups (DiNAT §3.1): g = x mod d, x′ = ⌊x/d⌋, the group has ⌈(L − g)/d⌉ members;
///   non-causal (NAT §3.1, stride: GNA §3): the stride group's centre query leads,
///     ℓ = min(s⌊x′/s⌋ + ⌊s/2⌋, L_g − 1), and the k keys around it, ⌊k/2⌋ to the left and
///     k − 1 − ⌊k/2⌋ to the right, are shifted inside the group when they would leave it;
///   causal: the stride group's last query leads, ℓ = min(s⌊x′/s⌋ + s − 1, L_g − 1); the keys
///     are the k up to ℓ, but none after x′ itself.
inline axis_window neighborhood_window(idx x, idx L, idx k, idx d, idx s, bool causal) {
  const idx g = x % d, xg = x / d;
  idx group_length = 0;
  for (idx y = g; y < L; y += d) ++group_length;  // ⌈(L − g)/d⌉, counted
  idx first = 0, last = 0;
  if (causal) {
    const idx leader = std::min(s * (xg / s) + s - 1, group_length - 1);
    first = std::max<idx>(leader - (k - 1), 0);
    last = xg;
  } else {
    const idx left = k / 2, right = k - 1 - k / 2;
    const idx leader = std::min(s * (xg / s) + s / 2, group_length - 1);
    first = leader - left;
    last = leader + right;
    if (first < 0) {  // shift right, keeping k keys
      last -= first;
      first = 0;
    }
    if (last > group_length - 1) {  // shift left
      first -= last - (group_length - 1);
      last = group_length - 1;
    }
  }
  return {first * d + g, last * d + g, d};
}

/// HaloNet window of coordinate x: its block of b plus h on each side, inside [0, L).
inline axis_window halo_window(idx x, idx L, idx b, idx h) {
  const idx start = x / b * b;
  return {std::max<idx>(start - h, 0), std::min(start + b + h, L) - 1, 1};
}

namespace detail {

/// Row-major coordinates of flat token t in a grid of extents x.
template <int K>
std::array<idx, K> grid_coords(idx t, const std::array<idx, K>& x) {
  std::array<idx, K> c{};
  for (int d = K - 1; d >= 0; --d) {
    const auto u = static_cast<std::size_t>(d);
    c[u] = t % x[u];
    t /= x[u];
  }
  return c;
}

template <int K, class Window>
double grid_term(const std::array<idx, K>& extent, idx i, idx j, Window window) {
  const auto x = grid_coords<K>(i, extent), y = grid_coords<K>(j, extent);
  for (std::size_t d = 0; d < K; ++d)
    if (!window(d, x[d]).contains(y[d])) return neg_inf;
  return 0.0;
}

/// neighborhood<K>: visible iff in every dimension (extents as prepared: set, or 1-D = N).
template <int K>
double logit_term(const attn::neighborhood<K>& p, const pair_ctx&, idx i, idx j) {
  return grid_term<K>(p.extent, i, j, [&](std::size_t d, idx x) {
    return neighborhood_window(x, p.extent[d], p.kernel[d], p.dilation[d], p.stride[d],
                               p.causal[d]);
  });
}

/// blocked_local<K>: visible iff in every dimension.
template <int K>
double logit_term(const attn::blocked_local<K>& p, const pair_ctx&, idx i, idx j) {
  return grid_term<K>(p.extent, i, j, [&](std::size_t d, idx x) {
    return halo_window(x, p.extent[d], p.block[d], p.halo[d]);
  });
}

/// A grid pattern over the first `tokens` keys, followed by keys every query sees.
template <class P>
struct with_additional {
  P grid;
  idx tokens = 0;
};

template <class P>
double logit_term(const with_additional<P>& p, const pair_ctx& c, idx i, idx j) {
  return j < p.tokens ? logit_term(p.grid, c, i, j) : 0.0;
}

template <class P>
void check_pattern(const with_additional<P>& p, const attn::detail::problem_shape& s) {
  attn::detail::problem_shape grid = s;
  grid.seq_k = p.tokens;
  p.grid.check(grid);
}

/// x as a rank-4 [batch, X1·…·XK, heads, head_dim] map, no copy.
template <class X>
auto flat(const X& x) {
  constexpr int R = attn::detail::plain_t<X>::NumIndices;
  Eigen::Index tokens = 1;
  for (int d = 1; d < R - 2; ++d) tokens *= x.dimension(d);
  return attn::const_tensor4_map<float>(x.data(), x.dimension(0), tokens, x.dimension(R - 2),
                                        x.dimension(R - 1));
}

/// [a; b] along the token dimension.
template <class A, class B>
attn::tensor4<float> concat_tokens(const A& a, const B& b) {
  attn::tensor4<float> r(a.dimension(0), a.dimension(1) + b.dimension(1), a.dimension(2),
                         a.dimension(3));
  for (Eigen::Index n = 0; n < r.dimension(0); ++n)
    for (Eigen::Index t = 0; t < r.dimension(1); ++t)
      for (Eigen::Index h = 0; h < r.dimension(2); ++h)
        for (Eigen::Index e = 0; e < r.dimension(3); ++e)
          r(n, t, h, e) = t < a.dimension(1) ? a(n, t, h, e) : b(n, t - a.dimension(1), h, e);
  return r;
}

}  // namespace detail

/// Grid attention of rank-(3+K) q, k, v [batch, X1..XK, heads, head_dim] with a grid pattern
/// (neighborhood<K> or blocked_local<K>), softmax or sigmoid; the result is on the flattened
/// tokens, [batch, X1·…·XK, heads, head_dim_v]. The spatial extents are q's.
template <class Q, class K, class V, class Score, class P>
result grid_attention(const Q& q, const K& k, const V& v, const Score& score, P pattern,
                      const attn::options& opt = {}) {
  for (int d = 0; d < P::rank; ++d)
    pattern.extent[static_cast<std::size_t>(d)] = q.dimension(d + 1);
  return attention(detail::flat(q), detail::flat(k), detail::flat(v), score, pattern, opt);
}

/// The same, every query also seeing the rank-4 additional keys/values [batch, n, heads_kv, ·]:
/// one softmax over its window and all of them.
template <class Q, class K, class V, class P, class KA, class VA>
result grid_attention(const Q& q, const K& k, const V& v, const attn::softmax& score, P pattern,
                      const attn::options& opt, const KA& k_add, const VA& v_add) {
  for (int d = 0; d < P::rank; ++d)
    pattern.extent[static_cast<std::size_t>(d)] = q.dimension(d + 1);
  const auto kf = detail::flat(k);
  const detail::with_additional<P> p{pattern, kf.dimension(1)};
  return attention(detail::flat(q), detail::concat_tokens(kf, k_add),
                   detail::concat_tokens(detail::flat(v), v_add), score, p, opt);
}

}  // namespace attn::reference
