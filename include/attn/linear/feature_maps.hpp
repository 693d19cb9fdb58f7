// Feature maps φ of linear attention: attention weights φ(q)·φ(k) instead of e^{q·k}, so that
// Σ_j (φ(q_i)·φ(k_j)) v_j = φ(q_i)ᵀ (Σ_j φ(k_j) v_jᵀ) costs O(N·D·Dv) instead of O(N²·D)
// (Katharopoulos et al. 2020, "Transformers are RNNs", §3.2).
//
// A map is a policy type of namespace attn::linear, passed by value to attn::linear_attention:
//
//   elu1{}        φ(x) = elu(x) + 1, elementwise              Katharopoulos et al. 2020, eq. 7
//   relu{}        φ(x) = max(x, 0), elementwise
//   identity{}    φ(x) = x (unnormalised linear attention, fla's default q/k)
//   efficient{}   ρ_q = softmax over the channels of each query row, ρ_k = softmax over the
//                 positions of each key channel; non-causal only   Shen et al. 2021, eq. 4
//   focused{.p}   FLatten's focused map, over the channels of ALL heads of a token together
//                 (see below)                                Han et al. 2023, eq. 5–6
//   any callable  f(std::span<float> row) or f(std::span<float> row, attn::linear::role), in
//                 place on a copy of one head's row (head_dim floats) of q or k
//
// Maps act on one head's row, except `focused` (one token's channels of all heads — the shape
// FLatten's official code normalises, before splitting into heads) and `efficient`'s key side
// (one channel over all positions). Which rows a map reads is the grouping written next to it.
//
// A user callable is called concurrently from the worker threads: it must be thread-safe and
// must not throw.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

#include "attn/error.hpp"
#include "attn/linear/common.hpp"
#include "attn/simd/exp.hpp"
#include "attn/simd/ops.hpp"

namespace attn::linear {

/// Which side of the product a map is applied to (a user callable may ask).
enum class role { query, key };

/// φ(x) = elu(x) + 1 = x + 1 for x > 0, e^x otherwise: positive weights, a smooth ReLU
/// (Katharopoulos et al. 2020, "Transformers are RNNs", §3.2, eq. 7).
struct elu1 {
  template <class V>
  static V apply(const V& x) {
    using A = simd::arch_of_t<V>;
    // e^x = 2^(x·log2 e) on x ≤ 0: the rounding of x·log2 e adds a relative error of about
    // |x|·2^−24 to a value e^x that shrinks much faster — cheaper than simd::exp's reduction.
    const V zero = simd::splat<A>(0.0f);
    const V e = simd::exp2(simd::min(x, zero) * simd::splat<A>(1.44269504088896341f));
    return simd::select(x > zero, x + simd::splat<A>(1.0f), e);
  }
};

/// φ(x) = max(x, 0).
struct relu {
  template <class V>
  static V apply(const V& x) {
    return simd::max(x, simd::splat<simd::arch_of_t<V>>(0.0f));
  }
};

/// φ(x) = x: the weights φ(q)·φ(k) = q·k may be negative, so normalising by Σ_j q·k_j is
/// ill-conditioned; use it with options::normalise = false (fla's linear attention).
struct identity {
  template <class V>
  static V apply(const V& x) {
    return x;
  }
};

/// Efficient Attention (Shen et al. 2021, "Efficient Attention: Attention with Linear
/// Complexities", eq. 4): O = ρ_q(Q)·(ρ_k(K)ᵀ·V) with
///   ρ_q: softmax over the head_dim channels of each query row (per head),
///   ρ_k: softmax over the positions of each key channel (per batch, K/V head, channel).
/// Every key channel sums to 1 over the positions, so z = Σ_j ρ_k(k_j) is all ones and the
/// normaliser ρ_q(q)·z·scale is `scale`: normalised or not, the output is the paper's.
/// ρ_k looks at every position, so there is no causal or recurrent form: attn::causal and
/// linear_attention_step reject it.
struct efficient {};

/// FLatten's focused map (Han et al. 2023, "FLatten Transformer: Vision Transformer using
/// Focused Linear Attention", eq. 5–6, as the official code computes it): for one token x of
/// q or k with C = heads·head_dim channels (ALL heads of the token together, before they are
/// split into heads),
///   x⁺_c   = (ReLU(x_c) + 1e-6) / softplus(s_c)     s: a learnable scale, softplus(0) = ln 2
///   f_p(x) = ‖x⁺‖ / ‖(x⁺)^p‖ · (x⁺)^p               norms over the C channels, powers per channel
/// and each head reads its head_dim channels of f_p(x). The official code also adds a depthwise
/// convolution of V to the output (outside the attention) and computes
/// φ(q)·((φ(K)ᵀV)/N) / (φ(q)·mean_j φ(k_j) + 1e-6): the normalised form here with
/// options::epsilon = N·1e-6.
struct focused {
  int p = 3;  ///< focusing factor, ≥ 1
  /// s per channel of q: empty (s = 0), one value for every channel, or q.dim(2)·q.dim(3)
  /// values (channel c = head·head_dim + d), as the official (1, 1, dim) parameter.
  std::span<const float> scale{};
  /// s per channel of k: empty = the same as `scale` (which must then fit k's channels).
  std::span<const float> key_scale{};
};

namespace detail {

template <class Map>
concept elementwise_map = requires(float x) {
  { Map::apply(x) } -> std::same_as<float>;
};

template <class F>
concept row_function_with_role = std::invocable<const F&, std::span<float>, role>;
template <class F>
concept row_function = row_function_with_role<F> || std::invocable<const F&, std::span<float>>;

/// What a map's kernel side reads: the tensors it is applied to.
struct map_inputs {
  in_view q, k;
  exec::executor executor;
  int workers = 1;
};

/// dst[0..n) = g(·, d) with a vector loop and a scalar tail: g is called with a vector or a
/// float (selecting the type it works on) and the offset d — the shape every row loop shares.
template <class A, class G>
inline void store_row(float* dst, idx n, G&& g) {
  constexpr idx L = simd::lanes<A>;
  idx d = 0;
  for (; d + L <= n; d += L) simd::store<A>(dst + d, g(simd::vec<A>{}, d));
  for (; d < n; ++d) dst[d] = g(0.0f, d);
}

template <class V, class A>
inline V load_as(const float* p) {
  if constexpr (std::is_same_v<V, float>)
    return *p;
  else
    return simd::load<A>(p);
}

// feature<A, Map>: the kernel side of a map for arch A, prepared once per call by its
// constructor (after check_map). rows(role, b, head, pos0, n, dst, ld, factor) writes factor·φ of
// rows pos0..pos0+n of q (role::query, query head `head`) or k (role::key, K/V head `head`) to dst,
// ld floats apart. has_causal_form says whether the map is per-row (needed by the causal and
// recurrent forms).

template <class A, class Map>
struct feature;

/// Elementwise maps: one vector at a time.
template <class A, elementwise_map Map>
struct feature<A, Map> {
  static constexpr bool has_causal_form = true;
  in_view q, k;

