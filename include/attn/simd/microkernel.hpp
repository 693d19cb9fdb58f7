// The two register-blocked micro-kernels every attention tile is made of.
//
// attn keeps queries in the vector lanes (a "transposed" FlashAttention tile): a query tile of
// M = lanes·query_vectors queries is packed once as Qᵀ [head_dim × M], scores are kept as
// Sᵀ [keys × M] and the output accumulator as Oᵀ [head_dim_v × M]. Then
//   scores:      Sᵀ[j, :]  = Σ_d K[j, d] · Qᵀ[d, :]                (broadcast K, stream Qᵀ)
//   accumulate:  Oᵀ[e, :]  = α ⊙ Oᵀ[e, :] + Σ_j V[j, e] · Pᵀ[j, :]  (broadcast V, stream Pᵀ)
// are both "broadcast a scalar, FMA into a block of rows × query_vectors registers" loops
// (BLIS-style register blocking), K and V are read in place from the user's tensors (rows are
// contiguous along head_dim), and every per-query quantity of the online softmax (running
// max, sum, rescale α) is a plain vector: no horizontal reduction anywhere in the hot loop.
#pragma once

#include <cstddef>
#include <utility>

#include "attn/simd/ops.hpp"

namespace attn::simd {

/// Register blocking per arch: queries per tile (lanes × query_vectors) and the rows of one
/// register block. rows × query_vectors accumulators + query_vectors streamed registers + one
/// broadcast must fit the register file (32 zmm on AVX-512, 16 ymm/xmm otherwise).
template <class A>
struct tile_shape {
  static constexpr int query_vectors = 3;
  static constexpr int rows = 4;
};
template <>
struct tile_shape<scalar> {
  static constexpr int query_vectors = 4;
  static constexpr int rows = 4;
};
template <>
struct tile_shape<xsimd::avx512f> {
  static constexpr int query_vectors = 4;
  static constexpr int rows = 6;
};
template <>
struct tile_shape<xsimd::avx512cd> : tile_shape<xsimd::avx512f> {};
template <>
struct tile_shape<xsimd::avx512dq> : tile_shape<xsimd::avx512f> {};
template <>
struct tile_shape<xsimd::avx512bw> : tile_shape<xsimd::avx512f> {};

/// Queries per tile for arch A.
template <class A>
inline constexpr int tile_queries = lanes<A>* tile_shape<A>::query_vectors;

namespace detail {

template <class A, int Rows>
inline void scores_block(const float* qt, std::ptrdiff_t head_dim, const float* k,
                         std::ptrdiff_t k_stride, float* st) {
  constexpr int QV = tile_shape<A>::query_vectors, L = lanes<A>, M = L * QV;
  vec<A> acc[Rows][QV];
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < QV; ++v) acc[r][v] = simd::splat<A>(0.0f);
  for (std::ptrdiff_t d = 0; d < head_dim; ++d) {
    vec<A> q[QV];
#pragma GCC unroll 8
    for (int v = 0; v < QV; ++v) q[v] = simd::load<A>(qt + d * M + v * L);
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const vec<A> kb = simd::splat<A>(k[r * k_stride + d]);
#pragma GCC unroll 8
      for (int v = 0; v < QV; ++v) acc[r][v] = simd::fma(kb, q[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < QV; ++v) simd::store<A>(st + r * M + v * L, acc[r][v]);
}

template <class A, int Rows>
inline void accumulate_block(const float* pt, std::ptrdiff_t keys, const float* v,
                             std::ptrdiff_t v_stride, const float* alpha, float* ot) {
  constexpr int QV = tile_shape<A>::query_vectors, L = lanes<A>, M = L * QV;
  vec<A> acc[Rows][QV];
  vec<A> a[QV];
#pragma GCC unroll 8
  for (int q = 0; q < QV; ++q) a[q] = simd::load<A>(alpha + q * L);
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < QV; ++q) acc[r][q] = simd::load<A>(ot + r * M + q * L) * a[q];
  for (std::ptrdiff_t j = 0; j < keys; ++j) {
    vec<A> p[QV];
#pragma GCC unroll 8
    for (int q = 0; q < QV; ++q) p[q] = simd::load<A>(pt + j * M + q * L);
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const vec<A> vb = simd::splat<A>(v[j * v_stride + r]);
#pragma GCC unroll 8
      for (int q = 0; q < QV; ++q) acc[r][q] = simd::fma(vb, p[q], acc[r][q]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < QV; ++q) simd::store<A>(ot + r * M + q * L, acc[r][q]);
}

/// Calls f.template operator()<R>() for R = n, where 1 <= n < Max: turns a run-time remainder
/// into a compile-time block height.
template <int Max, class F>
inline void with_rows(int n, F&& f) {
  [&]<int... R>(std::integer_sequence<int, R...>) {
    ((n == R + 1 ? (f.template operator()<R + 1>(), 0) : 0), ...);
  }
  (std::make_integer_sequence<int, Max - 1>{});
}

}  // namespace detail

/// Sᵀ[j, :] = Σ_d K[j, d]·Qᵀ[d, :] for keys j < keys.
/// qt: Qᵀ [head_dim × tile_queries<A>]; k: key 0's row, k_stride elements between key rows;
/// st: Sᵀ [keys × tile_queries<A>].
template <class A>
inline void scores_tile(const float* qt, std::ptrdiff_t head_dim, const float* k,
                        std::ptrdiff_t k_stride, std::ptrdiff_t keys, float* st) {
  constexpr int R = tile_shape<A>::rows, M = tile_queries<A>;
  std::ptrdiff_t j = 0;
  for (; j + R <= keys; j += R)
    detail::scores_block<A, R>(qt, head_dim, k + j * k_stride, k_stride, st + j * M);
  detail::with_rows<R>(static_cast<int>(keys - j), [&]<int Rows>() {
    detail::scores_block<A, Rows>(qt, head_dim, k + j * k_stride, k_stride, st + j * M);
  });
}

/// Oᵀ[e, :] = α ⊙ Oᵀ[e, :] + Σ_j V[j, e]·Pᵀ[j, :] for e < head_dim_v.
/// pt: Pᵀ [keys × tile_queries<A>]; v: key 0's row, v_stride elements between key rows;
/// alpha: tile_queries<A> rescale factors; ot: Oᵀ [head_dim_v × tile_queries<A>].
template <class A>
inline void accumulate_tile(const float* pt, std::ptrdiff_t keys, const float* v,
                            std::ptrdiff_t v_stride, std::ptrdiff_t head_dim_v, const float* alpha,
                            float* ot) {
  constexpr int R = tile_shape<A>::rows, M = tile_queries<A>;
  std::ptrdiff_t e = 0;
  for (; e + R <= head_dim_v; e += R)
    detail::accumulate_block<A, R>(pt, keys, v + e, v_stride, alpha, ot + e * M);
  detail::with_rows<R>(static_cast<int>(head_dim_v - e), [&]<int Rows>() {
    detail::accumulate_block<A, Rows>(pt, keys, v + e, v_stride, alpha, ot + e * M);
  });
}

}  // namespace attn::simd
