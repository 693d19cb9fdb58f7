// The lane loop of neighborhood attention: small windows (pattern/neighborhood.hpp) computed
// key by key of each query's own window, with no box of keys around a tile.
//
// The grid loop (grid_prefill.hpp) gives a patch of 64 queries the box of their windows: for a
// 7×7 kernel an 8×8 patch's box holds 14×14 = 196 keys, 4× the 49 each query sees, and that
// waste is the whole cost of small kernels. Here the lanes of a vector are 16 queries
// *consecutive along the last grid axis*, and slot (r, t) of the score tile is, for lane x, the
// t-th key of x's window in key row r:
//   * along the leading axes every lane has the same coordinates, so the same key rows r;
//   * along the last axis the non-causal window of x is [x − wl, x + wr] away from the borders
//     (NAT §3.1), so key t of lane x is column lo₀ + t + (x − x₀): *one unaligned vector load*
//     from a transposed copy of the key row, Kᵀ[d][·], gives slot t for all 16 lanes ("sliding"
//     runs). Near a border the window stops moving for some lanes; their columns are still
//     within one vector's reach, so the load is permuted (simd::load_permuted).
// So Sᵀ[(r, t), lanes] = Σ_d Qᵀ[d, lanes] · Kᵀ_r[d, lo₀ + t + lanes] and Oᵀ[e, lanes] =
// Σ_(r,t) Pᵀ[(r, t), lanes] · Vᵀ_r[e, lo₀ + t + lanes]: exactly the k₁·…·k_K keys of each
// query, and the score tiles of score/*.hpp (online softmax, soft-cap, sinks, sigmoid) run on
// Sᵀ unchanged. Where windows change length or jump (causal or strided axes), runs are cut.
//
// Q, K and V are transposed once per call and grid row ([D][X + padding]): memory the size of K
// and V, read back k₁·…·k_{K−1} times from cache. Chosen by attention.hpp for undilated grids
// (dilated ones are split into undilated residue groups first, neighborhood.hpp) when the
// window is small (lane_loop_takes()).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "attn/exec/executor.hpp"
#include "attn/kernel/prefill.hpp"
#include "attn/kernel/workspace.hpp"
#include "attn/pattern/neighborhood.hpp"
#include "attn/simd/transpose.hpp"

