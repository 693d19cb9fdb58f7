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
// Every load there feeds one FMA, and the window's rows (about 20 KiB each at D = 32) come
// from L2: the loop is load-bound. So a work item takes four consecutive grid rows, whose
// windows along the second-to-last axis share k − 3 of their k + 3 key rows, and runs them
// over the union of their key rows, each key row's products for the query rows that see it
// (the others mask its slots): a key or value vector loaded feeds up to four FMAs. Two rows
// per item made 7×7 to 13×13 1.3–1.5× faster (D = 32, 64), four another 1.07–1.16×.
//
// Q, K and V are transposed per grid row ([D][X + padding]): Q per item, K and V into a worker's
// few slots (transposed_rows) as its items move along the grid, each row once per query head
// and range of rows, read back k₁·…·k_{K−1} times from L2. Chosen by attention.hpp for
// undilated grids (dilated ones are split into undilated residue groups first,
// neighborhood.hpp) when the window is small (lane_loop_takes()).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
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

/// Whether the lane loop runs a neighborhood pattern: undilated, with a window along the last
/// axis that is not huge. The grid loop's box wastes less as the window grows, and the lane
/// loop's buffers grow with it (a score slot per key of the union, a transposed row per key
/// row). Measured at 64×64 tokens, 4 heads (one thread, min of 2–3 interleaved runs, grid time
/// ÷ lane time): D = 32: k = 31 1.5×, 45 1.3×, 63 1.07×; D = 64: 21 1.5×, 31 1.4×, 45 1.2×;
/// D = 128: 7 1.9×, 13 1.6×, 21 1.4×, 31 1.2×, 45 1.0×; D = 256: 13 1.4×, 31 1.1×.
inline constexpr idx lane_window_budget = 4096;  // k_last · max(head_dim, 32)
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

/// Row addresses of the score product: step d reads Kᵀ row d.
struct key_rows_at {
  const float* key;
  idx ld;
  const float* operator()(idx d) const { return key + d * ld; }
};
/// Of the value product: step j reads slot j's value column, from Vᵀ row `offset / ld`.
struct value_rows_at {
  const float* const* at;
  idx offset;
  const float* operator()(idx j) const { return at[j] + offset; }
};

// One copy of each product per arch and block shape, shared by every score type and grid rank:
// inlined into each, its loops were compiled once per caller (4× the compile time).
#if defined(__GNUC__)
#define ATTN_LANE_PRODUCTS_NOINLINE __attribute__((noinline))
#else
#define ATTN_LANE_PRODUCTS_NOINLINE
#endif

/// Consecutive steps of one product that the same query rows take part in (bit p: row p).
struct lane_segment {
  idx steps = 0;
  unsigned rows = 0;
};

/// Whether the bits of `rows` are one run of ones.
constexpr bool contiguous_rows(unsigned rows) {
  const unsigned low = rows >> std::countr_zero(rows);
  return rows != 0 && (low & (low + 1)) == 0;
}

/// steps.template operator()<Rows>(i0, i1) when Rows is contiguous, else once per row of it.
template <unsigned Rows, int P, class Steps>
inline void steps_of_rows(Steps& steps, idx i0, idx i1) {
  if constexpr (contiguous_rows(Rows))
    steps.template operator()<Rows>(i0, i1);
  else
    [&]<int... Q>(std::integer_sequence<int, Q...>) {
      ((Rows >> Q & 1u ? (steps.template operator()<1u << Q>(i0, i1), 0) : 0), ...);
    }
  (std::make_integer_sequence<int, P>{});
}

