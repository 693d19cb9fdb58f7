// Bad input to attn::attention: an attn::error whose message names the offending tensor or
// parameter and its values, thrown before anything is written — the output and the LSE buffer
// keep the sentinel they were filled with.
#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>

#include "support/bad_input.hpp"

namespace attention_errors_test {

using attn::idx;
using bool_tensor = Eigen::Tensor<bool, 4, Eigen::RowMajor>;

using namespace attn::test::bad_input;
using call = attn::test::bad_input::call<attn::softmax>;

/// Runs the call, expects attn::error naming every token, and the buffers untouched.
template <class Pattern = attn::dense>
void expect_rejected(const call& c, const std::vector<std::string>& tokens,
                     const Pattern& pattern = {}) {
  expect_kernel_rejects(c, tokens, pattern);
}

TEST(AttentionErrors, TheValidCallRuns) {
  call c;
  c.opt.lse = attn::lse_map(c.lse.data(), c.lse.dimensions());
  attn::attention(c.q, c.k, c.v, c.out, c.score, attn::causal{}, c.opt);
  EXPECT_FLOAT_EQ(c.out(1, 4, 3, 5), 1.0f);  // V = 1: every visible row averages to 1
  EXPECT_TRUE(std::isfinite(c.lse(1, 3, 4)));
}

TEST(AttentionErrors, IsAnInvalidArgument) {
  call c;
  c.k = filled(3, NK, HKV, D, 0.0f);
  EXPECT_THROW(attn::attention(c.q, c.k, c.v, c.out), std::invalid_argument);
}

TEST(AttentionErrors, KeyShape) {
  {
    SCOPED_TRACE("k batch");
    call c;
    c.k = filled(3, NK, HKV, D, 0.0f);
    expect_rejected(c, {"k", "3", "2"});
  }
  {
    SCOPED_TRACE("k sequence != v sequence");
    call c;
    c.k = filled(B, 9, HKV, D, 0.0f);
    expect_rejected(c, {"k", "v", "9", "7"});
  }
  {
    SCOPED_TRACE("k heads != v heads");
    call c;
    c.k = filled(B, NK, 1, D, 0.0f);
    expect_rejected(c, {"k", "v", "1", "2"});
  }
  {
    SCOPED_TRACE("k head_dim");
    call c;
    c.k = filled(B, NK, HKV, 9, 0.0f);
    expect_rejected(c, {"k", "q", "9", "8"});
  }
}

TEST(AttentionErrors, ValueShape) {
  {
    SCOPED_TRACE("v batch");
    call c;
    c.v = filled(3, NK, HKV, DV, 0.0f);
    expect_rejected(c, {"v", "3", "2"});
  }
  {
    SCOPED_TRACE("v sequence");
    call c;
    c.v = filled(B, 9, HKV, DV, 0.0f);
    expect_rejected(c, {"v", "9", "7"});
  }
  {
    SCOPED_TRACE("v heads");
    call c;
    c.v = filled(B, NK, 1, DV, 0.0f);
    expect_rejected(c, {"v", "1", "2"});
  }
}

TEST(AttentionErrors, OutputShape) {
  const std::vector<std::vector<idx>> wrong = {
      {3, NQ, HQ, DV}, {B, 6, HQ, DV}, {B, NQ, 3, DV}, {B, NQ, HQ, 8}};
  const std::vector<std::vector<std::string>> tokens = {
      {"out", "3", "2"}, {"out", "6", "5"}, {"out", "3", "4"}, {"out", "8", "6"}};
  for (std::size_t n = 0; n < wrong.size(); ++n) {
    SCOPED_TRACE("out case " + std::to_string(n));
    call c;
    c.out = filled(wrong[n][0], wrong[n][1], wrong[n][2], wrong[n][3], out_sentinel);
    c.with_lse = false;
    expect_rejected(c, tokens[n]);
  }
}

TEST(AttentionErrors, HeadsNotDivisible) {
  call c;
  c.k = filled(B, NK, 3, D, 0.0f);
  c.v = filled(B, NK, 3, DV, 0.0f);
  expect_rejected(c, {"k", "3", "4"});
}

TEST(AttentionErrors, MaskAndBiasShapes) {
  {
    SCOPED_TRACE("mask keys");
    bool_tensor m(B, HQ, NQ, NK + 1);
    m.setConstant(true);
    expect_rejected(call{}, {"mask", "8", "7"}, attn::mask{m});
  }
  {
    SCOPED_TRACE("mask batch");
    bool_tensor m(3, 1, NQ, NK);
    m.setConstant(true);
    expect_rejected(call{}, {"mask", "3", "2"}, attn::mask{m});
  }
  {
    SCOPED_TRACE("mask in a combination");
    bool_tensor m(1, 1, NQ + 1, NK);
    m.setConstant(true);
    expect_rejected(call{}, {"mask", "6", "5"}, attn::causal{} & attn::mask{m});
  }
  {
    SCOPED_TRACE("bias heads");
    const tensor t = filled(1, 3, NQ, NK, 0.0f);
    expect_rejected(call{}, {"bias", "3", "4"}, attn::bias{t});
  }
  {
    SCOPED_TRACE("bias queries");
    const tensor t = filled(B, HQ, 6, NK, 0.0f);
    expect_rejected(call{}, {"bias", "6", "5"}, attn::bias{t});
  }
}

TEST(AttentionErrors, PatternParameters) {
  attn::window w;
  w.left = -1;
  expect_rejected(call{}, {"left", "-1"}, w);
  w.left = 4;
  w.right = -2;
  expect_rejected(call{}, {"right", "-2"}, w);
  w.right = 0;
  w.sink_keys = -3;
  expect_rejected(call{}, {"sink_keys", "-3"}, w);
  const std::vector<float> slopes = {0.5f, 0.25f, 0.125f};
  attn::alibi a;
  a.slopes = slopes;
  expect_rejected(call{}, {"slopes", "3", "4"}, a);
}

TEST(AttentionErrors, Lengths) {
  const std::vector<std::int32_t> three = {1, 1, 1}, too_long = {NK, NK + 1}, negative = {-1, 2};
  const std::vector<std::int32_t> one = {1}, too_many = {NQ + 1, 0}, negative_q = {0, -3};
  {
    call c;
    c.opt.key_lengths = three;
    expect_rejected(c, {"key_lengths", "3", "2"});
  }
  {
    call c;
    c.opt.key_lengths = too_long;
    expect_rejected(c, {"key_lengths", "8", "7"});
  }
  {
    call c;
    c.opt.key_lengths = negative;
    expect_rejected(c, {"key_lengths", "-1"});
  }
  {
    call c;
    c.opt.query_lengths = one;
    expect_rejected(c, {"query_lengths", "1", "2"});
  }
  {
    call c;
    c.opt.query_lengths = too_many;
    expect_rejected(c, {"query_lengths", "6", "5"});
  }
  {
    call c;
    c.opt.query_lengths = negative_q;
    expect_rejected(c, {"query_lengths", "-3"});
  }
}

TEST(AttentionErrors, ScoreParameters) {
  const std::vector<float> sinks = {0.0f, 1.0f, 2.0f};
  {
    call c;
    c.score.sinks = sinks;
    expect_rejected(c, {"sinks", "3", "4"});
  }
  {
    call c;
    c.score.softcap = -1.0f;
    expect_rejected(c, {"softcap", "-1"});
  }
  {
    call c;
    c.score.softcap = std::numeric_limits<float>::quiet_NaN();
    expect_rejected(c, {"softcap"});
  }
  {
    call c;
    c.opt.scale = std::numeric_limits<float>::quiet_NaN();
    expect_rejected(c, {"scale"});
  }
  {
    call c;
    c.opt.scale = std::numeric_limits<float>::infinity();
    expect_rejected(c, {"scale"});
  }
}

TEST(AttentionErrors, LseShape) {
  const std::vector<std::vector<idx>> wrong = {{3, HQ, NQ}, {B, 3, NQ}, {B, HQ, 6}, {B, NQ, HQ}};
  const std::vector<std::vector<std::string>> tokens = {
      {"lse", "3", "2"}, {"lse", "3", "4"}, {"lse", "6", "5"}, {"lse", "5", "4"}};
  for (std::size_t n = 0; n < wrong.size(); ++n) {
    SCOPED_TRACE("lse case " + std::to_string(n));
    call c;
    c.lse = attn::lse_tensor(wrong[n][0], wrong[n][1], wrong[n][2]);
    expect_rejected(c, tokens[n]);
  }
}

TEST(AttentionErrors, Threads) {
  call c;
  c.opt.threads = -1;
  expect_rejected(c, {"threads", "-1"});
}

TEST(AttentionErrors, KvSplits) {
  for (attn::kernel_path path : {attn::kernel_path::split_kv, attn::kernel_path::automatic}) {
    call c;
    c.opt.path = path;
    c.opt.kv_splits = -2;
    expect_rejected(c, {"kv_splits", "-2"});
  }
}

}  // namespace attention_errors_test
