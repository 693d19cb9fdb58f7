// How the fused loop (prefill.hpp) turns operands into its two tile products: the one place
// where the element type of Q, K and V meets the loop. The loop itself — tiles, patterns,
// online softmax, work split — is the same for every policy.
//
//   float_products<A>   Q, K, V as float views (prefill_args::q/k/v; narrower tensors are
//                       widened once per call by narrow_tensors.hpp): Qᵀ packed scaled, K read
//                       in place, the V tile packed, the float micro-kernels (microkernel.hpp)
//   bf16_products       Q, K, V all bfloat16, read as stored: Qᵀ and the V tile packed as bf16
//                       pairs, K pairs broadcast in place, P rounded to bf16 pairs, and both
//                       products on vdpbf16ps (microkernel_bf16.hpp) — half the instructions
//                       of the float products. Needs AVX512-BF16 and even head dims.
//
// A policy provides, for one query tile of M queries and one key tile of NK keys:
//   qt_floats(D), vt_floats(Dv), scratch_floats()    buffer sizes, in floats
//   pack_q(a, b, h, q0, live, q_factor, qt)          Qᵀ of rows q0 .. q0+live−1
//   scores(a, qt, b, kvh, j0, n, q_factor, st)       Sᵀ [n × M] of keys j0 .. j0+n−1, scaled
//   pack_v(a, b, kvh, k0, k1, NK, vt, bad)           the V tile of keys k0 .. k1−1 (≤ NK)
//   accumulate(pt, off, n, vt, NK, Dv, alpha, ot, scratch)  Oᵀ += V[k0+off .. +n]ᵀ·Pᵀ
//   prefetch(a, b, kvh, j0, rows)                    K and V rows j0 .. j0+rows−1 towards L2
//   prefetch_q(a, b, h, q0, rows)                    the same for Q rows
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "attn/kernel/workspace.hpp"
#include "attn/simd/microkernel.hpp"
#include "attn/simd/microkernel_bf16.hpp"
#include "attn/tensor.hpp"

namespace attn::detail {

/// Asks for `rows` rows of `width` elements of `bytes_per_element` bytes, `stride` elements
/// apart, to be brought into L2, for reading or, with `write`, for writing (a hint: no fault,
/// no effect on results).
template <bool write = false, class T>
inline void prefetch_rows(const T* first, idx stride, idx rows, idx width) {
#if defined(__GNUC__) || defined(__clang__)
  constexpr std::uintptr_t line = 64;
  const auto bytes = static_cast<std::uintptr_t>(width) * sizeof(T);
  if (bytes == 0) return;
  for (idx r = 0; r < rows; ++r) {
    const auto begin = reinterpret_cast<std::uintptr_t>(first + r * stride);
    for (std::uintptr_t at = begin & ~(line - 1); at < begin + bytes; at += line)
      __builtin_prefetch(reinterpret_cast<const void*>(at), write ? 1 : 0, 2);
  }
#else
  (void)first, (void)stride, (void)rows, (void)width;
#endif
}

template <class A>
struct float_products {
  static constexpr idx M = simd::tile_queries<A>;

  static idx qt_floats(idx head_dim) { return head_dim * M; }
  static idx vt_floats(idx keys, idx head_dim_v) { return keys * head_dim_v; }
  static idx scratch_floats(idx) { return 0; }