namespace attn::detail {

/// Queries per run: the lanes of one score tile (a whole number of vectors on every arch).
inline constexpr idx lane_queries = 16;

/// Consecutive queries x₀ … x₀ + n − 1 of the last axis with windows of one length there,
/// [lo₀ + off[ℓ], lo₀ + off[ℓ] + count) for lane ℓ, where off grows by 0 or 1 per lane. Lane ℓ
/// of vector v then reads its key t at key + t + first[v] + shift[ℓ], shift[ℓ] in [0, lanes):
/// one unaligned load, permuted (sliding runs, off[ℓ] = ℓ, need no permutation).
struct lane_run {
  idx x0 = 0, n = 1, lo0 = 0, count = 1;
  bool sliding = true;
  std::array<idx, 16> first{};           ///< per vector: off of its first lane
  std::array<std::int32_t, 16> shift{};  ///< per lane: off − first of its vector
};

/// Cuts the last axis into runs of at most lane_queries queries, for lanes<A> lanes per vector.
inline std::vector<lane_run> lane_runs(const grid_axis& ax, idx lanes) {
  const auto lo = [&](idx x) { return ax.lo[static_cast<std::size_t>(x)]; };
  const auto count = [&](idx x) { return ax.hi[static_cast<std::size_t>(x)] - lo(x) + 1; };
  std::vector<lane_run> runs;
  for (idx x = 0; x < ax.extent;) {
    lane_run r;
    r.x0 = x;
    r.lo0 = lo(x);
    r.count = count(x);
    while (r.n < lane_queries && x + r.n < ax.extent && count(x + r.n) == r.count &&
           lo(x + r.n) - lo(x + r.n - 1) <= 1 && lo(x + r.n) >= lo(x + r.n - 1)) {
      r.sliding &= lo(x + r.n) == lo(x + r.n - 1) + 1;
      ++r.n;
    }
    // Lanes past n (computed, never written) repeat the last lane's offset, or slide on.
    std::array<idx, 16> off{};
    idx last = 0;
    for (idx l = 0; l < lane_queries; ++l) {
      last = l < r.n ? lo(x + l) - r.lo0 : last + (r.sliding ? 1 : 0);
      off[static_cast<std::size_t>(l)] = last;
    }
    for (idx l = 0; l < lane_queries; ++l) {
      const auto u = static_cast<std::size_t>(l), v = static_cast<std::size_t>(l / lanes);
      if (l % lanes == 0) r.first[v] = off[u];
      r.shift[u] = static_cast<std::int32_t>(off[u] - r.first[v]);
    }
    runs.push_back(r);
    x += r.n;
  }
  return runs;
}

/// Whether the lane loop runs a neighborhood pattern: undilated, with a small window along the
/// last axis. The grid loop's box wastes less as the window grows, while each key here is one
/// load per FMA from L2, so the crossover falls with head_dim. Measured at 64×64 tokens, 4
/// heads (one thread, best of 20, grid time ÷ lane time): D = 32: k = 3 3.2×, 5 2.1×, 7 1.7×,
/// 9 1.4×, 11 1.3×, 13 1.1×, 15 1.0×; D = 64: 3 1.8×, 5 1.5×, 7 1.3×, 9 1.1×, 11 1.0×, 13 0.9×.
inline constexpr idx lane_window_budget = 600;  // k_last · max(head_dim, 32)
template <class Pattern>
inline constexpr bool is_neighborhood = false;
template <int K>
inline constexpr bool is_neighborhood<neighborhood<K>> = true;
template <int K>
bool lane_loop_takes(const neighborhood<K>& p, const prefill_args& a) {
  return std::all_of(p.dilation.begin(), p.dilation.end(), [](idx d) { return d == 1; }) &&
         p.kernel[K - 1] * std::max<idx>(a.shape.head_dim, 32) <= lane_window_budget &&
         a.key_lengths.empty() && a.query_lengths.empty();
}

/// Vector v of slot t of a run, for a key (or value) row at `row`: see lane_run.
template <class A, bool Sliding>
inline simd::vec<A> lane_load(const float* row, const lane_run& run, int v) {
  constexpr int L = simd::lanes<A>;
  if constexpr (Sliding)
    return simd::load<A>(row + v * L);
  else
    return simd::load_permuted<A>(row + run.first[static_cast<std::size_t>(v)],
                                  run.shift.data() + v * L);
}

/// The one product of the lane loop: for N rows n and each step i,
///   out[n, :] += w_i ⊙ lane_load(row_at(i) + n·row_stride),   w_i = the 16 lanes at w +
///   i·w_stride,
/// from zero, out rows lane_queries floats apart. Both products are this:
///   scores      Sᵀ[j, :] = Σ_d Qᵀ[d, :] ⊙ key_j(d)   steps d, rows = slots of one key row
///                (row_stride 1: slot j is the next column)
///   accumulate  Oᵀ[e, :] = Σ_j Pᵀ[j, :] ⊙ value_j(e)  steps j, rows = output rows e (stride ld)
/// — the whole window is one block of slots, so there is no earlier accumulator to rescale.
/// Stride: std::integral_constant for a compile-time stride (its offsets fold into the loads).
template <class A, bool Sliding, int N, class RowAt, class Stride>
inline void lane_products(idx steps, const float* w, idx w_stride, RowAt row_at, Stride row_stride,
                          const lane_run& run, float* out) {
  constexpr int L = simd::lanes<A>, QV = static_cast<int>(lane_queries) / L;
  constexpr int M = static_cast<int>(lane_queries);
  simd::vec<A> acc[N][QV];
#pragma GCC unroll 16
  for (int n = 0; n < N; ++n)
#pragma GCC unroll 16
    for (int v = 0; v < QV; ++v) acc[n][v] = simd::splat<A>(0.0f);
  for (idx i = 0; i < steps; ++i) {
    simd::vec<A> wv[QV];
#pragma GCC unroll 16
    for (int v = 0; v < QV; ++v) wv[v] = simd::load<A>(w + i * w_stride + v * L);
    const float* row = row_at(i);
#pragma GCC unroll 16
    for (int n = 0; n < N; ++n)
#pragma GCC unroll 16
      for (int v = 0; v < QV; ++v)
        acc[n][v] =
            simd::fma(wv[v], lane_load<A, Sliding>(row + n * row_stride, run, v), acc[n][v]);
  }
#pragma GCC unroll 16
  for (int n = 0; n < N; ++n)
#pragma GCC unroll 16
    for (int v = 0; v < QV; ++v) simd::store<A>(out + n * M + v * L, acc[n][v]);
}

/// Register blocks: slots per score block (the accumulators plus a query and a key vector fit
/// the register file: 32 zmm, 16 ymm/xmm; unroll 16 keeps them there) and output rows per
/// accumulate block (fewer: each row's value address is one more live pointer).
template <class A>
inline constexpr int lane_block = std::max(1,
                                           (simd::lanes<A> == 16 ? 16 : 12) /
                                               (static_cast<int>(lane_queries) / simd::lanes<A>));
template <class A>
inline constexpr int lane_value_block = std::max(1, lane_block<A> / 2);

/// Runs [0, n) through f.template operator()<J>(first) in blocks of Block, the remainder as
/// one smaller block.
template <int Block, class F>
inline void in_lane_blocks(idx n, F&& f) {
  constexpr int J = Block;
  idx j = 0;
  for (; j + J <= n; j += J) f.template operator()<J>(j);
  if (j < n)
    simd::detail::with_rows<J>(static_cast<int>(n - j),
                               [&]<int R>() { f.template operator()<R>(j); });
}

template <class A, class ScoreTile, class Score, int K>
void neighborhood_lanes(const prefill_args& a, const Score& score, const neighborhood<K>& p) {
  constexpr idx M = lane_queries, L = simd::lanes<A>;
  const problem_shape& s = a.shape;
  const grid_windows<K>& grid = p.tables;
  const idx X = grid.axes[K - 1].extent, rows = s.seq_q / X;
  const idx D = s.head_dim, Dv = s.head_dim_v, Hq = s.heads_q, Hkv = s.heads_kv;
  // Transposed rows: the columns past X (zeros) are read by the lanes past a run's end.
  const idx ld = (X + M + L - 1) / L * L;
  const idx row_floats = (D + Dv) * ld;
  if (s.batch * Hq * rows == 0) return;
  const std::vector<lane_run> runs = lane_runs(grid.axes[K - 1], L);

  // 1. Kᵀ and Vᵀ of every (batch, KV head, grid row).
  aligned_floats transposed(static_cast<std::size_t>(s.batch * Hkv * rows * row_floats));
  auto row_of = [&](idx b, idx g, idx r) {
    return transposed.get() + ((b * Hkv + g) * rows + r) * row_floats;
  };
  exec::for_each_item(a.executor, a.workers, s.batch * Hkv * rows, [&](idx u) {
    const idx r = u % rows, g = u / rows % Hkv, b = u / rows / Hkv;
    float* kt = row_of(b, g, r);
    simd::transpose_scaled<A>(a.k.row(b, r * X, g), a.k.strides[1], X, D, 1.0f, kt, ld, ld);
    simd::transpose_scaled<A>(a.v.row(b, r * X, g), a.v.strides[1], X, Dv, 1.0f, kt + D * ld, ld,
                              ld);
  });

  // 2. The key rows each grid row's queries see: the product of the leading axes' windows
  // (the same for every batch and head, so found once).
  std::vector<std::vector<idx>> key_rows_of(static_cast<std::size_t>(rows));
  idx slots_max = 0;
  for (idx r = 0; r < rows; ++r) {
    const std::array<idx, K> x = grid.coords(r * X);
    std::vector<idx>& key_rows = key_rows_of[static_cast<std::size_t>(r)];
    key_rows.assign(1, 0);
    for (int i = 0; i + 1 < K; ++i) {
      const grid_axis& ax = grid.axes[static_cast<std::size_t>(i)];
      const auto xi = static_cast<std::size_t>(x[static_cast<std::size_t>(i)]);
      std::vector<idx> wider;
      for (idx base : key_rows)
        for (idx y = ax.lo[xi]; y <= ax.hi[xi]; ++y) wider.push_back(base * ax.extent + y);
      key_rows.swap(wider);
    }
    slots_max = std::max(slots_max, static_cast<idx>(key_rows.size()) * p.kernel[K - 1]);
  }

  // 3. Every (batch, query head, grid row): its runs, each against its window's slots.
  const idx items = s.batch * Hq * rows;
  std::atomic<idx> next{0};
  auto body = [&](int) {
    aligned_floats buffer(static_cast<std::size_t>(D * ld + M * (2 * Dv + slots_max + 1)));
    float* qt = buffer.get();         // Qᵀ [D × ld] of the grid row, scaled
    float* ot = qt + D * ld;          // Oᵀ [Dv × M]
    float* orows = ot + Dv * M;       // O [M × Dv]
    float* factors = orows + M * Dv;  // [M]
    float* st = factors + M;          // Sᵀ / Pᵀ [slots × M]
    std::vector<const float*> value_at(static_cast<std::size_t>(slots_max));
    ScoreTile tile(score, a.scale);
    const float q_factor = tile.q_factor();
    for (idx item; (item = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      const idx r = item % rows, h = item / rows % Hq, b = item / rows / Hq;
      const head_ctx c = context_of(a, b, h);
      const std::vector<idx>& key_rows = key_rows_of[static_cast<std::size_t>(r)];
      // Qᵀ of the whole grid row: a run's lanes are its columns x0 … x0 + 15 (past the run's
      // end: other queries or zeros, computed and never written).
      simd::transpose_scaled<A>(a.q.row(b, r * X, h), a.q.strides[1], X, D, q_factor, qt, ld, ld);
      for (const lane_run& run : runs) {
        const idx t0 = r * X + run.x0;
        tile.begin_rows(c, 0, static_cast<int>(M));
        idx n = 0;
        for (idx kr : key_rows) {
          const float* kt = row_of(b, c.kv_head, kr);
          for (idx t = 0; t < run.count; ++t, ++n)
            value_at[static_cast<std::size_t>(n)] = kt + D * ld + run.lo0 + t;
        }
        auto window = [&]<bool Sliding>() {
          // Score blocks of lane_block<A> slots of one key row, dispatched once per run.
          in_lane_blocks<lane_block<A>>(run.count, [&]<int J>(idx j) {
            for (std::size_t i = 0; i < key_rows.size(); ++i) {
              const float* key = row_of(b, c.kv_head, key_rows[i]) + run.lo0 + j;
              lane_products<A, Sliding, J>(
                  D, qt + run.x0, ld, [&](idx d) { return key + d * ld; },
                  std::integral_constant<idx, 1>{}, run,
                  st + (static_cast<idx>(i) * run.count + j) * M);
            }
          });
          tile.transform(st, n);
          tile.weigh(st, n);
          in_lane_blocks<lane_value_block<A>>(Dv, [&]<int E>(idx e) {
            lane_products<A, Sliding, E>(
                n, st, M, [&](idx j) { return value_at[static_cast<std::size_t>(j)] + e * ld; }, ld,
                run, ot + e * M);
          });
        };
        if (run.sliding)
          window.template operator()<true>();
        else
          window.template operator()<false>();
        // Oᵀ back to rows, each lane times its output factor.
        for (idx l = 0; l < M; ++l) factors[l] = tile.output_factor(static_cast<int>(l));
        simd::transpose_scaled<A>(ot, M, Dv, M, factors, orows, Dv, Dv);
        for (idx l = 0; l < run.n; ++l) {
          const int lane = static_cast<int>(l);
          std::copy_n(orows + l * Dv, Dv, a.out.row(b, t0 + l, h));
          if constexpr (Score::has_lse)
            if (a.lse) a.lse[(b * Hq + h) * s.seq_q + t0 + l] = tile.lse(lane);
        }
      }
    }
  };
  a.executor.parallel(static_cast<int>(std::min<idx>(a.workers, items)), body);
}

}  // namespace attn::detail
