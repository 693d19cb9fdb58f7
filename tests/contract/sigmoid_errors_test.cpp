// Bad parameters of attn::sigmoid: an attn::error whose message names the field and its values,
// thrown before anything is written — the output keeps the sentinel it was filled with. The
// double-precision reference rejects the same parameters.
#include <cctype>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>
#include <attn/reference/sigmoid.hpp>

#include "support/bad_input.hpp"

namespace sigmoid_errors_test {

using attn::idx;

using namespace attn::test::bad_input;
using call = attn::test::bad_input::call<attn::sigmoid>;

/// Runs the call, expects attn::error naming every token, and out and lse untouched; the
/// reference (when `reference_too`) must throw attn::error as well.
void expect_rejected(const call& c, const std::vector<std::string>& tokens,
                     bool reference_too = true) {
  expect_kernel_rejects(c, tokens, attn::causal{});
  if (reference_too) {
    EXPECT_THROW((void)attn::reference::attention(c.q, c.k, c.v, c.score, attn::causal{}, c.opt),
                 attn::error);
  }
}

TEST(SigmoidErrors, TheValidCallsRun) {
  const std::vector<float> per_head = {-1.0f, -2.0f, 0.0f, 3.0f};
  for (const attn::sigmoid& score : {attn::sigmoid{}, attn::sigmoid{.bias = -4.0f},
                                     attn::sigmoid{.head_bias = per_head, .softcap = 20.0f}}) {
    call c;
    c.score = score;
    attn::attention(c.q, c.k, c.v, c.out, c.score, attn::causal{}, c.opt);
    for (idx n = 0; n < c.out.size(); ++n) ASSERT_TRUE(std::isfinite(c.out.data()[n]));
    EXPECT_GT(c.out(1, 4, 3, 5), 0.0f);
  }
}

TEST(SigmoidErrors, HeadBiasLength) {
  const std::vector<float> three = {0.0f, 1.0f, 2.0f};
  call c;
  c.score.head_bias = three;
  expect_rejected(c, {"sigmoid.head_bias.size()=3", "q.dim(2)=4"});
}

TEST(SigmoidErrors, BothBiasesSet) {
  const std::vector<float> per_head = {0.0f, 1.0f, 2.0f, 3.0f};
  call c;
  c.score.bias = -2.5f;
  c.score.head_bias = per_head;
  expect_rejected(c, {"sigmoid.bias=-2.5", "sigmoid.head_bias", "4"});
}

TEST(SigmoidErrors, NonFiniteBias) {
  for (const float bad :
       {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
        std::numeric_limits<float>::quiet_NaN()}) {
    SCOPED_TRACE(bad);
    call c;
    c.score.bias = bad;
    expect_rejected(c, {"sigmoid.bias=", "finite"});
    std::vector<float> per_head = {0.0f, 1.0f, 2.0f, 3.0f};
    per_head[2] = bad;
    call d;
    d.score.head_bias = per_head;
    expect_rejected(d, {"sigmoid.head_bias[2]=", "finite"});
  }
}

TEST(SigmoidErrors, Softcap) {
  for (const float bad :
       {-1.0f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    SCOPED_TRACE(bad);
    call c;
    c.score.softcap = bad;
    expect_rejected(c, {"sigmoid.softcap=", ">= 0"});
  }
}

TEST(SigmoidErrors, AskingForTheLogSumExp) {
  call c;
  c.opt.lse = attn::lse_map(c.lse.data(), c.lse.dimensions());
  expect_rejected(c, {"options.lse", "log-sum-exp"}, false);
}

}  // namespace sigmoid_errors_test