/// The one product of the lane loop, for P query rows at once: for N rows n and each step i,
///   out_p[n, :] = Σ_i w_p,i ⊙ lane_load(row_at(i) + n·row_stride),   w_p,i = the 16 lanes at
///   w_p + i·w_stride,
/// out rows lane_queries floats apart, with query row p taking part only in the segments whose
/// `rows` name it (the steps of a key row it does not see: not even 0·v, which is NaN for an
/// infinite v). Each loaded vector serves the taking rows' FMAs: up to P FMAs per load instead
/// of one, loads being the loop's limit. Both products are this:
///   scores      Sᵀ[j, :] = Σ_d Qᵀ[d, :] ⊙ key_j(d)   steps d, rows = slots of one key row
///                (row_stride 1: slot j is the next column)
///   accumulate  Oᵀ[e, :] = Σ_j Pᵀ[j, :] ⊙ value_j(e)  steps j, rows = output rows e (stride ld)
/// — the whole window is one block of slots, so there is no earlier accumulator to rescale.
/// Stride: std::integral_constant for a compile-time stride (its offsets fold into the loads).
template <class A, bool Sliding, int N, int P, class RowAt, class Stride>
ATTN_LANE_PRODUCTS_NOINLINE void lane_products(std::span<const lane_segment> segments,
                                               std::array<const float*, P> w, idx w_stride,
                                               RowAt row_at, Stride row_stride, const lane_run& run,
                                               std::array<float*, P> out) {
  constexpr int L = simd::lanes<A>, QV = static_cast<int>(lane_queries) / L;
  constexpr int M = static_cast<int>(lane_queries);
  simd::vec<A> acc[P][N][QV];
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
    for (int n = 0; n < N; ++n)
#pragma GCC unroll 16
      for (int v = 0; v < QV; ++v) acc[p][n][v] = simd::splat<A>(0.0f);
  // Steps [i0, i1) for the rows of the bit mask Rows (a template argument: each loop holds
  // only its own FMAs).
  auto steps = [&]<unsigned Rows>(idx i0, idx i1) {
    for (idx i = i0; i < i1; ++i) {
      simd::vec<A> wv[P][QV];
#pragma GCC unroll 16
      for (int p = 0; p < P; ++p)
        if (Rows >> p & 1u)
#pragma GCC unroll 16
          for (int v = 0; v < QV; ++v) {
            wv[p][v] = simd::load<A>(w[p] + i * w_stride + v * L);
            if constexpr (N > 1) wv[p][v] = simd::in_register<A>(wv[p][v]);
          }
      const float* row = row_at(i);
#pragma GCC unroll 16
      for (int n = 0; n < N; ++n)
#pragma GCC unroll 16
        for (int v = 0; v < QV; ++v) {
          // GCC would fold the load into each FMA (a load per FMA again): one value, in a
          // register, when it serves several rows.
          simd::vec<A> x = lane_load<A, Sliding>(row + n * row_stride, run, v);
          if constexpr (std::popcount(Rows) > 1) x = simd::in_register<A>(x);
#pragma GCC unroll 16
          for (int p = 0; p < P; ++p)
            if (Rows >> p & 1u) acc[p][n][v] = simd::fma(wv[p][v], x, acc[p][n][v]);
        }
    }
  };
  // A segment's rows are a contiguous range of the item's (windows move monotonically with the
  // query row), one loop each; any other set, which no grid produces, row by row.
  idx i = 0;
  for (const lane_segment& seg : segments) {
    [&]<unsigned... R>(std::integer_sequence<unsigned, R...>) {
      ((seg.rows == R + 1 ? (steps_of_rows<R + 1, P>(steps, i, i + seg.steps), 0) : 0), ...);
    }
    (std::make_integer_sequence<unsigned, (1u << P) - 1>{});
    i += seg.steps;
  }
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
    for (int n = 0; n < N; ++n)
#pragma GCC unroll 16
      for (int v = 0; v < QV; ++v) simd::store<A>(out[p] + n * M + v * L, acc[p][n][v]);
}