  /// Qᵀ [head_dim × M], multiplied by q_factor, zero past `live` rows.
  template <class Args>
  void pack_q(const Args& a, idx b, idx h, idx q0, idx live, float q_factor, float* qt) const {
    const idx D = a.shape.head_dim;
    std::fill(qt, qt + D * M, 0.0f);
    for (idx i = 0; i < live; ++i) {
      const float* qrow = a.q.row(b, q0 + i, h);
      for (idx d = 0; d < D; ++d) qt[d * M + i] = qrow[d] * q_factor;
    }
  }
  template <class Args>
  void scores(const Args& a, const float* qt, idx b, idx kvh, idx j0, idx n, float,
              float* st) const {
    simd::scores_tile<A>(qt, a.shape.head_dim, a.k.row(b, j0, kvh), a.k.strides[1], n, st);
  }
  /// The V tile, rows packed contiguously: V rows sit heads·head_dim_v floats apart in the
  /// tensor, and at power-of-two strides the walk down one tile's rows hits a handful of L1
  /// sets and evicts itself; packed, the tile stays in L1 for all its column blocks.
  template <class Args>
  void pack_v(const Args& a, idx b, idx kvh, idx k0, idx k1, idx, float* vt,
              nonfinite_values& bad) const {
    const idx Dv = a.shape.head_dim_v;
    bad.clear();
    for (idx j = k0; j < k1; ++j) {
      const float* vrow = a.v.row(b, j, kvh);
      std::copy(vrow, vrow + Dv, vt + (j - k0) * Dv);
      bad.scan(j - k0, vt + (j - k0) * Dv, Dv);
    }
  }
  void accumulate(const float* pt, idx off, idx n, const float* vt, idx, idx Dv, const float* alpha,
                  float* ot, float*) const {
    simd::accumulate_tile<A>(pt, n, vt + off * Dv, Dv, Dv, alpha, ot);
  }
  template <class Args>
  void prefetch(const Args& a, idx b, idx kvh, idx j0, idx rows) const {
    prefetch_rows(a.k.row(b, j0, kvh), a.k.strides[1], rows, a.shape.head_dim);
    prefetch_rows(a.v.row(b, j0, kvh), a.v.strides[1], rows, a.shape.head_dim_v);
  }
  template <class Args>
  void prefetch_q(const Args& a, idx b, idx h, idx q0, idx rows) const {
    prefetch_rows(a.q.row(b, q0, h), a.q.strides[1], rows, a.shape.head_dim);
  }
};

#if defined(__AVX512BF16__)
struct bf16_products {
  static constexpr idx M = simd::bf16::tile_queries;
  view4<const Eigen::bfloat16> q, k, v;

  static idx qt_floats(idx head_dim) { return head_dim / 2 * M; }
  /// V₂ [head_dim_v × keys/2] pairs, one spare pair per row so that a part starting at an odd
  /// key still finds its last pair.
  static idx vt_floats(idx keys, idx head_dim_v) { return head_dim_v * (keys / 2 + 1); }
  static idx scratch_floats(idx keys) { return (keys / 2 + 1) * M; }  // Pᵀ₂

  /// Whether these shapes can take this policy: pairs need even head dims.
  static bool fits(const problem_shape& s) { return s.head_dim % 2 == 0 && s.head_dim_v % 2 == 0; }

  static const std::uint16_t* bits(const Eigen::bfloat16* p) {
    return reinterpret_cast<const std::uint16_t*>(p);
  }

  /// Qᵀ₂ [head_dim/2 × M] of the stored (unscaled) queries: q_factor is applied to the scores,
  /// so that no query value is rounded twice.
  template <class Args>
  void pack_q(const Args& a, idx b, idx h, idx q0, idx live, float, float* qt_memory) const {
    auto* qt = reinterpret_cast<std::uint32_t*>(qt_memory);
    const idx pairs = a.shape.head_dim / 2;
    std::fill(qt, qt + pairs * M, 0u);
    for (idx i = 0; i < live; ++i) {
      const std::uint16_t* row = bits(q.row(b, q0 + i, h));
      for (idx p = 0; p < pairs; ++p)
        qt[p * M + i] = simd::bf16::pair_bits(row[2 * p], row[2 * p + 1]);
    }
  }
  template <class Args>
  void scores(const Args& a, const float* qt, idx b, idx kvh, idx j0, idx n, float q_factor,
              float* st) const {
    simd::bf16::scores_tile(reinterpret_cast<const std::uint32_t*>(qt), a.shape.head_dim / 2,
                            bits(k.row(b, j0, kvh)), k.strides[1], n, st);
    const __m512 f = _mm512_set1_ps(q_factor);
    for (idx i = 0; i < n * M; i += 16)
      _mm512_storeu_ps(st + i, _mm512_mul_ps(_mm512_loadu_ps(st + i), f));
  }
  /// V₂: pair p of row e is (V[k0 + 2p, e], V[k0 + 2p + 1, e]); a missing last key is 0. A V
  /// row holding NaN or inf is set aside (as floats) and zeroed here, as in float_products.
  /// Pairs per row of V₂ for key tiles of NK keys (one spare: see vt_floats).
  static idx vt_ld(idx tile_keys) { return tile_keys / 2 + 1; }

