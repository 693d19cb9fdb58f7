// What the files of attn/linear/ share: the view type the kernels read, and the plan of rows
// their products prefetch (parallel loops over work items: attn::exec::for_each_item).
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "attn/exec/executor.hpp"
#include "attn/pattern/tile.hpp"
#include "attn/tensor.hpp"

namespace attn::linear::detail {

using attn::idx;
using in_view = attn::detail::view4<const float>;
using out_view = attn::detail::view4<float>;

/// A read-only view of any tensor view (a non-const TensorMap passed as an input gives a
/// view4<float>).
template <class T>
in_view read_only(const attn::detail::view4<T>& x) {
  return {x.data, x.dims, x.strides};
}

/// Rows to prefetch (from up to four tensors), issued a few at a time between the row bands of
/// a product: a burst of hundreds of prefetches stalls the core once its miss queues are full,
/// a trickle overlaps with the arithmetic.
struct prefetch_plan {
  struct queue {
    const float* base = nullptr;  // row `next` of the tensor's head
    idx stride = 0, width = 0, left = 0;
    bool write = false;
  };
  queue queues[4];
  int count = 0;

  /// Rows pos0 … pos0+n−1 of heads head … head+heads−1 (contiguous within a token's row).
  template <class T>
  void add(const attn::detail::view4<T>& x, idx b, idx head, idx pos0, idx n, idx heads = 1) {
    if (n <= 0) return;
    queues[count++] = {x.row(b, pos0, head), x.strides[1], heads * x.strides[2], n,
                       !std::is_const_v<T>};
  }
  idx rows() const {
    idx n = 0;
    for (int q = 0; q < count; ++q) n += queues[q].left;
    return n;
  }
  /// Prefetches the next `n` rows.
  void issue(idx n) {
    constexpr idx line = 64 / sizeof(float);
    for (int q = 0; q < count && n > 0; ++q) {
      queue& u = queues[q];
      for (; u.left > 0 && n > 0; --u.left, --n, u.base += u.stride)
        for (idx c = 0; c < u.width; c += line) {
          if (u.write)
            __builtin_prefetch(u.base + c, 1, 2);
          else
            __builtin_prefetch(u.base + c, 0, 2);
        }
    }
  }
};

/// n rounded up to a multiple of m.
inline idx round_up(idx n, idx m) { return (n + m - 1) / m * m; }

}  // namespace attn::linear::detail
