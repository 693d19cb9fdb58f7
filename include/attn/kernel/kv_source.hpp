// Where the split-KV loop (decode.hpp) reads key and value rows from, and how they become float.
//
// The loop never converts K or V to a float copy: it stages each block of rows in their stored
// format — a plain copy of the bytes, key after key in memory order — and the micro-kernels
// widen each vector to float in registers as they load it (simd/widen.hpp), so a bf16 or int8
// cache streams at its own width. Why stage at all, rather than read rows in place: the loop
// reads one KV head's rows of a block at a time, and those lie heads·head_dim values apart
// (4 KiB at 8 heads × 128 floats): a few lines from each page, a pattern the hardware
// prefetchers do not follow, and rows that alias to a handful of L1 sets. The copy reads the
// block as the one contiguous stretch it is (in the [batch, seq, heads, head_dim] layout one
// key's heads are contiguous), which streams at full bandwidth; the staged rows are then
// re-read from L2 by every query head of the group. (Measured: in place, fp32 decode ran
// 20–25 % slower. Reading in place in address order — a few keys at a time, every KV head of
// them before the next few, with or without software prefetch — was 25–110 % slower from DRAM
// and faster only when the whole cache fits in L3.)
//
// A row source S has:
//   using element = T;                  float, Eigen::bfloat16, Eigen::half or attn::q8_0
//   idx width() const;                  values per row (head_dim)
//   void stage(idx b, idx j0, idx n, stored_t<T>* values, idx ld, float* scales,
//              idx scale_ld) const;
//       keys j0 .. j0+n−1 of batch b, every head, as stored: head h of key j to
//       values + (j − j0)·ld + h·width(), and for q8_0 its scales to
//       scales + (j − j0)·scale_ld + h·scales_per_row
//   void prefetch(idx b, idx j0, idx n) const;
//       a hint to bring rows j0 .. j0+n−1 (every head; rows past the end are ignored) to L2
// The decode loop spreads the prefetches of the next block over the computation of the
// current one: a burst of a whole block's prefetches would fill the miss queues and stall
// the core behind them, and none at all would leave the memory idle while it computes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "attn/cache/element.hpp"
#include "attn/kernel/prefill.hpp"
#include "attn/simd/widen.hpp"
#include "attn/tensor.hpp"

namespace attn::detail {

/// Asks for `bytes` bytes from `first` to be brought into L2 (a hint: no fault, no effect).
inline void prefetch_bytes(const void* first, idx bytes) {
  prefetch_rows(static_cast<const unsigned char*>(first), 0, 1, bytes);
}

/// One stored row of a K or V source: `values` in the source's format and, for q8_0, one scale
/// per block of 32 values. load<A>(e) gives the lanes<A> floats from value e (a multiple of
/// lanes<A>; a vector never straddles two q8_0 blocks since lanes<A> divides 32).
template <class T>
struct row_ref {
  const stored_t<T>* values = nullptr;
  const float* scales = nullptr;

  template <class A>
  simd::vec<A> load(idx e) const {
    if constexpr (std::is_same_v<T, q8_0>)
      return simd::widen<A>(values + e) * simd::splat<A>(scales[e / q8_0::block]);
    else
      return simd::widen<A>(values + e);
  }
  float at(idx e) const {
    if constexpr (std::is_same_v<T, q8_0>)
      return scales[e / q8_0::block] * static_cast<float>(values[e]);
    else
      return static_cast<float>(values[e]);
  }
};

/// Rows of a [batch, seq, heads, width] tensor view of float, bfloat16 or half.
template <class T>
struct strided_rows {
  using element = T;
  view4<const T> t;

  idx width() const { return t.head_dim(); }
  void stage(idx b, idx j0, idx n, T* values, idx ld, float*, idx) const {
    const idx w = width(), heads = t.heads();
    const bool whole_key = t.strides[2] == w;  // one key's heads in one piece
    for (idx j = j0; j < j0 + n; ++j) {
      T* key = values + (j - j0) * ld;
      if (whole_key) {
        std::copy_n(t.row(b, j, 0), heads * w, key);
        continue;
      }
      for (idx h = 0; h < heads; ++h) std::copy_n(t.row(b, j, h), w, key + h * w);
    }
  }
  void prefetch(idx b, idx j0, idx n) const {
    const idx bytes = static_cast<idx>(sizeof(T)) * width();
    for (idx j = j0; j < std::min(j0 + n, t.seq()); ++j)
      for (idx h = 0; h < t.heads(); ++h) prefetch_bytes(t.row(b, j, h), bytes);
  }
};
template <class T>
strided_rows(view4<const T>) -> strided_rows<T>;

}  // namespace attn::detail
