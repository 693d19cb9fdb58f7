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
//   qt_floats(D), kt_floats(NK, D), vt_floats(NK, Dv), scratch_floats(NK)   buffer sizes
//   pack_q(a, b, h, q0, live, q_factor, qt, stage)   Qᵀ of rows q0 .. q0+live−1 (stage: M × D)
//   pack_kv(a, b, kvh, k0, k1, NK, kt, vt, bad)      the K and V tiles of keys k0 .. k1−1 (≤ NK);
//                                                    kt null: K stays in place
//   scores(a, qt, kt, b, kvh, k0, off, n, q_factor, st, pace)   Sᵀ [n × M] of keys k0+off .. +n−1
//   accumulate(pt, off, n, vt, NK, Dv, alpha, ot, scratch, pace)  Oᵀ += V[k0+off .. +n]ᵀ·Pᵀ
//   prefetch(a, b, kvh, j0, rows)                    a paced_prefetch of K and V rows j0 ..
//                                                    j0+rows−1 (towards L2), stepped by the
//                                                    pace() calls of scores and accumulate
//   prefetch_q(a, b, h, q0, rows)                    the same for Q rows
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "attn/kernel/workspace.hpp"
#include "attn/simd/microkernel.hpp"
#include "attn/simd/microkernel_bf16.hpp"
#include "attn/simd/transpose.hpp"
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

/// The K and V rows of the next key tile, requested from L2 a few rows at a time: step() is
/// called between the register blocks of the current tile's products (simd::scores_tile's
/// pace), finish() requests whatever is left. A burst of a whole tile's prefetches (512 lines
/// at 64 keys of head_dim 64) fills the miss buffers and stalls the core about as long as the
/// misses it was meant to hide; spread over the products, they cost nothing. Under a sparse
/// layout each key tile is fetched from L3 or DRAM for about one query tile, so this latency
/// is what separates its time from its density's share of dense time.
class paced_prefetch {
 public:
  paced_prefetch() = default;
  /// rows K rows from k (k_stride bytes apart, k_bytes each), then as many V rows, over `steps`
  /// calls of step().
  paced_prefetch(const void* k, idx k_stride, idx k_bytes, const void* v, idx v_stride, idx v_bytes,
                 idx rows, idx steps)
      : parts_{{{static_cast<const unsigned char*>(k), k_stride, k_bytes},
                {static_cast<const unsigned char*>(v), v_stride, v_bytes}}},
        rows_(rows) {
    const idx lines =
        rows * (k_bytes / line_bytes + v_bytes / line_bytes + 2);  // rows may straddle
    per_step_ = std::max<idx>(1, lines / std::max<idx>(steps, 1));
    if (rows_ > 0) {
      part_ = 0;
      start_row();
    }
  }

  void step() { issue(per_step_); }
  void finish() { issue(std::numeric_limits<idx>::max()); }

 private:
  static constexpr idx line_bytes = 64;
  static constexpr std::uintptr_t line = line_bytes;
  struct part {
    const unsigned char* first;
    idx stride, bytes;
  };

  void start_row() {
    const part& p = parts_[static_cast<std::size_t>(part_)];
    const auto begin = reinterpret_cast<std::uintptr_t>(p.first + row_ * p.stride);
    at_ = begin & ~(line - 1);
    end_ = begin + static_cast<std::uintptr_t>(p.bytes);
  }
  void issue(idx count) {
    for (; count > 0 && part_ < 2; --count) {
#if defined(__GNUC__) || defined(__clang__)
      __builtin_prefetch(reinterpret_cast<const void*>(at_), 0, 2);
#endif
      if ((at_ += line) < end_) continue;
      if (++row_ == rows_) row_ = 0, ++part_;
      if (part_ < 2) start_row();
    }
  }

  std::array<part, 2> parts_{};  // K rows, then V rows
  idx rows_ = 0, per_step_ = 1;
  idx part_ = 2, row_ = 0;  // where the next line is; part_ = 2 once every line is requested
  std::uintptr_t at_ = 0, end_ = 0;
};

