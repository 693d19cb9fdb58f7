// Bad input to linear attention: an attn::error whose message names the tensor or field, the
// dimension and the values, thrown before anything is written — the output (and the state) keep
// the sentinels they were filled with. The double-precision reference rejects the same input.
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>
#include <attn/reference/linear.hpp>

#include "support/bad_input.hpp"

namespace linear_errors_test {

using attn::idx;
using namespace attn::test::bad_input;

constexpr float state_sentinel = 777.0f;

/// A valid causal call (B = 2, N = 7, Hq = 4, Hkv = 2, D = 8, Dv = 6) with sentinel-filled
/// output and state; tests break one thing.
struct linear_call {
  tensor q = filled(B, NK, HQ, D, 0.5f);
  tensor k = filled(B, NK, HKV, D, 0.25f);
  tensor v = filled(B, NK, HKV, DV, 1.0f);
  tensor out = filled(B, NK, HQ, DV, out_sentinel);
  attn::linear::state st{B, HQ, D, DV};
  attn::linear::options opt{};
  linear_call() {
    st.kv.setConstant(state_sentinel);
    st.z.setConstant(state_sentinel);
  }
};

enum class entry { dense, causal, causal_with_state, step };

const char* entry_name(entry e) {
  switch (e) {
    case entry::dense:
      return "dense";
    case entry::causal:
      return "causal";
    case entry::causal_with_state:
      return "causal with a state";
    case entry::step:
      return "step";
  }
  return "";
}

template <class Map>
void call_entry(linear_call& c, entry e, const Map& map) {
  switch (e) {
    case entry::dense:
      attn::linear_attention(c.q, c.k, c.v, c.out, map, attn::dense{}, c.opt);
      break;
    case entry::causal:
      attn::linear_attention(c.q, c.k, c.v, c.out, map, attn::causal{}, c.opt);
      break;
    case entry::causal_with_state:
      attn::linear_attention(c.q, c.k, c.v, c.out, map, attn::causal{}, c.st, c.opt);
      break;
    case entry::step:
      attn::linear_attention_step(c.q, c.k, c.v, c.out, map, c.st, c.opt);
      break;
  }
}

template <class Map>
void call_reference(const linear_call& c, entry e, const Map& map) {
  if (e == entry::dense)
    (void)attn::reference::linear_attention(c.q, c.k, c.v, map, attn::dense{}, c.opt);
  else
    (void)attn::reference::linear_attention(c.q, c.k, c.v, map, attn::causal{}, c.opt);
}

/// Runs the call through `e`, expects attn::error naming every token with out and the state
/// untouched; the reference (when `reference_too`) must throw attn::error as well.
template <class Map = attn::linear::elu1>
void expect_rejected(linear_call c, entry e, const std::vector<std::string>& tokens,
                     const Map& map = {}, bool reference_too = true) {
  SCOPED_TRACE(entry_name(e));
  try {
    call_entry(c, e, map);
    ADD_FAILURE() << "no attn::error thrown";
  } catch (const attn::error& err) {
    const std::string message = err.what();
    for (const std::string& token : tokens)
      EXPECT_TRUE(has_token(message, token)) << "message \"" << message << "\" lacks " << token;
  } catch (const std::exception& err) {
    ADD_FAILURE() << "threw something else than attn::error: " << err.what();
  }
  idx out_changed = 0, state_changed = 0;
  for (idx n = 0; n < c.out.size(); ++n) out_changed += c.out.data()[n] != out_sentinel;
  for (idx n = 0; n < c.st.kv.size(); ++n) state_changed += c.st.kv.data()[n] != state_sentinel;
  for (idx n = 0; n < c.st.z.size(); ++n) state_changed += c.st.z.data()[n] != state_sentinel;
  EXPECT_EQ(out_changed, 0) << "elements of out written before the error";
  EXPECT_EQ(state_changed, 0) << "elements of the state written before the error";
  if (reference_too && e != entry::causal_with_state && e != entry::step) {
    EXPECT_THROW(call_reference(c, e, map), attn::error);
  }
}

const entry every_entry[] = {entry::dense, entry::causal, entry::causal_with_state, entry::step};
const entry causal_entries[] = {entry::causal, entry::causal_with_state, entry::step};

TEST(LinearErrors, TheValidCallsRun) {
  for (const entry e : every_entry) {
    SCOPED_TRACE(entry_name(e));
    linear_call c;
    c.st.reset();
    call_entry(c, e, attn::linear::elu1{});
    for (idx n = 0; n < c.out.size(); ++n) ASSERT_TRUE(std::isfinite(c.out.data()[n]));
    EXPECT_GT(c.out(1, 6, 3, 5), 0.0f);
  }
}

TEST(LinearErrors, Shapes) {
  for (const entry e : every_entry) {
    {
      linear_call c;
      c.k = filled(3, NK, HKV, D, 0.25f);
      expect_rejected(c, e, {"k.dim(0)=3", "q.dim(0)=2", "batch"});
    }
    {
      linear_call c;
      c.k = filled(B, NK, 3, D, 0.25f);
      c.v = filled(B, NK, 3, DV, 1.0f);
      expect_rejected(c, e, {"k.dim(2)=3", "q.dim(2)=4", "heads"});
    }
    {
      linear_call c;
      c.out = filled(B, NK, HQ, DV + 1, out_sentinel);
      expect_rejected(c, e, {"out.dim(3)=7", "v.dim(3)=6"}, attn::linear::elu1{}, false);
    }
    {
      linear_call c;
      c.v = filled(B, NK + 1, HKV, DV, 1.0f);
      expect_rejected(c, e, {"v.dim(1)=8", "k.dim(1)=7"});
    }
  }
}

TEST(LinearErrors, CausalNeedsEqualLengths) {
  for (const entry e : causal_entries) {
    linear_call c;
    c.k = filled(B, 9, HKV, D, 0.25f);
    c.v = filled(B, 9, HKV, DV, 1.0f);
    expect_rejected(c, e, {"k.dim(1)=9", "q.dim(1)=7", "sequence"});
  }
  // The dense form takes any key length.
  linear_call c;
  c.k = filled(B, 9, HKV, D, 0.25f);
  c.v = filled(B, 9, HKV, DV, 1.0f);
  attn::linear_attention(c.q, c.k, c.v, c.out, attn::linear::elu1{}, attn::dense{}, c.opt);
  EXPECT_TRUE(std::isfinite(c.out(0, 0, 0, 0)));
}

TEST(LinearErrors, DecayLength) {
  const std::vector<float> three = {0.9f, 0.9f, 0.9f};
  for (const entry e : causal_entries) {
    linear_call c;
    c.opt.decay = three;
    expect_rejected(c, e, {"linear::options.decay.size()=3", "q.dim(2)=4", "heads"});
  }
}

TEST(LinearErrors, DecayValues) {
  for (const float bad : {-0.5f, 0.0f, 1.5f, std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity()}) {
    SCOPED_TRACE(bad);
    std::vector<float> decay = {0.9f, 0.5f, 1.0f, 0.99f};
    decay[2] = bad;
    for (const entry e : causal_entries) {
      linear_call c;
      c.opt.decay = decay;
      expect_rejected(c, e, {"linear::options.decay[2]=", "(0, 1]"});
    }
  }
}

TEST(LinearErrors, DecayNeedsTheCausalForm) {
  const std::vector<float> decay = attn::linear::retnet_decay(HQ);
  linear_call c;
  c.opt.decay = decay;
  expect_rejected(c, entry::dense, {"linear::options.decay", "attn::causal", "attn::dense"});
}

TEST(LinearErrors, Chunk) {
  for (const idx bad : {idx{0}, idx{-3}}) {
    for (const entry e : every_entry) {
      linear_call c;
      c.opt.chunk = bad;
      expect_rejected(c, e, {"linear::options.chunk=" + std::to_string(bad), ">= 1"});
    }
  }
}

TEST(LinearErrors, ScaleEpsilonThreads) {
  for (const entry e : every_entry) {
    for (const float bad :
         {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
      linear_call c;
      c.opt.scale = bad;
      expect_rejected(c, e, {"linear::options.scale=", "finite"});
    }
    for (const float bad : {-1e-6f, std::numeric_limits<float>::infinity()}) {
      linear_call c;
      c.opt.epsilon = bad;
      expect_rejected(c, e, {"linear::options.epsilon=", "finite"});
    }
    linear_call c;
    c.opt.threads = -2;
    expect_rejected(c, e, {"linear::options.threads=-2", ">= 0"}, attn::linear::elu1{}, false);
  }
}

TEST(LinearErrors, StateShape) {
  const entry state_entries[] = {entry::causal_with_state, entry::step};
  for (const entry e : state_entries) {
    const idx dims[4][4] = {{3, HQ, D, DV}, {B, 3, D, DV}, {B, HQ, 5, DV}, {B, HQ, D, 9}};
    const char* tokens[4][2] = {{"state.kv.dim(0)=3", "q.dim(0)=2"},
                                {"state.kv.dim(1)=3", "q.dim(2)=4"},
                                {"state.kv.dim(2)=5", "q.dim(3)=8"},
                                {"state.kv.dim(3)=9", "v.dim(3)=6"}};
    for (int d = 0; d < 4; ++d) {
      linear_call c;
      c.st = attn::linear::state(dims[d][0], dims[d][1], dims[d][2], dims[d][3]);
      c.st.kv.setConstant(state_sentinel);
      c.st.z.setConstant(state_sentinel);
      expect_rejected(c, e, {tokens[d][0], tokens[d][1]});
    }
    linear_call c;
    c.st.z = Eigen::Tensor<float, 3, Eigen::RowMajor>(B, HQ, D + 1);
    c.st.z.setConstant(state_sentinel);
    expect_rejected(c, e, {"state.z.dim(2)=9", "q.dim(3)=8"});
  }
}

TEST(LinearErrors, EfficientAttentionHasNoCausalForm) {
  for (const entry e : causal_entries)
    expect_rejected(linear_call{}, e, {"linear::efficient", "causal", "attn::dense"},
                    attn::linear::efficient{});
  linear_call c;
  attn::linear_attention(c.q, c.k, c.v, c.out, attn::linear::efficient{}, attn::dense{}, c.opt);
  EXPECT_TRUE(std::isfinite(c.out(1, 2, 3, 4)));
}

TEST(LinearErrors, FocusedParameters) {
  for (const entry e : every_entry) {
    expect_rejected(linear_call{}, e, {"linear::focused.p=0", ">= 1"},
                    attn::linear::focused{.p = 0});
    const std::vector<float> five(5, 0.0f), q_channels(HQ * D, 0.0f);
    expect_rejected(linear_call{}, e, {"linear::focused.scale.size()=5", "32"},
                    attn::linear::focused{.scale = five});
    expect_rejected(linear_call{}, e, {"linear::focused.key_scale.size()=5", "16"},
                    attn::linear::focused{.scale = q_channels, .key_scale = five});
    // q's per-channel scale does not fit k's 16 channels without a key_scale.
    expect_rejected(linear_call{}, e, {"linear::focused.scale.size()=32", "16", "key_scale"},
                    attn::linear::focused{.scale = q_channels});
    std::vector<float> bad(HQ * D, 0.0f);
    bad[7] = std::numeric_limits<float>::quiet_NaN();
    expect_rejected(linear_call{}, e, {"linear::focused.scale[7]=", "finite"},
                    attn::linear::focused{.scale = bad});
  }
}

}  // namespace linear_errors_test