  /// V₂: pair p of row e is (V[k0 + 2p, e], V[k0 + 2p + 1, e]); a missing last key is 0. A V
  /// row holding NaN or inf is set aside (as floats) and zeroed here, as in float_products.
  template <class Args>
  void pack_v(const Args& a, idx b, idx kvh, idx k0, idx k1, idx tile_keys, float* vt_memory,
              nonfinite_values& bad) const {
    auto* vt = reinterpret_cast<std::uint32_t*>(vt_memory);
    const idx Dv = a.shape.head_dim_v, keys = k1 - k0, ld = vt_ld(tile_keys);
    bad.clear();
    for (idx p = 0; 2 * p < keys; ++p) {
      const std::uint16_t* lo = bits(v.row(b, k0 + 2 * p, kvh));
      const std::uint16_t* hi = 2 * p + 1 < keys ? bits(v.row(b, k0 + 2 * p + 1, kvh)) : nullptr;
      for (idx e = 0; e < Dv; ++e)
        vt[e * ld + p] = simd::bf16::pair_bits(lo[e], hi ? hi[e] : std::uint16_t{0});
    }
    for (idx e = 0; e < Dv; ++e) vt[e * ld + (keys + 1) / 2] = 0;  // the spare pair
    for (idx j = 0; j < keys; ++j) {
      const std::uint16_t* row = bits(v.row(b, k0 + j, kvh));
      bool finite = true;  // exponent bits all ones: NaN or ±inf
      for (idx e = 0; e < Dv; ++e) finite &= (row[e] & 0x7f80u) != 0x7f80u;
      if (finite) continue;
      std::vector<float> widened(static_cast<std::size_t>(Dv));  // rare: only such rows
      for (idx e = 0; e < Dv; ++e) {
        const std::uint32_t f = static_cast<std::uint32_t>(row[e]) << 16;
        std::memcpy(&widened[static_cast<std::size_t>(e)], &f, sizeof f);
      }
      bad.scan(j, widened.data(), Dv);
      const std::uint32_t keep = j % 2 == 0 ? 0xffff0000u : 0x0000ffffu;
      for (idx e = 0; e < Dv; ++e) vt[e * ld + j / 2] &= keep;
    }
  }
  void accumulate(const float* pt, idx off, idx n, const float* vt, idx tile_keys, idx Dv,
                  const float* alpha, float* ot, float* scratch) const {
    auto* pairs_out = reinterpret_cast<std::uint32_t*>(scratch);
    const idx first = off / 2, shift = off % 2, pairs = (shift + n + 1) / 2;
    simd::bf16::pair_weights(pt, n, shift, pairs, pairs_out);
    simd::bf16::accumulate_tile(pairs_out, pairs,
                                reinterpret_cast<const std::uint32_t*>(vt) + first,
                                vt_ld(tile_keys), Dv, alpha, ot);
  }
  template <class Args>
  void prefetch(const Args& a, idx b, idx kvh, idx j0, idx rows) const {
    prefetch_rows(k.row(b, j0, kvh), k.strides[1], rows, a.shape.head_dim);
    prefetch_rows(v.row(b, j0, kvh), v.strides[1], rows, a.shape.head_dim_v);
  }
  template <class Args>
  void prefetch_q(const Args& a, idx b, idx h, idx q0, idx rows) const {
    prefetch_rows(q.row(b, q0, h), q.strides[1], rows, a.shape.head_dim);
  }
};
#endif

}  // namespace attn::detail
