// Bad block-sparse layouts: an attn::error whose message names the values — when the layout is
// built (block size, block indices, order, offsets, generator parameters), or, for a layout
// built for another problem, when attention() is called, before anything is written. The
// double-precision reference rejects the same calls.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>
#include <attn/reference/softmax.hpp>

#include "support/bad_input.hpp"

namespace sparse_errors_test {

using attn::idx;
using namespace attn::test::bad_input;
using call = attn::test::bad_input::call<attn::softmax>;

/// attention() with the layout throws attn::error naming the tokens and leaves out and lse
/// untouched; the reference throws too.
void expect_rejected(const attn::block_layout& layout, const std::vector<std::string>& tokens) {
  call c;
  c.lse.setConstant(lse_sentinel);
  c.opt.lse = attn::lse_map(c.lse.data(), B, HQ, NQ);
  expect_error([&] { attn::attention(c.q, c.k, c.v, c.out, c.score, layout, c.opt); }, tokens);
  idx out_changed = 0, lse_changed = 0;
  for (idx n = 0; n < c.out.size(); ++n) out_changed += c.out.data()[n] != out_sentinel;
  for (idx n = 0; n < c.lse.size(); ++n) lse_changed += c.lse.data()[n] != lse_sentinel;
  EXPECT_EQ(out_changed, 0) << "elements of out written before the error";
  EXPECT_EQ(lse_changed, 0) << "elements of lse written before the error";
  EXPECT_THROW((void)attn::reference::attention(c.q, c.k, c.v, c.score, layout), attn::error);
}

TEST(SparseErrors, TheValidCallsRun) {
  // NQ = 5 queries, NK = 7 keys: one block of 16 each.
  for (const attn::block_layout& layout :
       {attn::dense_layout(NQ, NK, 16),
        attn::block_layout(16, NQ, NK, HQ, std::vector<idx>{0, 1, 1, 2, 3},
                           std::vector<idx>{0, 0, 0}, true)}) {
    call c;
    attn::attention(c.q, c.k, c.v, c.out, c.score, layout, c.opt);
    EXPECT_FLOAT_EQ(c.out(1, 4, 0, 5), 1.0f);
  }
}

TEST(SparseErrors, BlockSizeNotInTheSet) {
  for (const idx block : {0, 8, 24, 256, -16}) {
    SCOPED_TRACE(block);
    expect_error([&] { (void)attn::dense_layout(100, 100, block); },
                 {"block=", std::to_string(block), "16", "128"});
    expect_error([&] { (void)attn::bigbird_layout(100, block, {}); }, {std::to_string(block)});
  }
}

TEST(SparseErrors, BlockCsr) {
  // 2 heads × 3 query blocks (seq_q = 40 at block 16), 2 key blocks (seq_k = 20).
  auto build = [](std::vector<idx> offsets, std::vector<idx> columns) {
    (void)attn::block_layout(16, 40, 20, 2, offsets, columns);
  };
  build({0, 1, 2, 2, 2, 4, 4}, {0, 1, 0, 1});  // valid
  expect_error(
      [&] {
        build({0, 1, 2, 2, 2, 4, 4}, {0, 2, 0, 1});
      },
      {"columns[1]=2", "[0, 2)", "seq_k=20", "row", "1"});
  expect_error([&] { build({0, 1, 2, 2, 2, 4, 4}, {0, -1, 0, 1}); }, {"columns[1]=-1"});
  expect_error(
      [&] {
        build({0, 1, 2, 2, 2, 4, 4}, {0, 1, 1, 0});
      },
      {"columns[3]=0", "columns[2]=1", "sorted"});
  expect_error(
      [&] {
        build({0, 1, 2, 2, 2, 4, 4}, {0, 1, 1, 1});
      },
      {"columns[3]=1", "duplicates", "columns[2]=1"});
  expect_error(
      [&] {
        build({0, 1, 2, 2, 4, 4}, {0, 1, 0, 1});
      },
      {"row_offsets.size()=6", "7", "heads=2", "query_blocks=3"});
  expect_error([&] { build({1, 1, 2, 2, 2, 4, 4}, {0, 1, 0, 1}); }, {"row_offsets[0]=1"});
  expect_error(
      [&] {
        build({0, 2, 1, 2, 2, 4, 4}, {0, 1, 0, 1});
      },
      {"row_offsets[2]=1", "row_offsets[1]=2"});
  expect_error(
      [&] {
        build({0, 1, 2, 2, 2, 4, 5}, {0, 1, 0, 1});
      },
      {"row_offsets[6]=5", "columns.size()=4"});
  expect_error([&] { (void)attn::block_layout(16, 40, 20, 0, std::vector<idx>{0}, {}); },
               {"heads=0"});
  expect_error([&] { (void)attn::block_layout(16, -1, 20, 1, std::vector<idx>{0}, {}); },
               {"seq_q=-1"});
}

TEST(SparseErrors, BlockMaskShape) {
  attn::bool_tensor3 blocks(1, 3, 2);
  blocks.setConstant(true);
  (void)attn::block_layout::from_block_mask(blocks, 16, 40, 20);  // valid
  expect_error([&] { (void)attn::block_layout::from_block_mask(blocks, 16, 50, 20); },
               {"block_mask.dim(1)=3", "4", "seq_q=50"});
  expect_error([&] { (void)attn::block_layout::from_block_mask(blocks, 16, 40, 40); },
               {"block_mask.dim(2)=2", "3", "seq_k=40"});
  expect_error([&] { (void)attn::block_layout::from_block_mask(blocks, 20, 40, 20); },
               {"block=20"});
}

TEST(SparseErrors, GeneratorParameters) {
  expect_error([] { (void)attn::strided_layout(100, 16, {.stride = 0}); }, {"stride=0"});
  expect_error([] { (void)attn::window_layout(100, 16, -1, 0); }, {"left=-1"});
  expect_error([] { (void)attn::window_layout(100, 16, 0, -2); }, {"right=-2"});
  expect_error([] { (void)attn::fixed_layout(100, 16, {.chunk = 0}); }, {"chunk=0"});
  expect_error([] { (void)attn::fixed_layout(100, 16, {.chunk = 64, .summary = 0}); },
               {"summary=0"});
  expect_error(
      [] { (void)attn::fixed_layout(100, 16, {.chunk = 64, .summary = 32, .head_groups = 3}); },
      {"3", "32", "96", "chunk=64"});
  expect_error([] { (void)attn::fixed_layout(100, 16, {.head_groups = 0}); }, {"head_groups=0"});
  expect_error([] { (void)attn::longformer_layout(100, 16, {.window = -1}); }, {"window=-1"});
  expect_error([] { (void)attn::longformer_layout(100, 16, {.dilation = 0}); }, {"dilation=0"});
  const std::vector<idx> global = {0, 100};
  expect_error([&] { (void)attn::longformer_layout(100, 16, {.global_tokens = global}); },
               {"global_tokens[1]=100", "[0, 100)"});
  expect_error([] { (void)attn::bigbird_layout(100, 16, {.random_blocks = -1}); },
               {"random_blocks=-1"});
  expect_error([] { (void)attn::bigbird_layout(100, 16, {.heads = 0}); }, {"heads=0"});
}

TEST(SparseErrors, LayoutForAnotherProblem) {
  expect_rejected(attn::dense_layout(NQ + 1, NK, 16), {"seq_q=6", "q.dim(1)=5"});
  expect_rejected(attn::dense_layout(NQ, NK - 1, 16), {"seq_k=6", "k.dim(1)=7"});
  attn::bool_tensor3 three_heads(3, 1, 1);
  three_heads.setConstant(true);
  expect_rejected(attn::block_layout::from_block_mask(three_heads, 16, NQ, NK),
                  {"3", "heads", "q.dim(2)=4"});
  expect_rejected(attn::block_layout{}, {"block_layout", "empty"});
  // Also inside a composition.
  call c;
  expect_error(
      [&] {
        attn::attention(c.q, c.k, c.v, c.out, c.score,
                        attn::causal{} & attn::dense_layout(NQ + 2, NK, 32), c.opt);
      },
      {"seq_q=7", "q.dim(1)=5"});
}

}  // namespace sparse_errors_test