  feature(const Map&, const map_inputs& in) : q(in.q), k(in.k) {}

  void rows(role r, idx b, idx head, idx pos0, idx n, float* dst, idx ld, float factor) const {
    const in_view& x = r == role::query ? q : k;
    const idx width = x.head_dim();
    for (idx i = 0; i < n; ++i) {
      const float* src = x.row(b, pos0 + i, head);
      if (factor == 1.0f)
        store_row<A>(dst + i * ld, width, [&]<class V>(V, idx d) {
          return Map::apply(load_as<V, simd::arch_of_t<V>>(src + d));
        });
      else
        store_row<A>(dst + i * ld, width, [&]<class V>(V, idx d) {
          using VA = simd::arch_of_t<V>;
          return Map::apply(load_as<V, VA>(src + d)) * simd::splat<VA>(factor);
        });
    }
  }
};

/// Efficient Attention: ρ_q per row; ρ_k from per-channel statistics over all positions
/// (max and 1/Σ e^{x−max}), computed once per call for every (batch, K/V head, channel).
template <class A>
struct feature<A, efficient> {
  static constexpr bool has_causal_form = false;
  in_view q, k;
  std::vector<float> key_max, key_inv_sum;  // [batch, heads_kv, head_dim]

  feature(const efficient&, const map_inputs& in) : q(in.q), k(in.k) {
    const idx D = k.head_dim(), heads = k.batch() * k.heads();
    key_max.assign(static_cast<std::size_t>(heads * D), 0.0f);
    key_inv_sum.assign(static_cast<std::size_t>(heads * D), 0.0f);
    exec::for_each_item(in.executor, in.workers, heads, [&](idx item) {
      const idx b = item / k.heads(), g = item % k.heads();
      float* m = key_max.data() + item * D;
      float* inv = key_inv_sum.data() + item * D;
      std::fill(m, m + D, -std::numeric_limits<float>::infinity());
      for (idx j = 0; j < k.seq(); ++j) {
        const float* row = k.row(b, j, g);
        for (idx d = 0; d < D; ++d) m[d] = std::max(m[d], row[d]);
      }
      std::fill(inv, inv + D, 0.0f);  // Σ e^{x−m} first, inverted below
      for (idx j = 0; j < k.seq(); ++j) {
        const float* row = k.row(b, j, g);
        store_row<A>(inv, D, [&]<class V>(V, idx d) {
          using VA = simd::arch_of_t<V>;
          return load_as<V, VA>(inv + d) +
                 simd::exp(load_as<V, VA>(row + d) - load_as<V, VA>(m + d));
        });
      }
      for (idx d = 0; d < D; ++d) inv[d] = inv[d] > 0.0f ? 1.0f / inv[d] : 0.0f;
    });
  }