/// Register blocks of P query rows: rows per score block (P·rows·QV accumulators, P·QV weights
/// and a loaded vector fit the register file: 32 zmm, 16 ymm/xmm; unroll 16 keeps them there)
/// and output rows per accumulate block (a power of two, at most 8: each row's value address
/// is one more live offset).
template <class A, int P>
inline constexpr int lane_block = std::max(
    1,
    ((simd::lanes<A> == 16 ? 32 : 16) - P * static_cast<int>(lane_queries) / simd::lanes<A> - 1) /
        (P * static_cast<int>(lane_queries) / simd::lanes<A>));
template <class A, int P>
inline constexpr int lane_value_block = lane_block<A, P> >= 8   ? 8
                                        : lane_block<A, P> >= 4 ? 4
                                        : lane_block<A, P> >= 2 ? 2
                                                                : 1;

/// Runs [0, n) through f.template operator()<J>(first) in the fewest blocks of at most Block,
/// of near-equal sizes (a 15 as 8 + 7, not 14 + 1: a block of one loads as much per FMA as P
/// weight vectors).
template <int Block, class F>
inline void in_lane_blocks(idx n, F&& f) {
  const idx blocks = (n + Block - 1) / Block;
  for (idx b = 0, j = 0; b < blocks; ++b) {
    const idx size = n / blocks + (b < n % blocks ? 1 : 0);
    if (size == Block)
      f.template operator()<Block>(j);
    else
      simd::detail::with_rows<Block>(static_cast<int>(size),
                                     [&]<int R>() { f.template operator()<R>(j); });
    j += size;
  }
}

/// Query grid rows per work item: the windows of four consecutive rows share k − 3 of their
/// k + 3 key rows along the second-to-last axis, and lane_products serves the rows that see a
/// key row from one load of each vector. (Four measured 7–16 % faster than two at 7×7 and
/// 13×13; the weights of four rows and their accumulators fill the 32 zmm registers.)
inline constexpr idx lane_rows = 4;

/// The key rows of a work item's query rows: their union, ascending, which query rows see each
/// (bit q), and per query row the span of the union it sees. A row's score tile holds a slot
/// for every key row of the union; the products skip the key rows it does not see (their slots
/// hold −inf logits: weight 0), and the value product runs over the segments of key rows seen
/// by the same rows, keeping its accumulators in registers across them.
struct item_keys {
  std::vector<idx> rows;
  std::vector<unsigned> seen_by;
  std::vector<lane_segment> segments;  ///< runs of key rows with one seen_by (steps: key rows)
  std::array<idx, lane_rows> first_seen{}, last_seen{};  ///< per query row, union positions
};

/// The union of the ascending key-row lists lists[0 … count).
inline item_keys merge_key_rows(const std::vector<idx>* lists, idx count) {
  item_keys out;
  for (idx q = 0; q < count; ++q) out.rows.insert(out.rows.end(), lists[q].begin(), lists[q].end());
  std::sort(out.rows.begin(), out.rows.end());
  out.rows.erase(std::unique(out.rows.begin(), out.rows.end()), out.rows.end());
  const auto at = [&](idx r) {
    return std::lower_bound(out.rows.begin(), out.rows.end(), r) - out.rows.begin();
  };
  out.seen_by.assign(out.rows.size(), 0u);
  for (idx q = 0; q < count; ++q) {
    const auto u = static_cast<std::size_t>(q);
    for (idx r : lists[q]) out.seen_by[static_cast<std::size_t>(at(r))] |= 1u << q;
    out.first_seen[u] = at(lists[q].front());
    out.last_seen[u] = at(lists[q].back());
  }
  for (unsigned seen : out.seen_by) {
    if (out.segments.empty() || out.segments.back().rows != seen) out.segments.push_back({0, seen});
    ++out.segments.back().steps;
  }
  return out;
}

