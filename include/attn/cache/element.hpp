// How a KV cache stores a row of head_dim values, and how a row turns back into floats.
//
//   float            4 bytes a value, exact
//   Eigen::bfloat16  2 bytes: the top half of the float (8-bit exponent, 7-bit mantissa),
//                    rounded to nearest even; relative error ≤ 2⁻⁸
//   Eigen::half      2 bytes: IEEE binary16 (5-bit exponent, 10-bit mantissa); relative error
//                    ≤ 2⁻¹¹ for |x| in [2⁻¹⁴, 65504], values beyond overflow to ±inf
//   attn::q8_0       1 byte a value plus one float scale per block of 32 values of a row:
//                    x ≈ d·q with d = max|x|/127 over the block and q = round(x/d) in [−127, 127],
//                    ggml's q8_0 (the scale stored as float here, not half); absolute error
//                    ≤ d/2 = max|x|/254 per block
//
// Decoding is exact for every format (a bfloat16 or half is a float with trailing zeros), so
// the only error is the rounding at encode time; the kernels accumulate in float.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "attn/tensor.hpp"

namespace attn {

/// Tag for the 8-bit block-quantised cache format (see the file comment).
struct q8_0 {
  static constexpr idx block = 32;  ///< values per scale
};

namespace detail {

/// Bytes per row and per-row scale count of each format.
template <class T>
struct element_format {
  using stored = T;  ///< what one value is stored as
  static constexpr idx scales(idx) { return 0; }
};
template <>
struct element_format<q8_0> {
  using stored = std::int8_t;
  static constexpr idx scales(idx width) { return (width + q8_0::block - 1) / q8_0::block; }
};

template <class T>
using stored_t = typename element_format<T>::stored;

template <class T>
inline constexpr bool is_cache_element =
    std::is_same_v<T, float> || std::is_same_v<T, Eigen::bfloat16> ||
    std::is_same_v<T, Eigen::half> || std::is_same_v<T, q8_0>;

/// Encodes `n` floats into a row (and its scales, for q8_0).
template <class T>
inline void encode_row(const float* src, idx n, stored_t<T>* dst, float* scales) {
  if constexpr (std::is_same_v<T, q8_0>) {
    for (idx b0 = 0, s = 0; b0 < n; b0 += q8_0::block, ++s) {
      const idx b1 = std::min(n, b0 + q8_0::block);
      float top = 0.0f;
      for (idx i = b0; i < b1; ++i) top = std::max(top, std::abs(src[i]));
      const float d = top / 127.0f;
      const float inv = d > 0.0f ? 1.0f / d : 0.0f;
      scales[s] = d;
      for (idx i = b0; i < b1; ++i)
        dst[i] =
            static_cast<std::int8_t>(std::clamp(std::nearbyint(src[i] * inv), -127.0f, 127.0f));
    }
  } else {
    (void)scales;
    for (idx i = 0; i < n; ++i) dst[i] = static_cast<T>(src[i]);
  }
}

/// Decodes `n` values of a row into floats.
template <class T>
inline void decode_row(const stored_t<T>* src, const float* scales, idx n, float* dst) {
  if constexpr (std::is_same_v<T, float>) {
    (void)scales;
    std::copy(src, src + n, dst);
  } else if constexpr (std::is_same_v<T, Eigen::bfloat16>) {
    (void)scales;
    // A bfloat16 is the high half of a float: widen the bits (a loop compilers vectorise).
    for (idx i = 0; i < n; ++i) {
      std::uint16_t half_bits;
      std::memcpy(&half_bits, src + i, sizeof half_bits);
      const std::uint32_t bits = static_cast<std::uint32_t>(half_bits) << 16;
      std::memcpy(dst + i, &bits, sizeof bits);
    }
  } else if constexpr (std::is_same_v<T, Eigen::half>) {
    (void)scales;
    idx i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)  // F16C: 8 halves to 8 floats in one instruction
      _mm256_storeu_ps(dst + i,
                       _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
    for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
  } else {
    for (idx b0 = 0, s = 0; b0 < n; b0 += q8_0::block, ++s) {
      const idx b1 = std::min(n, b0 + q8_0::block);
      const float d = scales[s];
      for (idx i = b0; i < b1; ++i) dst[i] = d * static_cast<float>(src[i]);
    }
  }
}

/// A short name for messages and benchmark names.
template <class T>
constexpr const char* element_name() {
  if constexpr (std::is_same_v<T, float>) return "fp32";
  if constexpr (std::is_same_v<T, Eigen::bfloat16>) return "bf16";
  if constexpr (std::is_same_v<T, Eigen::half>) return "fp16";
  return "q8_0";
}

}  // namespace detail
}  // namespace attn
