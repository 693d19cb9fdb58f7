// The double-precision reference itself, on cases small enough to compute by hand: the oracle
// must be right before anything is tested against it.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include <attn/reference/softmax.hpp>

namespace softmax_reference_test {

using tensor = attn::tensor4<float>;
constexpr double inf = std::numeric_limits<double>::infinity();

/// A [1, n, 1, d] tensor from row-major values.
tensor column(attn::idx n, attn::idx d, std::vector<float> values) {
  tensor t(1, n, 1, d);
  std::copy(values.begin(), values.end(), t.data());
  return t;
}

TEST(SoftmaxReference, TwoKeysByHand) {
  // D = 1: scale 1; logits [1, 0]; weights e/(e+1), 1/(e+1).
  const tensor q = column(1, 1, {1.0f});
  const tensor k = column(2, 1, {1.0f, 0.0f});
  const tensor v = column(2, 1, {2.0f, 4.0f});
  const auto r = attn::reference::attention(q, k, v);
  const double e = std::exp(1.0);
  EXPECT_NEAR(r.out(0, 0, 0, 0), (2.0 * e + 4.0) / (e + 1.0), 1e-15);
  EXPECT_NEAR(r.lse(0, 0, 0), std::log(e + 1.0), 1e-15);
}

TEST(SoftmaxReference, ScaleOverrideAndSoftcap) {
  const tensor q = column(1, 1, {2.0f});
  const tensor k = column(2, 1, {1.0f, -1.0f});
  const tensor v = column(2, 1, {1.0f, 0.0f});
  attn::options opt;
  opt.scale = 3.0f;  // logits ±6
  auto r = attn::reference::attention(q, k, v, {}, attn::dense{}, opt);
  EXPECT_NEAR(r.out(0, 0, 0, 0), std::exp(6.0) / (std::exp(6.0) + std::exp(-6.0)), 1e-15);
  attn::softmax capped;
  capped.softcap = 4.0f;  // logits ±4·tanh(1.5)
  r = attn::reference::attention(q, k, v, capped, attn::dense{}, opt);
  const double c = 4.0 * std::tanh(1.5);
  EXPECT_NEAR(r.out(0, 0, 0, 0), std::exp(c) / (std::exp(c) + std::exp(-c)), 1e-15);
  EXPECT_NEAR(r.lse(0, 0, 0), std::log(std::exp(c) + std::exp(-c)), 1e-14);
}

TEST(SoftmaxReference, CausalAlignments) {
  // Nq = 2, Nk = 3, all logits 0 (q = 0): a row's output is the mean of the values it sees.
  const tensor q = column(2, 1, {0.0f, 0.0f});
  const tensor k = column(3, 1, {1.0f, 1.0f, 1.0f});
  const tensor v = column(3, 1, {1.0f, 2.0f, 4.0f});
  auto r = attn::reference::attention(q, k, v, {}, attn::causal{});  // rows see {0,1}, {0,1,2}
  EXPECT_DOUBLE_EQ(r.out(0, 0, 0, 0), 1.5);
  EXPECT_DOUBLE_EQ(r.out(0, 1, 0, 0), 7.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.lse(0, 0, 0), std::log(2.0));
  r = attn::reference::attention(q, k, v, {}, attn::causal{attn::align::top_left});  // {0}, {0,1}
  EXPECT_DOUBLE_EQ(r.out(0, 0, 0, 0), 1.0);
  EXPECT_DOUBLE_EQ(r.out(0, 1, 0, 0), 1.5);
  EXPECT_DOUBLE_EQ(r.lse(0, 0, 0), 0.0);
}

TEST(SoftmaxReference, BottomRightWithMoreQueriesThanKeys) {
  // Nq = 3, Nk = 1, causal bottom-right: p(i) = i − 2, so rows 0 and 1 see nothing.
  const tensor q = column(3, 1, {0.0f, 0.0f, 0.0f});
  const tensor k = column(1, 1, {1.0f});
  const tensor v = column(1, 1, {5.0f});
  const auto r = attn::reference::attention(q, k, v, {}, attn::causal{});
  EXPECT_EQ(r.out(0, 0, 0, 0), 0.0);
  EXPECT_EQ(r.out(0, 1, 0, 0), 0.0);
  EXPECT_EQ(r.lse(0, 0, 0), -inf);
  EXPECT_EQ(r.lse(0, 0, 1), -inf);
  EXPECT_DOUBLE_EQ(r.out(0, 2, 0, 0), 5.0);
  EXPECT_DOUBLE_EQ(r.lse(0, 0, 2), 0.0);
}

TEST(SoftmaxReference, WindowAndSinkKeys) {
  // Nq = Nk = 6, logits 0, v_j = 2^j: the output of a row is the mean of the 2^j it sees.
  const tensor q = column(6, 1, {0, 0, 0, 0, 0, 0});
  const tensor k = column(6, 1, {0, 0, 0, 0, 0, 0});
  const tensor v = column(6, 1, {1, 2, 4, 8, 16, 32});
  attn::window w;
  w.left = 1;
  w.right = 1;
  w.sink_keys = 1;
  const auto r = attn::reference::attention(q, k, v, {}, w);
  EXPECT_DOUBLE_EQ(r.out(0, 0, 0, 0), (1.0 + 2.0) / 2.0);               // {0, 1}
  EXPECT_DOUBLE_EQ(r.out(0, 1, 0, 0), (1.0 + 2.0 + 4.0) / 3.0);         // {0, 1, 2}
  EXPECT_DOUBLE_EQ(r.out(0, 3, 0, 0), (1.0 + 4.0 + 8.0 + 16.0) / 4.0);  // sink 0, {2, 3, 4}
  EXPECT_DOUBLE_EQ(r.out(0, 5, 0, 0), (1.0 + 16.0 + 32.0) / 3.0);       // sink 0, {4, 5}
  // A sink key in the query's future stays invisible: window{0, 0} top-left with 2 sinks.
  attn::window diag;
  diag.left = 0;
  diag.right = 0;
  diag.sink_keys = 2;
  diag.alignment = attn::align::top_left;
  const auto d = attn::reference::attention(q, k, v, {}, diag);
  EXPECT_DOUBLE_EQ(d.out(0, 0, 0, 0), 1.0);                     // {0}: key 1 is in the future
  EXPECT_DOUBLE_EQ(d.out(0, 1, 0, 0), 1.5);                     // {0, 1}
  EXPECT_DOUBLE_EQ(d.out(0, 4, 0, 0), (1.0 + 2.0 + 16.0) / 3);  // {0, 1, 4}
}

TEST(SoftmaxReference, SinkLogitJoinsTheDenominatorOnly) {
  const tensor q = column(1, 1, {0.0f});
  const tensor k = column(2, 1, {1.0f, 1.0f});
  const tensor v = column(2, 1, {3.0f, 6.0f});
  const std::vector<float> sinks = {std::log(2.0f)};
  attn::softmax s;
  s.sinks = sinks;
  auto r = attn::reference::attention(q, k, v, s);  // Z = 1 + 1 + 2
  EXPECT_NEAR(r.out(0, 0, 0, 0), 9.0 / 4.0, 1e-7);  // ln 2 rounded to float
  EXPECT_NEAR(r.lse(0, 0, 0), std::log(4.0), 1e-7);
  // No key visible: zeros, LSE = sink.
  const std::vector<std::int32_t> none = {0};
  attn::options opt;
  opt.key_lengths = none;
  r = attn::reference::attention(q, k, v, s, attn::dense{}, opt);
  EXPECT_EQ(r.out(0, 0, 0, 0), 0.0);
  EXPECT_NEAR(r.lse(0, 0, 0), std::log(2.0), 1e-7);
}

TEST(SoftmaxReference, LengthsGqaAndBroadcastTensors) {
  // B = 2, Hq = 2 reading one KV head, Nq = 2, Nk = 3, D = 1, logits 0.
  tensor q(2, 2, 2, 1), k(2, 3, 1, 1), v(2, 3, 1, 1);
  q.setZero();
  k.setZero();
  for (int b = 0; b < 2; ++b)
    for (int j = 0; j < 3; ++j) v(b, j, 0, 0) = static_cast<float>(10 * b + j);
  const std::vector<std::int32_t> keys = {2, 3}, queries = {2, 1};
  attn::options opt;
  opt.key_lengths = keys;
  opt.query_lengths = queries;
  // Bias [1, 2, 2, 3] broadcast over the batch: head 1 adds ln 2 to key 0 and hides key 2.
  Eigen::Tensor<float, 4, Eigen::RowMajor> bias(1, 2, 2, 3);
  bias.setZero();
  for (int i = 0; i < 2; ++i) {
    bias(0, 1, i, 0) = std::log(2.0f);
    bias(0, 1, i, 2) = -std::numeric_limits<float>::infinity();
  }
  const auto r = attn::reference::attention(q, k, v, {}, attn::bias{bias}, opt);
  EXPECT_DOUBLE_EQ(r.out(0, 0, 0, 0), 0.5);                     // b0 h0: keys {0, 1}
  EXPECT_NEAR(r.out(0, 0, 1, 0), 1.0 / 3.0, 1e-7);              // b0 h1: 2·v0 + v1
  EXPECT_NEAR(r.out(1, 0, 0, 0), 11.0, 1e-12);                  // b1 h0: {10, 11, 12}
  EXPECT_NEAR(r.out(1, 0, 1, 0), (2.0 * 10 + 11) / 3.0, 1e-6);  // b1 h1: key 2 hidden
  EXPECT_EQ(r.out(1, 1, 0, 0), 0.0);                            // b1 row 1: padding
  EXPECT_EQ(r.lse(1, 1, 1), -inf);
  EXPECT_NEAR(r.lse(1, 0, 0), std::log(3.0), 1e-12);
}

TEST(SoftmaxReference, MaskedRowAndAlibi) {
  const tensor q = column(2, 1, {0.0f, 0.0f});
  const tensor k = column(3, 1, {0.0f, 0.0f, 0.0f});
  const tensor v = column(3, 1, {1.0f, 2.0f, 3.0f});
  Eigen::Tensor<bool, 4, Eigen::RowMajor> m(1, 1, 2, 3);
  m.setConstant(false);
  m(0, 0, 1, 1) = true;
  auto r = attn::reference::attention(q, k, v, {}, attn::mask{m});
  EXPECT_EQ(r.out(0, 0, 0, 0), 0.0);
  EXPECT_EQ(r.lse(0, 0, 0), -inf);
  EXPECT_DOUBLE_EQ(r.out(0, 1, 0, 0), 2.0);
  // ALiBi, one head: standard slope 2^-8; bottom-right p(i) = i + 1.
  r = attn::reference::attention(q, k, v, {}, attn::alibi{});
  const double s = std::exp2(-8.0);
  const double w[3] = {std::exp(-s), 1.0, std::exp(-s)};  // row 0: |1 − j|
  EXPECT_NEAR(r.out(0, 0, 0, 0), (w[0] + 2 * w[1] + 3 * w[2]) / (w[0] + w[1] + w[2]), 1e-15);
  // causal & alibi with user slope 1: row 1 (p = 2) sees all keys with biases −2, −1, 0.
  const std::vector<float> slope = {1.0f};
  attn::alibi a;
  a.slopes = slope;
  r = attn::reference::attention(q, k, v, {}, attn::causal{} & a);
  const double e[3] = {std::exp(-2.0), std::exp(-1.0), 1.0};
  EXPECT_NEAR(r.out(0, 1, 0, 0), (e[0] + 2 * e[1] + 3 * e[2]) / (e[0] + e[1] + e[2]), 1e-15);
  EXPECT_NEAR(r.out(0, 0, 0, 0), (e[1] + 2 * e[2]) / (e[1] + e[2]), 1e-15);  // keys {0, 1}
}

TEST(SoftmaxReference, StandardAlibiSlopes) {
  // Press et al.'s get_slopes: 8 heads 2^-1 .. 2^-8; 6 heads: the 4-head slopes 2^-2, 2^-4,
  // 2^-6, 2^-8, then the 8-head slopes at positions 0 and 2: 2^-1, 2^-3.
  using attn::reference::detail::alibi_standard_slope;
  for (int h = 0; h < 8; ++h) EXPECT_EQ(alibi_standard_slope(h, 8), std::exp2(-(h + 1.0)));
  const double six[6] = {0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125};
  for (int h = 0; h < 6; ++h) EXPECT_EQ(alibi_standard_slope(h, 6), six[h]);
}

TEST(SoftmaxReference, RejectsInconsistentInput) {
  const tensor q = column(1, 2, {0.0f, 0.0f});
  const tensor k = column(2, 3, {0, 0, 0, 0, 0, 0});
  EXPECT_THROW((void)attn::reference::attention(q, k, k), attn::error);
}

}  // namespace softmax_reference_test
