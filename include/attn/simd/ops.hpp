// The handful of vector operations the kernels use, for every arch including scalar, and the
// one place where xsimd's API differences between versions are absorbed (Debian ships 8.1;
// xsimd 10+ renamed hadd to reduce_add, added reduce_max and changed bitwise_cast's template
// argument from a batch type to a scalar type).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "attn/simd/arch.hpp"

// GCC 12's AVX-512 intrinsics build some results from _mm512_undefined_ps(), which GCC 12 then
// reports as -Wmaybe-uninitialized wherever they are inlined (GCC bug 105593, fixed in 13).
// Silenced for these wrappers only, and only on the affected compilers.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#define ATTN_GCC12_UNDEFINED_WORKAROUND 1
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace attn::simd {

// ---- loads, stores, broadcasts --------------------------------------------------------------

template <class A>
inline vec<A> load(const float* p) {
  if constexpr (std::is_same_v<A, scalar>)
    return *p;
  else
    return vec<A>::load_unaligned(p);
}

template <class A>
inline void store(float* p, const vec<A>& x) {
  if constexpr (std::is_same_v<A, scalar>)
    *p = x;
  else
    x.store_unaligned(p);
}

template <class A>
inline vec<A> splat(float x) {
  if constexpr (std::is_same_v<A, scalar>)
    return x;
  else
    return vec<A>(x);
}

/// Lane i = p[offsets[i]], each offset in [0, lanes<A>): a variable permutation of one unaligned
/// load (vpermps on AVX-512 and AVX2), lane by lane on the other arches.
template <class A>
inline vec<A> load_permuted(const float* p, const std::int32_t* offsets) {
  if constexpr (std::is_same_v<A, scalar>) {
    return p[offsets[0]];
  } else {
#if defined(__AVX512F__)
    if constexpr (std::is_base_of_v<xsimd::avx512f, A>)
      return vec<A>(_mm512_permutexvar_ps(_mm512_loadu_si512(offsets), _mm512_loadu_ps(p)));
#endif
#if defined(__AVX2__)
    if constexpr (std::is_base_of_v<xsimd::avx2, A>)
      return vec<A>(_mm256_permutevar8x32_ps(
          _mm256_loadu_ps(p), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(offsets))));
#endif
    alignas(64) float gathered[lanes<A>];
    for (int i = 0; i < lanes<A>; ++i) gathered[i] = p[offsets[i]];
    return vec<A>::load_aligned(gathered);
  }
}

/// Sets to `value` the lanes of row[0 .. n) whose bit in `keep` is clear (bit i for lane i,
/// n ≤ 64): the element mask of a partial tile applied a vector at a time (a masked blend on
/// AVX-512, a variable blend on AVX2) rather than a bit test per score.
template <class A>
inline void fill_unkept(float* row, std::ptrdiff_t n, std::uint64_t keep, float value) {
  constexpr int L = lanes<A>;
  std::ptrdiff_t i = 0;
  if constexpr (!std::is_same_v<A, scalar>) {
    for (; i + L <= n; i += L) {
      const auto bits = static_cast<std::uint32_t>(keep >> i) & ((std::uint64_t{1} << L) - 1);
      if (bits == (std::uint64_t{1} << L) - 1) continue;
#if defined(__AVX512F__)
      if constexpr (std::is_base_of_v<xsimd::avx512f, A>) {
        _mm512_storeu_ps(row + i,
                         _mm512_mask_blend_ps(static_cast<__mmask16>(bits), _mm512_set1_ps(value),
                                              _mm512_loadu_ps(row + i)));
        continue;
      }
#endif
#if defined(__AVX2__)
      if constexpr (std::is_base_of_v<xsimd::avx2, A>) {
        const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        const __m256i kept = _mm256_cmpeq_epi32(
            _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(bits)), lane_bit), lane_bit);
        _mm256_storeu_ps(row + i, _mm256_blendv_ps(_mm256_set1_ps(value), _mm256_loadu_ps(row + i),
                                                   _mm256_castsi256_ps(kept)));
        continue;
      }
#endif
      for (int l = 0; l < L; ++l)
        if (((bits >> l) & 1u) == 0) row[i + l] = value;
    }
  }
  for (; i < n; ++i)
    if (((keep >> i) & 1u) == 0) row[i] = value;
}

/// x, held in a register: GCC folds a load into every FMA that uses it as a memory operand,
/// which costs a load per FMA where the point of reusing x was one load for several FMAs
/// (kernel/neighborhood_lanes.hpp; the short tail blocks of simd/microkernel.hpp; the decode
/// dot products). An empty asm that "modifies" x makes it one value.
template <class A>
inline vec<A> in_register(vec<A> x) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  if constexpr (std::is_same_v<A, scalar>)
    asm("" : "+x"(x));
  else
    asm("" : "+v"(x.data));
#endif
  return x;
}

// ---- arithmetic (scalar overloads beside xsimd's) -------------------------------------------

/// a·b + c, fused where the arch has FMA.
inline float fma(float a, float b, float c) { return std::fma(a, b, c); }
template <class A>
inline xsimd::batch<float, A> fma(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                  const xsimd::batch<float, A>& c) {
  return xsimd::fma(a, b, c);
}

inline float max(float a, float b) { return a > b ? a : b; }
template <class A>
inline xsimd::batch<float, A> max(const xsimd::batch<float, A>& a,
                                  const xsimd::batch<float, A>& b) {
  return xsimd::max(a, b);
}

