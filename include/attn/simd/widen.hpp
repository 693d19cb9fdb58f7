// Loading narrow stored values straight into float registers: the "dequantise in registers"
// step of the split-KV loop (kernel/decode.hpp), which reads a bf16, fp16 or int8 KV cache in
// place instead of first converting it to a float copy.
//
//   widen<A>(const float*)            lanes<A> floats, as load<A>
//   widen<A>(const Eigen::bfloat16*)  a bfloat16 is the top half of a float: zero-extend each
//                                     16-bit value to 32 bits and shift it up by 16 (exact)
//   widen<A>(const Eigen::half*)      IEEE binary16 → binary32 with F16C / AVX-512 (exact)
//   widen<A>(const std::int8_t*)      sign-extend to int32, convert to float (exact)
//
// AVX-512 and AVX2 (with F16C for half) use one or two instructions per vector; every other
// arch, and scalar, converts value by value into a small buffer first — the same numbers, since
// every conversion here is exact.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "attn/simd/ops.hpp"

namespace attn::simd {

namespace detail {

/// Value-by-value conversion of lanes<A> stored values: the portable path.
template <class A, class T>
inline vec<A> widen_each(const T* p) {
  if constexpr (std::is_same_v<A, scalar>) {
    return static_cast<float>(*p);
  } else {
    alignas(64) float lane[lanes<A>];
    for (int i = 0; i < lanes<A>; ++i) lane[i] = static_cast<float>(p[i]);
    return load<A>(lane);
  }
}

}  // namespace detail

template <class A>
inline vec<A> widen(const float* p) {
  return load<A>(p);
}

template <class A>
inline vec<A> widen(const Eigen::bfloat16* p) {
#if defined(__AVX512F__)
  if constexpr (lanes<A> == 16) {
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return vec<A>(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16)));
  }
#endif
#if defined(__AVX2__)
  if constexpr (lanes<A> == 8) {
    const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return vec<A>(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16)));
  }
#endif
  return detail::widen_each<A>(p);
}

template <class A>
inline vec<A> widen(const Eigen::half* p) {
#if defined(__AVX512F__)
  if constexpr (lanes<A> == 16)
    return vec<A>(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
#endif
#if defined(__AVX2__) && defined(__F16C__)
  if constexpr (lanes<A> == 8)
    return vec<A>(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#endif
  return detail::widen_each<A>(p);
}

template <class A>
inline vec<A> widen(const std::int8_t* p) {
#if defined(__AVX512F__)
  if constexpr (lanes<A> == 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return vec<A>(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)));
  }
#endif
#if defined(__AVX2__)
  if constexpr (lanes<A> == 8) {
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return vec<A>(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)));
  }
#endif
  return detail::widen_each<A>(p);
}

}  // namespace attn::simd
