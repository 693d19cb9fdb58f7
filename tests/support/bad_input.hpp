// What the bad-input tests share: one small valid problem (with distinct sizes, so that a
// message can be checked for the values it names), sentinel-filled buffers, and a matcher for
// the tokens an attn::error message must contain.
#pragma once

#include <cctype>
#include <exception>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>

namespace attn::test::bad_input {

using tensor = tensor4<float>;

inline constexpr float out_sentinel = 12345.0f;
inline constexpr float lse_sentinel = -54321.0f;

// The valid problem every case starts from: B = 2, Nq = 5, Nk = 7, Hq = 4, Hkv = 2, D = 8,
// Dv = 6.
inline constexpr idx B = 2, NQ = 5, NK = 7, HQ = 4, HKV = 2, D = 8, DV = 6;

inline tensor filled(idx b, idx s, idx h, idx d, float value) {
  tensor t(b, s, h, d);
  t.setConstant(value);
  return t;
}

/// The valid call, with out and lse holding sentinels; Score is the score function under test.
template <class Score>
struct call {
  tensor q = filled(B, NQ, HQ, D, 0.5f);
  tensor k = filled(B, NK, HKV, D, 0.25f);
  tensor v = filled(B, NK, HKV, DV, 1.0f);
  tensor out = filled(B, NQ, HQ, DV, out_sentinel);
  lse_tensor lse = lse_tensor(B, HQ, NQ);
  Score score{};
  options opt{};
  bool with_lse = Score::has_lse;
};

inline bool is_word_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
}

/// `token` occurs in `text` as a whole word or number: "k" matches "k.dim(0)=3" but not
/// "keys", "3" matches "=3 " but not "13", "-3" or "3.5"; a token that ends in punctuation
/// ("bias=") may be followed by anything.
inline bool has_token(const std::string& text, const std::string& token) {
  const bool number = !token.empty() && (std::isdigit(static_cast<unsigned char>(token[0])) != 0);
  for (std::size_t at = text.find(token); at != std::string::npos; at = text.find(token, at + 1)) {
    const std::size_t end = at + token.size();
    if (at > 0 && ((is_word_char(text[at - 1]) && is_word_char(token.front())) ||
                   (number && (text[at - 1] == '-' || text[at - 1] == '.'))))
      continue;
    if (end < text.size() && is_word_char(text[end]) && is_word_char(token.back())) continue;
    if (number && end + 1 < text.size() && text[end] == '.' &&
        std::isdigit(static_cast<unsigned char>(text[end + 1])) != 0)
      continue;
    return true;
  }
  return false;
}

/// Runs f (any call), expects an attn::error whose message names every token.
template <class F>
void expect_error(F&& f, const std::vector<std::string>& tokens) {
  try {
    f();
    ADD_FAILURE() << "no attn::error thrown";
  } catch (const error& e) {
    const std::string message = e.what();
    for (const std::string& token : tokens)
      EXPECT_TRUE(has_token(message, token)) << "message \"" << message << "\" lacks " << token;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something else than attn::error: " << e.what();
  }
}

/// Runs the call with `pattern` (LSE requested when c.with_lse), expects an attn::error whose
/// message names every token, and out and lse still holding their sentinels.
template <class Score, class Pattern = dense>
void expect_kernel_rejects(call<Score> c, const std::vector<std::string>& tokens,
                           const Pattern& pattern = {}) {
  c.lse.setConstant(lse_sentinel);
  if (c.with_lse) c.opt.lse = lse_map(c.lse.data(), c.lse.dimensions());
  expect_error([&] { attention(c.q, c.k, c.v, c.out, c.score, pattern, c.opt); }, tokens);
  idx out_changed = 0, lse_changed = 0;
  for (idx n = 0; n < c.out.size(); ++n) out_changed += c.out.data()[n] != out_sentinel;
  for (idx n = 0; n < c.lse.size(); ++n) lse_changed += c.lse.data()[n] != lse_sentinel;
  EXPECT_EQ(out_changed, 0) << "elements of out written before the error";
  EXPECT_EQ(lse_changed, 0) << "elements of lse written before the error";
}

}  // namespace attn::test::bad_input