inline float min(float a, float b) { return a < b ? a : b; }
template <class A>
inline xsimd::batch<float, A> min(const xsimd::batch<float, A>& a,
                                  const xsimd::batch<float, A>& b) {
  return xsimd::min(a, b);
}

inline float tanh(float x) { return std::tanh(x); }
template <class A>
inline xsimd::batch<float, A> tanh(const xsimd::batch<float, A>& x) {
  return xsimd::tanh(x);
}

/// Round to the nearest integer (ties to even), staying in float.
inline float round(float x) { return std::nearbyint(x); }
template <class A>
inline xsimd::batch<float, A> round(const xsimd::batch<float, A>& x) {
  return xsimd::nearbyint(x);
}

/// x where `take_x`, else y. `take_x` comes from a comparison of the same arch.
inline float select(bool take_x, float x, float y) { return take_x ? x : y; }
template <class A>
inline xsimd::batch<float, A> select(const xsimd::batch_bool<float, A>& take_x,
                                     const xsimd::batch<float, A>& x,
                                     const xsimd::batch<float, A>& y) {
  return xsimd::select(take_x, x, y);
}

/// 2^n for n a float holding an integer in [−127, 127], built from the exponent bits
/// (n = −127 gives exactly 0).
inline float pow2i(float n) {
  return std::bit_cast<float>(static_cast<std::int32_t>(static_cast<std::int32_t>(n) + 127) << 23);
}
template <class A>
inline xsimd::batch<float, A> pow2i(const xsimd::batch<float, A>& n) {
  const auto bits = (xsimd::to_int(n) + 127) << 23;
#if XSIMD_VERSION_MAJOR < 10
  return xsimd::bitwise_cast<xsimd::batch<float, A>>(bits);
#else
  return xsimd::bitwise_cast<float>(bits);
#endif
}

/// p · 2^n for n a float holding an integer ≤ 127 (n ≤ −127 gives exactly 0 for |p| < 2).
/// AVX-512 has it as one instruction (vscalefps); elsewhere it is a multiply by pow2i.
///
/// Why n ≤ −127 is zeroed rather than computed: a result below the normal range (a subnormal,
/// or an underflow to 0) costs a microcode assist of ~100+ cycles on Intel cores unless the
/// caller set flush-to-zero, and every masked score (−inf, so n = −160 in exp2) would take one:
/// on a Xeon (Sapphire Rapids) that doubled the time of one-query decoding, whose spare lanes
/// are masked. The multiply by pow2i never meets it (pow2i(−127) is +0, an exact product); the
/// AVX-512 path zeroes those lanes with a mask instead of scaling them.
inline float scale2(float p, float n) { return p * pow2i(max(n, -127.0f)); }
template <class A>
inline xsimd::batch<float, A> scale2(const xsimd::batch<float, A>& p,
                                     const xsimd::batch<float, A>& n) {
  if constexpr (std::is_base_of_v<xsimd::avx512f, A>)
    return _mm512_maskz_scalef_ps(n > xsimd::batch<float, A>(-127.0f), p, n);
  else
    return p * pow2i(max(n, xsimd::batch<float, A>(-127.0f)));
}

// ---- horizontal reductions ------------------------------------------------------------------

inline float reduce_add(float x) { return x; }
template <class A>
inline float reduce_add(const xsimd::batch<float, A>& x) {
#if XSIMD_VERSION_MAJOR < 10
  return xsimd::hadd(x);
#else
  return xsimd::reduce_add(x);
#endif
}

/// Lane i of the result = the sum of the lanes of rows[i], for lanes<A> vectors: many
/// reductions at once in a transpose-and-add tree (xsimd's haddp), far cheaper than one
/// reduce_add each.
inline float reduce_add_each(const float* rows) { return rows[0]; }
template <class A>
inline xsimd::batch<float, A> reduce_add_each(const xsimd::batch<float, A>* rows) {
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, A>) {
    // xsimd 8.1's AVX-512 haddp returns the sums in a permuted lane order: fold each row's
    // upper 256 bits onto its lower ones, reduce two groups of 8 with the (correct) AVX2 haddp.
    using half = xsimd::batch<float, xsimd::avx2>;
    half folded[16];
    for (int i = 0; i < 16; ++i) {
      const __m512 r = rows[i];
      folded[i] =
          half(_mm256_add_ps(_mm512_castps512_ps256(r),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(r), 1))));
    }
    const __m256 lo = xsimd::haddp(folded), hi = xsimd::haddp(folded + 8);
    return xsimd::batch<float, A>(_mm512_castpd_ps(
        _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1)));
  }
#endif
  return xsimd::haddp(rows);
}

inline float reduce_max(float x) { return x; }
template <class A>
inline float reduce_max(const xsimd::batch<float, A>& x) {
#if XSIMD_VERSION_MAJOR < 10
  alignas(64) float lane[xsimd::batch<float, A>::size];
  x.store_unaligned(lane);
  return *std::max_element(lane, lane + xsimd::batch<float, A>::size);
#else
  return xsimd::reduce_max(x);
#endif
}

}  // namespace attn::simd

#if defined(ATTN_GCC12_UNDEFINED_WORKAROUND)
#pragma GCC diagnostic pop
#undef ATTN_GCC12_UNDEFINED_WORKAROUND
#endif