/// A worker's transposed key/value grid rows (Kᵀ [D × ld] then Vᵀ [Dv × ld] each) of one
/// (batch, KV head), in `capacity` slots. Filled as the worker's items move along the grid and
/// overwritten once no longer needed: a row is transposed while its item's products run, from
/// a buffer that stays in L2 (transposing every row up front wrote K and V out to memory once
/// more and read them back).
class transposed_rows {
 public:
  transposed_rows(idx capacity, idx row_floats, idx grid_rows)
      : data_(static_cast<std::size_t>(capacity * row_floats)),
        row_floats_(row_floats),
        row_in_slot_(static_cast<std::size_t>(capacity), -1),
        slot_of_row_(static_cast<std::size_t>(grid_rows), -1),
        needed_(static_cast<std::size_t>(grid_rows), -1) {}

  /// at[i] = the slot holding grid row rows[i] of `owner` (an id of the batch and KV head),
  /// filling the missing ones with fill(row, slot) and evicting only rows not in `rows`
  /// (rows.size() ≤ capacity).
  template <class Fill>
  void hold(idx owner, const std::vector<idx>& rows, const float** at, Fill&& fill) {
    if (owner != owner_) {
      std::fill(row_in_slot_.begin(), row_in_slot_.end(), -1);
      std::fill(slot_of_row_.begin(), slot_of_row_.end(), -1);
      owner_ = owner;
    }
    ++stamp_;
    for (idx r : rows) needed_[static_cast<std::size_t>(r)] = stamp_;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto r = static_cast<std::size_t>(rows[i]);
      if (slot_of_row_[r] < 0) {
        const idx capacity = static_cast<idx>(row_in_slot_.size());
        idx slot = victim_;
        for (;; slot = (slot + 1) % capacity) {
          const idx held = row_in_slot_[static_cast<std::size_t>(slot)];
          if (held < 0 || needed_[static_cast<std::size_t>(held)] != stamp_) break;
        }
        victim_ = (slot + 1) % capacity;
        const idx held = row_in_slot_[static_cast<std::size_t>(slot)];
        if (held >= 0) slot_of_row_[static_cast<std::size_t>(held)] = -1;
        row_in_slot_[static_cast<std::size_t>(slot)] = rows[i];
        slot_of_row_[r] = slot;
        fill(rows[i], data_.get() + slot * row_floats_);
      }
      at[i] = data_.get() + slot_of_row_[r] * row_floats_;
    }
  }

 private:
  aligned_floats data_;
  idx row_floats_;
  std::vector<idx> row_in_slot_, slot_of_row_, needed_;
  idx owner_ = -1, stamp_ = 0, victim_ = 0;
};

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

  // 1. The key rows each grid row's queries see: the product of the leading axes' windows
  // (the same for every batch and head, so found once), and per group of grid rows their union.
  std::vector<std::vector<idx>> key_rows_of(static_cast<std::size_t>(rows));
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
  }
  // Work items: groups of lane_rows consecutive grid rows, then the rows left over one by one
  // (one instantiation fewer per group size).
  const idx full_groups = rows / lane_rows, row_groups = full_groups + rows % lane_rows;
  auto first_row = [&](idx gr) {
    return gr < full_groups ? gr * lane_rows : full_groups * lane_rows + gr - full_groups;
  };
  std::vector<item_keys> keys_of(static_cast<std::size_t>(row_groups));
  idx union_max = 0;
  for (idx gr = 0; gr < row_groups; ++gr) {
    item_keys& keys = keys_of[static_cast<std::size_t>(gr)];
    keys = merge_key_rows(&key_rows_of[static_cast<std::size_t>(first_row(gr))],
                          gr < full_groups ? lane_rows : 1);
    union_max = std::max(union_max, static_cast<idx>(keys.rows.size()));
  }

  // 2. Every (batch, query head, range of row groups): group by group, its runs, each against
  // the union of the group's windows. A worker's ranges are long, so that its transposed rows
  // serve one group after another; a few per worker balance the load.
  const idx ranges =
      std::clamp<idx>((4 * a.workers + s.batch * Hq - 1) / (s.batch * Hq), 1, row_groups);
  const idx items = s.batch * Hq * ranges;
  const idx count_max = p.kernel[K - 1];
  const idx q_floats = D * ld, o_floats = Dv * M, s_floats = union_max * count_max * M;
  std::atomic<idx> next{0};
  auto body = [&](int) {
    aligned_floats buffer(
        static_cast<std::size_t>(lane_rows * (q_floats + o_floats + s_floats) + M * (Dv + 1)));
    float* qt = buffer.get();                    // per row: Qᵀ [D × ld] of the grid row, scaled
    float* ot = qt + lane_rows * q_floats;       // per row: Oᵀ [Dv × M]
    float* st = ot + lane_rows * o_floats;       // per row: Sᵀ / Pᵀ [union slots × M]
    float* factors = st + lane_rows * s_floats;  // [M]
    float* orows = factors + M;                  // O [M × Dv]
    std::vector<const float*> value_at(static_cast<std::size_t>(union_max * count_max));
    transposed_rows cache(union_max, row_floats, rows);
    std::vector<const float*> key_row_at(static_cast<std::size_t>(union_max));
    std::vector<lane_segment> value_segments;
    auto tiles = [&]<std::size_t... Q>(std::index_sequence<Q...>) {
      return std::array<ScoreTile, lane_rows>{((void)Q, ScoreTile(score, a.scale))...};
    }
    (std::make_index_sequence<lane_rows>{});
    const float q_factor = tiles[0].q_factor();

    // The runs of P query rows r0 … r0 + P − 1 of head h.
    auto rows_of_item = [&]<int P>(idx b, idx h, idx r0, const item_keys& keys) {
      const head_ctx c = context_of(a, b, h);
      const idx key_rows = static_cast<idx>(keys.rows.size());
      // Kᵀ, Vᵀ of the group's key rows: the columns past X (zeros) are read by the lanes past a
      // run's end.
      cache.hold(b * Hkv + c.kv_head, keys.rows, key_row_at.data(), [&](idx r, float* kt) {
        simd::transpose_scaled<A>(a.k.row(b, r * X, c.kv_head), a.k.strides[1], X, D, 1.0f, kt, ld,
                                  ld);
        simd::transpose_scaled<A>(a.v.row(b, r * X, c.kv_head), a.v.strides[1], X, Dv, 1.0f,
                                  kt + D * ld, ld, ld);
      });
      std::array<const float*, P> q_of{};
      std::array<float*, P> s_of{}, o_of{};
      for (int q = 0; q < P; ++q) {
        const auto u = static_cast<std::size_t>(q);
        q_of[u] = qt + q * q_floats;
        s_of[u] = st + q * s_floats;
        o_of[u] = ot + q * o_floats;
        // Qᵀ of the whole grid row: a run's lanes are its columns x0 … x0 + 15 (past the
        // run's end: other queries or zeros, computed and never written).
        simd::transpose_scaled<A>(a.q.row(b, (r0 + q) * X, h), a.q.strides[1], X, D, q_factor,
                                  qt + q * q_floats, ld, ld);
      }
      for (const lane_run& run : runs) {
        const idx count = run.count;
        for (idx i = 0, n = 0; i < key_rows; ++i) {
          const float* vt = key_row_at[static_cast<std::size_t>(i)] + D * ld;
          for (idx t = 0; t < count; ++t, ++n)
            value_at[static_cast<std::size_t>(n)] = vt + run.lo0 + t;
        }
        // Each key row's scores and values for the rows that see it (in the others' score
        // tiles its slots are masked below).
        value_segments.clear();
        for (const lane_segment& seg : keys.segments)
          value_segments.push_back({seg.steps * count, seg.rows});
        auto window = [&]<bool Sliding>() {
          // Sᵀ: score blocks of the slots of one key row, every query row at once.
          in_lane_blocks<lane_block<A, P>>(count, [&]<int J>(idx j) {
            for (idx i = 0; i < key_rows; ++i) {
              const float* key = key_row_at[static_cast<std::size_t>(i)] + run.lo0 + j;
              std::array<const float*, P> w{};
              std::array<float*, P> out{};
              for (std::size_t u = 0; u < static_cast<std::size_t>(P); ++u) {
                w[u] = q_of[u] + run.x0;
                out[u] = s_of[u] + (i * count + j) * M;
              }
              const std::array<lane_segment, 1> seen{
                  {{D, keys.seen_by[static_cast<std::size_t>(i)]}}};
              lane_products<A, Sliding, J, P>(seen, w, ld, key_rows_at{key, ld},
                                              std::integral_constant<idx, 1>{}, run, out);
            }
          });
          for (int q = 0; q < P; ++q) {
            const auto u = static_cast<std::size_t>(q);
            ScoreTile& tile = tiles[u];
            // Only the span of key rows the row sees (all of it, on a 2D grid; the values
            // never read the slots outside it).
            const idx first = keys.first_seen[u], span = (keys.last_seen[u] - first + 1) * count;
            float* row_scores = s_of[u] + first * count * M;
            tile.begin_rows(c, 0, static_cast<int>(M));
            tile.transform(row_scores, span);
            for (idx i = first; i <= keys.last_seen[u]; ++i)
              if (!(keys.seen_by[static_cast<std::size_t>(i)] >> q & 1u))
                std::fill_n(s_of[u] + i * count * M, count * M,
                            -std::numeric_limits<float>::infinity());
            tile.weigh(row_scores, span);
          }
          // Oᵀ: blocks of output rows over every slot, every query row at once.
          in_lane_blocks<lane_value_block<A, P>>(Dv, [&]<int E>(idx e) {
            std::array<const float*, P> w{};
            std::array<float*, P> out{};
            for (std::size_t u = 0; u < static_cast<std::size_t>(P); ++u) {
              w[u] = s_of[u];
              out[u] = o_of[u] + e * M;
            }
            lane_products<A, Sliding, E, P>(value_segments, w, M,
                                            value_rows_at{value_at.data(), e * ld}, ld, run, out);
          });
        };
        if (run.sliding)
          window.template operator()<true>();
        else
          window.template operator()<false>();
        // Oᵀ back to rows, each lane times its output factor.
        for (int q = 0; q < P; ++q) {
          const ScoreTile& tile = tiles[static_cast<std::size_t>(q)];
          const idx t0 = (r0 + q) * X + run.x0;
          for (idx l = 0; l < M; ++l) factors[l] = tile.output_factor(static_cast<int>(l));
          simd::transpose_scaled<A>(o_of[static_cast<std::size_t>(q)], M, Dv, M, factors, orows, Dv,
                                    Dv);
          for (idx l = 0; l < run.n; ++l) {
            simd::stream_copy<A>(a.out.row(b, t0 + l, h), orows + l * Dv, Dv);
            if constexpr (Score::has_lse)
              if (a.lse) a.lse[(b * Hq + h) * s.seq_q + t0 + l] = tile.lse(static_cast<int>(l));
          }
        }
      }
    };

    for (idx item; (item = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      const idx range = item % ranges, h = item / ranges % Hq, b = item / ranges / Hq;
      for (idx gr = row_groups * range / ranges; gr < row_groups * (range + 1) / ranges; ++gr) {
        const item_keys& keys = keys_of[static_cast<std::size_t>(gr)];
        if (gr < full_groups)
          rows_of_item.template operator()<static_cast<int>(lane_rows)>(b, h, first_row(gr), keys);
        else
          rows_of_item.template operator()<1>(b, h, first_row(gr), keys);
      }
    }
    simd::stream_fence();
  };
  a.executor.parallel(static_cast<int>(std::min<idx>(a.workers, items)), body);
}

}  // namespace attn::detail

#undef ATTN_LANE_PRODUCTS_NOINLINE
