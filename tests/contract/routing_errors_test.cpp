// Bad router parameters and selections used on the wrong problem: an attn::error naming the
// parameter and its values, thrown before anything is written.
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/routing/routing.hpp>

#include "support/bad_input.hpp"

namespace routing_errors_test {

using attn::idx;
using namespace attn::test::bad_input;
using call = attn::test::bad_input::call<attn::softmax>;

/// out still holds its sentinel everywhere.
template <class T>
void expect_untouched(const T& out) {
  idx changed = 0;
  for (idx n = 0; n < out.size(); ++n) changed += out.data()[n] != out_sentinel;
  EXPECT_EQ(changed, 0) << "elements of out written before the error";
}

// The valid problem: NK = 7 keys, so 4 key blocks of 2.
TEST(RoutingErrors, Moba) {
  const call c;
  expect_error([&] { (void)attn::moba{.block = 2, .top_k = 5}.route(c.q, c.k); },
               {"moba", "top_k=5", "4", "block=2", "7"});
  expect_error([&] { (void)attn::moba{.block = 2, .top_k = 0}.route(c.q, c.k); },
               {"moba", "top_k=0"});
  expect_error([&] { (void)attn::moba{.block = 0, .top_k = 1}.route(c.q, c.k); },
               {"moba", "block=0"});
  // A selection routed for another problem is rejected by attention(), out untouched.
  const auto sel = attn::moba{.block = 2, .top_k = 4}.route(c.q, c.k);
  call shorter = c;
  shorter.k = filled(B, NK - 1, HKV, D, 0.25f);
  shorter.v = filled(B, NK - 1, HKV, DV, 1.0f);
  expect_kernel_rejects(shorter, {"block_selection", "seq_k=7", "k.dim(1)=6"}, sel);
  attn::attention(c.q, c.k, c.v, shorter.out, c.score, sel, c.opt);  // the right problem runs
  EXPECT_FLOAT_EQ(shorter.out(1, 4, 0, 5), 1.0f);
}

TEST(RoutingErrors, SelectionAttention) {
  call c;
  const auto sel = attn::moba{.block = 2, .top_k = 2}.route(c.q, c.k);
  const float sinks[HQ] = {0, 0, 0, 0};
  expect_error(
      [&] { attn::selection_attention(c.q, c.k, c.v, c.out, attn::softmax{.sinks = sinks}, sel); },
      {"selection_attention", "softmax.sinks"});
  call shorter = c;
  shorter.k = filled(B, NK - 1, HKV, D, 0.25f);
  shorter.v = filled(B, NK - 1, HKV, DV, 1.0f);
  expect_error(
      [&] {
        attn::selection_attention(shorter.q, shorter.k, shorter.v, shorter.out, attn::softmax{},
                                  sel);
      },
      {"block_selection", "seq_k=7", "k.dim(1)=6"});
  expect_untouched(c.out);
  expect_untouched(shorter.out);
  attn::selection_attention(c.q, c.k, c.v, c.out, attn::softmax{}, sel);
  EXPECT_FLOAT_EQ(c.out(1, 4, 0, 5), 1.0f);
}

TEST(RoutingErrors, Sparge) {
  const call c;
  for (const float tau : {0.0f, -0.5f, 1.5f, std::numeric_limits<float>::quiet_NaN()})
    expect_error([&] { (void)attn::sparge{.tau = tau}.route(c.q, c.k); }, {"sparge", "tau="});
  expect_error([&] { (void)attn::sparge{.block_q = 0}.route(c.q, c.k); }, {"sparge", "block_q=0"});
  expect_error([&] { (void)attn::sparge{.block_k = -3}.route(c.q, c.k); },
               {"sparge", "block_k=-3"});
}

TEST(RoutingErrors, Biformer) {
  attn::biformer_map q(1, 6, 8, 2, 4), out(1, 6, 8, 2, 4);
  q.setConstant(0.5f);
  out.setConstant(out_sentinel);
  expect_error([&] { (void)attn::biformer{.regions = 4, .top_k = 1}.route(q, q); },
               {"biformer", "regions=4", "height=6", "width=8", "auto_pad"});
  expect_error([&] { (void)attn::biformer{.regions = 2, .top_k = 5}.route(q, q); },
               {"biformer", "top_k=5", "4"});
  expect_error([&] { (void)attn::biformer{.regions = 0, .top_k = 1}.route(q, q); },
               {"biformer", "regions=0"});
  const auto sel = attn::biformer{.regions = 2, .top_k = 2}.route(q, q);
  attn::biformer_map other(1, 6, 6, 2, 4);
  other.setConstant(0.5f);
  expect_error([&] { attn::biformer_attention(other, other, other, out, attn::softmax{}, sel); },
               {"biformer_attention", "out.dim(2)=8", "q.dim(2)=6", "width"});
  attn::biformer_map wide_out(1, 6, 6, 2, 4);
  wide_out.setConstant(out_sentinel);
  expect_error(
      [&] { attn::biformer_attention(other, other, other, wide_out, attn::softmax{}, sel); },
      {"biformer_attention", "width=8"});
  expect_untouched(wide_out);
  attn::lse_tensor lse(1, 2, 48);
  attn::options opt;
  opt.lse = attn::lse_map(lse.data(), 1, 2, 48);
  expect_error([&] { attn::biformer_attention(q, q, q, out, attn::softmax{}, sel, opt); },
               {"biformer_attention", "options.lse"});
  expect_untouched(out);
}

TEST(RoutingErrors, RoutingTransformer) {
  call c;
  c.k = filled(B, NQ, HKV, D, 0.25f);
  c.v = filled(B, NQ, HKV, DV, 1.0f);
  const attn::centroid_tensor none(HQ, 0, D), mu(HQ, 2, D);
  expect_error([&] { (void)attn::routing_transformer{}.route(c.q, c.k, none); },
               {"routing_transformer", "centroids.dim(1)=0", "clusters"});
  const attn::centroid_tensor wrong_heads(HQ + 1, 2, D);
  expect_error([&] { (void)attn::routing_transformer{}.route(c.q, c.k, wrong_heads); },
               {"centroids.dim(0)=5", "q.dim(2)=4"});
  expect_error([&] { (void)attn::routing_transformer{.window = 0}.route(c.q, c.k, mu); },
               {"window=0"});
  const call cross;  // NQ = 5 queries, NK = 7 keys
  expect_error([&] { (void)attn::routing_transformer{}.route(cross.q, cross.k, mu); },
               {"q.dim(1)=5", "k.dim(1)=7"});
  expect_error([&] { (void)attn::kmeans_init(c.q, c.k, 0); }, {"kmeans_init", "clusters=0"});
  attn::centroid_tensor state(HQ, 2, D);
  state.setConstant(0.5f);
  expect_error([&] { attn::ema_update(state, c.q, c.k, 1.5); }, {"decay=1.5"});
  // A selection of another batch size, and per-head sigmoid biases: rejected, out untouched.
  const auto sel = attn::routing_transformer{.window = 3}.route(c.q, c.k, state);
  call other = c;
  other.q = filled(1, NQ, HQ, D, 0.5f);
  other.k = filled(1, NQ, HKV, D, 0.25f);
  other.v = filled(1, NQ, HKV, DV, 1.0f);
  other.out = filled(1, NQ, HQ, DV, out_sentinel);
  expect_error(
      [&] {
        attn::routing_transformer_attention(other.q, other.k, other.v, other.out, attn::softmax{},
                                            sel);
      },
      {"routing_transformer_attention", "batch=2"});
  expect_untouched(other.out);
  const float biases[HQ] = {0, 0, 0, 0};
  expect_error(
      [&] {
        attn::routing_transformer_attention(c.q, c.k, c.v, c.out,
                                            attn::sigmoid{.head_bias = biases}, sel);
      },
      {"sigmoid.head_bias"});
  expect_untouched(c.out);
}

TEST(RoutingErrors, Mosa) {
  attn::token_scores r(B, NQ, HQ);
  r.setConstant(0.5f);
  expect_error([&] { (void)attn::mosa{.top_k = NQ + 1}.route(r); }, {"mosa", "top_k=6", "5"});
  expect_error([&] { (void)attn::mosa{.top_k = 0}.route(r); }, {"mosa", "top_k=0"});
  const call c;  // NK ≠ NQ: MoSA is self-attention
  call same = c;
  same.k = filled(B, NQ, HKV, D, 0.25f);
  same.v = filled(B, NQ, HKV, DV, 1.0f);
  const auto sel = attn::mosa{.top_k = 2}.route(r);
  call bad = c;
  expect_error([&] { attn::mosa_attention(bad.q, bad.k, bad.v, bad.out, attn::softmax{}, sel); },
               {"mosa_attention", "q.dim(1)=5", "k.dim(1)=7"});
  expect_untouched(bad.out);
  attn::mosa_attention(same.q, same.k, same.v, same.out, attn::softmax{}, sel);
  EXPECT_FLOAT_EQ(same.out(0, 0, 0, 0), 0.5f);  // token 0 kept (ties), sees itself: r · v
}

}  // namespace routing_errors_test
