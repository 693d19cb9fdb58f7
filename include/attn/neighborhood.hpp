// attn::attention over a grid: tensors of rank 3+K, [batch, X1, …, XK, heads, head_dim]
// (row-major Tensor or TensorMap; GQA and head_dim_v ≠ head_dim as for rank 4), with a grid
// pattern — attn::neighborhood<K> (pattern/neighborhood.hpp) or attn::blocked_local<K>
// (pattern/halo.hpp):
//
//   attn::attention(q, k, v, out, attn::softmax{}, attn::neighborhood<2>{.kernel = {7, 7}});
//   attn::attention(q, k, v, out, attn::softmax{}, nb, opt, attn::additional_kv{k_add, v_add});
//
// The spatial extents of q, k, v and out must agree; they become the pattern's extents, and the
// tensors are viewed (not copied) as rank 4 [batch, X1·…·XK, heads, head_dim], the grid flattened
// row-major, for the rank-4 entry point; options apply to those flattened tokens (opt.lse is
// [batch, heads, X1·…·XK]). (K = 1 tensors are rank 4 already: the rank-4 entry takes them with
// the pattern's extent left at 0.)
//
// additional_kv: extra keys and values [batch, n_add, heads_kv, head_dim(_v)] every query sees
// besides its window (NATTEN's additional_keys / additional_values). Softmax only: the window
// part and the extra part are two attention calls whose results are merged exactly by their
// log-sum-exps (merge.hpp) — o = (e^{L_w}·o_w + e^{L_a}·o_a)/(e^{L_w} + e^{L_a}).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <type_traits>
#include <utility>

#include "attn/attention.hpp"
#include "attn/dilation_groups.hpp"
#include "attn/merge.hpp"
#include "attn/pattern/halo.hpp"
#include "attn/pattern/neighborhood.hpp"

