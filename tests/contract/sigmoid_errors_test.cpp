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

namespace {

using attn::idx;
using tensor = attn::tensor4<float>;

constexpr float out_sentinel = 12345.0f;
constexpr float lse_sentinel = -54321.0f;

// A valid problem: B = 2, Nq = 5, Nk = 7, Hq = 4, Hkv = 2, D = 8, Dv = 6.
constexpr idx B = 2, NQ = 5, NK = 7, HQ = 4, HKV = 2, D = 8, DV = 6;

tensor filled(idx b, idx s, idx h, idx d, float value) {
  tensor t(b, s, h, d);
  t.setConstant(value);
  return t;
}

struct call {
  tensor q = filled(B, NQ, HQ, D, 0.5f);
  tensor k = filled(B, NK, HKV, D, 0.25f);
  tensor v = filled(B, NK, HKV, DV, 1.0f);
  tensor out = filled(B, NQ, HQ, DV, out_sentinel);
  attn::lse_tensor lse = attn::lse_tensor(B, HQ, NQ);
  attn::sigmoid score{};
  attn::options opt{};
};

bool is_word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }

/// `token` occurs in `text` not glued to a word character: "3" matches "=3 " but not "13".
bool has_token(const std::string& text, const std::string& token) {
  for (std::size_t at = text.find(token); at != std::string::npos; at = text.find(token, at + 1)) {
    const std::size_t end = at + token.size();
    if (at > 0 && is_word_char(text[at - 1]) && is_word_char(token.front())) continue;
    if (end < text.size() && is_word_char(text[end]) && is_word_char(token.back())) continue;
    return true;
  }
  return false;
}

/// Runs the call, expects attn::error naming every token, and out and lse untouched; the
/// reference (when `reference_too`) must throw attn::error as well.
void expect_rejected(call c, const std::vector<std::string>& tokens, bool reference_too = true) {
  c.lse.setConstant(lse_sentinel);
  try {
    attn::attention(c.q, c.k, c.v, c.out, c.score, attn::causal{}, c.opt);
    ADD_FAILURE() << "no attn::error thrown";
  } catch (const attn::error& e) {
    const std::string message = e.what();
    for (const std::string& token : tokens)
      EXPECT_TRUE(has_token(message, token)) << "message \"" << message << "\" lacks " << token;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something else than attn::error: " << e.what();
  }
  idx out_changed = 0, lse_changed = 0;
  for (idx n = 0; n < c.out.size(); ++n) out_changed += c.out.data()[n] != out_sentinel;
  for (idx n = 0; n < c.lse.size(); ++n) lse_changed += c.lse.data()[n] != lse_sentinel;
  EXPECT_EQ(out_changed, 0) << "elements of out written before the error";
  EXPECT_EQ(lse_changed, 0) << "elements of lse written before the error";
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

}  // namespace
