// Token-subset routers (routing/routing_transformer.hpp, routing/mosa.hpp): the gathered kernel
// against reference/routing.hpp (the router's selection as an explicit mask or bias per
// cluster, the masked reference attention, the paper's combination), softmax and sigmoid, and
// the properties: one cluster with w = N ⇒ dense; MoSA with k = N and r ≡ 1 ⇒ causal dense;
// the centroid state's EMA update and k-means initialisation.
#include <algorithm>
#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include <attn/reference/routing.hpp>
#include <attn/routing/routing.hpp>

#include "support/kernel_check.hpp"

namespace routing_subsets_test {

using attn::idx;
using attn::test::make_problem;
using attn::test::max_abs_diff;
using attn::test::problem;
using attn::test::tensor;
using attn::test::tolerance;

tensor empty_like_out(const problem& p) {
  tensor out(p.batch(), p.seq_q(), p.heads(), p.v.dimension(3));
  out.setConstant(std::numeric_limits<float>::quiet_NaN());
  return out;
}

attn::centroid_tensor random_centroids(idx heads, idx clusters, idx d, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  attn::centroid_tensor mu(heads, clusters, d);
  for (idx e = 0; e < mu.size(); ++e) mu.data()[e] = dist(rng);
  return mu;
}

/// Runs a subset router's entry point (run(out)) on NaN-filled output and compares it with the
/// reference result.
template <class Run>
void expect_subset_result(const problem& p, Run&& run, const attn::reference::result& ref) {
  tensor out = empty_like_out(p);
  run(out);
  EXPECT_LE(max_abs_diff(out, ref.out), tolerance);
}

// ---- Routing Transformer ------------------------------------------------------------------------

template <class Score>
void expect_routing(const problem& p, const attn::centroid_tensor& mu,
                    const attn::routing_transformer& router, const Score& score) {
  const attn::cluster_selection sel = router.route(p.q, p.k, mu);
  expect_subset_result(
      p,
      [&](tensor& out) {
        attn::routing_transformer_attention<attn::test::arch>(p.q, p.k, p.v, out, score, sel);
      },
      attn::reference::routing_transformer_attention(p.q, p.k, p.v, score, mu, router));
}

TEST(RoutingTransformer, MatchesReference) {
  const problem p = make_problem(2, 90, 90, 4, 2, 16, 8, 1);
  const attn::centroid_tensor mu = random_centroids(4, 3, 16, 2);
  for (const bool causal : {false, true})
    for (const auto norm : {attn::routing_norm::l2, attn::routing_norm::layer_norm}) {
      SCOPED_TRACE(std::string(causal ? "causal " : "") +
                   (norm == attn::routing_norm::l2 ? "l2" : "layer_norm"));
      const attn::routing_transformer router{.window = 40, .causal = causal, .norm = norm};
      expect_routing(p, mu, router, attn::softmax{});
      expect_routing(p, mu, router, attn::sigmoid{});
    }
}

TEST(RoutingTransformer, SharedQkGivesSelfTheTokenValue) {
  problem p = make_problem(1, 70, 70, 2, 2, 16, 16, 3);
  p.k = p.q;  // shared Q/K
  const attn::centroid_tensor mu = random_centroids(2, 4, 16, 4);
  for (const bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "");
    const attn::routing_transformer router{.window = 20, .causal = causal, .shared_qk = true};
    expect_routing(p, mu, router, attn::softmax{});
    expect_routing(p, mu, router, attn::sigmoid{});
  }
}

TEST(RoutingTransformer, OneClusterOfEveryTokenIsDense) {
  const problem p = make_problem(1, 100, 100, 2, 1, 16, 16, 5);
  const attn::centroid_tensor mu = random_centroids(2, 1, 16, 6);
  for (const bool causal : {false, true}) {
    const auto sel = attn::routing_transformer{.window = 100, .causal = causal}.route(p.q, p.k, mu);
    tensor out = empty_like_out(p);
    attn::routing_transformer_attention<attn::test::arch>(p.q, p.k, p.v, out, attn::softmax{}, sel);
    const auto ref =
        causal ? attn::reference::attention(p.q, p.k, p.v, attn::softmax{}, attn::causal{})
               : attn::reference::attention(p.q, p.k, p.v);
    EXPECT_LE(max_abs_diff(out, ref.out), tolerance);  // the 1e-5 of count + 1e-5 included
  }
}

