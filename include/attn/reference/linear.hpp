// attn::reference::linear_attention and linear_recurrence — linear attention written as plainly
// as the papers' equations, in double precision: the oracle of attn/linear/.
//
// For batch b, query head h (reading K/V head g = h / (Hq / Hkv)) and query i, with φ the
// feature map restated below, s = options::scale, γ = options::decay[h] (1 without one) and
// ε = options::epsilon:
//
//   w_ij  = s·γ^{i−j}·Σ_d φ(q_i)_d·φ(k_j)_d          (γ only under attn::causal)
//   V(i)  = every key (attn::dense) or the keys j ≤ i (attn::causal)
//   out_i = Σ_{j∈V(i)} w_ij·v_j / (Σ_{j∈V(i)} w_ij + ε)    or, unnormalised, Σ_{j∈V(i)} w_ij·v_j
//
// — the O(N²) masked ("parallel") form of Katharopoulos et al. 2020 (eq. 4–6, causal eq. 8) and
// of RetNet's parallel retention with its decay mask D_ij = γ^{i−j} (Sun et al. 2023, eq. 5).
// linear_recurrence is the plain recurrence of the same (Katharopoulos et al. eq. 9–10,
// RetNet eq. 6): S_t = γS_{t−1} + φ(k_t)v_tᵀ, z_t = γz_{t−1} + φ(k_t), o_t = s·φ(q_t)ᵀS_t /
// (s·φ(q_t)·z_t + ε), from an optional initial state, returning the final one.
//
// Both also return error_scale: per output element, the size its floating-point error is
// relative to — the sum of the absolute values of the terms it is made of, through the
// denominator when normalised:
//   unnormalised  Σ_j |w|_ij·|v_je|                         |w|_ij = |s|·γ^{i−j}·Σ_d
//   |φ(q_i)_d|·|φ(k_j)_d| normalised    (Σ_j |w|_ij·|v_je| + |out_ie|·Σ_j |w|_ij) / |Σ_j w_ij + ε|
// A kernel computing in float with u = 2^−24 is within a modest multiple of u·error_scale.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

#include <unsupported/Eigen/CXX11/Tensor>

#include "attn/error.hpp"
#include "attn/linear/feature_maps.hpp"
#include "attn/linear/options.hpp"
#include "attn/linear/state.hpp"
#include "attn/pattern/band.hpp"
#include "attn/pattern/dense.hpp"
#include "attn/reference/patterns.hpp"

