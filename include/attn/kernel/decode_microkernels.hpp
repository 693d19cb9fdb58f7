// The arithmetic of one split-KV block (decode.hpp): scores of a few query rows against a block
// of stored key rows, and the weighted sum of the value rows into the output rows.
//
// Queries stay in rows here, not in lanes: with one query per head, the prefill tile's
// "broadcast a key element across 64 query lanes" would compute 63 empty lanes. A score is a
// dot product of a query row with a key row, reduced across lanes; the accumulator is
// O[i, :] = α_i·O[i, :] + Σ_j p_ij·V[j, :]. Key and value rows are row_refs to rows staged in
// their stored format (kv_source.hpp), widened to float as each vector is loaded, so a bf16 or int8
// cache streams at its own width. Each loaded key or value vector serves every query row of the
// tile (the query heads of one KV group): K and V are read once per group, never once per head.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "attn/kernel/kv_source.hpp"
#include "attn/simd/microkernel.hpp"

namespace attn::detail {

/// Query rows of a decode tile: the lanes of its score state (Sᵀ rows are this many floats).
inline constexpr idx decode_rows = decode_max_queries;

/// st[j·decode_rows + i] += q_i · k_j over the first `full` values (a multiple of lanes<A>), for
/// KB keys × RB query rows; q rows are q_stride floats apart.
template <class A, int KB, int RB, class T>
inline void dot_block(const float* q, idx q_stride, const row_ref<T>* k, idx full, float* st) {
  constexpr int L = simd::lanes<A>;
  simd::vec<A> acc[KB][RB];
#pragma GCC unroll 8
  for (int j = 0; j < KB; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) acc[j][i] = simd::splat<A>(0.0f);
  for (idx d = 0; d < full; d += L) {
    simd::vec<A> kv[KB];
#pragma GCC unroll 8
    for (int j = 0; j < KB; ++j) kv[j] = simd::in_register<A>(k[j].template load<A>(d));
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) {
      const simd::vec<A> qv = simd::in_register<A>(simd::load<A>(q + i * q_stride + d));
#pragma GCC unroll 8
      for (int j = 0; j < KB; ++j) acc[j][i] = simd::fma(qv, kv[j], acc[j][i]);
    }
  }
  // KB·RB sums, in groups of L reduced together when they fill whole vectors.
  constexpr int N = KB * RB;
  alignas(64) float sums[N];
  if constexpr (N % L == 0) {
    const simd::vec<A>* flat = &acc[0][0];
#pragma GCC unroll 8
    for (int g = 0; g < N / L; ++g)
      simd::store<A>(sums + g * L, simd::reduce_add_each(flat + g * L));
  } else {
#pragma GCC unroll 8
    for (int n = 0; n < N; ++n) sums[n] = simd::reduce_add(acc[n / RB][n % RB]);
  }
#pragma GCC unroll 8
  for (int j = 0; j < KB; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) st[j * decode_rows + i] = sums[j * RB + i];
}

/// Scores of `rows` query rows (width floats each, q_stride apart, scaled) against `keys` key
/// rows into Sᵀ [keys × decode_rows]; the lanes past `rows` are −inf, so the score tile gives
/// them weight 0.
template <class A, class T>
inline void decode_scores(const float* q, idx rows, idx q_stride, const row_ref<T>* k, idx keys,
                          idx width, float* st) {
  constexpr int KB = 4, RB = 4, L = simd::lanes<A>;
  const idx full = width / L * L;
  if (rows < decode_rows)
    std::fill(st, st + keys * decode_rows, -std::numeric_limits<float>::infinity());
  for (idx i = 0; i < rows; i += RB) {
    const int rb = static_cast<int>(std::min<idx>(RB, rows - i));
    simd::detail::with_rows<RB + 1>(rb, [&]<int R>() {
      idx j = 0;
      for (; j + KB <= keys; j += KB)
        dot_block<A, KB, R>(q + i * q_stride, q_stride, k + j, full, st + j * decode_rows + i);
      if (j < keys)
        simd::detail::with_rows<KB>(static_cast<int>(keys - j), [&]<int K>() {
          dot_block<A, K, R>(q + i * q_stride, q_stride, k + j, full, st + j * decode_rows + i);
        });
    });
  }
  for (idx e = full; e < width; ++e)  // a head_dim that is not a multiple of the lanes
    for (idx j = 0; j < keys; ++j)
      for (idx i = 0; i < rows; ++i) st[j * decode_rows + i] += q[i * q_stride + e] * k[j].at(e);
}

