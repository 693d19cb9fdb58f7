// The two tile products of the fused loop for bfloat16 operands, on AVX512-BF16's vdpbf16ps:
// one instruction multiplies 16 lanes of bf16 *pairs* and adds both products to 16 floats, so
// it does the work of two FMAs. The products of two bf16 values are exact in float and the
// sums are float, as in the float kernels (microkernel.hpp, whose layout these mirror):
//   scores:      Sᵀ[j, :] = Σ_p ⟨K[j, 2p..2p+1], Qᵀ₂[p, :]⟩      (broadcast a K pair)
//   accumulate:  Oᵀ[e, :] = α ⊙ Oᵀ[e, :] + Σ_p ⟨V₂[e, p], Pᵀ₂[p, :]⟩  (broadcast a V pair)
// where Qᵀ₂ [head_dim/2 × M] holds in lane i the pair (q_i[2p], q_i[2p+1]) and Pᵀ₂ [keys/2 ×
// M] the pair (P[2p, i], P[2p+1, i]); V₂[e, p] is the pair (V[2p, e], V[2p+1, e]).
// The one rounding the float loop does not have: P, a float in [0, 1], becomes bf16 (relative
// error ≤ 2⁻⁹) before the second product — what bf16 FlashAttention kernels do on GPUs too.
//
// Only compiled where the compiler targets AVX512-BF16 (-mavx512bf16, -march=native on Zen 4,
// Sapphire Rapids); elsewhere `available` is false and the callers keep the float loop.
#pragma once

#include <cstdint>
#include <cstring>

