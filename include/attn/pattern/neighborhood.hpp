// Neighborhood attention: each query of a 1D/2D/3D grid sees the k nearest keys around it, per
// dimension (Hassani et al. 2023, "Neighborhood Attention Transformer"), with dilation (Hassani &
// Shi 2022, "Dilated Neighborhood Attention Transformer"), stride and per-dimension causality
// ("Generalized Neighborhood Attention", Hassani et al. 2025). Semantics as NATTEN ≥ 0.20 (its
// reference mask and flex backend mask_mod): tokens are the grid flattened row-major,
// t = ((x1·X2) + x2)·X3 + x3, and query x sees key y iff it does so in every dimension.
//
// One dimension of extent L, kernel k, dilation d, stride s, query coordinate x:
//   group g = x mod d, group coordinate x′ = ⌊x/d⌋, group length L_g = ⌈(L − g)/d⌉;
//   only keys of the same group, y = y′·d + g, are seen (dilation, DiNAT §3.1).
//   non-causal: wl = ⌊k/2⌋, wr = ⌊k/2⌋ + (k mod 2) − 1   (an even k has its extra key on the left)
//               leader ℓ = min(s·⌊x′/s⌋ + ⌊s/2⌋, L_g − 1)  (the centre query of its stride group)
//               c = clamp(ℓ, wl, L_g − 1 − wr);  y′ ∈ [c − wl, c + wr]
//               — always k keys: at the borders the window shifts inwards (NAT §3.1), it is not
//               clipped; with s = 1 every query is its own leader.
//   causal:     ℓ = min(s·⌊x′/s⌋ + s − 1, L_g − 1)  (the last query of its stride group)
//               y′ ∈ [max(ℓ − k + 1, 0), x′]  — 1 to k keys, never a later one (GNA §3).
// Valid: k ≥ 2, d ≥ 1, k·d ≤ L, 1 ≤ s ≤ k (anything else is an attn::error). A kernel equal to
// the extent, non-causal, is dense attention; causal 1D with k = L is attn::causal.
//
// How it runs (fused, tile-sparse): per dimension the first and last key coordinate of every
// query coordinate and, inverted, the first and last query coordinate that sees each key
// coordinate are tabulated once per call in prepare(); both are monotone in each dilation group.
// A tile of consecutive flattened tokens is bounded by a box of coordinates, so keys() and
// classify() are O(K·d); partial tiles are masked by visible_rows() (a bit per query, ranges per
// grid row). No N × N mask. That is the flat loop's view (1D grids and dilated ones with LSE or
// lengths); 2D/3D grids without dilation run kernel/grid_prefill.hpp, whose query tiles are
// patches and whose keys are gathered from the box of the patch's windows (read from the same
// tables).
//
// blocked_local<K> (pattern/halo.hpp) shares the machinery: any pattern whose per-dimension
// windows are monotone ranges is a grid_windows.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "attn/error.hpp"
#include "attn/pattern/tile.hpp"

namespace attn {

namespace detail {

template <int K>
constexpr std::array<idx, K> filled(idx value) {
  std::array<idx, K> a{};
  a.fill(value);
  return a;
}

/// One dimension of a grid pattern. Query coordinate x sees key coordinates y ∈ [lo[x], hi[x]]
/// with y ≡ x (mod step); key y is seen by the queries x ∈ [qlo[y], qhi[y]], x ≡ y (mod step)
/// (qlo > qhi: by none). lo and hi are non-decreasing within each residue class mod step.
struct grid_axis {
  idx extent = 0, step = 1;
  std::vector<idx> lo, hi, qlo, qhi;

  bool sees(idx x, idx y) const {
    const auto u = static_cast<std::size_t>(x);
    return y >= lo[u] && y <= hi[u] && (y - x) % step == 0;
  }

  /// Fills qlo/qhi from lo/hi: per residue class, the queries seeing y are those with
  /// hi[x] ≥ y and lo[x] ≤ y, a range found by two pointers moving forward (O(L)).
  void invert() {
    const auto n = static_cast<std::size_t>(extent);
    qlo.assign(n, 1);
    qhi.assign(n, 0);
    for (idx g = 0; g < std::min(step, extent); ++g) {
      idx first = g, last = g - step;  // first x with hi ≥ y; last x with lo ≤ y
      for (idx y = g; y < extent; y += step) {
        while (first < extent && hi[static_cast<std::size_t>(first)] < y) first += step;
        while (last + step < extent && lo[static_cast<std::size_t>(last + step)] <= y) last += step;
        if (first <= last) {
          qlo[static_cast<std::size_t>(y)] = first;
          qhi[static_cast<std::size_t>(y)] = last;
        }
      }
    }
  }

