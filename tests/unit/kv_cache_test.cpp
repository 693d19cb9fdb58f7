// attn::kv_cache read in place by attn::attention (cache/attention.hpp): every layout and
// element type against the double-precision reference on the rows the cache holds; prefill
// then token-by-token decode equals attention over the whole sequence; ring and paged layouts
// give the same outputs as a contiguous cache; narrow formats stay within their documented
// error of the float data.
#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>
#include <attn/cache/attention.hpp>
#include <attn/reference/reference.hpp>

#include "support/cache_rows.hpp"
#include "support/kernel_check.hpp"

namespace kv_cache_test {

using attn::cache_layout;
using attn::idx;
using attn::kv_cache;
using attn::kv_cache_config;
using attn::test::held_rows;
using attn::test::make_problem;
using attn::test::max_abs_diff;
using attn::test::problem;
using attn::test::tensor;
using attn::test::tolerance;

/// The cache's attention output equals the reference on the rows it holds.
template <class T, class Score = attn::softmax, class Pattern = attn::dense>
tensor expect_cache_matches(const tensor& q, const kv_cache<T>& cache, const Score& score = {},
                            const Pattern& pattern = {}, attn::options opt = {}) {
  const kv_cache_config& c = cache.config();
  tensor out(q.dimension(0), q.dimension(1), q.dimension(2), c.head_dim_v);
  out.setConstant(std::numeric_limits<float>::quiet_NaN());
  attn::attention<attn::test::arch>(q, cache, out, score, pattern, opt);
  const auto [k, v] = held_rows(cache);
  opt.key_lengths = cache.lengths();
  const attn::reference::result want = attn::reference::attention(q, k, v, score, pattern, opt);
  EXPECT_LE(max_abs_diff(out, want.out), tolerance);
  return out;
}

tensor slice(const tensor& t, idx first, idx count) {
  const Eigen::array<idx, 4> offsets = {0, first, 0, 0};
  const Eigen::array<idx, 4> extents = {t.dimension(0), count, t.dimension(2), t.dimension(3)};
  return t.slice(offsets, extents);
}

kv_cache_config config(cache_layout layout, idx capacity = 96) {
  return {.batch = 2,
          .capacity = capacity,
          .heads = 2,
          .head_dim = 64,
          .head_dim_v = 40,
          .layout = layout,
          .sink_tokens = 4,
          .page_size = 16};
}

template <class T>
class KvCacheTyped : public ::testing::Test {};
using elements = ::testing::Types<float, Eigen::bfloat16, Eigen::half, attn::q8_0>;
TYPED_TEST_SUITE(KvCacheTyped, elements);

TYPED_TEST(KvCacheTyped, PrefillThenDecodeMatchesReference) {
  for (cache_layout layout : {cache_layout::contiguous, cache_layout::paged}) {
    SCOPED_TRACE(static_cast<int>(layout));
    const problem p = make_problem(2, 40, 40, 8, 2, 64, 40, 21);
    kv_cache<TypeParam> cache(config(layout));
    // Prefill 24 tokens (causal, 24 queries: the prefill loop on a contiguous float cache).
    cache.append(slice(p.k, 0, 24), slice(p.v, 0, 24));
    expect_cache_matches(slice(p.q, 0, 24), cache, attn::softmax{}, attn::causal{});
    // Then one token at a time, and a speculative step of 4.
    for (idx t = 24; t < 36; ++t) {
      cache.append(slice(p.k, t, 1), slice(p.v, t, 1));
      expect_cache_matches(slice(p.q, t, 1), cache, attn::softmax{}, attn::causal{});
      expect_cache_matches(slice(p.q, t, 1), cache, attn::sigmoid{}, attn::alibi{});
    }
    cache.append(slice(p.k, 36, 4), slice(p.v, 36, 4));
    expect_cache_matches(slice(p.q, 36, 4), cache, attn::softmax{}, attn::causal{});
    EXPECT_EQ(cache.position(1), 40);
  }
}

TYPED_TEST(KvCacheTyped, StorageStartsOnACacheLine) {
  // The decode loop streams the storage; a start mid-line splits loads (workspace.hpp).
  const kv_cache<TypeParam> cache(config(cache_layout::contiguous));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(cache.key_row(0, 0)) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(cache.value_row(0, 0)) % 64, 0u);
}

