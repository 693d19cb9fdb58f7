// attn::kv_cache and attention over it on bad input: an attn::error that names the value and
// its limit, and a cache (and output) left exactly as they were.
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>

#include "support/bad_input.hpp"

namespace kv_cache_errors_test {

using attn::cache_layout;
using attn::idx;
using attn::kv_cache;
using attn::kv_cache_config;
using attn::test::bad_input::expect_error;
using attn::test::bad_input::filled;
using attn::test::bad_input::has_token;
using attn::test::bad_input::out_sentinel;
using tensor = attn::tensor4<float>;

kv_cache_config small(cache_layout layout = cache_layout::contiguous) {
  return {.batch = 2,
          .capacity = 8,
          .heads = 2,
          .head_dim = 4,
          .head_dim_v = 3,
          .layout = layout,
          .sink_tokens = 2,
          .page_size = 4};
}

template <class T>
std::vector<std::int32_t> lengths_of(const kv_cache<T>& c) {
  return {c.lengths().begin(), c.lengths().end()};
}

TEST(KvCacheErrors, BadConfig) {
  auto with = [](auto change) {
    kv_cache_config c = small();
    change(c);
    return c;
  };
  expect_error([&] { kv_cache<float>(with([](auto& c) { c.capacity = 0; })); }, {"capacity=", "0"});
  expect_error([&] { kv_cache<float>(with([](auto& c) { c.head_dim = -1; })); },
               {"head_dim=", "-1"});
  expect_error(
      [&] {
        kv_cache<float>(with([](auto& c) {
          c.layout = cache_layout::ring;
          c.sink_tokens = 8;
        }));
      },
      {"sink_tokens=", "8", "capacity=", "8"});
  expect_error(
      [&] {
        kv_cache<float>(with([](auto& c) {
          c.layout = cache_layout::paged;
          c.page_size = 0;
        }));
      },
      {"page_size=", "0"});
}

TEST(KvCacheErrors, AppendLeavesTheCacheUnchanged) {
  for (cache_layout layout : {cache_layout::contiguous, cache_layout::paged}) {
    kv_cache<Eigen::bfloat16> cache(small(layout));
    cache.append(filled(2, 6, 2, 4, 0.5f), filled(2, 6, 2, 3, 0.5f));
    const auto before = lengths_of(cache);
    // Overflow: 6 + 3 > 8.
    expect_error([&] { cache.append(filled(2, 3, 2, 4, 0.5f), filled(2, 3, 2, 3, 0.5f)); },
                 {"9", "capacity", "8"});
    // Shape mismatches.
    expect_error([&] { cache.append(filled(3, 1, 2, 4, 0.5f), filled(3, 1, 2, 3, 0.5f)); },
                 {"k.dim(0)=3", "batch=2"});
    expect_error([&] { cache.append(filled(2, 1, 1, 4, 0.5f), filled(2, 1, 1, 3, 0.5f)); },
                 {"k.dim(2)=1", "heads=2"});
    expect_error([&] { cache.append(filled(2, 1, 2, 5, 0.5f), filled(2, 1, 2, 3, 0.5f)); },
                 {"k.dim(3)=5", "head_dim=4"});
    expect_error([&] { cache.append(filled(2, 1, 2, 4, 0.5f), filled(2, 2, 2, 3, 0.5f)); },
                 {"v.dim(1)=2", "k.dim(1)=1"});
    const std::vector<std::int32_t> too_many = {1, 2};
    expect_error(
        [&] { cache.append(filled(2, 1, 2, 4, 0.5f), filled(2, 1, 2, 3, 0.5f), too_many); },
        {"counts[1]=2", "1"});
    EXPECT_EQ(lengths_of(cache), before);
  }
}

TEST(KvCacheErrors, PoolOutOfPages) {
  kv_cache_config c = small(cache_layout::paged);
  c.pages = 3;
  kv_cache<float> cache(c);
  cache.append(filled(2, 4, 2, 4, 0.5f), filled(2, 4, 2, 3, 0.5f));  // one page each
  expect_error([&] { cache.append(filled(2, 4, 2, 4, 0.5f), filled(2, 4, 2, 3, 0.5f)); },
               {"2", "pages", "1", "free"});
  EXPECT_EQ(cache.free_pages(), 1);
  EXPECT_EQ(lengths_of(cache), (std::vector<std::int32_t>{4, 4}));
}

TEST(KvCacheErrors, AttentionChecksQueriesAgainstTheCache) {
  kv_cache<float> cache(small());
  cache.append(filled(2, 3, 2, 4, 0.5f), filled(2, 3, 2, 3, 0.5f));
  tensor out = filled(2, 1, 4, 3, out_sentinel);
  expect_error([&] { attn::attention(filled(2, 1, 3, 4, 0.5f), cache, out); },
               {"k.dim(2)=2", "q.dim(2)=3"});
  expect_error([&] { attn::attention(filled(2, 1, 4, 5, 0.5f), cache, out); },
               {"k.dim(3)=4", "q.dim(3)=5"});
  const std::vector<std::int32_t> lengths = {1, 1};
  attn::options opt;
  opt.key_lengths = lengths;
  expect_error(
      [&] {
        attn::attention(filled(2, 1, 4, 4, 0.5f), cache, out, attn::softmax{}, attn::dense{}, opt);
      },
      {"key_lengths"});
  for (idx n = 0; n < out.size(); ++n) EXPECT_EQ(out.data()[n], out_sentinel);
}

}  // namespace kv_cache_errors_test
