// attn::kv_cache — one layer's keys and values for autoregressive decoding, read in place by
// attn::attention (cache/attention.hpp). Per batch sequence it holds the K and V rows
// appended so far, [heads, head_dim] each, in one of three layouts:
//
//   contiguous  slot = position, storage [batch, capacity, heads, head_dim] — the layout of the
//               rank-4 tensors everywhere else in attn.
//   ring        a sliding window that keeps the first sink_tokens positions forever and the
//               most recent capacity − sink_tokens after them (StreamingLLM, Xiao et al. 2024,
//               "Efficient Streaming Language Models with Attention Sinks", §3.2): position p is
//               stored at p if p < sinks, else at sinks + (p − sinks) mod (capacity − sinks).
//               Keys are in slot order, not position order: use position-free patterns (dense;
//               with one query per head causal is the same thing).
//   paged       fixed-size pages from one pool shared by all sequences, and a page table per
//               sequence (vLLM's PagedAttention, Kwon et al. 2023, §4.1): sequences of very
//               different lengths use only the pages they fill; release(b) returns them.
//
// The element type T is how rows are stored: float, Eigen::bfloat16, Eigen::half or
// attn::q8_0 (cache/element.hpp); appends take float rows and encode them.
//
// Every mutating call validates everything first and throws attn::error with the cache
// unchanged: a shape mismatch, an append past the capacity, a pool with too few free pages.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "attn/cache/element.hpp"
#include "attn/error.hpp"
#include "attn/kernel/workspace.hpp"
#include "attn/tensor.hpp"

namespace attn {

enum class cache_layout { contiguous, ring, paged };

/// The sizes and layout of a cache.
struct kv_cache_config {
  idx batch = 1;
  idx capacity = 0;    ///< tokens one sequence can hold (ring: the window, sinks included)
  idx heads = 1;       ///< KV heads
  idx head_dim = 0;    ///< K row length
  idx head_dim_v = 0;  ///< V row length; 0 = head_dim
  cache_layout layout = cache_layout::contiguous;
  idx sink_tokens = 0;  ///< ring: first positions that are never evicted
  idx page_size = 16;   ///< paged: tokens per page
  idx pages = 0;        ///< paged: pages in the pool; 0 = enough for every sequence to be full
};

template <class T = float>
class kv_cache {
  static_assert(detail::is_cache_element<T>,
                "kv_cache stores float, Eigen::bfloat16, Eigen::half or attn::q8_0");

 public:
  using element = T;

  explicit kv_cache(const kv_cache_config& config) : c_(checked(config)) {
    const idx slots =
        c_.layout == cache_layout::paged ? c_.pages * c_.page_size : c_.batch * c_.capacity;
    keys_.resize(static_cast<std::size_t>(slots * c_.heads * c_.head_dim));
    values_.resize(static_cast<std::size_t>(slots * c_.heads * c_.head_dim_v));
    key_scales_.resize(static_cast<std::size_t>(slots * c_.heads * scales(c_.head_dim)));
    value_scales_.resize(static_cast<std::size_t>(slots * c_.heads * scales(c_.head_dim_v)));
    seen_.assign(static_cast<std::size_t>(c_.batch), 0);
    lengths_.assign(static_cast<std::size_t>(c_.batch), 0);
    tables_.resize(static_cast<std::size_t>(c_.batch));
    for (idx p = c_.pages - 1; p >= 0 && c_.layout == cache_layout::paged; --p)
      free_pages_.push_back(p);
  }

  const kv_cache_config& config() const { return c_; }

  /// Tokens attention sees per sequence (ring: at most the capacity), as key_lengths.
  std::span<const std::int32_t> lengths() const { return lengths_; }
  /// Tokens appended per sequence since the last reset: the position of the next one.
  idx position(idx b) const { return seen_[static_cast<std::size_t>(b)]; }
  /// Pages not held by any sequence (paged layout).
  idx free_pages() const { return static_cast<idx>(free_pages_.size()); }