/// paced_prefetch over rows j0 .. j0+rows−1 of views k and v of (batch b, KV head kvh), spread
/// over one query tile's products with register blocks of block_rows rows.
template <class T, class Args>
paced_prefetch kv_prefetch(const Args& a, const view4<const T>& k, const view4<const T>& v, idx b,
                           idx kvh, idx j0, idx rows, idx block_rows) {
  constexpr idx every = simd::pace_interval;
  const idx steps = (rows + block_rows - 1) / block_rows * (a.shape.head_dim / every) +
                    (a.shape.head_dim_v + block_rows - 1) / block_rows * (rows / every);
  constexpr idx size = sizeof(T);
  return {k.row(b, j0, kvh),
          k.strides[1] * size,
          a.shape.head_dim * size,
          v.row(b, j0, kvh),
          v.strides[1] * size,
          a.shape.head_dim_v * size,
          rows,
          steps};
}

template <class A>
struct float_products {
  static constexpr idx M = simd::tile_queries<A>;

  static idx qt_floats(idx head_dim) { return head_dim * M; }
  static idx kt_floats(idx keys, idx head_dim) { return keys * head_dim; }
  static idx vt_floats(idx keys, idx head_dim_v) { return keys * head_dim_v; }
  static idx scratch_floats(idx) { return 0; }