  /// Bounds of lo/hi over the queries [a, b]: monotone per residue class, so the minimum of lo
  /// (of hi) is among the first `step` queries and the maximum among the last `step`.
  struct bounds {
    idx min_lo, max_lo, min_hi, max_hi;
  };
  bounds over(idx a, idx b) const {
    bounds r{extent, -1, extent, -1};
    const idx n = std::min(step, b - a + 1);
    for (idx x = a; x < a + n; ++x) {
      r.min_lo = std::min(r.min_lo, lo[static_cast<std::size_t>(x)]);
      r.min_hi = std::min(r.min_hi, hi[static_cast<std::size_t>(x)]);
    }
    for (idx x = b - n + 1; x <= b; ++x) {
      r.max_lo = std::max(r.max_lo, lo[static_cast<std::size_t>(x)]);
      r.max_hi = std::max(r.max_hi, hi[static_cast<std::size_t>(x)]);
    }
    return r;
  }
};

/// The per-dimension tables of a K-dimensional grid pattern and the tile questions answered
/// from them (the pattern interface of tile.hpp, on flattened row-major tokens).
template <int K>
struct grid_windows {
  std::array<grid_axis, K> axes{};
  std::array<idx, K> pitch{};  // flat index = Σ x_i · pitch[i]

  /// Tabulates a grid of extents x whose dimension i steps by step[i]: window(i, c) gives the
  /// {first, last} key coordinate of query coordinate c.
  template <class Window>
  void tabulate(const std::array<idx, K>& x, const std::array<idx, K>& step, Window window) {
    idx p = 1;
    for (int i = K - 1; i >= 0; --i) {
      const auto u = static_cast<std::size_t>(i);
      grid_axis& ax = axes[u];
      ax.extent = x[u];
      ax.step = step[u];
      pitch[u] = p;
      p *= x[u];
      ax.lo.resize(static_cast<std::size_t>(x[u]));
      ax.hi.resize(static_cast<std::size_t>(x[u]));
      for (idx c = 0; c < x[u]; ++c) {
        const std::array<idx, 2> w = window(u, c);
        ax.lo[static_cast<std::size_t>(c)] = w[0];
        ax.hi[static_cast<std::size_t>(c)] = w[1];
      }
      ax.invert();
    }
  }

  std::array<idx, K> coords(idx t) const {
    std::array<idx, K> x{};
    for (std::size_t i = 0; i < K; ++i) {
      x[i] = t / pitch[i];
      t -= x[i] * pitch[i];
    }
    return x;
  }

  /// Per dimension, the coordinate range [first, last] of a box holding the tokens [t0, t1]:
  /// exact in the dimensions where t0 and t1 agree up to there, the whole extent after the
  /// first one where they differ.
  std::array<std::array<idx, 2>, K> box(idx t0, idx t1) const {
    const std::array<idx, K> a = coords(t0), b = coords(t1);
    std::array<std::array<idx, 2>, K> r{};
    bool split = false;
    for (std::size_t i = 0; i < K; ++i) {
      r[i] = split ? std::array<idx, 2>{0, axes[i].extent - 1} : std::array<idx, 2>{a[i], b[i]};
      split |= a[i] != b[i];
    }
    return r;
  }

  bool visible(idx i, idx j) const {
    const std::array<idx, K> x = coords(i), y = coords(j);
    for (std::size_t d = 0; d < K; ++d)
      if (!axes[d].sees(x[d], y[d])) return false;
    return true;
  }

  /// Every key of any query in [q0, q1) has y_i ≥ min lo_i and ≤ max hi_i in each dimension,
  /// so its flat index lies between Σ min lo_i · pitch_i and Σ max hi_i · pitch_i.
  key_span keys(idx q0, idx q1) const {
    if (q1 <= q0) return {};
    const auto qb = box(q0, q1 - 1);
    key_span r{0, 1};
    for (std::size_t i = 0; i < K; ++i) {
      const grid_axis::bounds b = axes[i].over(qb[i][0], qb[i][1]);
      r.begin += b.min_lo * pitch[i];
      r.end += b.max_hi * pitch[i];
    }
    return r;
  }

