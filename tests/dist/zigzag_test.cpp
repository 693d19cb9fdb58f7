// The zigzag layout (include/attn/dist/zigzag.hpp): plain arithmetic, checked on every rank.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "attn/dist/zigzag.hpp"
#include "support/random.hpp"

namespace {

using attn::idx;
using attn::dist::zigzag_layout;

// Every global row is some rank's local row exactly once, and each rank's two chunks are
// contiguous global ranges in the documented order.
void expect_bijection(const zigzag_layout& z) {
  std::vector<int> hits(static_cast<std::size_t>(z.global_length()), 0);
  for (int r = 0; r < z.ranks(); ++r)
    for (idx i = 0; i < z.local_length(r); ++i) {
      const idx g = z.global_row(r, i);
      ASSERT_GE(g, 0);
      ASSERT_LT(g, z.global_length());
      ++hits[static_cast<std::size_t>(g)];
    }
  for (int h : hits) EXPECT_EQ(h, 1);
}

TEST(Zigzag, EvenSplitIsBalancedAndMapsEveryRowOnce) {
  for (int ranks : {1, 2, 3, 4, 7})
    for (idx n : {0, 1, 5, 8, 17, 100, 1001}) {
      const auto z = zigzag_layout::even(n, ranks);
      EXPECT_EQ(z.global_length(), n);
      expect_bijection(z);
      for (int r = 0; r < ranks; ++r) {
        // chunk r and chunk 2P-1-r of 2P near-equal chunks
        EXPECT_LE(z.local_length(r), 2 * (n / (2 * ranks) + 1));
        EXPECT_GE(z.local_length(r), 2 * (n / (2 * ranks)));
      }
    }
}

TEST(Zigzag, DocumentedOrderForFourRanks) {
  // 16 rows, 4 ranks: chunks of 2; rank r holds chunks r and 7 - r.
  const auto z = zigzag_layout::even(16, 4);
  const idx want[4][4] = {{0, 1, 14, 15}, {2, 3, 12, 13}, {4, 5, 10, 11}, {6, 7, 8, 9}};
  for (int r = 0; r < 4; ++r)
    for (idx i = 0; i < 4; ++i) EXPECT_EQ(z.global_row(r, i), want[r][i]) << r << " " << i;
}

TEST(Zigzag, UnevenAndEmptyRanks) {
  const auto z = zigzag_layout::from_lengths({5, 0, 12, 1});
  EXPECT_EQ(z.global_length(), 18);
  expect_bijection(z);
  EXPECT_EQ(z.front_length(0), 3);
  EXPECT_EQ(z.back_length(0), 2);
  EXPECT_EQ(z.global_row(0, 3), 16);  // rank 0's back chunk is the end of the sequence
  EXPECT_THROW(zigzag_layout::from_lengths({3, -1}), attn::error);
}

TEST(Zigzag, SplitThenPlaceRoundTrips) {
  std::mt19937 rng(7);
  const auto global = attn::test::random_tensor(rng, 2, 23, 3, 4);
  const auto z = zigzag_layout::from_lengths({4, 9, 0, 10});
  attn::tensor4<float> back(2, 23, 3, 4);
  back.setZero();
  for (int r = 0; r < z.ranks(); ++r)
    attn::dist::place(attn::dist::split(global, z, r), z, r, back);
  for (idx n = 0; n < global.size(); ++n) EXPECT_EQ(back.data()[n], global.data()[n]);
  EXPECT_THROW(attn::dist::split(global, zigzag_layout::even(22, 2), 0), attn::error);
}

}  // namespace
