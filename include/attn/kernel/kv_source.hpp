// Where the split-KV loop (decode.hpp) reads key and value rows from, and how they become float.
//
// The decode loop never reads K or V in place: it packs each block of rows into a contiguous,
// lane-padded float buffer first. Rows of one KV head lie heads·head_dim floats apart (4 KiB at
// 8 heads × 128), so read in place they alias to a handful of L1 sets and every row starts a
// new page that the hardware prefetchers will not enter; packed, the block is re-read from L1
// by every query head of the group. Packing is also where a cache's storage format (contiguous
// or paged, float or narrower) turns into what the micro-kernels read, so the loop itself is
// the same for all of them.
//
// A row source S has:
//   idx width() const;                                   floats per row (head_dim)
//   void pack(idx b, idx j0, idx n, float* dst, idx ld, idx head_ld) const;
//       rows j0 .. j0+n−1 of batch b, every head h, into dst + (j − j0)·ld + h·head_ld, the
//       head_ld − width() padding floats after each row set to 0
//   void prefetch(idx b, idx j0, idx n) const;
//       a hint to bring rows j0 .. j0+n−1 (every head; rows past the end are ignored) to L2
// A block is packed for all KV heads at once because that is the order of the memory: in the
// [batch, seq, heads, head_dim] layout one key's heads are contiguous, so a block of keys is
// one contiguous stretch, which streams at full bandwidth, where one head's rows alone would be
// 512-byte pieces 4 KiB apart — a page each, past the reach of the hardware prefetchers.
// The decode loop spreads the prefetches of the next block over the computation of the
// current one: a burst of a whole block's prefetches would fill the miss queues and stall
// the core behind them, and none at all would leave the memory idle while it computes.
#pragma once

#include <algorithm>
#include <cstdint>

#include "attn/kernel/prefill.hpp"
#include "attn/tensor.hpp"

namespace attn::detail {

/// Asks for `bytes` bytes from `first` to be brought into L2 (a hint: no fault, no effect).
inline void prefetch_bytes(const void* first, idx bytes) {
#if defined(__GNUC__) || defined(__clang__)
  constexpr std::uintptr_t line = 64;
  const auto begin = reinterpret_cast<std::uintptr_t>(first);
  for (std::uintptr_t at = begin & ~(line - 1); at < begin + static_cast<std::uintptr_t>(bytes);
       at += line)
    __builtin_prefetch(reinterpret_cast<const void*>(at), 0, 2);
#else
  (void)first, (void)bytes;
#endif
}

/// Rows of a [batch, seq, heads, width] float tensor view: the contiguous case.
struct strided_rows {
  view4<const float> t;

  idx width() const { return t.head_dim(); }
  void pack(idx b, idx j0, idx n, float* dst, idx ld, idx head_ld) const {
    const idx w = width();
    const idx heads = t.heads();
    // One key's heads in one piece when they are contiguous and need no padding.
    const bool whole_key = t.strides[2] == w && head_ld == w;
    for (idx j = j0; j < j0 + n; ++j) {
      float* key = dst + (j - j0) * ld;
      if (whole_key) {
        const float* src = t.row(b, j, 0);
        std::copy(src, src + heads * w, key);
        continue;
      }
      for (idx h = 0; h < heads; ++h) {
        const float* src = t.row(b, j, h);
        std::copy(src, src + w, key + h * head_ld);
        std::fill(key + h * head_ld + w, key + (h + 1) * head_ld, 0.0f);
      }
    }
  }
  void prefetch(idx b, idx j0, idx n) const {
    const idx bytes = static_cast<idx>(sizeof(float)) * width();
    for (idx j = j0; j < std::min(j0 + n, t.seq()); ++j)
      for (idx h = 0; h < t.heads(); ++h) prefetch_bytes(t.row(b, j, h), bytes);
  }
};

}  // namespace attn::detail
