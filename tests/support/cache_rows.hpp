// What a kv_cache shows attention, as plain tensors: the oracle side of every cache test.
#pragma once

#include <utility>

#include "attn/cache/element.hpp"
#include "attn/cache/kv_cache.hpp"
#include "attn/tensor.hpp"

namespace attn::test {

/// K and V as the cache shows them to attention: slot order, decoded to float, zero past each
/// sequence's length ([batch, capacity, heads, head_dim(_v)]; the lengths go into the options).
template <class T>
std::pair<tensor4<float>, tensor4<float>> held_rows(const kv_cache<T>& cache) {
  const kv_cache_config& c = cache.config();
  tensor4<float> k(c.batch, c.capacity, c.heads, c.head_dim),
      v(c.batch, c.capacity, c.heads, c.head_dim_v);
  k.setZero();
  v.setZero();
  for (idx b = 0; b < c.batch; ++b)
    for (idx j = 0; j < cache.lengths()[static_cast<std::size_t>(b)]; ++j)
      for (idx h = 0; h < c.heads; ++h) {
        const idx r = cache.row_of(b, j);
        detail::decode_row<T>(cache.key_row(r, h), cache.key_scales(r, h), c.head_dim,
                              &k(b, j, h, 0));
        detail::decode_row<T>(cache.value_row(r, h), cache.value_scales(r, h), c.head_dim_v,
                              &v(b, j, h, 0));
      }
  return {k, v};
}

}  // namespace attn::test