namespace attn::reference {

/// What the linear references return: out [B, Nq, Hq, Dv] and its error scale (same shape).
struct linear_result {
  tensor4d out;
  tensor4d error_scale;
};

/// linear_recurrence's result and its final state: kv [B, Hq, D, Dv] and z [B, Hq, D].
struct linear_recurrence_result : linear_result {
  std::vector<double> kv, z;
};

namespace detail {

using attn::linear::role;

// φ restated per map type, over a whole tensor x [B, N, H, D] (double in, double out).

inline double phi_value(const attn::linear::elu1&, double x) {
  return x > 0.0 ? x + 1.0 : std::exp(x);
}
inline double phi_value(const attn::linear::relu&, double x) { return x > 0.0 ? x : 0.0; }
inline double phi_value(const attn::linear::identity&, double x) { return x; }

template <class X>
tensor4d as_double(const X& x) {
  tensor4d t(x.dimension(0), x.dimension(1), x.dimension(2), x.dimension(3));
  for (idx n = 0; n < t.size(); ++n) t.data()[n] = static_cast<double>(x.data()[n]);
  return t;
}

template <class Map, class X>
requires requires(const Map& m) { phi_value(m, 0.0); }
tensor4d features(const Map& map, const X& x, role) {
  tensor4d t = as_double(x);
  for (idx n = 0; n < t.size(); ++n) t.data()[n] = phi_value(map, t.data()[n]);
  return t;
}

/// Efficient Attention (Shen et al. 2021, eq. 4): queries softmax over each row's channels, keys
/// softmax over the positions of each channel.
template <class X>
tensor4d features(const attn::linear::efficient&, const X& x, role r) {
  tensor4d t = as_double(x);
  const idx B = t.dimension(0), N = t.dimension(1), H = t.dimension(2), D = t.dimension(3);
  for (idx b = 0; b < B; ++b)
    for (idx h = 0; h < H; ++h) {
      if (r == role::query) {
        for (idx i = 0; i < N; ++i) {
          double m = -std::numeric_limits<double>::infinity(), z = 0.0;
          for (idx d = 0; d < D; ++d) m = std::max(m, t(b, i, h, d));
          for (idx d = 0; d < D; ++d) z += std::exp(t(b, i, h, d) - m);
          for (idx d = 0; d < D; ++d) t(b, i, h, d) = std::exp(t(b, i, h, d) - m) / z;
        }
      } else {
        for (idx d = 0; d < D; ++d) {
          double m = -std::numeric_limits<double>::infinity(), z = 0.0;
          for (idx j = 0; j < N; ++j) m = std::max(m, t(b, j, h, d));
          for (idx j = 0; j < N; ++j) z += std::exp(t(b, j, h, d) - m);
          for (idx j = 0; j < N; ++j) t(b, j, h, d) = std::exp(t(b, j, h, d) - m) / z;
        }
      }
    }
  return t;
}

/// FLatten's focused map (Han et al. 2023, eq. 5–6, official code): per token, over the
/// channels c = head·D + d of all heads, x⁺ = (ReLU(x) + 1e-6)/softplus(s_c) and
/// f_p(x) = ‖x⁺‖/‖(x⁺)^p‖·(x⁺)^p.
template <class X>
tensor4d features(const attn::linear::focused& f, const X& x, role r) {
  tensor4d t = as_double(x);
  const idx B = t.dimension(0), N = t.dimension(1), H = t.dimension(2), D = t.dimension(3);
  const std::span<const float> s = r == role::key && !f.key_scale.empty() ? f.key_scale : f.scale;
  auto s_of = [&](idx c) {
    return s.empty() ? 0.0
                     : static_cast<double>(s[s.size() == 1 ? 0 : static_cast<std::size_t>(c)]);
  };
  for (idx b = 0; b < B; ++b)
    for (idx i = 0; i < N; ++i) {
      double n1 = 0.0, np = 0.0;
      for (idx h = 0; h < H; ++h)
        for (idx d = 0; d < D; ++d) {
          const double softplus = std::log1p(std::exp(s_of(h * D + d)));
          const double xp = (std::max(t(b, i, h, d), 0.0) + 1e-6) / softplus;
          const double xpp = std::pow(xp, f.p);
          t(b, i, h, d) = xpp;
          n1 += xp * xp;
          np += xpp * xpp;
        }
      const double factor = std::sqrt(n1) / std::sqrt(np);
      for (idx h = 0; h < H; ++h)
        for (idx d = 0; d < D; ++d) t(b, i, h, d) *= factor;
    }
  return t;
}

/// A user callable, on a float copy of each head's row.
template <class F, class X>
requires attn::linear::detail::row_function<F> tensor4d features(const F& fn, const X& x, role r) {
  const idx B = x.dimension(0), N = x.dimension(1), H = x.dimension(2), D = x.dimension(3);
  tensor4d t(B, N, H, D);
  std::vector<float> row(static_cast<std::size_t>(D));
  for (idx b = 0; b < B; ++b)
    for (idx i = 0; i < N; ++i)
      for (idx h = 0; h < H; ++h) {
        for (idx d = 0; d < D; ++d) row[static_cast<std::size_t>(d)] = x(b, i, h, d);
        if constexpr (attn::linear::detail::row_function_with_role<F>)
          fn(std::span<float>(row), r);
        else
          fn(std::span<float>(row));
        for (idx d = 0; d < D; ++d)
          t(b, i, h, d) = static_cast<double>(row[static_cast<std::size_t>(d)]);
      }
  return t;
}

/// Restates the tensor contract and the options' rules; throws attn::error.
template <class Q, class K, class V, class Map>
attn::detail::problem_shape check_linear(const Q& q, const K& k, const V& v, const Map& map,
                                         const attn::linear::options& opt, bool causal) {
  using attn::detail::fail;
  attn::detail::problem_shape s;
  s.batch = q.dimension(0);
  s.seq_q = q.dimension(1);
  s.heads_q = q.dimension(2);
  s.head_dim = q.dimension(3);
  s.seq_k = k.dimension(1);
  s.heads_kv = k.dimension(2);
  s.head_dim_v = v.dimension(3);
  if (k.dimension(0) != s.batch || v.dimension(0) != s.batch || v.dimension(1) != s.seq_k ||
      v.dimension(2) != s.heads_kv || k.dimension(3) != s.head_dim)
    fail("reference: inconsistent shapes of q, k, v");
  if (s.heads_kv == 0 ? s.heads_q != 0 : s.heads_q % s.heads_kv != 0)
    fail("reference: k heads ", s.heads_kv, " do not divide q heads ", s.heads_q);
  if (causal && s.seq_q != s.seq_k)
    fail("reference: causal linear attention needs equal q and k lengths, not ", s.seq_q, " and ",
         s.seq_k);
  if (!std::isfinite(opt.scale)) fail("reference: linear::options.scale must be finite");
  if (!(opt.epsilon >= 0.0f) || !std::isfinite(opt.epsilon))
    fail("reference: linear::options.epsilon must be finite and >= 0");
  if (opt.chunk < 1) fail("reference: linear::options.chunk must be >= 1");
  if (!opt.decay.empty()) {
    if (!causal) fail("reference: a decay needs the causal form");
    if (static_cast<idx>(opt.decay.size()) != s.heads_q)
      fail("reference: linear::options.decay has ", opt.decay.size(), " values for ", s.heads_q,
           " heads");
    for (const float g : opt.decay)
      if (!(g > 0.0f && g <= 1.0f)) fail("reference: decay ", g, " is outside (0, 1]");
  }
  if constexpr (std::same_as<Map, attn::linear::efficient>)
    if (causal) fail("reference: Efficient Attention has no causal form");
  if constexpr (std::same_as<Map, attn::linear::focused>) {
    if (map.p < 1) fail("reference: focused.p must be >= 1");
    const auto n = static_cast<idx>(map.scale.size()), nk = static_cast<idx>(map.key_scale.size());
    const idx qc = s.heads_q * s.head_dim, kc = s.heads_kv * s.head_dim;
    if ((n > 1 && n != qc) || (nk > 1 && nk != kc) || (nk == 0 && n > 1 && n != kc))
      fail("reference: focused scale sizes do not fit the channels");
    for (const float x : map.scale)
      if (!std::isfinite(x)) fail("reference: focused.scale must be finite");
    for (const float x : map.key_scale)
      if (!std::isfinite(x)) fail("reference: focused.key_scale must be finite");
  } else {
    (void)map;
  }
  return s;
}

inline double decay_of(const attn::linear::options& opt, idx h) {
  return opt.decay.empty() ? 1.0 : static_cast<double>(opt.decay[static_cast<std::size_t>(h)]);
}

}  // namespace detail

/// Linear attention of q [B, Nq, Hq, D] over k [B, Nk, Hkv, D], v [B, Nk, Hkv, Dv] with feature
/// map `map`, dense or causal, in double precision by the O(Nq·Nk) masked form; see the top of
/// this file.
template <class Q, class K, class V, class Map, class Pattern>
requires(std::same_as<Pattern, attn::dense> || std::same_as<Pattern, attn::causal>) linear_result
    linear_attention(const Q& q, const K& k, const V& v, const Map& map, const Pattern&,
                     const attn::linear::options& opt = {}) {
  constexpr bool causal = std::same_as<Pattern, attn::causal>;
  const attn::detail::problem_shape s = detail::check_linear(q, k, v, map, opt, causal);
  const tensor4d fq = detail::features(map, q, detail::role::query);
  const tensor4d fk = detail::features(map, k, detail::role::key);
  const idx D = s.head_dim, E = s.head_dim_v;
  const double scale = static_cast<double>(opt.scale), eps = static_cast<double>(opt.epsilon);
  linear_result r{tensor4d(s.batch, s.seq_q, s.heads_q, E),
                  tensor4d(s.batch, s.seq_q, s.heads_q, E)};
  r.out.setZero();
  r.error_scale.setZero();
  if (s.heads_q == 0) return r;
  std::vector<double> num(static_cast<std::size_t>(E)), mag(static_cast<std::size_t>(E));
  for (idx b = 0; b < s.batch; ++b)
    for (idx h = 0; h < s.heads_q; ++h) {
      const idx g = h / (s.heads_q / s.heads_kv);
      const double gamma = causal ? detail::decay_of(opt, h) : 1.0;
      for (idx i = 0; i < s.seq_q; ++i) {
        std::fill(num.begin(), num.end(), 0.0);
        std::fill(mag.begin(), mag.end(), 0.0);
        double den = 0.0, den_abs = 0.0;
        const idx last = causal ? i : s.seq_k - 1;
        for (idx j = 0; j <= last; ++j) {
          double dot = 0.0, dot_abs = 0.0;
          for (idx d = 0; d < D; ++d) {
            dot += fq(b, i, h, d) * fk(b, j, g, d);
            dot_abs += std::abs(fq(b, i, h, d) * fk(b, j, g, d));
          }
          const double mask = std::pow(gamma, static_cast<double>(i - j));
          const double w = scale * mask * dot, w_abs = std::abs(scale) * mask * dot_abs;
          for (idx e = 0; e < E; ++e) {
            const double x = static_cast<double>(v(b, j, g, e));
            num[static_cast<std::size_t>(e)] += w * x;
            mag[static_cast<std::size_t>(e)] += w_abs * std::abs(x);
          }
          den += w;
          den_abs += w_abs;
        }
        for (idx e = 0; e < E; ++e) {
          const double n = num[static_cast<std::size_t>(e)], m = mag[static_cast<std::size_t>(e)];
          if (opt.normalise) {
            const double o = n / (den + eps);
            r.out(b, i, h, e) = o;
            r.error_scale(b, i, h, e) = (m + std::abs(o) * den_abs) / std::abs(den + eps);
          } else {
            r.out(b, i, h, e) = n;
            r.error_scale(b, i, h, e) = m;
          }
        }
      }
    }
  return r;
}

/// Causal linear attention by its plain recurrence, token by token, in double precision, from
/// `initial` (null: zeros); see the top of this file. Equal to linear_attention(…, causal{}, …)
/// in exact arithmetic.
template <class Q, class K, class V, class Map>
linear_recurrence_result linear_recurrence(const Q& q, const K& k, const V& v, const Map& map,
                                           const attn::linear::options& opt = {},
                                           const attn::linear::state* initial = nullptr) {
  const attn::detail::problem_shape s = detail::check_linear(q, k, v, map, opt, true);
  const tensor4d fq = detail::features(map, q, detail::role::query);
  const tensor4d fk = detail::features(map, k, detail::role::key);
  const idx D = s.head_dim, E = s.head_dim_v, H = s.heads_q;
  if (initial && (initial->batch() != s.batch || initial->heads() != H ||
                  initial->head_dim() != D || initial->head_dim_v() != E))
    attn::detail::fail("reference: the initial state's shape does not match");
  const double scale = static_cast<double>(opt.scale), eps = static_cast<double>(opt.epsilon);
  linear_recurrence_result r;
  r.out = tensor4d(s.batch, s.seq_q, H, E);
  r.error_scale = tensor4d(s.batch, s.seq_q, H, E);
  r.out.setZero();
  r.error_scale.setZero();
  r.kv.assign(static_cast<std::size_t>(s.batch * H * D * E), 0.0);
  r.z.assign(static_cast<std::size_t>(s.batch * H * D), 0.0);
  if (H == 0) return r;
  // |S| and |z| of the same recurrence over the absolute values: the error scale.
  std::vector<double> kv_abs(static_cast<std::size_t>(D * E)), z_abs(static_cast<std::size_t>(D));
  for (idx b = 0; b < s.batch; ++b)
    for (idx h = 0; h < H; ++h) {
      const idx g = h / (H / s.heads_kv);
      const double gamma = detail::decay_of(opt, h);
      double* kv = r.kv.data() + (b * H + h) * D * E;
      double* z = r.z.data() + (b * H + h) * D;
      for (idx d = 0; d < D; ++d) {
        z[d] = initial ? static_cast<double>(initial->z(b, h, d)) : 0.0;
        z_abs[static_cast<std::size_t>(d)] = std::abs(z[d]);
        for (idx e = 0; e < E; ++e) {
          kv[d * E + e] = initial ? static_cast<double>(initial->kv(b, h, d, e)) : 0.0;
          kv_abs[static_cast<std::size_t>(d * E + e)] = std::abs(kv[d * E + e]);
        }
      }
      for (idx t = 0; t < s.seq_q; ++t) {
        double den = 0.0, den_abs = 0.0;
        for (idx d = 0; d < D; ++d) {
          const double kd = fk(b, t, g, d), qd = scale * fq(b, t, h, d);
          const auto du = static_cast<std::size_t>(d);
          z[d] = gamma * z[d] + kd;
          z_abs[du] = gamma * z_abs[du] + std::abs(kd);
          den += qd * z[d];
          den_abs += std::abs(qd) * z_abs[du];
          for (idx e = 0; e < E; ++e) {
            const double x = static_cast<double>(v(b, t, g, e));
            const auto de = static_cast<std::size_t>(d * E + e);
            kv[d * E + e] = gamma * kv[d * E + e] + kd * x;
            kv_abs[de] = gamma * kv_abs[de] + std::abs(kd * x);
          }
        }
        for (idx e = 0; e < E; ++e) {
          double n = 0.0, m = 0.0;
          for (idx d = 0; d < D; ++d) {
            const double qd = scale * fq(b, t, h, d);
            n += qd * kv[d * E + e];
            m += std::abs(qd) * kv_abs[static_cast<std::size_t>(d * E + e)];
          }
          if (opt.normalise) {
            const double o = n / (den + eps);
            r.out(b, t, h, e) = o;
            r.error_scale(b, t, h, e) = (m + std::abs(o) * den_abs) / std::abs(den + eps);
          } else {
            r.out(b, t, h, e) = n;
            r.error_scale(b, t, h, e) = m;
          }
        }
      }
    }
  return r;
}

}  // namespace attn::reference