namespace attn {

/// Extra keys/values every query sees: rank-4 [batch, n_add, heads_kv, head_dim(_v)] tensors or
/// maps, held by reference for the duration of the call.
template <class KA, class VA>
struct additional_kv {
  const KA& k;
  const VA& v;
};
template <class KA, class VA>
additional_kv(const KA&, const VA&) -> additional_kv<KA, VA>;

namespace detail {

/// A pattern over a K-dimensional grid: it has a rank and extents for the entry to fill.
template <class P>
concept grid_pattern = requires(P p) {
  { P::rank } -> std::convertible_to<int>;
  p.extent[0] = idx{};
};

template <class X, int R>
concept float_grid = row_major_tensor<X, R> && std::is_same_v < scalar_of<X>,
float > ;

/// The name of dimension d of a rank-R grid tensor: batch, X1..XK, heads, head_dim.
inline const char* grid_dim_name(int d, int rank) {
  constexpr const char* spatial[] = {"X1", "X2", "X3"};
  if (d == 0) return "batch";
  if (d == rank - 2) return "heads";
  if (d == rank - 1) return "head_dim";
  return spatial[d - 1];
}

/// The rank-(3+K) shape rules, with the tensors' own dimension numbers in the messages.
template <class Q, class K, class V, class O>
void check_grid_tensors(const Q& q, const K& k, const V& v, const O& out) {
  constexpr int R = plain_t<Q>::NumIndices, H = R - 2, E = R - 1;
  auto same = [&](const char* a, const auto& x, int dx, const char* b, const auto& y, int dy) {
    if (x.dimension(dx) != y.dimension(dy))
      fail(a, ".dim(", dx, ")=", x.dimension(dx), " does not match ", b, ".dim(", dy,
           ")=", y.dimension(dy), " (", grid_dim_name(dx, R), ")");
  };
  for (int d = 0; d < H; ++d) {  // batch and the spatial extents
    same("k", k, d, "q", q, d);
    same("v", v, d, "q", q, d);
    same("out", out, d, "q", q, d);
  }
  same("v", v, H, "k", k, H);
  same("k", k, E, "q", q, E);
  same("out", out, H, "q", q, H);
  same("out", out, E, "v", v, E);
  if (k.dimension(H) == 0 ? q.dimension(H) != 0 : q.dimension(H) % k.dimension(H) != 0)
    fail("k.dim(", H, ")=", k.dimension(H), " does not divide q.dim(", H, ")=", q.dimension(H),
         " (heads)");
}

/// x viewed as rank 4 [batch, X1·…·XK, heads, head_dim] (const for const x), no copy.
template <class X>
auto flat_view(X& x) {
  constexpr int R = plain_t<X>::NumIndices;
  Eigen::Index tokens = 1;
  for (int d = 1; d < R - 2; ++d) tokens *= x.dimension(d);
  using T = std::remove_pointer_t<decltype(x.data())>;
  return Eigen::TensorMap<
      std::conditional_t<std::is_const_v<T>, const tensor4<float>, tensor4<float>>>(
      x.data(), x.dimension(0), tokens, x.dimension(R - 2), x.dimension(R - 1));
}

/// The pattern with its extents taken from q's spatial dimensions.
template <class P, class Q>
P with_extents(const P& pattern, const Q& q) {
  P p = pattern;
  for (int d = 0; d < P::rank; ++d) p.extent[static_cast<std::size_t>(d)] = q.dimension(d + 1);
  return p;
}

/// Whether a call runs as one undilated problem per dilation group (dilation_groups.hpp):
/// some dilation > 1, and no option tied to the flattened token order (lengths, LSE).
template <class P>
bool splits_dilation(const P& pattern, const options& opt) {
  if constexpr (requires { pattern.dilation; }) {
    const bool dilated =
        std::any_of(pattern.dilation.begin(), pattern.dilation.end(), [](idx d) { return d > 1; });
    return dilated && !opt.lse && opt.key_lengths.empty() && opt.query_lengths.empty();
  } else {
    return false;
  }
}

/// The score for a part of the keys that must behave as over all `keys` keys: sigmoid's
/// default bias −ln(key length) is pinned to the whole problem's length.
template <class Score>
Score over_all_keys(Score score, idx keys) {
  if constexpr (requires {
                  score.bias = 0.0f;
                  score.head_bias.empty();
                })
    if (!score.bias && score.head_bias.empty())
      score.bias = keys > 0 ? -std::log(static_cast<float>(keys)) : 0.0f;
  return score;
}

/// Dilated neighborhood attention as Π d_i undilated problems over the residue groups'
/// sub-grids (dilation_groups.hpp); the same result as the direct call, every check first.
template <class Arch, int K, class Q, class KT, class V, class O, class Score>
void attention_by_dilation_group(const Q& q, const KT& k, const V& v, O& out, const Score& score,
                                 const neighborhood<K>& pattern, const options& opt) {
  const auto qf = view_of(flat_view(q)), kf = view_of(flat_view(k)), vf = view_of(flat_view(v));
  const auto of = view_of(flat_view(out));
  const problem_shape shape = check_qkvo(qf, kf, vf, of);
  check_out_disjoint(qf, kf, vf, of);
  score.check(shape);
  pattern.check(shape);
  check_options(opt, shape);

  const dilation_groups<K> groups{pattern.extent, pattern.dilation};
  neighborhood<K> sub = pattern;
  sub.dilation = filled<K>(1);
  const Score sub_score = over_all_keys(score, shape.seq_k);
  tensor4<float> qg, kg, vg, og;
  for (idx index = 0; index < groups.count(); ++index) {
    const std::array<idx, K> g = groups.residues(index);
    sub.extent = groups.sub_extent(g);
    idx tokens = 1;
    for (idx x : sub.extent) tokens *= x;
    gather_group(groups, g, view4<const float>(qf), qg, tokens);
    gather_group(groups, g, view4<const float>(kf), kg, tokens);
    gather_group(groups, g, view4<const float>(vf), vg, tokens);
    og.resize(shape.batch, tokens, shape.heads_q, shape.head_dim_v);
    attention<Arch>(std::as_const(qg), std::as_const(kg), std::as_const(vg), og, sub_score, sub,
                    opt);
    scatter_group(groups, g, og, of);
  }
}

}  // namespace detail

/// Attention over a K-dimensional grid (K = 2, 3; see the top of this file).
template <class Arch = simd::default_arch, class Q, class K, class V, class O, class Score,
          detail::grid_pattern P>
requires(P::rank >= 2 && detail::float_grid<Q, 3 + P::rank> && detail::float_grid<K, 3 + P::rank> &&
         detail::float_grid<V, 3 + P::rank> &&
         detail::float_grid<std::remove_reference_t<O>,
                            3 + P::rank>) void attention(const Q& q, const K& k, const V& v,
                                                         O&& out, const Score& score,
                                                         const P& pattern,
                                                         const options& opt = {}) {
  detail::check_grid_tensors(q, k, v, out);
  if (detail::splits_dilation(pattern, opt)) {
    if constexpr (requires { pattern.dilation; })
      detail::attention_by_dilation_group<Arch>(q, k, v, out, score,
                                                detail::with_extents(pattern, q), opt);
    return;
  }
  auto of = detail::flat_view(out);
  attention<Arch>(detail::flat_view(q), detail::flat_view(k), detail::flat_view(v), of, score,
                  detail::with_extents(pattern, q), opt);
}

/// Grid attention whose queries also see `extra` (any K, softmax: see the top of this file).
/// opt.key_lengths apply to the grid's flattened keys only; every extra key is visible.
template <class Arch = simd::default_arch, class Q, class K, class V, class O, class Score,
          detail::grid_pattern P, class KA, class VA>
requires(
    Score::has_lse&& detail::float_grid<Q, 3 + P::rank>&& detail::float_grid<K, 3 + P::rank>&&
        detail::float_grid<V, 3 + P::rank>&&
            detail::float_grid<std::remove_reference_t<O>, 3 + P::rank>&& detail::float_input<KA>&&
                detail::float_input<VA>) void attention(const Q& q, const K& k, const V& v, O&& out,
                                                        const Score& score, const P& pattern,
                                                        const options& opt,
                                                        const additional_kv<KA, VA>& extra) {
  constexpr int H = 1 + P::rank, E = 2 + P::rank;
  detail::check_grid_tensors(q, k, v, out);
  // The extra tensors, checked before anything is written (the first call writes out).
  auto same = [](const char* a, const auto& x, int dx, const char* b, const auto& y, int dy,
                 const char* what) {
    if (x.dimension(dx) != y.dimension(dy))
      detail::fail(a, ".dim(", dx, ")=", x.dimension(dx), " does not match ", b, ".dim(", dy,
                   ")=", y.dimension(dy), " (", what, ")");
  };
  same("additional_kv.k", extra.k, 0, "q", q, 0, "batch");
  same("additional_kv.k", extra.k, 2, "k", k, H, "heads");
  same("additional_kv.k", extra.k, 3, "q", q, E, "head_dim");
  same("additional_kv.v", extra.v, 0, "q", q, 0, "batch");
  same("additional_kv.v", extra.v, 1, "additional_kv.k", extra.k, 1, "additional keys");
  same("additional_kv.v", extra.v, 2, "k", k, H, "heads");
  same("additional_kv.v", extra.v, 3, "v", v, E, "head_dim_v");

  const auto qf = detail::flat_view(q);
  auto of = detail::flat_view(out);
  const idx B = qf.dimension(0), N = qf.dimension(1), Hq = qf.dimension(2);
  const idx Dv = of.dimension(3);
  lse_tensor own_lse;
  options window_opt = opt;
  if (!opt.lse) {
    own_lse = lse_tensor(B, Hq, N);
    window_opt.lse.emplace(own_lse.data(), B, Hq, N);
  }
  // The extra part: its own output and LSE, no key lengths, no sink (the window part counts it).
  tensor4<float> extra_out(B, N, Hq, Dv);
  lse_tensor extra_lse(B, Hq, N);
  options extra_opt = opt;
  extra_opt.key_lengths = {};
  extra_opt.lse.emplace(extra_lse.data(), B, Hq, N);  // emplace: assigning a map copies into it
  Score extra_score = score;
  if constexpr (requires { extra_score.sinks = {}; }) extra_score.sinks = {};

  attention<Arch>(qf, detail::flat_view(k), detail::flat_view(v), of, score,
                  detail::with_extents(pattern, q), window_opt);
  attention<Arch>(qf, extra.k, extra.v, extra_out, extra_score, dense{}, extra_opt);
  merge(of, *window_opt.lse, extra_out, extra_lse);
}

}  // namespace attn
