// Transposing a block of floats, scaled on the way: how the fused loops turn query rows into
// Qᵀ (queries in lanes) and the accumulator Oᵀ back into output rows, once per query tile.
//
//   transpose_scaled<A>(src, src_ld, rows, cols, factor, dst, dst_ld, dst_cols)
//       dst[c·dst_ld + r] = src[r·src_ld + c] · factor for r < rows, c < cols, and 0 for
//       rows ≤ r < dst_cols (the padding lanes of a partial tile); `factor` is one float, or
//       a pointer to one factor per source column
//   transpose<A>(src, lds, rows, cols, dst, ldd)     the same with factor 1, no padding
//
// Done element by
// element this is rows·cols scattered stores, as much as a 64-key tile of arithmetic when a query
// tile sees few keys (a sparse layout, a small neighborhood window). AVX-512 transposes 16 × 16
// blocks in registers (three shuffle stages, then whole-vector stores); other archs, and the
// edges of a block, go element by element.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "attn/simd/ops.hpp"

namespace attn::simd {

namespace detail {

#if defined(__AVX512F__)
/// r[0..16) (16 rows of 16 floats) → their transpose, in place. Stage 1 interleaves rows in
/// pairs (32-bit), stage 2 in pairs of pairs (64-bit): each 128-bit lane k of u[4q + m] then
/// holds column 4k + m of rows 4q .. 4q+3; stages 3 and 4 gather those lanes by column.
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int q = 0; q < 16; q += 4) {
    const __m512d a = _mm512_castps_pd(t[q]), b = _mm512_castps_pd(t[q + 1]);
    const __m512d c = _mm512_castps_pd(t[q + 2]), d = _mm512_castps_pd(t[q + 3]);
    u[q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int m = 0; m < 4; ++m) {
    const __m512 even_lo = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88);
    const __m512 odd_lo = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xdd);
    const __m512 even_hi = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88);
    const __m512 odd_hi = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xdd);
    r[m] = _mm512_shuffle_f32x4(even_lo, even_hi, 0x88);
    r[8 + m] = _mm512_shuffle_f32x4(even_lo, even_hi, 0xdd);
    r[4 + m] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0x88);
    r[12 + m] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0xdd);
  }
}
#endif

/// The element-by-element form, over source columns [c0, cols).
inline void transpose_each(const float* src, std::ptrdiff_t src_ld, std::ptrdiff_t rows,
                           std::ptrdiff_t c0, std::ptrdiff_t cols, float factor,
                           const float* column_factor, float* dst, std::ptrdiff_t dst_ld,
                           std::ptrdiff_t dst_cols) {
  for (std::ptrdiff_t c = c0; c < cols; ++c) {
    float* out = dst + c * dst_ld;
    const float f = column_factor ? column_factor[c] : factor;
    for (std::ptrdiff_t r = 0; r < rows; ++r) out[r] = src[r * src_ld + c] * f;
    std::fill(out + rows, out + dst_cols, 0.0f);
  }
}

/// Both forms: column_factor (one per source column) if not null, else factor.
template <class A>
inline void transpose_into(const float* src, std::ptrdiff_t src_ld, std::ptrdiff_t rows,
                           std::ptrdiff_t cols, float factor, const float* column_factor,
                           float* dst, std::ptrdiff_t dst_ld, std::ptrdiff_t dst_cols) {
  std::ptrdiff_t c0 = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, A>) {
    // Whole blocks of 16 source columns; source rows in blocks of 16, zero past `rows`.
    for (; c0 + 16 <= cols; c0 += 16) {
      const __m512 f = column_factor ? _mm512_loadu_ps(column_factor + c0) : _mm512_set1_ps(factor);
      for (std::ptrdiff_t r0 = 0; r0 < dst_cols; r0 += 16) {
        __m512 block[16];
        for (int i = 0; i < 16; ++i)
          block[i] = r0 + i < rows ? _mm512_mul_ps(_mm512_loadu_ps(src + (r0 + i) * src_ld + c0), f)
                                   : _mm512_setzero_ps();
        transpose16(block);
        const auto width = static_cast<unsigned>(std::min<std::ptrdiff_t>(16, dst_cols - r0));
        const auto keep = static_cast<__mmask16>((1u << width) - 1u);
        for (int i = 0; i < 16; ++i)
          _mm512_mask_storeu_ps(dst + (c0 + i) * dst_ld + r0, keep, block[i]);
      }
    }
  }
#endif
  transpose_each(src, src_ld, rows, c0, cols, factor, column_factor, dst, dst_ld, dst_cols);
}

}  // namespace detail

/// dst[c·dst_ld + r] = factor · src[r·src_ld + c] for r < rows, c < cols; 0 for rows ≤ r <
/// dst_cols.
template <class A>
inline void transpose_scaled(const float* src, std::ptrdiff_t src_ld, std::ptrdiff_t rows,
                             std::ptrdiff_t cols, float factor, float* dst, std::ptrdiff_t dst_ld,
                             std::ptrdiff_t dst_cols) {
  detail::transpose_into<A>(src, src_ld, rows, cols, factor, nullptr, dst, dst_ld, dst_cols);
}

/// dst[c·dst_ld + r] = column_factor[c] · src[r·src_ld + c] for r < rows, c < cols; 0 for
/// rows ≤ r < dst_cols.
template <class A>
inline void transpose_scaled(const float* src, std::ptrdiff_t src_ld, std::ptrdiff_t rows,
                             std::ptrdiff_t cols, const float* column_factor, float* dst,
                             std::ptrdiff_t dst_ld, std::ptrdiff_t dst_cols) {
  detail::transpose_into<A>(src, src_ld, rows, cols, 1.0f, column_factor, dst, dst_ld, dst_cols);
}

/// dst[c·ldd + r] = src[r·lds + c] for r < rows, c < cols: the plain transpose of a tile (the
/// linear-attention kernels transpose φ(K) chunks with it).
template <class A>
inline void transpose(const float* src, std::ptrdiff_t lds, std::ptrdiff_t rows,
                      std::ptrdiff_t cols, float* dst, std::ptrdiff_t ldd) {
  detail::transpose_into<A>(src, lds, rows, cols, 1.0f, nullptr, dst, ldd, rows);
}

}  // namespace attn::simd