  /// On boxes around the two tiles (supersets, so both answers are safe): none when in some
  /// dimension no query coordinate reaches any key coordinate, full when in every dimension
  /// every query coordinate sees every key coordinate.
  tile_kind classify(idx q0, idx q1, idx k0, idx k1) const {
    if (q1 <= q0 || k1 <= k0) return tile_kind::none;
    const auto qb = box(q0, q1 - 1), kb = box(k0, k1 - 1);
    bool full = true;
    for (std::size_t i = 0; i < K; ++i) {
      const grid_axis& ax = axes[i];
      const idx a = qb[i][0], b = qb[i][1], c = kb[i][0], e = kb[i][1];
      const grid_axis::bounds w = ax.over(a, b);
      if (w.min_lo > e || w.max_hi < c) return tile_kind::none;
      full = full && w.max_lo <= c && w.min_hi >= e &&
             (ax.step == 1 || (a == b && c == e && (c - a) % ax.step == 0));
    }
    return full ? tile_kind::full : tile_kind::partial;
  }

  /// For each key of [k0, k1), the bits of the rows of [q0, q1) (≤ 64 each) that see it. The
  /// rows split into runs along the last dimension; in a run whose outer coordinates see the
  /// key's, the rows seeing it are a range of the last coordinate (every step-th one).
  void visible_rows(idx q0, idx q1, idx k0, idx k1, std::uint64_t* rows) const {
    constexpr std::size_t last = K - 1;
    const grid_axis& inner = axes[last];
    struct run {
      std::array<idx, K> x;  // coordinates of its first row
      idx bit, length;
    };
    std::array<run, 64> runs{};
    std::size_t n = 0;
    for (idx t = q0; t < q1; n++) {
      runs[n].x = coords(t);
      runs[n].bit = t - q0;
      runs[n].length = std::min(q1 - t, inner.extent - runs[n].x[last]);
      t += runs[n].length;
    }
    // Keys in runs along the last dimension too: the outer test once per pair of runs.
    std::array<bool, 64> outer{};
    for (idx j = k0; j < k1;) {
      const std::array<idx, K> y = coords(j);
      const idx keys = std::min(k1 - j, inner.extent - y[last]);
      for (std::size_t r = 0; r < n; ++r) {
        outer[r] = true;
        for (std::size_t d = 0; d < last; ++d)
          outer[r] = outer[r] && axes[d].sees(runs[r].x[d], y[d]);
      }
      for (idx yl = y[last]; yl < y[last] + keys; ++yl, ++j) {
        const auto u = static_cast<std::size_t>(yl);
        std::uint64_t bits = 0;
        for (std::size_t r = 0; r < n; ++r) {
          if (!outer[r]) continue;
          const idx x0 = runs[r].x[last], bit = runs[r].bit;
          // The first query of y's residue class at or after x0, the last one of the run.
          const idx skip = std::max<idx>(x0 - inner.qlo[u], 0);
          const idx lo = inner.qlo[u] + (skip + inner.step - 1) / inner.step * inner.step;
          const idx hi = std::min(inner.qhi[u], x0 + runs[r].length - 1);
          if (lo > hi) continue;
          if (inner.step == 1) {
            const idx width = hi - lo + 1;
            const std::uint64_t ones =
                width >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << width) - 1;
            bits |= ones << (bit + lo - x0);
          } else {
            for (idx x = lo; x <= hi; x += inner.step) bits |= std::uint64_t{1} << (bit + x - x0);
          }
        }
        rows[j - k0] = bits;
      }
    }
  }
};

/// The grid extents of a pattern for a problem: its `extent` field, or for a 1-D pattern left
/// at 0, the sequence length. Checks they multiply to seq_q = seq_k (self-attention on the grid).
template <int K>
std::array<idx, K> grid_extents(const char* name, const std::array<idx, K>& extent,
                                const problem_shape& s) {
  std::array<idx, K> x = extent;
  if (K == 1 && x[0] == 0) x[0] = s.seq_q;
  idx tokens = 1;
  for (std::size_t i = 0; i < K; ++i) {
    if (x[i] < 1)
      fail(name, ".extent[", i, "]=", x[i], " must be >= 1 (call attention() with rank-", 3 + K,
           " tensors [batch, X1..XK, heads, head_dim], which sets it)");
    tokens *= x[i];
  }
  if (tokens != s.seq_q)
    fail(name, ": the grid's ", tokens, " tokens do not match q.dim(1)=", s.seq_q, " (sequence)");
  if (s.seq_k != s.seq_q)
    fail("k.dim(1)=", s.seq_k, " does not match q.dim(1)=", s.seq_q, " (sequence; ", name,
         " attends within one grid)");
  return x;
}

}  // namespace detail

