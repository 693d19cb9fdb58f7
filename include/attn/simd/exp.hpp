// Vector exponentials.
//
// exp(x): Cody–Waite range reduction x = n·ln2 + r with ln2 split in a high part exact in float
// and a low correction, |r| ≤ ln2/2, then e^r by a degree-7 Taylor–Horner polynomial (truncation
// error < 1e-8 relative on that interval) and the scale 2^n built from exponent bits, split in
// two factors so that n = 128 (x up to 88.72) does not overflow the bit construction. Within
// 2 ulp of std::exp on [−87.33, 88.7]; exactly 0 below −87.33 (where e^x is within 0.7 % of the
// smallest normal float) and for −inf; +inf above 88.72. No lane ever computes a subnormal:
// Intel cores take a microcode assist for each one (see simd::scale2).
//
// exp2(x): the softmax kernels work in base 2 (the scale folded with log2 e into Q), so the hot
// loop needs 2^x, mostly for x ≤ 0: n = round(x), f = x − n ∈ [−½, ½] exact, 2^f by a degree-6
// polynomial, then p·2^n (one vscalefps on AVX-512). ~1 ulp; exactly 0 for x ≤ −150 and −inf.
#pragma once

#include <limits>

#include "attn/simd/ops.hpp"

namespace attn::simd {

template <class V>
inline V exp(const V& x) {
  using A = arch_of_t<V>;
  constexpr float log2e = 1.44269504088896341f;
  constexpr float ln2_hi = 0.693145751953125f;  // 11 significant bits: n·ln2_hi exact for |n|≤128
  constexpr float ln2_lo = 1.42860682030941723212e-6f;
  // Below: 0. e^−87.33 = 1.0065 · 2^−126, so the lanes clamped here still compute a normal value.
  constexpr float underflow = -87.33f;
  constexpr float overflow = 88.72283935546875f;

  const V xc = min(max(x, splat<A>(underflow)), splat<A>(overflow));
  const V n = round(xc * splat<A>(log2e));
  V r = fma(n, splat<A>(-ln2_hi), xc);
  r = fma(n, splat<A>(-ln2_lo), r);
  // e^r = 1 + r + r²/2! + … + r⁷/7!, Horner.
  V p = splat<A>(1.0f / 5040.0f);
  p = fma(p, r, splat<A>(1.0f / 720.0f));
  p = fma(p, r, splat<A>(1.0f / 120.0f));
  p = fma(p, r, splat<A>(1.0f / 24.0f));
  p = fma(p, r, splat<A>(1.0f / 6.0f));
  p = fma(p, r, splat<A>(0.5f));
  p = fma(p, r, splat<A>(1.0f));
  p = fma(p, r, splat<A>(1.0f));
  const V half = round(n * splat<A>(0.5f));
  V result = p * pow2i(half) * pow2i(n - half);
  result = select(x < splat<A>(underflow), splat<A>(0.0f), result);
  return select(x > splat<A>(overflow), splat<A>(std::numeric_limits<float>::infinity()), result);
}

template <class V>
inline V exp2(const V& x) {
  using A = arch_of_t<V>;
  // −160 keeps round() and the subtraction finite for x = −inf, and 2^−160 scales to 0.
  const V xc = min(max(x, splat<A>(-160.0f)), splat<A>(127.0f));
  const V n = round(xc);
  const V f = xc - n;
  // 2^f = e^(f·ln2), Taylor coefficients ln2^k/k!.
  V p = splat<A>(1.5403530393381606e-4f);
  p = fma(p, f, splat<A>(1.3333558146428443e-3f));
  p = fma(p, f, splat<A>(9.6181291076284772e-3f));
  p = fma(p, f, splat<A>(5.5504108664821580e-2f));
  p = fma(p, f, splat<A>(2.4022650695910071e-1f));
  p = fma(p, f, splat<A>(6.9314718055994531e-1f));
  p = fma(p, f, splat<A>(1.0f));
  return scale2(p, n);
}

}  // namespace attn::simd