  /// Appends n = k.dim(1) tokens to every sequence, or counts[b] ≤ n tokens (the first ones of
  /// k and v) to sequence b when counts is given. k: [batch, n, heads, head_dim], v: [batch, n,
  /// heads, head_dim_v], float.
  template <class K, class V>
  void append(const K& k, const V& v, std::span<const std::int32_t> counts = {}) {
    const auto kv = detail::view_of(k);
    const auto vv = detail::view_of(v);
    check_rows("k", kv, c_.head_dim);
    check_rows("v", vv, c_.head_dim_v);
    detail::require_equal_dim("v", vv, 1, "k", kv, 1);
    if (!counts.empty() && static_cast<idx>(counts.size()) != c_.batch)
      detail::fail("append: counts.size()=", counts.size(),
                   " does not match the cache's batch=", c_.batch);
    const idx n = kv.seq();
    auto count = [&](idx b) {
      return counts.empty() ? n : static_cast<idx>(counts[static_cast<std::size_t>(b)]);
    };
    idx pages_needed = 0;
    for (idx b = 0; b < c_.batch; ++b) {
      const idx m = count(b), after = seen_[static_cast<std::size_t>(b)] + m;
      if (m < 0 || m > n)
        detail::fail("append: counts[", b, "]=", m, " is outside [0, ", n, "] (k.dim(1))");
      if (c_.layout != cache_layout::ring && after > c_.capacity)
        detail::fail("append: sequence ", b, " would hold ", after, " tokens, capacity is ",
                     c_.capacity);
      if (c_.layout == cache_layout::paged)
        pages_needed +=
            pages_for(after) - static_cast<idx>(tables_[static_cast<std::size_t>(b)].size());
    }
    if (pages_needed > free_pages())
      detail::fail("append: needs ", pages_needed, " more pages, the pool has ", free_pages(),
                   " free (kv_cache_config.pages=", c_.pages, ")");

    for (idx b = 0; b < c_.batch; ++b) {
      auto& seen = seen_[static_cast<std::size_t>(b)];
      const idx m = count(b);
      if (c_.layout == cache_layout::paged)
        while (static_cast<idx>(tables_[static_cast<std::size_t>(b)].size()) <
               pages_for(seen + m)) {
          tables_[static_cast<std::size_t>(b)].push_back(free_pages_.back());
          free_pages_.pop_back();
        }
      for (idx t = 0; t < m; ++t, ++seen) {
        const idx row = row_of(b, slot_of(seen));
        for (idx h = 0; h < c_.heads; ++h) {
          detail::encode_row<T>(kv.row(b, t, h), c_.head_dim, key_row(row, h), key_scales(row, h));
          detail::encode_row<T>(vv.row(b, t, h), c_.head_dim_v, value_row(row, h),
                                value_scales(row, h));
        }
      }
      lengths_[static_cast<std::size_t>(b)] =
          static_cast<std::int32_t>(std::min(seen, c_.capacity));
    }
  }

  /// Empties sequence b (its pages go back to the pool).
  void release(idx b) {
    if (b < 0 || b >= c_.batch)
      detail::fail("release: sequence ", b, " is outside [0, ", c_.batch, ")");
    auto& table = tables_[static_cast<std::size_t>(b)];
    for (auto it = table.rbegin(); it != table.rend(); ++it) free_pages_.push_back(*it);
    table.clear();
    seen_[static_cast<std::size_t>(b)] = 0;
    lengths_[static_cast<std::size_t>(b)] = 0;
  }
  /// Empties every sequence.
  void reset() {
    for (idx b = 0; b < c_.batch; ++b) release(b);
  }

  // ---- what the kernels read (cache/attention.hpp) ------------------------------------------

