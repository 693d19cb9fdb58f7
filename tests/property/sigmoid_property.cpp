// Property family "sigmoid": attn::attention with attn::sigmoid (β default / scalar / per head,
// soft-cap) over every pattern kind, lengths, views, threads and both loops, against
// reference::attention; and, for dense cases, against the elementwise formula
// out_i = Σ_j σ(scale·q_i·k_j + β)·v_j computed here directly.
#include <attn/reference/reference.hpp>

#include "property/problem.hpp"

namespace attn::property {
namespace sigmoid_property {

constexpr double tolerance = 3e-5;

/// The elementwise formula, dense, in double: no pattern, no lengths, no soft-cap.
reference::tensor4d formula(const tensor& q, const tensor& k, const tensor& v, double scale,
                            const std::vector<double>& beta) {
  const idx B = q.dimension(0), N = q.dimension(1), H = q.dimension(2), D = q.dimension(3);
  const idx M = k.dimension(1), G = H / std::max<idx>(k.dimension(2), 1), E = v.dimension(3);
  reference::tensor4d out(B, N, H, E);
  out.setZero();
  for (idx b = 0; b < B; ++b)
    for (idx i = 0; i < N; ++i)
      for (idx h = 0; h < H; ++h)
        for (idx j = 0; j < M; ++j) {
          double s = 0.0;
          for (idx e = 0; e < D; ++e)
            s += static_cast<double>(q(b, i, h, e)) * static_cast<double>(k(b, j, h / G, e));
          const double w = 1.0 / (1.0 + std::exp(-(scale * s + beta[static_cast<std::size_t>(h)])));
          for (idx e = 0; e < E; ++e) out(b, i, h, e) += w * static_cast<double>(v(b, j, h / G, e));
        }
  return out;
}

void run_case(const case_context& ctx) {
  draw d(ctx.seed());
  attention_case c = draw_attention_case(d);
  sigmoid score;
  std::vector<float> head_bias;
  std::ostringstream t;
  const idx H = c.q.dimension(2);
  const int beta_kind = static_cast<int>(d.uniform(0, 2));
  if (beta_kind == 1) {
    score.bias = static_cast<float>(d.real(-6.0, 2.0));
    t << " bias=" << *score.bias;
  } else if (beta_kind == 2) {
    for (idx h = 0; h < H; ++h) head_bias.push_back(static_cast<float>(d.real(-6.0, 2.0)));
    score.head_bias = head_bias;
    t << " head_bias";
  }
  if (d.chance(0.2)) {
    score.softcap = static_cast<float>(d.real(2.0, 50.0));
    t << " softcap=" << score.softcap;
  }

  with_random_pattern(d, c, [&](const auto& pattern, const std::string& name) {
    ATTN_PROPERTY_TRACE(ctx, "sigmoid " + c.text + t.str() + " pattern=" + name);
    attention<arch>(c.qv(), c.kv(), c.vv(), c.out(), score, pattern, c.opt);
    const tensor out = c.copy_out();
    const reference::result want = reference::attention(c.q, c.k, c.v, score, pattern, c.opt);
    // Sigmoid weights do not sum to one: a row's output grows with its number of keys.
    const double keys = static_cast<double>(std::max<idx>(c.k.dimension(1), 1));
    ATTN_EXPECT_CLOSE(out, want.out, tolerance * std::max(1.0, keys / 16.0));
    using P = std::remove_cvref_t<decltype(pattern)>;
    if constexpr (std::is_same_v<P, dense>) {
      if (score.softcap == 0.0f && c.key_lengths.empty() && c.query_lengths.empty() &&
          c.k.dimension(1) > 0) {
        std::vector<double> beta;
        for (idx h = 0; h < H; ++h)
          beta.push_back(score.bias ? static_cast<double>(*score.bias)
                         : !head_bias.empty()
                             ? static_cast<double>(head_bias[static_cast<std::size_t>(h)])
                             : -std::log(static_cast<double>(c.k.dimension(1))));
        const double scale =
            c.opt.scale ? static_cast<double>(*c.opt.scale)
                        : 1.0 / std::sqrt(static_cast<double>(std::max<idx>(c.q.dimension(3), 1)));
        ATTN_EXPECT_CLOSE(out, formula(c.q, c.k, c.v, scale, beta),
                          tolerance * std::max(1.0, keys / 16.0));
      }
    }
  });
}

}  // namespace sigmoid_property
}  // namespace attn::property

ATTN_PROPERTY_FAMILY(sigmoid, attn::property::sigmoid_property::run_case, 3000, 300);
