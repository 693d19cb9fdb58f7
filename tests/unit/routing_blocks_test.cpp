// Block routers (routing/moba.hpp, routing/sparge.hpp, routing/biformer.hpp): each selection
// against the double-precision router of reference/routing.hpp turned into an explicit mask,
// the fused kernel with the selection against the masked reference attention (softmax with LSE
// and sigmoid), and the properties: top-k = all ⇒ dense (MoBA ⇒ dense causal, BiFormer,
// SpargeAttn τ = 1), MoBA k = 1 ⇒ block-local causal, thread-count independence.
#include <algorithm>
#include <string>

#include <gtest/gtest.h>

#include <attn/reference/routing.hpp>
#include <attn/routing/routing.hpp>

#include "support/kernel_check.hpp"

namespace routing_blocks_test {

using attn::idx;
using attn::test::expect_close;
using attn::test::make_problem;
using attn::test::problem;
using attn::test::run_kernel;
using mask4 = attn::bool_tensor4;

idx differences(const mask4& a, const mask4& b) {
  if (a.dimensions() != b.dimensions()) return -1;
  idx n = 0;
  for (idx e = 0; e < a.size(); ++e) n += a.data()[e] != b.data()[e];
  return n;
}

double fraction(const mask4& m) {
  idx n = 0;
  for (idx e = 0; e < m.size(); ++e) n += m.data()[e];
  return m.size() ? static_cast<double>(n) / static_cast<double>(m.size()) : 0.0;
}

/// selection_attention (key-block-major) with NaN-filled out and LSE, like run_kernel.
template <class Score>
attn::test::kernel_result run_key_block_major(const problem& p, const Score& score,
                                              const attn::block_selection& sel) {
  attn::test::kernel_result r{attn::test::tensor(p.batch(), p.seq_q(), p.heads(), p.v.dimension(3)),
                              attn::lse_tensor()};
  r.out.setConstant(std::numeric_limits<float>::quiet_NaN());
  attn::options opt;
  if constexpr (Score::has_lse) {
    r.lse = attn::lse_tensor(p.batch(), p.heads(), p.seq_q());
    r.lse.setConstant(std::numeric_limits<float>::quiet_NaN());
    opt.lse = attn::lse_map(r.lse.data(), p.batch(), p.heads(), p.seq_q());
  }
  attn::selection_attention<attn::test::arch>(p.q, p.k, p.v, r.out, score, sel, opt);
  return r;
}

/// The selection's mask is the reference router's, its density counts it, and the kernel with
/// the selection (as a pattern, and key-block-major) matches the masked reference for softmax
/// (with LSE) and sigmoid.
void expect_routed(const problem& p, const attn::block_selection& sel, const mask4& want) {
  ASSERT_EQ(differences(sel.to_mask(), want), 0);
  EXPECT_NEAR(sel.density(), fraction(want), 1e-12);
  const attn::mask explicit_mask{want};
  {
    SCOPED_TRACE("softmax");
    const auto ref = attn::reference::attention(p.q, p.k, p.v, attn::softmax{}, explicit_mask);
    expect_close(run_kernel(p, attn::softmax{}, sel), ref);
    expect_close(run_key_block_major(p, attn::softmax{}, sel), ref);
  }
  {
    SCOPED_TRACE("sigmoid");
    const auto ref = attn::reference::attention(p.q, p.k, p.v, attn::sigmoid{}, explicit_mask);
    expect_close(run_kernel(p, attn::sigmoid{}, sel), ref);
    expect_close(run_key_block_major(p, attn::sigmoid{}, sel), ref);
  }
}

mask4 causal_mask(idx b, idx h, idx nq, idx nk) {
  mask4 m(b, h, nq, nk);
  for (idx x = 0; x < b; ++x)
    for (idx y = 0; y < h; ++y)
      for (idx i = 0; i < nq; ++i)
        for (idx j = 0; j < nk; ++j) m(x, y, i, j) = j <= i + nk - nq;
  return m;
}

// ---- MoBA ---------------------------------------------------------------------------------------

TEST(RoutingMoba, MatchesReference) {
  struct param {
    idx nq, nk, block, top_k;
    bool causal;
  };
  for (const param c :
       {param{100, 100, 16, 3, true}, param{100, 100, 33, 2, true}, param{150, 150, 64, 2, true},
        param{150, 150, 7, 4, false}, param{40, 130, 16, 3, true}, param{130, 40, 8, 2, true},
        param{97, 97, 100, 1, true}}) {
    SCOPED_TRACE("nq=" + std::to_string(c.nq) + " nk=" + std::to_string(c.nk) +
                 " block=" + std::to_string(c.block) + " top_k=" + std::to_string(c.top_k) +
                 (c.causal ? " causal" : ""));
    const problem p = make_problem(2, c.nq, c.nk, 4, 2, 16, 8, 7u + static_cast<unsigned>(c.nq));
    const attn::moba router{.block = c.block, .top_k = c.top_k, .causal = c.causal};
    expect_routed(p, router.route(p.q, p.k), attn::reference::moba_mask(p.q, p.k, router));
  }
}

TEST(RoutingMoba, AllBlocksIsDenseCausalAndOneIsBlockLocal) {
  const problem p = make_problem(1, 150, 150, 2, 2, 16, 16, 3);
  const idx block = 32, blocks = 5;
  const auto all = attn::moba{.block = block, .top_k = blocks}.route(p.q, p.k);
  EXPECT_EQ(differences(all.to_mask(), causal_mask(1, 2, 150, 150)), 0);
  expect_close(run_kernel(p, attn::softmax{}, all),
               attn::reference::attention(p.q, p.k, p.v, attn::softmax{}, attn::causal{}));
  const auto local = attn::moba{.block = block, .top_k = 1}.route(p.q, p.k);
  const mask4 m = local.to_mask();
  for (idx i = 0; i < 150; ++i)
    for (idx j = 0; j < 150; ++j) ASSERT_EQ(m(0, 1, i, j), j <= i && j / block == i / block);
}

TEST(RoutingMoba, DeterministicAcrossThreadsAndTiesByIndex) {
  const problem p = make_problem(2, 300, 300, 4, 1, 16, 16, 11);
  const attn::moba router{.block = 20, .top_k = 4};
  attn::options one, two;
  one.threads = 1;
  two.threads = 2;
  EXPECT_EQ(
      differences(router.route(p.q, p.k, one).to_mask(), router.route(p.q, p.k, two).to_mask()), 0);
  // Zero queries: every gate ties at 0, so the earliest blocks win.
  attn::tensor4<float> zero(1, 100, 1, 8), k(1, 100, 1, 8);
  zero.setZero();
  k.setConstant(1.0f);
  const auto sel = attn::moba{.block = 10, .top_k = 3}.route(zero, k);
  EXPECT_EQ(sel.blocks(0, 0, 95), (std::vector<idx>{0, 1, 9}));
  EXPECT_EQ(sel.blocks(0, 0, 15), (std::vector<idx>{0, 1}));
}

// ---- SpargeAttn ---------------------------------------------------------------------------------

TEST(RoutingSparge, MatchesReference) {
  for (const bool causal : {false, true})
    for (const float tau : {0.3f, 0.7f, 0.95f}) {
      SCOPED_TRACE(std::string(causal ? "causal" : "") + " tau=" + std::to_string(tau));
      const problem p = make_problem(1, 200, 200, 4, 2, 16, 8, 5);
      const attn::sparge router{.block_q = 32, .block_k = 16, .tau = tau, .causal = causal};
      expect_routed(p, router.route(p.q, p.k), attn::reference::sparge_mask(p.q, p.k, router));
    }
  const problem p = make_problem(2, 70, 150, 2, 1, 8, 8, 9);  // Nq ≠ Nk, odd blocks
  const attn::sparge router{.block_q = 24, .block_k = 40, .tau = 0.8f, .causal = true};
  expect_routed(p, router.route(p.q, p.k), attn::reference::sparge_mask(p.q, p.k, router));
}

TEST(RoutingSparge, TauOneIsDense) {
  const problem p = make_problem(1, 130, 130, 2, 2, 16, 16, 2);
  const auto dense = attn::sparge{.block_q = 64, .block_k = 32, .tau = 1.0f}.route(p.q, p.k);
  EXPECT_DOUBLE_EQ(dense.density(), 1.0);
  expect_close(run_kernel(p, attn::softmax{}, dense),
               attn::reference::attention(p.q, p.k, p.v, attn::softmax{}));
  const auto causal =
      attn::sparge{.block_q = 64, .block_k = 32, .tau = 1.0f, .causal = true}.route(p.q, p.k);
  EXPECT_EQ(differences(causal.to_mask(), causal_mask(1, 2, 130, 130)), 0);
}

// ---- BiFormer -----------------------------------------------------------------------------------

attn::biformer_map random_map(std::mt19937& rng, idx b, idx h, idx w, idx heads, idx d) {
  attn::biformer_map t(b, h, w, heads, d);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (idx e = 0; e < t.size(); ++e) t.data()[e] = dist(rng);
  return t;
}

struct map_problem {
  attn::biformer_map q, k, v;
};

map_problem make_map(idx b, idx h, idx w, idx heads, idx kv_heads, idx d, idx dv, unsigned seed) {
  std::mt19937 rng(seed);
  map_problem m;
  m.q = random_map(rng, b, h, w, heads, d);
  m.k = random_map(rng, b, h, w, kv_heads, d);
  m.v = random_map(rng, b, h, w, kv_heads, dv);
  return m;
}

template <class Score>
void expect_biformer(const map_problem& m, const attn::biformer& router, const Score& score) {
  const attn::region_selection sel = router.route(m.q, m.k);
  const mask4 want = attn::reference::biformer_mask(m.q, m.k, router);
  ASSERT_EQ(differences(sel.to_mask(), want), 0);
  EXPECT_NEAR(sel.density(), fraction(want), 1e-12);
  attn::biformer_map out(m.q.dimension(0), m.q.dimension(1), m.q.dimension(2), m.q.dimension(3),
                         m.v.dimension(4));
  out.setConstant(std::numeric_limits<float>::quiet_NaN());
  attn::biformer_attention<attn::test::arch>(m.q, m.k, m.v, out, score, sel);
  const auto ref = attn::reference::biformer_attention(m.q, m.k, m.v, score, router);
  const attn::tensor4<float> flat = out.reshape(ref.out.dimensions());
  EXPECT_LE(attn::test::max_abs_diff(flat, ref.out), attn::test::tolerance);
}

TEST(RoutingBiformer, MatchesReference) {
  const map_problem m = make_map(2, 12, 12, 4, 2, 8, 6, 1);
  for (const idx top_k : {idx{1}, idx{3}}) {
    SCOPED_TRACE("top_k=" + std::to_string(top_k));
    expect_biformer(m, attn::biformer{.regions = 3, .top_k = top_k}, attn::softmax{});
    expect_biformer(m, attn::biformer{.regions = 3, .top_k = top_k}, attn::sigmoid{});
  }
}

TEST(RoutingBiformer, PaddedMapsMaskPaddedKeys) {
  const map_problem m = make_map(1, 10, 13, 2, 2, 8, 8, 4);
  expect_biformer(m, attn::biformer{.regions = 3, .top_k = 2, .auto_pad = true}, attn::softmax{});
  expect_biformer(m, attn::biformer{.regions = 4, .top_k = 5, .auto_pad = true}, attn::sigmoid{});
}

TEST(RoutingBiformer, AllRegionsIsDense) {
  const map_problem m = make_map(1, 8, 8, 2, 1, 8, 8, 6);
  const auto sel = attn::biformer{.regions = 2, .top_k = 4}.route(m.q, m.k);
  EXPECT_DOUBLE_EQ(sel.density(), 1.0);
  attn::biformer_map out(1, 8, 8, 2, 8);
  attn::biformer_attention<attn::test::arch>(m.q, m.k, m.v, out, attn::softmax{}, sel);
  using map = Eigen::TensorMap<const attn::tensor4<float>>;
  attn::options opt;
  opt.scale = 1.0f / std::sqrt(16.0f);  // (heads·D)^−½
  const auto ref =
      attn::reference::attention(map(m.q.data(), 1, 64, 2, 8), map(m.k.data(), 1, 64, 1, 8),
                                 map(m.v.data(), 1, 64, 1, 8), attn::softmax{}, attn::dense{}, opt);
  const attn::tensor4<float> flat = out.reshape(ref.out.dimensions());
  EXPECT_LE(attn::test::max_abs_diff(flat, ref.out), attn::test::tolerance);
}

}  // namespace routing_blocks_test