/// O[i, e0 + x·L …] = α_i·O[…] + Σ_j Pᵀ[j, i]·V[j, …] for RB rows and VB vectors: each value
/// vector is loaded (and widened) once for all RB rows. `seen` sums every value loaded, so
/// that a NaN or inf among them shows afterwards (see decode_accumulate).
template <class A, int RB, int VB, class T>
inline void accumulate_block(const float* pt, idx keys, const row_ref<T>* v, idx e0,
                             const float* alpha, float* o, idx o_stride, simd::vec<A>& seen) {
  constexpr int L = simd::lanes<A>;
  simd::vec<A> acc[RB][VB];
#pragma GCC unroll 8
  for (int i = 0; i < RB; ++i) {
    const simd::vec<A> a = simd::splat<A>(alpha[i]);
#pragma GCC unroll 8
    for (int x = 0; x < VB; ++x) acc[i][x] = simd::load<A>(o + i * o_stride + e0 + x * L) * a;
  }
  for (idx j = 0; j < keys; ++j) {
    simd::vec<A> vv[VB];
#pragma GCC unroll 8
    for (int x = 0; x < VB; ++x) vv[x] = simd::in_register<A>(v[j].template load<A>(e0 + x * L));
    simd::vec<A> row_sum = vv[0];  // summed apart from `seen`: one dependent add per key
#pragma GCC unroll 8
    for (int x = 1; x < VB; ++x) row_sum = row_sum + vv[x];
    seen = seen + row_sum;
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) {
      const simd::vec<A> w = simd::splat<A>(pt[j * decode_rows + i]);
#pragma GCC unroll 8
      for (int x = 0; x < VB; ++x) acc[i][x] = simd::fma(w, vv[x], acc[i][x]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < RB; ++i)
#pragma GCC unroll 8
    for (int x = 0; x < VB; ++x) simd::store<A>(o + i * o_stride + e0 + x * L, acc[i][x]);
}

/// O[i, :] = α_i·O[i, :] + Σ_j Pᵀ[j, i]·V[j, :] for rows i < rows (O rows o_stride floats
/// apart, `width` values each). Returns false if a value row of the block holds a NaN or inf
/// (or values whose sum overflows): then rows with p_ij = 0 may have taken 0·NaN = NaN from a key
/// they do not see, and the caller recomputes the block with accumulate_seen_only.
template <class A, class T>
inline bool decode_accumulate(const float* pt, idx rows, idx keys, const row_ref<T>* v, idx width,
                              const float* alpha, float* o, idx o_stride) {
  constexpr int L = simd::lanes<A>, RB = 4;
  // RB·VB accumulators plus VB values in registers: 16 + 4 of AVX-512's 32, 8 + 2 of AVX2's 16.
  constexpr int VB = L >= 16 ? 4 : 2;
  const idx full = width / L * L;
  simd::vec<A> seen = simd::splat<A>(0.0f);
  for (idx i = 0; i < rows; i += RB) {
    const int rb = static_cast<int>(std::min<idx>(RB, rows - i));
    simd::detail::with_rows<RB + 1>(rb, [&]<int R>() {
      idx e = 0;
      for (; e + VB * L <= full; e += VB * L)
        accumulate_block<A, R, VB>(pt + i, keys, v, e, alpha + i, o + i * o_stride, o_stride, seen);
      if (e < full)
        simd::detail::with_rows<VB>(static_cast<int>((full - e) / L), [&]<int X>() {
          accumulate_block<A, R, X>(pt + i, keys, v, e, alpha + i, o + i * o_stride, o_stride,
                                    seen);
        });
    });
  }
  float tail_seen = 0.0f;
  for (idx e = full; e < width; ++e)  // a head_dim_v that is not a multiple of the lanes
    for (idx i = 0; i < rows; ++i) {
      float sum = o[i * o_stride + e] * alpha[i];
      for (idx j = 0; j < keys; ++j) {
        const float value = v[j].at(e);
        tail_seen += value;
        sum = std::fma(pt[j * decode_rows + i], value, sum);
      }
      o[i * o_stride + e] = sum;
    }
  return std::isfinite(simd::reduce_add(seen) + tail_seen);
}

/// The careful form of decode_accumulate, for a block with non-finite values: O[i, :] =
/// α_i·O_before[i, :] + Σ_{j: p_ij ≠ 0} p_ij·V[j, :], so a NaN or inf reaches only the rows
/// that see its key (tests/unit/extreme_values_test.cpp). It repeats accumulate_block's vector
/// operations in the same order (on an arch without FMA, simd::fma is a multiply and an add),
/// only skipping p = 0, so a row that does not see the key gets the very same bits as in a
/// block without non-finite values. Rare, so one row and one vector at a time.
template <class A, class T>
inline void accumulate_seen_only(const float* pt, idx rows, idx keys, const row_ref<T>* v,
                                 idx width, const float* alpha, const float* o_before, float* o,
                                 idx o_stride) {
  constexpr int L = simd::lanes<A>;
  const idx full = width / L * L;
  for (idx i = 0; i < rows; ++i) {
    for (idx e = 0; e < full; e += L) {
      simd::vec<A> acc = simd::load<A>(o_before + i * o_stride + e) * simd::splat<A>(alpha[i]);
      for (idx j = 0; j < keys; ++j) {
        const float p = pt[j * decode_rows + i];
        if (p != 0.0f) acc = simd::fma(simd::splat<A>(p), v[j].template load<A>(e), acc);
      }
      simd::store<A>(o + i * o_stride + e, acc);
    }
    for (idx e = full; e < width; ++e) {  // as decode_accumulate's tail
      float sum = o_before[i * o_stride + e] * alpha[i];
      for (idx j = 0; j < keys; ++j) {
        const float p = pt[j * decode_rows + i];
        if (p != 0.0f) sum = std::fma(p, v[j].at(e), sum);
      }
      o[i * o_stride + e] = sum;
    }
  }
}

}  // namespace attn::detail