#include "attn/simd/microkernel.hpp"

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace attn::simd::bf16 {

/// Queries per tile: the same tile as the float AVX-512 kernels.
inline constexpr int tile_queries = 16 * tile_shape<xsimd::avx512f>::query_vectors;

#if defined(__AVX512BF16__)
inline constexpr bool available = true;

/// Two bfloat16 values (raw bits) as one 32-bit lane: `lo` in the low half.
inline std::uint32_t pair_bits(std::uint16_t lo, std::uint16_t hi) {
  return static_cast<std::uint32_t>(lo) | (static_cast<std::uint32_t>(hi) << 16);
}

namespace detail {

template <int Rows>
inline void scores_block(const std::uint32_t* qt, std::ptrdiff_t pairs, const std::uint16_t* k,
                         std::ptrdiff_t k_stride, float* st) {
  constexpr int QV = tile_shape<xsimd::avx512f>::query_vectors, L = 16, M = L * QV;
  __m512 acc[Rows][QV];
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < QV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (std::ptrdiff_t p = 0; p < pairs; ++p) {
    __m512bh q[QV];
#pragma GCC unroll 8
    for (int v = 0; v < QV; ++v) q[v] = (__m512bh)_mm512_loadu_si512(qt + p * M + v * L);
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      std::uint32_t kk;
      std::memcpy(&kk, k + r * k_stride + 2 * p, sizeof kk);
      const __m512bh kb = (__m512bh)_mm512_set1_epi32(static_cast<int>(kk));
#pragma GCC unroll 8
      for (int v = 0; v < QV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], kb, q[v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < QV; ++v) _mm512_storeu_ps(st + r * M + v * L, acc[r][v]);
}

template <int Rows>
inline void accumulate_block(const std::uint32_t* pt, std::ptrdiff_t pairs, const std::uint32_t* v,
                             std::ptrdiff_t v_stride, const float* alpha, float* ot) {
  constexpr int QV = tile_shape<xsimd::avx512f>::query_vectors, L = 16, M = L * QV;
  __m512 acc[Rows][QV];
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < QV; ++q)
      acc[r][q] =
          _mm512_mul_ps(_mm512_loadu_ps(ot + r * M + q * L), _mm512_loadu_ps(alpha + q * L));
  for (std::ptrdiff_t p = 0; p < pairs; ++p) {
    __m512bh w[QV];
#pragma GCC unroll 8
    for (int q = 0; q < QV; ++q) w[q] = (__m512bh)_mm512_loadu_si512(pt + p * M + q * L);
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const __m512bh vb = (__m512bh)_mm512_set1_epi32(static_cast<int>(v[r * v_stride + p]));
#pragma GCC unroll 8
      for (int q = 0; q < QV; ++q) acc[r][q] = _mm512_dpbf16_ps(acc[r][q], vb, w[q]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < QV; ++q) _mm512_storeu_ps(ot + r * M + q * L, acc[r][q]);
}

}  // namespace detail

/// Sᵀ[j, :] = Σ_p ⟨K[j, 2p..2p+1], Qᵀ₂[p, :]⟩ for keys j < keys. qt: Qᵀ₂ [pairs × M]; k: key
/// 0's row of bf16 bits (2·pairs values), k_stride values between key rows.
inline void scores_tile(const std::uint32_t* qt, std::ptrdiff_t pairs, const std::uint16_t* k,
                        std::ptrdiff_t k_stride, std::ptrdiff_t keys, float* st) {
  constexpr int R = tile_shape<xsimd::avx512f>::rows, M = tile_queries;
  std::ptrdiff_t j = 0;
  for (; j + R <= keys; j += R)
    detail::scores_block<R>(qt, pairs, k + j * k_stride, k_stride, st + j * M);
  simd::detail::with_rows<R>(static_cast<int>(keys - j), [&]<int Rows>() {
    detail::scores_block<Rows>(qt, pairs, k + j * k_stride, k_stride, st + j * M);
  });
}

/// Oᵀ[e, :] = α ⊙ Oᵀ[e, :] + Σ_p ⟨V₂[e, p], Pᵀ₂[p, :]⟩ for e < head_dim_v. pt: Pᵀ₂ [pairs × M];
/// v: V₂ [head_dim_v × v_stride] pairs.
inline void accumulate_tile(const std::uint32_t* pt, std::ptrdiff_t pairs, const std::uint32_t* v,
                            std::ptrdiff_t v_stride, std::ptrdiff_t head_dim_v, const float* alpha,
                            float* ot) {
  constexpr int R = tile_shape<xsimd::avx512f>::rows, M = tile_queries;
  std::ptrdiff_t e = 0;
  for (; e + R <= head_dim_v; e += R)
    detail::accumulate_block<R>(pt, pairs, v + e * v_stride, v_stride, alpha, ot + e * M);
  simd::detail::with_rows<R>(static_cast<int>(head_dim_v - e), [&]<int Rows>() {
    detail::accumulate_block<Rows>(pt, pairs, v + e * v_stride, v_stride, alpha, ot + e * M);
  });
}

/// Pᵀ₂[p, :] = (bf16(P[2p − shift, :]), bf16(P[2p + 1 − shift, :])) for p < pairs, from Pᵀ
/// [keys × M] floats, rounded to nearest even; a row outside [0, keys) is 0. `shift` (0 or 1)
/// aligns the pairs with V₂, whose pairs start at an even key of the V tile.
inline void pair_weights(const float* pt, std::ptrdiff_t keys, std::ptrdiff_t shift,
                         std::ptrdiff_t pairs, std::uint32_t* out) {
  constexpr int L = 16, M = tile_queries;
  const __m512 zero = _mm512_setzero_ps();
  for (std::ptrdiff_t p = 0; p < pairs; ++p) {
    const std::ptrdiff_t j0 = 2 * p - shift, j1 = j0 + 1;
    for (int q = 0; q < M; q += L) {
      const __m512 lo = j0 >= 0 && j0 < keys ? _mm512_loadu_ps(pt + j0 * M + q) : zero;
      const __m512 hi = j1 >= 0 && j1 < keys ? _mm512_loadu_ps(pt + j1 * M + q) : zero;
      const __m512i lo16 = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(lo));
      const __m512i hi16 = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(hi));
      _mm512_storeu_si512(out + p * M + q, _mm512_or_si512(lo16, _mm512_slli_epi32(hi16, 16)));
    }
  }
}
#else
inline constexpr bool available = false;
#endif

}  // namespace attn::simd::bf16
