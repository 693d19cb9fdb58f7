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

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "attn/simd/ops.hpp"

#if defined(__SSE__)
#include <xmmintrin.h>  // _mm_sfence
#endif

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

/// How often (head_dim steps of a scores block, key steps of an accumulate block) the
/// micro-kernels call their pace (see no_pacing).
inline constexpr int pace_interval = 16;

namespace detail {

template <class A, int Rows, class Pace>
inline void scores_block(const float* qt, std::ptrdiff_t head_dim, const float* k,
                         std::ptrdiff_t k_stride, float* st, Pace& pace) {
  constexpr int QV = tile_shape<A>::query_vectors, L = lanes<A>, M = L * QV;
  vec<A> acc[Rows][QV];
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < QV; ++v) acc[r][v] = simd::splat<A>(0.0f);
  for (std::ptrdiff_t d = 0; d < head_dim; ++d) {
    vec<A> q[QV];
#pragma GCC unroll 8
    for (int v = 0; v < QV; ++v) q[v] = in_register<A>(simd::load<A>(qt + d * M + v * L));
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const vec<A> kb = simd::splat<A>(k[r * k_stride + d]);
#pragma GCC unroll 8
      for (int v = 0; v < QV; ++v) acc[r][v] = simd::fma(kb, q[v], acc[r][v]);
    }
    if (d % pace_interval == pace_interval - 1) pace();
  }
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < QV; ++v) simd::store<A>(st + r * M + v * L, acc[r][v]);
}

template <class A, int Rows, class Pace>
inline void accumulate_block(const float* pt, std::ptrdiff_t keys, const float* v,
                             std::ptrdiff_t v_stride, const float* alpha, float* ot, Pace& pace) {
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
    for (int q = 0; q < QV; ++q) p[q] = in_register<A>(simd::load<A>(pt + j * M + q * L));
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const vec<A> vb = simd::splat<A>(v[j * v_stride + r]);
#pragma GCC unroll 8
      for (int q = 0; q < QV; ++q) acc[r][q] = simd::fma(vb, p[q], acc[r][q]);
    }
    if (j % pace_interval == pace_interval - 1) pace();
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

/// What scores_tile and accumulate_tile call every pace_interval steps of a register block: a
/// caller spreads other work over the products with it (the fused loop requests the next key tile's
/// rows a few at a time: a burst of hundreds of prefetches fills the miss buffers and stalls the
/// core as long as a demand miss would). By default, nothing.
struct no_pacing {
  void operator()() const {}
};

/// Sᵀ[j, :] = Σ_d K[j, d]·Qᵀ[d, :] for keys j < keys.
/// qt: Qᵀ [head_dim × tile_queries<A>]; k: key 0's row, k_stride elements between key rows;
/// st: Sᵀ [keys × tile_queries<A>]; pace() runs every pace_interval head_dim steps of a block.
template <class A, class Pace = no_pacing>
inline void scores_tile(const float* qt, std::ptrdiff_t head_dim, const float* k,
                        std::ptrdiff_t k_stride, std::ptrdiff_t keys, float* st,
                        Pace&& pace = Pace{}) {
  constexpr int R = tile_shape<A>::rows, M = tile_queries<A>;
  std::ptrdiff_t j = 0;
  for (; j + R <= keys; j += R)
    detail::scores_block<A, R>(qt, head_dim, k + j * k_stride, k_stride, st + j * M, pace);
  detail::with_rows<R>(static_cast<int>(keys - j), [&]<int Rows>() {
    detail::scores_block<A, Rows>(qt, head_dim, k + j * k_stride, k_stride, st + j * M, pace);
  });
}

/// Oᵀ[e, :] = α ⊙ Oᵀ[e, :] + Σ_j V[j, e]·Pᵀ[j, :] for e < head_dim_v.
/// pt: Pᵀ [keys × tile_queries<A>]; v: key 0's row, v_stride elements between key rows;
/// alpha: tile_queries<A> rescale factors; ot: Oᵀ [head_dim_v × tile_queries<A>]; pace() runs
/// every pace_interval keys of a block.
template <class A, class Pace = no_pacing>
inline void accumulate_tile(const float* pt, std::ptrdiff_t keys, const float* v,
                            std::ptrdiff_t v_stride, std::ptrdiff_t head_dim_v, const float* alpha,
                            float* ot, Pace&& pace = Pace{}) {
  constexpr int R = tile_shape<A>::rows, M = tile_queries<A>;
  std::ptrdiff_t e = 0;
  for (; e + R <= head_dim_v; e += R)
    detail::accumulate_block<A, R>(pt, keys, v + e, v_stride, alpha, ot + e * M, pace);
  detail::with_rows<R>(static_cast<int>(head_dim_v - e), [&]<int Rows>() {
    detail::accumulate_block<A, Rows>(pt, keys, v + e, v_stride, alpha, ot + e * M, pace);
  });
}

// ---- broadcast GEMM: the products of linear attention (attn/linear/) --------------------------
//
// Linear attention is made of small dense products over packed, lane-padded operands:
//   C[i, 0:cols] (+)= Σ_{p < depth} A(i, p) · B[p, 0:cols],   A(i, p) = a[i·a_row + p·a_col]
// A is only ever broadcast, one scalar at a time, so it may be read at any strides: the same
// kernel computes φ(K)ᵀ·V (A(d, j) = φ(K)[j, d]: a_row = 1, a_col = row length), φ(Q)·S,
// φ(Q)·φ(K)ᵀ and P·V without transposing A. B rows are contiguous and `cols` is a multiple of
// lanes<A> (callers pad B and C with zero columns). A block of tile_shape<A>::rows rows ×
// tile_shape<A>::query_vectors vectors of C stays in registers for the whole reduction.

