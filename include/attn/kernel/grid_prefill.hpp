// The fused loop for neighborhood attention on a 2D or 3D grid: query tiles are patches of the
// grid and key tiles are gathered from the box their windows cover.
//
// Why not the flat loop (prefill.hpp): its query tile is 64 consecutive tokens, one run along
// the grid's last dimension, and its key tiles are 64 consecutive tokens. On a 64 × 64 image a
// 7 × 7 window then makes every query tile compute 7 whole key rows, 448 keys for 49 visible
// (9×). Here a query tile is a patch (8 × 8 on AVX-512), its keys are the tokens of the box
// that holds every window of the patch (14 × 14 = 196 for 7 × 7, 4× the visible pairs), and
// K/V rows are gathered into packed tiles as the flat loop already packs them. The products, the
// score and the online softmax are the flat loop's; only which rows are read, and the mask,
// differ:
//
//   for each (batch, head, patch)                   — spread over workers, head by head
//     gather the patch's Q rows, pack Qᵀ · q_factor
//     per lane: its window [lo_d, hi_d] in every dimension d (pattern.tables)
//     keys = the box [min lo_d, max hi_d] of the lanes, row-major, below the key length
//     for each run of 64 keys of the box
//       gather K and V rows; Sᵀ = K·Qᵀ; transform
//       mask: query lane i sees key y iff lo_d[i] ≤ y_d ≤ hi_d[i] for every d (vector compares
//             with queries in lanes; the window is a box in every NATTEN case this loop takes)
//       weigh, Oᵀ = α ⊙ Oᵀ + Vᵀ·Pᵀ
//     scatter out = Oᵀᵀ · output_factor, LSE
//
// It runs neighborhood<2> and neighborhood<3> without dilation (dilated calls are split into
// undilated groups by dilation_groups.hpp, or, with LSE or lengths, keep the flat loop, whose
// masks follow the residue classes). Stride and causal windows are boxes too.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <limits>
#include <vector>

#include "attn/kernel/prefill.hpp"
#include "attn/pattern/neighborhood.hpp"
#include "attn/simd/microkernel.hpp"
#include "attn/simd/transpose.hpp"

