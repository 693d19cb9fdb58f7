// Property family "routing": a block selection routed by MoBA or SpargeAttn runs the same
// attention three ways — selection_attention (key-block-major), attn::attention with the
// selection as a pattern, and the reference with the selection as an explicit mask
// (selection.to_mask()) — softmax with LSE or sigmoid, any thread count.
#include <attn/reference/reference.hpp>
#include <attn/routing/routing.hpp>

#include "property/harness.hpp"

namespace attn::property {
namespace routing_property {

constexpr double tolerance = 3e-5;

void run_case(const case_context& ctx) {
  draw d(ctx.seed());
  const idx B = d.pick<idx>({1, 1, 2});
  const idx nk = d.chance(0.7) ? d.uniform(1, 80) : d.uniform(81, 200);
  const idx nq = d.chance(0.5) ? nk : d.uniform(1, nk);
  const auto [hq, hkv] = d.heads();
  const idx D = d.chance(0.8) ? d.pick<idx>({8, 16, 24, 40}) : d.head_dim();
  const idx E = d.chance(0.7) ? D : d.pick<idx>({8, 24});
  const tensor q = test::random_tensor(d.rng(), B, nq, hq, D);
  const tensor k = test::random_tensor(d.rng(), B, nk, hkv, D);
  const tensor v = test::random_tensor(d.rng(), B, nk, hkv, E);
  options ropt;
  ropt.threads = d.threads();
  std::ostringstream t;
  t << "routing " << shape_text(q, k, v) << " threads=" << ropt.threads;
  block_selection sel;
  if (d.chance(0.6)) {
    moba router;
    router.block = d.pick<idx>({1, 3, 7, 16, 33});
    const idx blocks = (nk + router.block - 1) / router.block;
    router.top_k = d.uniform(1, blocks);
    router.causal = d.chance(0.7);
    t << " moba(block=" << router.block << ", top_k=" << router.top_k
      << (router.causal ? ", causal" : "") << ")";
    sel = router.route(q, k, ropt);
  } else {
    sparge router;
    router.block_q = d.pick<idx>({1, 8, 16, 128});
    router.block_k = d.pick<idx>({1, 8, 16, 64});
    router.tau = static_cast<float>(d.real(0.05, 1.0));
    router.causal = d.chance(0.3);
    t << " sparge(block_q=" << router.block_q << ", block_k=" << router.block_k
      << ", tau=" << router.tau << (router.causal ? ", causal" : "") << ")";
    sel = router.route(q, k, ropt);
  }
  options opt;
  opt.threads = d.threads();
  t << " attention threads=" << opt.threads;
  ATTN_PROPERTY_TRACE(ctx, t.str());
  const test::bool_tensor4 selected = sel.to_mask();  // attn::mask points into it
  const mask explicit_mask{selected};
  tensor by_blocks(B, nq, hq, E), as_pattern(B, nq, hq, E);
  by_blocks.setConstant(std::numeric_limits<float>::quiet_NaN());
  as_pattern.setConstant(std::numeric_limits<float>::quiet_NaN());
  if (d.chance(0.7)) {
    lse_tensor lse(B, hq, nq);
    lse.setConstant(std::numeric_limits<float>::quiet_NaN());
    opt.lse = lse_map(lse.data(), lse.dimensions());
    selection_attention<arch>(q, k, v, by_blocks, softmax{}, sel, opt);
    opt.lse.reset();
    attention<arch>(q, k, v, as_pattern, softmax{}, sel, opt);
    const auto want = reference::attention(q, k, v, softmax{}, explicit_mask, opt);
    ATTN_EXPECT_CLOSE(by_blocks, want.out, tolerance);
    ATTN_EXPECT_CLOSE(as_pattern, want.out, tolerance);
    idx bad = 0;
    for (idx e = 0; e < lse.size(); ++e) {
      const double w = want.lse.data()[e], g = static_cast<double>(lse.data()[e]);
      bad += !(std::isinf(w) ? g == w : std::abs(g - w) <= tolerance * std::max(1.0, std::abs(w)));
    }
    EXPECT_EQ(bad, 0) << "selection_attention's LSE differs from the masked reference";
  } else {
    selection_attention<arch>(q, k, v, by_blocks, sigmoid{}, sel, opt);
    attention<arch>(q, k, v, as_pattern, sigmoid{}, sel, opt);
    ATTN_EXPECT_CLOSE(by_blocks, reference::attention(q, k, v, sigmoid{}, explicit_mask, opt).out,
                      tolerance);
  }
  ATTN_EXPECT_CLOSE(by_blocks, as_pattern, 1e-5);
}

}  // namespace routing_property
}  // namespace attn::property

ATTN_PROPERTY_FAMILY(routing, attn::property::routing_property::run_case, 1000, 100);