/// Neighborhood attention over a K-dimensional grid (K = 1, 2, 3); see the top of this file.
///   attn::neighborhood<2>{.kernel = {7, 7}, .dilation = {1, 2}, .causal = {false, false}}
/// Use it with rank-(3+K) tensors through attn/neighborhood.hpp, or on the flattened rank-4
/// [B, N, H, D] form with `extent` set (a 1-D pattern takes N when extent is 0).
template <int K>
struct neighborhood {
  static_assert(K >= 1 && K <= 3, "neighborhood<K>: K must be 1, 2 or 3");
  static constexpr int rank = K;

  std::array<idx, K> kernel{};                         ///< k per dimension, ≥ 2
  std::array<idx, K> dilation = detail::filled<K>(1);  ///< d per dimension, ≥ 1
  std::array<idx, K> stride = detail::filled<K>(1);    ///< s per dimension, in [1, k]
  std::array<bool, K> causal{};                        ///< per dimension
  std::array<idx, K> extent{};                         ///< grid X1..XK (set by the entry)
  detail::grid_windows<K> tables{};                    ///< filled by prepare(), not a parameter

  key_span keys(const head_ctx&, idx q0, idx q1) const { return tables.keys(q0, q1); }
  tile_kind classify(const head_ctx&, idx q0, idx q1, idx k0, idx k1) const {
    return tables.classify(q0, q1, k0, k1);
  }
  bool visible(const head_ctx&, idx i, idx j) const { return tables.visible(i, j); }
  void visible_rows(const head_ctx&, idx q0, idx q1, idx k0, idx k1, std::uint64_t* rows) const {
    tables.visible_rows(q0, q1, k0, k1, rows);
  }
  static constexpr bool has_bias = false;
  float logit_bias(const head_ctx&, idx, idx) const { return 0.0f; }

  void check(const detail::problem_shape& s) const {
    const std::array<idx, K> x = detail::grid_extents<K>("neighborhood", extent, s);
    for (std::size_t i = 0; i < K; ++i) {
      if (kernel[i] < 2) detail::fail("neighborhood.kernel[", i, "]=", kernel[i], " must be >= 2");
      if (dilation[i] < 1)
        detail::fail("neighborhood.dilation[", i, "]=", dilation[i], " must be >= 1");
      if (kernel[i] * dilation[i] > x[i])
        detail::fail("neighborhood.kernel[", i, "]=", kernel[i], " times dilation[", i,
                     "]=", dilation[i], " exceeds extent[", i, "]=", x[i]);
      if (stride[i] < 1 || stride[i] > kernel[i])
        detail::fail("neighborhood.stride[", i, "]=", stride[i], " must be in [1, kernel[", i,
                     "]=", kernel[i], "]");
    }
  }

  /// Tabulates every coordinate's window with the formulas at the top of this file.
  void prepare(const detail::problem_shape& s) {
    extent = detail::grid_extents<K>("neighborhood", extent, s);
    tables.tabulate(extent, dilation, [&](std::size_t i, idx x) {
      const idx L = extent[i], k = kernel[i], d = dilation[i], st = stride[i];
      const idx g = x % d, xg = x / d, group_length = (L - g + d - 1) / d;
      idx first, last;
      if (causal[i]) {
        const idx leader = std::min(st * (xg / st) + st - 1, group_length - 1);
        first = std::max<idx>(leader - k + 1, 0);
        last = xg;
      } else {
        const idx wl = k / 2, wr = k / 2 + k % 2 - 1;
        const idx leader = std::min(st * (xg / st) + st / 2, group_length - 1);
        const idx centre = std::clamp(leader, wl, group_length - 1 - wr);
        first = centre - wl;
        last = centre + wr;
      }
      return std::array<idx, 2>{first * d + g, last * d + g};
    });
  }
};

}  // namespace attn
