// Per-thread scratch memory of the fused loop: allocated once per worker per call, 64-byte
// aligned, O(tile · head_dim) — never per tile, never N × N.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

namespace attn::detail {

class aligned_floats {
 public:
  explicit aligned_floats(std::size_t count)
      : data_(static_cast<float*>(
            ::operator new[](round_up(count) * sizeof(float), std::align_val_t{64}))) {}
  float* get() const { return data_.get(); }

 private:
  static std::size_t round_up(std::size_t n) { return (n + 15) / 16 * 16; }
  struct release {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::unique_ptr<float[], release> data_;
};

/// A std::allocator that starts every allocation on a cache line, for long-lived buffers that
/// kernels stream through (the kv_cache storage): a row of 4 KiB that starts mid-line spans 65
/// lines instead of 64 and splits every vector load that crosses a line. (Measured: fp32
/// split-KV decode over a 16-byte-aligned cache ran 10–25 % slower than over a 64-byte-aligned
/// one.)
template <class T>
struct cache_line_allocator {
  using value_type = T;
  static constexpr std::align_val_t alignment{64};

  cache_line_allocator() = default;
  template <class U>
  cache_line_allocator(const cache_line_allocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), alignment)); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, alignment); }
  template <class U>
  bool operator==(const cache_line_allocator<U>&) const {
    return true;
  }
};

/// The packed V rows that hold a non-finite value (NaN, ±inf), set aside. The accumulate
/// micro-kernels add V[j, :]·p_ij for every row i of a tile, and a row that does not see key j
/// has p_ij = 0, but 0·NaN = 0·inf = NaN: one bad value row would poison every row of the tile
/// (other queries of the batch and head) instead of only the rows that see its key. So such a
/// row is zeroed in the packed copy and added by add_to() to the rows with p ≠ 0 only. Rare
/// (only non-finite inputs), so the common path costs one finiteness scan per packed row.
class nonfinite_values {
 public:
  void clear() {
    rows_.clear();
    values_.clear();
  }
  bool empty() const { return rows_.empty(); }

  /// Checks packed row `row` (width floats at v); if it holds a non-finite value, keeps a copy
  /// and zeroes it.
  void scan(std::ptrdiff_t row, float* v, std::ptrdiff_t width) {
    if (all_finite(v, width)) return;
    rows_.push_back(row);
    values_.insert(values_.end(), v, v + width);
    std::fill(v, v + width, 0.0f);
  }

  /// For each kept row r in [first, first + keys): o[i·o_row + e·o_col] += v_r[e]·p[(r −
  /// first)·p_stride + i] for rows i < rows with a non-zero weight (width values per row).
  void add_to(std::ptrdiff_t first, std::ptrdiff_t keys, const float* p, std::ptrdiff_t p_stride,
              std::ptrdiff_t rows, std::ptrdiff_t width, float* o, std::ptrdiff_t o_row,
              std::ptrdiff_t o_col) const {
    for (std::size_t n = 0; n < rows_.size(); ++n) {
      const std::ptrdiff_t r = rows_[n] - first;
      if (r < 0 || r >= keys) continue;
      const float* v = values_.data() + static_cast<std::ptrdiff_t>(n) * width;
      for (std::ptrdiff_t i = 0; i < rows; ++i) {
        const float w = p[r * p_stride + i];
        if (w == 0.0f) continue;
        for (std::ptrdiff_t e = 0; e < width; ++e) o[i * o_row + e * o_col] += v[e] * w;
      }
    }
  }

 private:
  /// Whether no value of v[0 .. width) is NaN or ±inf. Those are the values whose exponent bits
  /// are all ones; testing the bits as integers (an OR-reduction the compiler vectorises) keeps
  /// the scan at load speed, where a std::isfinite per value stays scalar without -ffast-math.
  static bool all_finite(const float* v, std::ptrdiff_t width) {
    constexpr std::uint32_t exponent = 0x7f800000u;
    std::uint32_t widest = 0;
    for (std::ptrdiff_t e = 0; e < width; ++e)
      widest = std::max(widest, std::bit_cast<std::uint32_t>(v[e]) & exponent);
    return widest != exponent;
  }

  std::vector<std::ptrdiff_t> rows_;
  std::vector<float> values_;
};

}  // namespace attn::detail
