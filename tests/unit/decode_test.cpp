// Split-KV decoding (kernel/decode.hpp) against the double-precision reference: every chunk
// count 1…17 gives the same result, for every pattern and score modifier the prefill loop
// supports; forced split-KV with many queries (several 16-query blocks) and forced prefill on
// decode shapes agree with each other; ragged batches, empty rows and grouped-query heads.
#include <array>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>
#include <attn/reference/reference.hpp>

#include "support/kernel_check.hpp"

namespace decode_test {

using attn::idx;
using attn::kernel_path;
using attn::test::expect_matches_reference;
using attn::test::make_problem;
using attn::test::max_abs_diff;
using attn::test::problem;
using attn::test::tensor;
using attn::test::tolerance;

attn::options split(int chunks) {
  attn::options opt;
  opt.path = kernel_path::split_kv;
  opt.kv_splits = chunks;
  return opt;
}

TEST(SplitKv, EveryChunkCountMatchesReference) {
  // One query per head, grouped-query heads 8:2, a key length no chunk count divides evenly.
  const problem p = make_problem(1, 1, 331, 8, 2, 64, 64, 11);
  const std::vector<float> sinks = {0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -3.0f, 0.25f, 4.0f};
  for (int chunks = 1; chunks <= 17; ++chunks) {
    SCOPED_TRACE(chunks);
    expect_matches_reference(p, attn::softmax{}, attn::dense{}, split(chunks));
    expect_matches_reference(p, attn::softmax{.softcap = 5.0f, .sinks = sinks},
                             attn::window{.left = 100}, split(chunks));
    expect_matches_reference(p, attn::sigmoid{}, attn::causal{}, split(chunks));
  }
}

TEST(SplitKv, PatternsAndModifiers) {
  const problem p = make_problem(2, 4, 700, 8, 2, 128, 128, 12);
  const attn::options opt = split(5);
  expect_matches_reference(p, attn::softmax{}, attn::causal{}, opt);
  expect_matches_reference(p, attn::softmax{}, attn::causal(attn::align::top_left), opt);
  expect_matches_reference(p, attn::softmax{}, attn::window{.left = 63, .sink_keys = 4}, opt);
  expect_matches_reference(p, attn::softmax{}, attn::alibi{} & attn::causal{}, opt);
  expect_matches_reference(p, attn::sigmoid{.softcap = 3.0f}, attn::alibi{}, opt);
  // A block layout: every third key block of 32, per head.
  const auto layout = attn::block_layout::from_rule(
      32, 4, 700, 8, [](idx h, idx, idx j) { return (j / 32 + h) % 3 == 0; });
  expect_matches_reference(p, attn::softmax{}, layout, opt);
}

TEST(SplitKv, RaggedBatchesAndEmptyRows) {
  const problem p = make_problem(4, 2, 500, 4, 4, 64, 32, 13);
  const std::array<std::int32_t, 4> key_lengths = {500, 37, 0, 260};
  const std::array<std::int32_t, 4> query_lengths = {2, 1, 2, 0};
  for (int chunks : {1, 3, 0}) {
    SCOPED_TRACE(chunks);
    attn::options opt = split(chunks);
    opt.key_lengths = key_lengths;
    opt.query_lengths = query_lengths;
    expect_matches_reference(p, attn::softmax{}, attn::causal{}, opt);
    expect_matches_reference(p, attn::sigmoid{}, attn::dense{}, opt);
    // A batch with no keys: every row 0 (LSE −inf), never NaN, in every chunk.
    const std::vector<float> sinks(4, 1.0f);
    expect_matches_reference(p, attn::softmax{.sinks = sinks}, attn::dense{}, opt);
  }
}

TEST(SplitKv, ManyQueriesInBlocksOfSixteen) {
  // Forced split-KV over 40 queries: three query blocks, causal rows of different lengths.
  const problem p = make_problem(1, 40, 300, 6, 3, 40, 72, 14);
  expect_matches_reference(p, attn::softmax{}, attn::causal{}, split(4));
  expect_matches_reference(p, attn::sigmoid{}, attn::window{.left = 20, .right = 3}, split(2));
}

TEST(SplitKv, AgreesWithPrefill) {
  // Decode shapes through both loops: the automatic choice (split-KV for ≤ 16 queries) and a
  // forced prefill agree to rounding.
  for (idx nq : {1, 4, 16}) {
    SCOPED_TRACE(nq);
    const problem p = make_problem(2, nq, 1500, 8, 2, 128, 128, 15);
    attn::options prefill;
    prefill.path = kernel_path::prefill;
    const tensor a = attn::test::kernel_output(p, attn::softmax{}, attn::causal{});
    const tensor b = attn::test::kernel_output(p, attn::softmax{}, attn::causal{}, prefill);
    EXPECT_LE(max_abs_diff(a, b.cast<double>()), 2e-5);
  }
}

TEST(SplitKv, ThreadCountsAgree) {
  const problem p = make_problem(1, 1, 2048, 8, 1, 64, 64, 16);
  for (int threads : {1, 2, 3, 4}) {
    SCOPED_TRACE(threads);
    attn::options opt;
    opt.threads = threads;
    expect_matches_reference(p, attn::softmax{}, attn::causal{}, opt);
  }
}

}  // namespace decode_test
