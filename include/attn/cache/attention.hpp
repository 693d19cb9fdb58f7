// attn::attention over a KV cache, read in place (no gather copies):
//
//   attn::kv_cache<Eigen::bfloat16> cache({.batch = 1, .capacity = 4096, .heads = 8,
//                                          .head_dim = 128});
//   cache.append(k_prompt, v_prompt);                       // prefill
//   attn::attention(q_prompt, cache, out, attn::softmax{}, attn::causal{});
//   cache.append(k_token, v_token);                         // then one token at a time
//   attn::attention(q_token, cache, out, attn::softmax{}, attn::causal{});
//
// The cache supplies the key lengths (options::key_lengths must be left empty), so causal
// patterns align bottom-right to each sequence's length: the new queries are its last
// positions. The split-KV loop copies blocks of rows in their stored format and widens them
// to float in registers (kernel/kv_source.hpp); a contiguous or ring float cache with more than 16
// queries per head runs the prefill loop on the storage directly.
#pragma once

#include "attn/attention.hpp"
#include "attn/cache/kv_cache.hpp"
#include "attn/kernel/kv_source.hpp"

namespace attn {
namespace detail {

/// Keys (Values = false) or values of a kv_cache as a row source for the split-KV loop.
template <class T, bool Values>
struct cache_rows {
  using element = T;
  const kv_cache<T>* cache;

  idx width() const { return Values ? cache->config().head_dim_v : cache->config().head_dim; }
  const stored_t<T>* stored(idx storage_row, idx h) const {
    if constexpr (Values)
      return cache->value_row(storage_row, h);
    else
      return cache->key_row(storage_row, h);
  }
  const float* scales(idx storage_row, idx h) const {
    if constexpr (Values)
      return cache->value_scales(storage_row, h);
    else
      return cache->key_scales(storage_row, h);
  }
  void stage(idx b, idx j0, idx n, stored_t<T>* values, idx ld, float* scale_out,
             idx scale_ld) const {
    const idx heads = cache->config().heads;
    for (idx j = j0; j < j0 + n; ++j) {  // a slot's heads are contiguous, values and scales
      const idx r = cache->row_of(b, j);
      std::copy_n(stored(r, 0), heads * width(), values + (j - j0) * ld);
      if constexpr (std::is_same_v<T, q8_0>)
        std::copy_n(scales(r, 0), heads * element_format<T>::scales(width()),
                    scale_out + (j - j0) * scale_ld);
    }
  }
  void prefetch(idx b, idx j0, idx n) const {
    const idx length = cache->lengths()[static_cast<std::size_t>(b)];
    const idx bytes = cache->config().heads * width() * static_cast<idx>(sizeof(stored_t<T>));
    for (idx j = j0; j < std::min(j0 + n, length); ++j)
      prefetch_bytes(stored(cache->row_of(b, j), 0), bytes);
  }
};

/// A view4 of a contiguous-storage float cache: [batch, capacity, heads, width].
template <bool Values>
view4<const float> storage_view(const kv_cache<float>& cache) {
  const kv_cache_config& c = cache.config();
  const idx w = Values ? c.head_dim_v : c.head_dim;
  view4<const float> v;
  v.data = Values ? cache.value_row(0, 0) : cache.key_row(0, 0);
  v.dims = {c.batch, c.capacity, c.heads, w};
  v.strides = {c.capacity * c.heads * w, c.heads * w, w, 1};
  return v;
}

}  // namespace detail

/// Attention of q over the tokens a KV cache holds; see the file comment. q: [batch, seq_q,
/// heads_q, head_dim], out: [batch, seq_q, heads_q, head_dim_v], heads_q a multiple of the
/// cache's heads.
template <class Arch = simd::default_arch, detail::float_input Q, class T, detail::float_output O,
          class Score = softmax, class Pattern = dense>
void attention(const Q& q, const kv_cache<T>& cache, O& out, const Score& score = {},
               const Pattern& pattern = {}, const options& opt = {}) {
  const kv_cache_config& c = cache.config();
  if (!opt.key_lengths.empty())
    detail::fail("options.key_lengths is set, but a kv_cache supplies its own lengths");
  detail::prefill_args a;
  a.q = detail::view_of(q);
  a.out = detail::view_of(out);
  // K and V as the shape rules see them: [batch, capacity, heads, head_dim(_v)]. Their data is
  // only read through them when the prefill loop runs on a float cache in contiguous storage.
  const bool storage_is_tensor = std::is_same_v<T, float> && c.layout != cache_layout::paged;
  if constexpr (std::is_same_v<T, float>) {
    a.k = detail::storage_view<false>(cache);
    a.v = detail::storage_view<true>(cache);
    if (!storage_is_tensor) a.k.data = a.v.data = nullptr;
  } else {
    a.k.dims = {c.batch, c.capacity, c.heads, c.head_dim};
    a.v.dims = {c.batch, c.capacity, c.heads, c.head_dim_v};
  }
  a.shape = detail::check_qkvo(a.q, a.k, a.v, a.out);
  detail::check_out_disjoint(a.q, a.k, a.v, a.out);
  options with_lengths = opt;
  with_lengths.key_lengths = cache.lengths();
  detail::complete_args(a, score, pattern, with_lengths);
  detail::run<Arch>(a, score, pattern, with_lengths, detail::cache_rows<T, false>{&cache},
                    detail::cache_rows<T, true>{&cache}, storage_is_tensor);
}

/// Overload for an rvalue output view.
template <class Arch = simd::default_arch, detail::float_input Q, class T, detail::float_output O,
          class Score = softmax, class Pattern = dense>
requires(!std::is_lvalue_reference_v<O>) void attention(const Q& q, const kv_cache<T>& cache,
                                                        O&& out, const Score& score = {},
                                                        const Pattern& pattern = {},
                                                        const options& opt = {}) {
  attention<Arch>(q, cache, out, score, pattern, opt);
}

}  // namespace attn
