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
//       rows j0 .. j0+n−1 of batch b, every head h, into dst + h·head_ld + (j − j0)·ld, the
//       ld − width() padding floats of each row set to 0
// A block is packed for all KV heads at once because that is the order of the memory: in the
// [batch, seq, heads, head_dim] layout one key's heads are contiguous, so a block of keys is
// one contiguous stretch, which streams at full bandwidth, where one head's rows alone would be
// 512-byte pieces 4 KiB apart — a page each, past the reach of the hardware prefetchers.
// While it copies a row, pack asks for the row pack_ahead keys further: one prefetch per line
// copied keeps a steady number of misses in flight (a burst of a whole block's prefetches
// would fill the miss queues and stall the copy behind them).
#pragma once

#include <algorithm>
#include <cstdint>

#include "attn/kernel/prefill.hpp"
#include "attn/tensor.hpp"

namespace attn::detail {

/// Keys ahead of the one being packed whose rows are requested from memory.
inline constexpr idx pack_ahead = 8;

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
    const auto row_bytes = static_cast<idx>(sizeof(float)) * w;
    for (idx j = j0; j < j0 + n; ++j) {
      const bool ahead = j + pack_ahead < t.seq();
      for (idx h = 0; h < t.heads(); ++h) {
        if (ahead) prefetch_bytes(t.row(b, j + pack_ahead, h), row_bytes);
        const float* src = t.row(b, j, h);
        float* row = dst + h * head_ld + (j - j0) * ld;
        std::copy(src, src + w, row);
        std::fill(row + w, row + ld, 0.0f);
      }
    }
  }
};

}  // namespace attn::detail
