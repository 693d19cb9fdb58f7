// Property family "blocks": block-sparse layouts from every generator (dense, causal, window,
// strided, fixed, Longformer, BigBird, a random block mask) equal their explicit element masks:
// the kernel with the layout matches the reference with attn::mask{layout.to_mask()} (softmax
// with LSE, sigmoid) and the kernel with that mask; causal_layout's and window_layout's masks
// are the element rules written here.
#include <attn/reference/reference.hpp>

#include "property/harness.hpp"

namespace attn::property {
namespace blocks_property {

constexpr double tolerance = 3e-5;

block_layout draw_layout(draw& d, idx n, idx heads, std::string& text, std::vector<idx>& globals,
                         test::bool_tensor4& rule) {
  const idx block = d.pick<idx>({16, 16, 32, 64, 128});
  std::ostringstream t;
  t << " block=" << block;
  rule = test::bool_tensor4();
  switch (d.uniform(0, 7)) {
    case 0:
      text = t.str() + " dense_layout";
      return dense_layout(n, n, block);
    case 1: {
      text = t.str() + " causal_layout";
      rule = test::bool_tensor4(1, 1, n, n);
      for (idx i = 0; i < n; ++i)
        for (idx j = 0; j < n; ++j) rule(0, 0, i, j) = j <= i;
      return causal_layout(n, block);
    }
    case 2: {
      const idx left = d.uniform(0, 40), right = d.uniform(0, 40);
      t << " window_layout(left=" << left << ", right=" << right << ")";
      text = t.str();
      rule = test::bool_tensor4(1, 1, n, n);
      for (idx i = 0; i < n; ++i)
        for (idx j = 0; j < n; ++j) rule(0, 0, i, j) = i - left <= j && j <= i + right;
      return window_layout(n, block, left, right);
    }
    case 3: {
      const strided_options o{
          .stride = d.uniform(1, 40),
          .part = d.pick({strided_part::local, strided_part::strided, strided_part::both})};
      t << " strided_layout(stride=" << o.stride << ", part=" << static_cast<int>(o.part) << ")";
      text = t.str();
      return strided_layout(n, block, o);
    }
    case 4: {
      fixed_options o;
      o.chunk = d.uniform(2, 40);
      o.summary = d.uniform(1, o.chunk / 2);
      o.head_groups = d.chance(0.5) ? 1 : std::max<idx>(1, std::min(heads, o.chunk / o.summary));
      o.heads = o.head_groups > 1 ? heads : 1;
      t << " fixed_layout(chunk=" << o.chunk << ", summary=" << o.summary
        << ", head_groups=" << o.head_groups << ")";
      text = t.str();
      return fixed_layout(n, block, o);
    }
    case 5: {
      longformer_options o;
      o.window = d.uniform(0, 20);
      o.dilation = d.uniform(1, 3);
      globals.clear();
      for (idx g = d.uniform(0, 3); g > 0; --g) globals.push_back(d.uniform(0, n - 1));
      std::sort(globals.begin(), globals.end());
      globals.erase(std::unique(globals.begin(), globals.end()), globals.end());
      o.global_tokens = globals;
      t << " longformer_layout(window=" << o.window << ", dilation=" << o.dilation
        << ", globals=" << globals.size() << ")";
      text = t.str();
      return longformer_layout(n, block, o);
    }
    case 6: {
      bigbird_options o;
      o.random_blocks = d.uniform(0, 3);
      o.seed = static_cast<std::uint64_t>(d.uniform(0, 1000));
      o.heads = d.chance(0.5) ? 1 : heads;
      t << " bigbird_layout(random_blocks=" << o.random_blocks << ", seed=" << o.seed
        << ", heads=" << o.heads << ")";
      text = t.str();
      return bigbird_layout(n, block, o);
    }
    default: {
      const idx nb = (n + block - 1) / block;
      const idx lh = d.chance(0.5) ? 1 : heads;
      bool_tensor3 blocks(lh, nb, nb);
      for (idx e = 0; e < blocks.size(); ++e) blocks.data()[e] = d.chance(0.5);
      const bool diagonal = d.chance(0.3);
      t << " from_block_mask(heads=" << lh << (diagonal ? ", causal_diagonal" : "") << ")";
      text = t.str();
      return block_layout::from_block_mask(blocks, block, n, n, diagonal);
    }
  }
}

void run_case(const case_context& ctx) {
  draw d(ctx.seed());
  const idx B = d.pick<idx>({1, 1, 2});
  const idx n = d.chance(0.7) ? d.uniform(1, 70) : d.uniform(71, 200);
  const auto [hq, hkv] = d.heads();
  const idx D = d.chance(0.8) ? d.pick<idx>({8, 16, 24, 40}) : d.head_dim();
  const idx E = d.chance(0.7) ? D : d.pick<idx>({8, 24});
  const tensor q = test::random_tensor(d.rng(), B, n, hq, D);
  const tensor k = test::random_tensor(d.rng(), B, n, hkv, D);
  const tensor v = test::random_tensor(d.rng(), B, n, hkv, E);
  std::string text;
  std::vector<idx> globals;
  test::bool_tensor4 rule;
  const block_layout layout = draw_layout(d, n, hq, text, globals, rule);
  options opt;
  opt.threads = d.threads();
  ATTN_PROPERTY_TRACE(
      ctx, "blocks " + shape_text(q, k, v) + text + " threads=" + std::to_string(opt.threads));
  const test::bool_tensor4 m = layout.to_mask();
  if (rule.size() > 0) {
    idx differ = 0;
    for (idx h = 0; h < m.dimension(1); ++h)
      for (idx e = 0; e < n * n; ++e) differ += m.data()[h * n * n + e] != rule.data()[e];
    EXPECT_EQ(differ, 0) << "the layout's mask is not its element rule";
  }
  const mask explicit_mask{m};
  tensor got(B, n, hq, E), via_mask(B, n, hq, E);
  if (d.chance(0.7)) {
    lse_tensor lse(B, hq, n);
    opt.lse = lse_map(lse.data(), lse.dimensions());
    attention<arch>(q, k, v, got, softmax{}, layout, opt);
    opt.lse.reset();
    const auto want = reference::attention(q, k, v, softmax{}, explicit_mask, opt);
    ATTN_EXPECT_CLOSE(got, want.out, tolerance);
    idx bad = 0;
    for (idx e = 0; e < lse.size(); ++e) {
      const double w = want.lse.data()[e], g = static_cast<double>(lse.data()[e]);
      bad += !(std::isinf(w) ? g == w : std::abs(g - w) <= tolerance * std::max(1.0, std::abs(w)));
    }
    EXPECT_EQ(bad, 0) << "LSE differs from the masked reference";
    attention<arch>(q, k, v, via_mask, softmax{}, explicit_mask, opt);
  } else {
    attention<arch>(q, k, v, got, sigmoid{}, layout, opt);
    ATTN_EXPECT_CLOSE(got, reference::attention(q, k, v, sigmoid{}, explicit_mask, opt).out,
                      tolerance);
    attention<arch>(q, k, v, via_mask, sigmoid{}, explicit_mask, opt);
  }
  ATTN_EXPECT_CLOSE(got, via_mask, 1e-5);
}

}  // namespace blocks_property
}  // namespace attn::property

ATTN_PROPERTY_FAMILY(blocks, attn::property::blocks_property::run_case, 2000, 200);