/// Which part of a square product a caller needs (row i of the result only depends on, or is
/// only needed for, indices ≤ i): lets the kernel skip work that would be masked away anyway.
enum class triangle {
  none,     ///< the whole product
  columns,  ///< row i needs columns ≤ i only: a row block [i0, i1) stops after column i1 − 1
            ///< (rounded up to whole vectors); columns past that are left unwritten
  depth     ///< A(i, p) = 0 for p > i: a row block [i0, i1) reduces over p < i1 only
};

namespace detail {

template <class A, int Rows, int Vecs>
inline void gemm_block(std::ptrdiff_t depth, const float* a, std::ptrdiff_t a_row,
                       std::ptrdiff_t a_col, const float* b, std::ptrdiff_t ldb, float* c,
                       std::ptrdiff_t ldc, bool accumulate) {
  constexpr int L = lanes<A>;
  vec<A> acc[Rows][Vecs];
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < Vecs; ++v)
      acc[r][v] = accumulate ? simd::load<A>(c + r * ldc + v * L) : simd::splat<A>(0.0f);
  const float* ar[Rows];
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r) ar[r] = a + r * a_row;
  for (std::ptrdiff_t p = 0; p < depth; ++p) {
    vec<A> bv[Vecs];
#pragma GCC unroll 8
    for (int v = 0; v < Vecs; ++v) bv[v] = simd::load<A>(b + p * ldb + v * L);
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const vec<A> ab = simd::splat<A>(ar[r][p * a_col]);
#pragma GCC unroll 8
      for (int v = 0; v < Vecs; ++v) acc[r][v] = simd::fma(ab, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < Vecs; ++v) simd::store<A>(c + r * ldc + v * L, acc[r][v]);
}

/// One band of `Rows` rows of C: every column block of up to `vectors` vectors.
template <class A, int Rows>
inline void gemm_rows(std::ptrdiff_t vectors, std::ptrdiff_t depth, const float* a,
                      std::ptrdiff_t a_row, std::ptrdiff_t a_col, const float* b,
                      std::ptrdiff_t ldb, float* c, std::ptrdiff_t ldc, bool accumulate) {
  constexpr int NV = tile_shape<A>::query_vectors, L = lanes<A>;
  std::ptrdiff_t v = 0;
  for (; v + NV <= vectors; v += NV)
    gemm_block<A, Rows, NV>(depth, a, a_row, a_col, b + v * L, ldb, c + v * L, ldc, accumulate);
  with_rows<NV>(static_cast<int>(vectors - v), [&]<int Vecs>() {
    gemm_block<A, Rows, Vecs>(depth, a, a_row, a_col, b + v * L, ldb, c + v * L, ldc, accumulate);
  });
}

}  // namespace detail

/// C[i, 0:cols] = (accumulate ? C[i, 0:cols] : 0) + Σ_{p < depth} a[i·a_row + p·a_col]·B[p, 0:cols]
/// for i < rows. b: B [depth × ldb], c: C [rows × ldc], both with cols ≤ ld a multiple of
/// lanes<A>; `part` restricts the work to a lower triangle (see simd::triangle).
template <class A>
inline void broadcast_gemm(std::ptrdiff_t rows, std::ptrdiff_t cols, std::ptrdiff_t depth,
                           const float* a, std::ptrdiff_t a_row, std::ptrdiff_t a_col,
                           const float* b, std::ptrdiff_t ldb, float* c, std::ptrdiff_t ldc,
                           bool accumulate, triangle part = triangle::none) {
  constexpr int R = tile_shape<A>::rows, L = lanes<A>;
  const std::ptrdiff_t vectors = cols / L;
  auto band = [&]<int Rows>(std::ptrdiff_t i) {
    const std::ptrdiff_t end = i + Rows;
    std::ptrdiff_t vecs = vectors, dep = depth;
    if (part == triangle::columns) vecs = std::min<std::ptrdiff_t>(vectors, (end + L - 1) / L);
    if (part == triangle::depth) dep = std::min<std::ptrdiff_t>(depth, end);
    detail::gemm_rows<A, Rows>(vecs, dep, a + i * a_row, a_row, a_col, b, ldb, c + i * ldc, ldc,
                               accumulate);
  };
  std::ptrdiff_t i = 0;
  for (; i + R <= rows; i += R) band.template operator()<R>(i);
  detail::with_rows<R>(static_cast<int>(rows - i),
                       [&]<int Rows>() { band.template operator()<Rows>(i); });
}

/// dst[0..n) = src[0..n) with non-temporal stores where the arch has them and dst is 64-byte
/// aligned with n a multiple of 16 (whole cache lines), else ordinary stores: for outputs
/// written once and not read again, which then skip the read-for-ownership of every line.
/// Call stream_fence() before other threads read what was streamed.
template <class A>
inline void stream_copy(float* dst, const float* src, std::ptrdiff_t n) {
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, A>) {
    if (reinterpret_cast<std::uintptr_t>(dst) % 64 == 0 && n % 16 == 0) {
      for (std::ptrdiff_t i = 0; i < n; i += 16)
        _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
      return;
    }
  }
#endif
  constexpr int L = lanes<A>;
  std::ptrdiff_t i = 0;
  for (; i + L <= n; i += L) simd::store<A>(dst + i, simd::load<A>(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

/// Orders the non-temporal stores of stream_copy before later stores (a no-op elsewhere).
inline void stream_fence() {
#if defined(__SSE__)
  _mm_sfence();
#endif
}

}  // namespace attn::simd