  void rows(role r, idx b, idx head, idx pos0, idx n, float* dst, idx ld, float factor) const {
    constexpr idx L = simd::lanes<A>;
    if (r == role::key) {
      const idx D = k.head_dim(), at = (b * k.heads() + head) * D;
      const float* m = key_max.data() + at;
      const float* inv = key_inv_sum.data() + at;
      for (idx i = 0; i < n; ++i) {
        const float* src = k.row(b, pos0 + i, head);
        store_row<A>(dst + i * ld, D, [&]<class V>(V, idx d) {
          using VA = simd::arch_of_t<V>;
          return simd::exp(load_as<V, VA>(src + d) - load_as<V, VA>(m + d)) *
                 (load_as<V, VA>(inv + d) * simd::splat<VA>(factor));
        });
      }
      return;
    }
    const idx D = q.head_dim();
    for (idx i = 0; i < n; ++i) {
      const float* src = q.row(b, pos0 + i, head);
      float* out = dst + i * ld;
      float m = -std::numeric_limits<float>::infinity();
      idx d = 0;
      if (D >= L) {
        simd::vec<A> mv = simd::load<A>(src);
        for (d = L; d + L <= D; d += L) mv = simd::max(mv, simd::load<A>(src + d));
        m = simd::reduce_max(mv);
      }
      for (; d < D; ++d) m = std::max(m, src[d]);
      float sum = 0.0f;
      store_row<A>(out, D, [&]<class V>(V, idx c) {
        using VA = simd::arch_of_t<V>;
        const V e = simd::exp(load_as<V, VA>(src + c) - simd::splat<VA>(m));
        sum += simd::reduce_add(e);
        return e;
      });
      const float f = factor / sum;  // sum ≥ 1: the max channel contributes e^0
      store_row<A>(out, D, [&]<class V>(V, idx c) {
        using VA = simd::arch_of_t<V>;
        return load_as<V, VA>(out + c) * simd::splat<VA>(f);
      });
    }
  }
};

/// FLatten's focused map: per-token factors (1/max x⁺ and ‖x⁺‖/‖y^p‖ with y = x⁺/max x⁺, an
/// overflow-free form of the same ratio) computed once per call for every token of q and k;
/// each head's row is then factor·f·y^p.
template <class A>
struct feature<A, focused> {
  static constexpr bool has_causal_form = true;
  in_view q, k;
  int p = 3;
  // Per side: 1/softplus(s_c) for every channel, then (1/max, f) for every token.
  std::vector<float> inv_softplus[2], token[2];

  static float softplus(float s) {
    // log(1 + e^s) without overflow for large s.
    const double x = static_cast<double>(s);
    return static_cast<float>(x > 30.0 ? x : std::log1p(std::exp(x)));
  }

  feature(const focused& map, const map_inputs& in) : q(in.q), k(in.k), p(map.p) {
    for (int side = 0; side < 2; ++side) {
      const in_view& x = side == 0 ? q : k;
      std::span<const float> s = side == 0 || map.key_scale.empty() ? map.scale : map.key_scale;
      const idx channels = x.heads() * x.head_dim();
      std::vector<float>& inv = inv_softplus[side];
      inv.resize(static_cast<std::size_t>(channels));
      for (idx c = 0; c < channels; ++c)
        inv[static_cast<std::size_t>(c)] =
            1.0f / softplus(s.empty()       ? 0.0f
                            : s.size() == 1 ? s[0]
                                            : s[static_cast<std::size_t>(c)]);
      std::vector<float>& t = token[side];
      t.assign(static_cast<std::size_t>(2 * x.batch() * x.seq()), 0.0f);
      exec::for_each_item(in.executor, in.workers, x.batch(), [&](idx b) {
        for (idx i = 0; i < x.seq(); ++i)
          token_factors(x, inv, b, i, t.data() + 2 * (b * x.seq() + i));
      });
    }
  }