TYPED_TEST(KvCacheTyped, NarrowFormatsStayWithinTheirBound) {
  // Output error against the float data: the format's rounding of K (through the logits) and
  // of V. Values are in [−1, 1]; per element |ΔK|, |ΔV| ≤ ε (bf16 2⁻⁸, fp16 2⁻¹¹ relative;
  // q8_0 max|x|/254 absolute), so a logit moves by ≤ scale·Σ|q_d|·ε ≤ √D·ε and the output by
  // ≤ ε + 2·√D·ε (a softmax row's weights move by at most that factor in total variation).
  const double eps = std::is_same_v<TypeParam, float>             ? 0.0
                     : std::is_same_v<TypeParam, Eigen::bfloat16> ? 1.0 / 256
                     : std::is_same_v<TypeParam, Eigen::half>     ? 1.0 / 2048
                                                                  : 1.0 / 254;
  const problem p = make_problem(2, 1, 80, 8, 2, 64, 40, 22);
  kv_cache<TypeParam> cache(config(cache_layout::contiguous));
  cache.append(p.k, p.v);
  tensor out(2, 1, 8, 40);
  attn::attention<attn::test::arch>(p.q, cache, out, attn::softmax{});
  const attn::reference::result exact = attn::reference::attention(p.q, p.k, p.v);
  EXPECT_LE(max_abs_diff(out, exact.out), tolerance + eps * (1.0 + 2.0 * 8.0));
}

TEST(KvCache, RingKeepsSinksAndTheRecentWindow) {
  // Capacity 32 with 4 sinks: after 75 tokens it holds positions 0–3 and 47–74.
  const problem p = make_problem(2, 75, 75, 4, 2, 64, 40, 23);
  kv_cache<float> ring(config(cache_layout::ring, 32));
  for (idx t = 0; t < 75; t += 5) ring.append(slice(p.k, t, 5), slice(p.v, t, 5));
  EXPECT_EQ(ring.lengths()[0], 32);
  EXPECT_EQ(ring.position(0), 75);
  const tensor q = slice(p.q, 74, 1);
  const tensor got = expect_cache_matches(q, ring);
  // The same tokens in position order, from a plain tensor.
  tensor k(2, 32, 2, 64), v(2, 32, 2, 40);
  k.slice(Eigen::array<idx, 4>{0, 0, 0, 0}, Eigen::array<idx, 4>{2, 4, 2, 64}) = slice(p.k, 0, 4);
  k.slice(Eigen::array<idx, 4>{0, 4, 0, 0}, Eigen::array<idx, 4>{2, 28, 2, 64}) =
      slice(p.k, 47, 28);
  v.slice(Eigen::array<idx, 4>{0, 0, 0, 0}, Eigen::array<idx, 4>{2, 4, 2, 40}) = slice(p.v, 0, 4);
  v.slice(Eigen::array<idx, 4>{0, 4, 0, 0}, Eigen::array<idx, 4>{2, 28, 2, 40}) =
      slice(p.v, 47, 28);
  const attn::reference::result want = attn::reference::attention(q, k, v);
  EXPECT_LE(max_abs_diff(got, want.out), tolerance);
}

TEST(KvCache, PagedEqualsContiguousWithRaggedSequences) {
  const problem p = make_problem(2, 60, 60, 4, 2, 64, 40, 24);
  kv_cache<float> flat(config(cache_layout::contiguous));
  kv_cache_config shared = config(cache_layout::paged);
  shared.pages = 6;  // 96 tokens of pool for two sequences of capacity 96 each
  kv_cache<float> paged(shared);
  const std::vector<std::int32_t> counts[] = {{20, 3}, {1, 30}, {13, 0}, {1, 1}};
  idx first[2] = {0, 0};
  for (const auto& c : counts) {
    // Each sequence appends its own next tokens: gather them into one [2, n, ...] tensor.
    const idx n = std::max(c[0], c[1]);
    tensor k(2, n, 2, 64), v(2, n, 2, 40);
    k.setZero();
    v.setZero();
    for (idx b = 0; b < 2; ++b)
      for (idx t = 0; t < c[static_cast<std::size_t>(b)]; ++t) {
        k.chip(b, 0).chip(t, 0) = p.k.chip(b, 0).chip(first[b] + t, 0);
        v.chip(b, 0).chip(t, 0) = p.v.chip(b, 0).chip(first[b] + t, 0);
      }
    for (idx b = 0; b < 2; ++b) first[b] += c[static_cast<std::size_t>(b)];
    flat.append(k, v, c);
    paged.append(k, v, c);
    const tensor q = slice(p.q, 0, 1);
    const tensor a = expect_cache_matches(q, flat, attn::softmax{}, attn::causal{});
    const tensor b = expect_cache_matches(q, paged, attn::softmax{}, attn::causal{});
    EXPECT_LE(max_abs_diff(a, b.cast<double>()), 1e-6);
  }
  EXPECT_EQ(paged.free_pages(), 6 - 3 - 3);  // 35 and 34 tokens: 3 pages each
  paged.release(0);
  EXPECT_EQ(paged.free_pages(), 3);
  EXPECT_EQ(paged.lengths()[0], 0);
}

TEST(KvCache, SplitKvChunksAgree) {
  const problem p = make_problem(2, 1, 90, 8, 2, 64, 40, 25);
  kv_cache<Eigen::bfloat16> cache(config(cache_layout::paged));
  cache.append(p.k, p.v);
  for (int chunks = 1; chunks <= 17; chunks += 4) {
    attn::options opt;
    opt.kv_splits = chunks;
    expect_cache_matches(p.q, cache, attn::softmax{}, attn::causal{}, opt);
  }
}

}  // namespace kv_cache_test