namespace attn::detail {

/// Whether the grid loop takes this pattern: 2D/3D neighborhoods without dilation.
template <class Pattern>
bool grid_loop_takes(const Pattern&) {
  return false;
}
template <int K>
bool grid_loop_takes(const neighborhood<K>& pattern) {
  return K >= 2 && std::all_of(pattern.dilation.begin(), pattern.dilation.end(),
                               [](idx d) { return d == 1; });
}

/// The patch of a query tile of M lanes on a grid with extents x: 8 (or 4 when M is not a
/// multiple of 8) along the last dimension, then as many as fit along the ones before.
template <int K>
std::array<idx, K> patch_shape(idx M, const std::array<idx, K>& x) {
  std::array<idx, K> p{};
  idx left = M;
  for (int d = K - 1; d >= 0; --d) {
    const auto u = static_cast<std::size_t>(d);
    const idx want = d == K - 1 ? (M % 8 == 0 ? 8 : 4) : left;
    p[u] = std::max<idx>(1, std::min({want, left, x[u]}));
    left /= p[u];
  }
  return p;
}

/// Appends the tokens of the box [lo_d, hi_d] (row-major) that lie below `limit`.
template <int K>
void box_tokens(const std::array<idx, K>& pitch, const std::array<idx, K>& lo,
                const std::array<idx, K>& hi, idx limit, std::vector<idx>& tokens) {
  std::array<idx, K> y = lo;
  for (std::size_t d = 0; d < K; ++d)
    if (hi[d] < lo[d]) return;
  for (;;) {
    idx t = 0;
    for (std::size_t d = 0; d < K; ++d) t += y[d] * pitch[d];
    // Along the last dimension the tokens are consecutive: add the run at once.
    const idx run = hi[K - 1] - lo[K - 1] + 1;
    for (idx r = 0; r < run && t + r < limit; ++r) tokens.push_back(t + r);
    int d = K - 2;
    for (; d >= 0; --d) {
      const auto u = static_cast<std::size_t>(d);
      if (++y[u] <= hi[u]) break;
      y[u] = lo[u];
    }
    if (d < 0) return;
  }
}

template <class A, class ScoreTile, class Score, int K>
void grid_prefill(const prefill_args& a, const Score& score, const neighborhood<K>& pattern) {
  constexpr idx M = simd::tile_queries<A>;
  constexpr idx NK = key_tile<A>;
  constexpr idx L = simd::lanes<A>, QV = M / L;
  using vec = simd::vec<A>;
  const problem_shape& s = a.shape;
  const idx D = s.head_dim, Dv = s.head_dim_v;
  const grid_windows<K>& grid = pattern.tables;
  const std::array<idx, K> patch = patch_shape<K>(M, pattern.extent);
  std::array<idx, K> patches_along{};
  idx patches = 1;
  for (std::size_t d = 0; d < K; ++d) {
    patches_along[d] = (pattern.extent[d] + patch[d] - 1) / patch[d];
    patches *= patches_along[d];
  }
  const idx items = s.batch * s.heads_q * patches;
  if (items == 0) return;
  const int workers = static_cast<int>(std::min<idx>(a.workers, items));

  std::atomic<idx> next{0};
  auto body = [&](int) {
    aligned_floats buffer(static_cast<std::size_t>(D * M + Dv * M + NK * M + NK * D + NK * Dv +
                                                   M * std::max(D, Dv) + 2 * K * M + K * NK));
    float* qt = buffer.get();
    float* ot = qt + D * M;
    float* st = ot + Dv * M;
    float* kt = st + NK * M;
    float* vt = kt + NK * D;
    float* stage = vt + NK * Dv;                  // M rows of Q or out, row-major
    float* window = stage + M * std::max(D, Dv);  // lo_d, hi_d per lane: [2K × M]
    float* key_at = window + 2 * K * M;           // coordinates of the chunk's keys: [K × NK]
    ScoreTile tile(score, a.scale);
    const float q_factor = tile.q_factor();
    nonfinite_values bad_values;
    std::array<idx, M> rows{};  // token of each lane
    std::vector<idx> keys;      // tokens of the box

    for (idx item; (item = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      const idx bh = item / patches, b = bh / s.heads_q, h = bh % s.heads_q;
      const head_ctx c = context_of(a, b, h);

      // The patch: its first coordinate and clipped extent per dimension, its tokens in
      // row-major order on the first lanes, and each lane's window. Lanes past the patch, or
      // past the batch's query length, get an empty window (lo > hi).
      std::array<idx, K> first{}, extent{};
      for (idx rest = item % patches, d = K - 1; d >= 0; --d) {
        const auto u = static_cast<std::size_t>(d);
        first[u] = rest % patches_along[u] * patch[u];
        extent[u] = std::min(patch[u], pattern.extent[u] - first[u]);
        rest /= patches_along[u];
      }
      idx lanes = 1, live = 0;  // tokens of the clipped patch; those below the query length
      for (idx e : extent) lanes *= e;
      std::array<idx, K> box_lo = pattern.extent, box_hi{};
      box_hi.fill(-1);
      for (idx lane = 0; lane < M; ++lane) {
        std::array<idx, K> x{};
        for (idx left = lane, d = K - 1; d >= 0; --d) {
          const auto u = static_cast<std::size_t>(d);
          x[u] = first[u] + left % extent[u];
          left /= extent[u];
        }
        idx t = 0;
        for (std::size_t d = 0; d < K; ++d) t += x[d] * grid.pitch[d];
        const bool sees = lane < lanes && t < c.seq_q;
        for (std::size_t d = 0; d < K; ++d) {
          const idx lo = sees ? grid.axes[d].lo[static_cast<std::size_t>(x[d])] : 1;
          const idx hi = sees ? grid.axes[d].hi[static_cast<std::size_t>(x[d])] : 0;
          window[(2 * d) * M + lane] = static_cast<float>(lo);
          window[(2 * d + 1) * M + lane] = static_cast<float>(hi);
          if (sees) box_lo[d] = std::min(box_lo[d], lo), box_hi[d] = std::max(box_hi[d], hi);
        }
        if (lane < lanes) rows[static_cast<std::size_t>(lane)] = t;
        live += sees;
      }
      for (idx i = 0; i < lanes; ++i) {
        const float* qrow = a.q.row(b, rows[static_cast<std::size_t>(i)], h);
        std::copy(qrow, qrow + D, stage + i * D);
      }
      simd::transpose_scaled<A>(stage, D, lanes, D, q_factor, qt, M, M);
      std::fill(ot, ot + Dv * M, 0.0f);
      tile.begin(c);

      keys.clear();
      if (live > 0) box_tokens<K>(grid.pitch, box_lo, box_hi, c.seq_k, keys);
      const auto n_keys = static_cast<idx>(keys.size());
      for (idx k0 = 0; k0 < n_keys; k0 += NK) {
        const idx n = std::min(NK, n_keys - k0);
        bad_values.clear();
        for (idx j = 0; j < n; ++j) {
          const idx token = keys[static_cast<std::size_t>(k0 + j)];
          const float* krow = a.k.row(b, token, c.kv_head);
          const float* vrow = a.v.row(b, token, c.kv_head);
          std::copy(krow, krow + D, kt + j * D);
          std::copy(vrow, vrow + Dv, vt + j * Dv);
          bad_values.scan(j, vt + j * Dv, Dv);
          const std::array<idx, K> y = grid.coords(token);
          for (std::size_t d = 0; d < K; ++d) key_at[d * NK + j] = static_cast<float>(y[d]);
        }
        simd::scores_tile<A>(qt, D, kt, D, n, st);
        tile.transform(st, n);
        // The mask, queries in lanes: −inf where a key is outside the lane's window box.
        const vec hidden = simd::splat<A>(-std::numeric_limits<float>::infinity());
        for (idx j = 0; j < n; ++j) {
          float* row = st + j * M;
          for (idx v = 0; v < QV; ++v) {
            auto seen = simd::load<A>(window + v * L) <= simd::splat<A>(key_at[j]);
            seen = seen && simd::splat<A>(key_at[j]) <= simd::load<A>(window + M + v * L);
            for (std::size_t d = 1; d < K; ++d) {
              const vec y = simd::splat<A>(key_at[d * NK + j]);
              seen = seen && simd::load<A>(window + (2 * d) * M + v * L) <= y;
              seen = seen && y <= simd::load<A>(window + (2 * d + 1) * M + v * L);
            }
            simd::store<A>(row + v * L, simd::select(seen, simd::load<A>(row + v * L), hidden));
          }
        }
        tile.weigh(st, n);
        simd::accumulate_tile<A>(st, n, vt, Dv, Dv, tile.alpha, ot);
        if (!bad_values.empty()) bad_values.add_to(0, n, st, M, M, Dv, ot, 1, M);
      }

      write_tile_out<A>(
          a, c, tile, ot, lanes, [&](idx i) { return rows[static_cast<std::size_t>(i)]; }, stage);
    }
  };
  a.executor.parallel(workers, body);
}

}  // namespace attn::detail