  void token_factors(const in_view& x, const std::vector<float>& inv, idx b, idx i,
                     float* out) const {
    const idx D = x.head_dim();
    float m = 0.0f, n1 = 0.0f;
    for (idx h = 0; h < x.heads(); ++h) {
      const float* row = x.row(b, i, h);
      const float* iv = inv.data() + h * D;
      for (idx d = 0; d < D; ++d) {
        const float xp = (std::max(row[d], 0.0f) + 1e-6f) * iv[d];
        m = std::max(m, xp);
        n1 += xp * xp;
      }
    }
    const float inv_m = m > 0.0f ? 1.0f / m : 0.0f;
    float np = 0.0f;
    for (idx h = 0; h < x.heads(); ++h) {
      const float* row = x.row(b, i, h);
      const float* iv = inv.data() + h * D;
      for (idx d = 0; d < D; ++d) {
        const float y = power((std::max(row[d], 0.0f) + 1e-6f) * iv[d] * inv_m);
        np += y * y;
      }
    }
    out[0] = inv_m;
    out[1] = np > 0.0f ? std::sqrt(n1) / std::sqrt(np) : 0.0f;
  }

  template <class V>
  V power(const V& y) const {
    V r = y;
    for (int t = 1; t < p; ++t) r = r * y;
    return r;
  }

  void rows(role r, idx b, idx head, idx pos0, idx n, float* dst, idx ld, float factor) const {
    const int side = r == role::query ? 0 : 1;
    const in_view& x = side == 0 ? q : k;
    const idx D = x.head_dim();
    const float* iv = inv_softplus[side].data() + head * D;
    for (idx i = 0; i < n; ++i) {
      const float* src = x.row(b, pos0 + i, head);
      const float* t = token[side].data() + 2 * (b * x.seq() + pos0 + i);
      const float inv_m = t[0], f = t[1] * factor;
      store_row<A>(dst + i * ld, D, [&]<class V>(V, idx d) {
        using VA = simd::arch_of_t<V>;
        const V xp =
            (simd::max(load_as<V, VA>(src + d), simd::splat<VA>(0.0f)) + simd::splat<VA>(1e-6f)) *
            load_as<V, VA>(iv + d);
        return power(xp * simd::splat<VA>(inv_m)) * simd::splat<VA>(f);
      });
    }
  }
};

/// A user callable on one head's row.
template <class A, row_function F>
struct feature<A, F> {
  static constexpr bool has_causal_form = true;
  const F* fn;
  in_view q, k;

  feature(const F& f, const map_inputs& in) : fn(&f), q(in.q), k(in.k) {}

  void rows(role r, idx b, idx head, idx pos0, idx n, float* dst, idx ld, float factor) const {
    const in_view& x = r == role::query ? q : k;
    const idx D = x.head_dim();
    for (idx i = 0; i < n; ++i) {
      float* out = dst + i * ld;
      const float* src = x.row(b, pos0 + i, head);
      std::copy(src, src + D, out);
      const std::span<float> row(out, static_cast<std::size_t>(D));
      if constexpr (row_function_with_role<F>)
        (*fn)(row, r);
      else
        (*fn)(row);
      if (factor != 1.0f)
        for (idx d = 0; d < D; ++d) out[d] *= factor;
    }
  }
};

/// Whether Map is a feature map attn::linear knows how to apply.
template <class Map>
concept feature_map = requires {
  sizeof(feature<simd::scalar, Map>);
};

// check_map(map, shape): the map's own parameters against the shape; throws attn::error.

template <class Map>
void check_map(const Map&, const attn::detail::problem_shape&) {}

inline void check_map(const focused& f, const attn::detail::problem_shape& s) {
  if (f.p < 1) attn::detail::fail("linear::focused.p=", f.p, " must be >= 1");
  const idx q_channels = s.heads_q * s.head_dim, k_channels = s.heads_kv * s.head_dim;
  auto check_values = [](const char* name, std::span<const float> values) {
    for (std::size_t c = 0; c < values.size(); ++c)
      if (!std::isfinite(values[c]))
        attn::detail::fail("linear::focused.", name, "[", c, "]=", values[c], " must be finite");
  };
  check_values("scale", f.scale);
  check_values("key_scale", f.key_scale);
  const auto n = static_cast<idx>(f.scale.size());
  if (n > 1 && n != q_channels)
    attn::detail::fail("linear::focused.scale.size()=", n,
                       " must be 0, 1 or q.dim(2)*q.dim(3)=", q_channels,
                       " (one s per channel of all heads)");
  const auto nk = static_cast<idx>(f.key_scale.size());
  if (nk > 1 && nk != k_channels)
    attn::detail::fail("linear::focused.key_scale.size()=", nk,
                       " must be 0, 1 or k.dim(2)*k.dim(3)=", k_channels,
                       " (one s per channel of all heads)");
  if (nk == 0 && n > 1 && n != k_channels)
    attn::detail::fail("linear::focused.scale.size()=", n,
                       " does not fit k.dim(2)*k.dim(3)=", k_channels,
                       " (k has fewer heads): set linear::focused.key_scale");
}

}  // namespace detail
}  // namespace attn::linear
