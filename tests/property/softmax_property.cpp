// Property family "softmax": attn::attention with attn::softmax (soft-cap, sinks) over every
// pattern kind, lengths, views, threads and both loops, against reference::attention; and the
// rows of the attention matrix sum to one: with V = 1 every row that sees a key outputs 1 (less
// the sink's share e^{σ − LSE}), every row that sees none outputs 0 with LSE = −inf.
#include <attn/reference/reference.hpp>

#include "property/problem.hpp"

namespace attn::property {
namespace softmax_property {

constexpr double tolerance = 3e-5;

void run_case(const case_context& ctx) {
  draw d(ctx.seed());
  attention_case c = draw_attention_case(d);
  softmax score;
  std::vector<float> sinks;
  std::ostringstream t;
  if (d.chance(0.2)) {
    score.softcap = static_cast<float>(d.real(2.0, 50.0));
    t << " softcap=" << score.softcap;
  }
  if (d.chance(0.2)) {
    for (idx h = 0; h < c.q.dimension(2); ++h)
      sinks.push_back(static_cast<float>(d.real(-3.0, 3.0)));
    score.sinks = sinks;
    t << " sinks";
  }
  const idx B = c.q.dimension(0), H = c.q.dimension(2), N = c.q.dimension(1);

  with_random_pattern(d, c, [&](const auto& pattern, const std::string& name) {
    ATTN_PROPERTY_TRACE(ctx, "softmax " + c.text + t.str() + " pattern=" + name);
    lse_tensor lse(B, H, N);
    lse.setConstant(std::numeric_limits<float>::quiet_NaN());
    options opt = c.opt;
    opt.lse = lse_map(lse.data(), lse.dimensions());
    attention<arch>(c.qv(), c.kv(), c.vv(), c.out(), score, pattern, opt);
    const tensor out = c.copy_out();
    const reference::result want = reference::attention(c.q, c.k, c.v, score, pattern, c.opt);
    ATTN_EXPECT_CLOSE(out, want.out, tolerance);
    EXPECT_EQ(lse_mismatches(lse, want.lse, tolerance), 0) << "LSE differs from the reference";

    // V = 1: every output element is the row's total weight over its keys.
    tensor ones(c.v.dimensions());
    ones.setConstant(1.0f);
    const lse_tensor lse_values = lse;
    attention<arch>(c.qv(), c.kv(), const_tensor4_map<float>(ones.data(), ones.dimensions()),
                    c.out(), score, pattern, opt);
    const tensor sums = c.copy_out();
    idx bad = 0;
    for (idx b = 0; b < B; ++b)
      for (idx i = 0; i < N; ++i)
        for (idx h = 0; h < H; ++h) {
          const double l = static_cast<double>(lse_values(b, h, i));
          double want_sum = 1.0;
          if (std::isinf(l) && l < 0)
            want_sum = 0.0;
          else if (!sinks.empty())
            want_sum = 1.0 - std::exp(static_cast<double>(sinks[static_cast<std::size_t>(h)]) - l);
          for (idx e = 0; e < sums.dimension(3); ++e)
            bad += !(std::abs(static_cast<double>(sums(b, i, h, e)) - want_sum) <= 1e-5);
        }
    EXPECT_EQ(bad, 0) << "rows of the attention matrix do not sum to one (V = 1)";
    EXPECT_EQ(lse_mismatches(lse, want.lse, tolerance), 0) << "LSE changed with V";
  });
}

}  // namespace softmax_property
}  // namespace attn::property

ATTN_PROPERTY_FAMILY(softmax, attn::property::softmax_property::run_case, 6000, 600);