  /// Storage row of the j-th key attention sees in sequence b (j < lengths()[b]): the slot
  /// order of the layout.
  idx row_of(idx b, idx slot) const {
    if (c_.layout != cache_layout::paged) return b * c_.capacity + slot;
    const auto& table = tables_[static_cast<std::size_t>(b)];
    return table[static_cast<std::size_t>(slot / c_.page_size)] * c_.page_size +
           slot % c_.page_size;
  }
  const detail::stored_t<T>* key_row(idx row, idx h) const {
    return keys_.data() + (row * c_.heads + h) * c_.head_dim;
  }
  const detail::stored_t<T>* value_row(idx row, idx h) const {
    return values_.data() + (row * c_.heads + h) * c_.head_dim_v;
  }
  const float* key_scales(idx row, idx h) const {
    return key_scales_.data() + (row * c_.heads + h) * scales(c_.head_dim);
  }
  const float* value_scales(idx row, idx h) const {
    return value_scales_.data() + (row * c_.heads + h) * scales(c_.head_dim_v);
  }

 private:
  static idx scales(idx width) { return detail::element_format<T>::scales(width); }
  idx pages_for(idx tokens) const { return (tokens + c_.page_size - 1) / c_.page_size; }
  idx slot_of(idx position) const {
    if (c_.layout != cache_layout::ring || position < c_.sink_tokens) return position;
    return c_.sink_tokens + (position - c_.sink_tokens) % (c_.capacity - c_.sink_tokens);
  }
  detail::stored_t<T>* key_row(idx row, idx h) {
    return keys_.data() + (row * c_.heads + h) * c_.head_dim;
  }
  detail::stored_t<T>* value_row(idx row, idx h) {
    return values_.data() + (row * c_.heads + h) * c_.head_dim_v;
  }
  float* key_scales(idx row, idx h) {
    return key_scales_.data() + (row * c_.heads + h) * scales(c_.head_dim);
  }
  float* value_scales(idx row, idx h) {
    return value_scales_.data() + (row * c_.heads + h) * scales(c_.head_dim_v);
  }

  template <class View>
  void check_rows(const char* name, const View& x, idx width) const {
    if (x.batch() != c_.batch)
      detail::fail(name, ".dim(0)=", x.batch(), " does not match the cache's batch=", c_.batch);
    if (x.heads() != c_.heads)
      detail::fail(name, ".dim(2)=", x.heads(), " does not match the cache's heads=", c_.heads);
    if (x.head_dim() != width)
      detail::fail(name, ".dim(3)=", x.head_dim(), " does not match the cache's head_dim=", width);
  }

  static kv_cache_config checked(kv_cache_config c) {
    if (c.head_dim_v == 0) c.head_dim_v = c.head_dim;
    const std::pair<const char*, idx> positive[] = {{"batch", c.batch},
                                                    {"capacity", c.capacity},
                                                    {"heads", c.heads},
                                                    {"head_dim", c.head_dim},
                                                    {"head_dim_v", c.head_dim_v}};
    for (const auto& [name, value] : positive)
      if (value < 1) detail::fail("kv_cache_config.", name, "=", value, " must be >= 1");
    if (c.capacity > INT32_MAX)
      detail::fail("kv_cache_config.capacity=", c.capacity, " exceeds ", INT32_MAX);
    if (c.layout == cache_layout::ring && !(c.sink_tokens >= 0 && c.sink_tokens < c.capacity))
      detail::fail("kv_cache_config.sink_tokens=", c.sink_tokens,
                   " must be in [0, capacity=", c.capacity, ")");
    if (c.layout == cache_layout::paged) {
      if (c.page_size < 1) detail::fail("kv_cache_config.page_size=", c.page_size, " must be >= 1");
      const idx full = c.batch * ((c.capacity + c.page_size - 1) / c.page_size);
      if (c.pages == 0) c.pages = full;
      if (c.pages < 1) detail::fail("kv_cache_config.pages=", c.pages, " must be >= 0");
    }
    return c;
  }

  kv_cache_config c_;
  // Cache-line aligned: the decode loop streams these at memory bandwidth (workspace.hpp).
  std::vector<detail::stored_t<T>, detail::cache_line_allocator<detail::stored_t<T>>> keys_,
      values_;
  std::vector<float, detail::cache_line_allocator<float>> key_scales_, value_scales_;
  std::vector<idx> seen_;
  std::vector<std::int32_t> lengths_;
  std::vector<std::vector<idx>> tables_;
  std::vector<idx> free_pages_;
};

}  // namespace attn