TEST(RoutingTransformer, CentroidState) {
  const problem p = make_problem(1, 60, 60, 2, 2, 8, 8, 7);
  const attn::centroid_tensor a = attn::kmeans_init(p.q, p.k, 3, 5, attn::routing_norm::l2, 9);
  const attn::centroid_tensor b = attn::kmeans_init(p.q, p.k, 3, 5, attn::routing_norm::l2, 9);
  for (idx e = 0; e < a.size(); ++e) ASSERT_EQ(a.data()[e], b.data()[e]);
  for (idx h = 0; h < 2; ++h)
    for (idx c = 0; c < 3; ++c) {  // k-means centroids are unit vectors (cosine k-means)
      double ss = 0;
      for (idx d = 0; d < 8; ++d) ss += static_cast<double>(a(h, c, d)) * a(h, c, d);
      EXPECT_NEAR(ss, 1.0, 1e-5);
    }
  // decay 1 keeps the state; decay 0.999 moves it by 0.1 % towards the new means.
  attn::centroid_tensor same = a;
  attn::ema_update(same, p.q, p.k, 1.0);
  for (idx e = 0; e < a.size(); ++e) ASSERT_EQ(same.data()[e], a.data()[e]);
  attn::centroid_tensor far = random_centroids(2, 3, 8, 10), moved = far, target = far;
  attn::ema_update(moved, p.q, p.k);
  attn::ema_update(target, p.q, p.k, 0.0);
  for (idx e = 0; e < far.size(); ++e)
    EXPECT_NEAR(moved.data()[e], 0.999f * far.data()[e] + 0.001f * target.data()[e], 1e-6);
}

// ---- MoSA ---------------------------------------------------------------------------------------

attn::token_scores random_scores(idx b, idx n, idx h, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(0.0f, 1.0f);
  attn::token_scores r(b, n, h);
  for (idx e = 0; e < r.size(); ++e) r.data()[e] = dist(rng);
  return r;
}

template <class Score>
void expect_mosa(const problem& p, const attn::token_scores& r, const attn::mosa& router,
                 const Score& score) {
  const attn::token_selection sel = router.route(r);
  expect_subset_result(
      p,
      [&](tensor& out) { attn::mosa_attention<attn::test::arch>(p.q, p.k, p.v, out, score, sel); },
      attn::reference::mosa_attention(p.q, p.k, p.v, score, r, router));
}

TEST(RoutingMosa, MatchesReference) {
  const problem p = make_problem(2, 120, 120, 4, 2, 16, 8, 11);
  const attn::token_scores r = random_scores(2, 120, 4, 12);
  for (const bool first : {false, true})
    for (const idx k : {idx{1}, idx{30}, idx{77}}) {
      SCOPED_TRACE("k=" + std::to_string(k) + (first ? " include_first" : ""));
      expect_mosa(p, r, attn::mosa{.top_k = k, .include_first = first}, attn::softmax{});
      expect_mosa(p, r, attn::mosa{.top_k = k, .include_first = first}, attn::sigmoid{});
    }
}

TEST(RoutingMosa, EveryTokenWithUnitScoresIsCausalDense) {
  const problem p = make_problem(1, 100, 100, 2, 2, 16, 16, 13);
  attn::token_scores ones(1, 100, 2);
  ones.setConstant(1.0f);
  const auto sel = attn::mosa{.top_k = 100}.route(ones);
  tensor out = empty_like_out(p);
  attn::mosa_attention<attn::test::arch>(p.q, p.k, p.v, out, attn::softmax{}, sel);
  const auto ref = attn::reference::attention(p.q, p.k, p.v, attn::softmax{}, attn::causal{});
  EXPECT_LE(max_abs_diff(out, ref.out), tolerance);
  // Ties (all r equal) keep the earliest tokens.
  const auto few = attn::mosa{.top_k = 3}.route(ones);
  EXPECT_EQ(std::vector<idx>(few.tokens(0, 1).begin(), few.tokens(0, 1).end()),
            (std::vector<idx>{0, 1, 2}));
}

}  // namespace routing_subsets_test