  /// Qᵀ [head_dim × M], multiplied by q_factor, zero past `live` rows. The rows are first
  /// copied as they are into `stage` (M × head_dim floats): row copies keep many cache misses in
  /// flight, where transposing straight from the tensor issues head_dim scattered stores per
  /// row and waits for one row's miss at a time.
  template <class Args>
  void pack_q(const Args& a, idx b, idx h, idx q0, idx live, float q_factor, float* qt,
              float* stage) const {
    const idx D = a.shape.head_dim;
    for (idx i = 0; i < live; ++i) {
      const float* qrow = a.q.row(b, q0 + i, h);
      std::copy(qrow, qrow + D, stage + i * D);
    }
    simd::transpose_scaled<A>(stage, D, live, D, q_factor, qt, M, M);
  }
  /// Sᵀ of the keys off .. off+n−1 of the packed K tile.
  /// kt null: K rows read in place (see pack_kv).
  template <class Args, class Pace>
  void scores(const Args& a, const float* qt, const float* kt, idx b, idx kvh, idx k0, idx off,
              idx n, float, float* st, Pace&& pace) const {
    const idx D = a.shape.head_dim;
    if (kt == nullptr)
      simd::scores_tile<A>(qt, D, a.k.row(b, k0 + off, kvh), a.k.strides[1], n, st, pace);
    else
      simd::scores_tile<A>(qt, D, kt + off * D, D, n, st, pace);
  }
  /// The K and V tiles, rows packed contiguously. K and V rows sit heads·head_dim floats apart
  /// in the tensor; at such power-of-two strides the walk down one tile's rows hits a handful
  /// of L1 sets and evicts itself, and the hardware prefetchers do not follow strides that
  /// cross a page every other row. Row copies keep many misses in flight, and packed, each tile
  /// stays in L1 for all the products that read it (about 10 % faster dense, more sparse,
  /// where each tile is fetched from L3 for a single query tile).
  ///
  /// kt null: K is left in place, for a tile that serves a single query tile. Its scores read
  /// one register block of rows (R keys, a few lines each) at a time, which sit in distinct L1
  /// sets whatever the stride, so the copy would only add a pass over the tile.
  template <class Args>
  void pack_kv(const Args& a, idx b, idx kvh, idx k0, idx k1, idx, float* kt, float* vt,
               nonfinite_values& bad) const {
    const idx D = a.shape.head_dim, Dv = a.shape.head_dim_v;
    for (idx j = k0; j < k1 && kt != nullptr; ++j) {
      const float* krow = a.k.row(b, j, kvh);
      std::copy(krow, krow + D, kt + (j - k0) * D);
    }
    bad.clear();
    for (idx j = k0; j < k1; ++j) {
      const float* vrow = a.v.row(b, j, kvh);
      std::copy(vrow, vrow + Dv, vt + (j - k0) * Dv);
      bad.scan(j - k0, vt + (j - k0) * Dv, Dv);
    }
  }
  template <class Pace>
  void accumulate(const float* pt, idx off, idx n, const float* vt, idx, idx Dv, const float* alpha,
                  float* ot, float*, Pace&& pace) const {
    simd::accumulate_tile<A>(pt, n, vt + off * Dv, Dv, Dv, alpha, ot, pace);
  }
  template <class Args>
  paced_prefetch prefetch(const Args& a, idx b, idx kvh, idx j0, idx rows) const {
    return kv_prefetch(a, a.k, a.v, b, kvh, j0, rows, simd::tile_shape<A>::rows);
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
  static idx kt_floats(idx, idx) { return 0; }  // K pairs are broadcast from the tensor
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
  /// so that no query value is rounded twice. As in float_products::pack_q, the rows are
  /// copied into `stage` before they are transposed.
  template <class Args>
  void pack_q(const Args& a, idx b, idx h, idx q0, idx live, float, float* qt_memory,
              float* stage_memory) const {
    auto* qt = reinterpret_cast<std::uint32_t*>(qt_memory);
    auto* stage = reinterpret_cast<std::uint16_t*>(stage_memory);
    const idx D = a.shape.head_dim, pairs = D / 2;
    for (idx i = 0; i < live; ++i) {
      const std::uint16_t* row = bits(q.row(b, q0 + i, h));
      std::copy(row, row + D, stage + i * D);
    }
    std::fill(qt, qt + pairs * M, 0u);
    for (idx i = 0; i < live; ++i)
      for (idx p = 0; p < pairs; ++p)
        qt[p * M + i] = simd::bf16::pair_bits(stage[i * D + 2 * p], stage[i * D + 2 * p + 1]);
  }
  template <class Args, class Pace>
  void scores(const Args& a, const float* qt, const float*, idx b, idx kvh, idx k0, idx off, idx n,
              float q_factor, float* st, Pace&&) const {
    simd::bf16::scores_tile(reinterpret_cast<const std::uint32_t*>(qt), a.shape.head_dim / 2,
                            bits(k.row(b, k0 + off, kvh)), k.strides[1], n, st);
    const __m512 f = _mm512_set1_ps(q_factor);
    for (idx i = 0; i < n * M; i += 16)
      _mm512_storeu_ps(st + i, _mm512_mul_ps(_mm512_loadu_ps(st + i), f));
  }
  /// Pairs per row of V₂ for key tiles of NK keys (one spare: see vt_floats).
  static idx vt_ld(idx tile_keys) { return tile_keys / 2 + 1; }

  /// V₂: pair p of row e is (V[k0 + 2p, e], V[k0 + 2p + 1, e]); a missing last key is 0. A V
  /// row holding NaN or inf is set aside (as floats) and zeroed here, as in float_products.
  template <class Args>
  void pack_kv(const Args& a, idx b, idx kvh, idx k0, idx k1, idx tile_keys, float*,
               float* vt_memory, nonfinite_values& bad) const {
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
  template <class Pace>
  void accumulate(const float* pt, idx off, idx n, const float* vt, idx tile_keys, idx Dv,
                  const float* alpha, float* ot, float* scratch, Pace&&) const {
    auto* pairs_out = reinterpret_cast<std::uint32_t*>(scratch);
    const idx first = off / 2, shift = off % 2, pairs = (shift + n + 1) / 2;
    simd::bf16::pair_weights(pt, n, shift, pairs, pairs_out);
    simd::bf16::accumulate_tile(pairs_out, pairs,
                                reinterpret_cast<const std::uint32_t*>(vt) + first,
                                vt_ld(tile_keys), Dv, alpha, ot);
  }
  /// Not paced: the bf16 micro-kernels take no pace, so finish() requests it all at once.
  template <class Args>
  paced_prefetch prefetch(const Args& a, idx b, idx kvh, idx j0, idx rows) const {
    return kv_prefetch(a, k, v, b, kvh, j0, rows, a.shape.head_dim_v + rows);
  }
  template <class Args>
  void prefetch_q(const Args& a, idx b, idx h, idx q0, idx rows) const {
    prefetch_rows(q.row(b, q0, h), q.strides[1], rows, a.shape.head_dim);
  }
};
#endif

}  // namespace attn::detail
