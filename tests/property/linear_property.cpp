// Property family "linear": linear attention's three forms agree — the chunked causal form (any
// chunk length), the recurrent form through linear_attention_step (random step sizes, from a
// prefilled state) and the reference recurrence — and the parallel (non-causal) form equals the
// reference; feature maps elu1 / relu, decays, unnormalised output, GQA, threads.
#include <attn/reference/linear.hpp>

#include "property/harness.hpp"

namespace attn::property {
namespace linear_property {

constexpr double tolerance = 3e-5;

/// |got − want| ≤ tol·error_scale (the reference's own magnitude of the terms summed).
idx outside(const tensor& got, const reference::tensor4d& want, const reference::tensor4d& scale,
            double tol) {
  idx bad = 0;
  for (idx n = 0; n < got.size(); ++n) {
    const double g = static_cast<double>(got.data()[n]), w = want.data()[n];
    bad += !(std::abs(g - w) <= tol * scale.data()[n] + 1e-30);
  }
  return bad;
}

tensor slice_seq(const tensor& x, idx t0, idx n) {
  const Eigen::array<idx, 4> off{0, t0, 0, 0};
  const Eigen::array<idx, 4> ext{x.dimension(0), n, x.dimension(2), x.dimension(3)};
  return x.slice(off, ext);
}

template <class Map>
void check(draw& d, const case_context& ctx, const std::string& text, const Map& map,
           const tensor& q, const tensor& k, const tensor& v, linear::options opt) {
  const idx B = q.dimension(0), N = q.dimension(1), H = q.dimension(2), D = q.dimension(3);
  const idx E = v.dimension(3);
  if (d.chance(0.2)) {  // the parallel form: no decay
    opt.decay = {};
    ATTN_PROPERTY_TRACE(ctx, text + " dense");
    tensor out(B, N, H, E);
    out.setConstant(std::numeric_limits<float>::quiet_NaN());
    linear_attention<arch>(q, k, v, out, map, dense{}, opt);
    const auto want = reference::linear_attention(q, k, v, map, dense{}, opt);
    EXPECT_EQ(outside(out, want.out, want.error_scale, tolerance), 0) << "parallel vs reference";
    return;
  }
  ATTN_PROPERTY_TRACE(ctx, text + " causal");
  tensor chunked(B, N, H, E), recurrent(B, N, H, E);
  chunked.setConstant(std::numeric_limits<float>::quiet_NaN());
  recurrent.setConstant(std::numeric_limits<float>::quiet_NaN());
  linear_attention<arch>(q, k, v, chunked, map, causal{}, opt);

  // Recurrent: a chunked prefill of the first p tokens into a state, then steps.
  linear::state st(B, H, D, E);
  const idx p = d.uniform(0, N);
  idx t0 = 0;
  std::ostringstream steps;
  steps << "prefill=" << p << " steps=";
  if (p > 0) {
    tensor o(B, p, H, E);
    linear_attention<arch>(slice_seq(q, 0, p), slice_seq(k, 0, p), slice_seq(v, 0, p), o, map,
                           causal{}, st, opt);
    recurrent.slice(Eigen::array<idx, 4>{0, 0, 0, 0}, Eigen::array<idx, 4>{B, p, H, E}) = o;
    t0 = p;
  }
  while (t0 < N) {
    const idx n = std::min(N - t0, d.pick<idx>({1, 1, 2, 3, 7}));
    steps << n << ",";
    tensor o(B, n, H, E);
    linear_attention_step<arch>(slice_seq(q, t0, n), slice_seq(k, t0, n), slice_seq(v, t0, n), o,
                                map, st, opt);
    recurrent.slice(Eigen::array<idx, 4>{0, t0, 0, 0}, Eigen::array<idx, 4>{B, n, H, E}) = o;
    t0 += n;
  }
  SCOPED_TRACE(steps.str());
  const auto want = reference::linear_recurrence(q, k, v, map, opt);
  EXPECT_EQ(outside(chunked, want.out, want.error_scale, tolerance), 0) << "chunked vs reference";
  EXPECT_EQ(outside(recurrent, want.out, want.error_scale, tolerance), 0)
      << "recurrent vs reference";
  EXPECT_EQ(outside(recurrent, reference::tensor4d(chunked.cast<double>()), want.error_scale,
                    2 * tolerance),
            0)
      << "chunked vs recurrent";
  // The state after the last token is the reference's.
  idx bad = 0;
  for (idx n = 0; n < st.kv.size(); ++n)
    bad +=
        !(std::abs(static_cast<double>(st.kv.data()[n]) - want.kv[static_cast<std::size_t>(n)]) <=
          1e-4 * std::max(1.0, std::abs(want.kv[static_cast<std::size_t>(n)])));
  EXPECT_EQ(bad, 0) << "final state.kv differs from the reference";
}

void run_case(const case_context& ctx) {
  draw d(ctx.seed());
  const idx B = d.pick<idx>({1, 1, 2, 3});
  const idx N = d.length(150);
  const auto [hq, hkv] = d.heads();
  const idx D = d.chance(0.8) ? d.pick<idx>({8, 16, 24, 32}) : d.head_dim();
  const idx E = d.chance(0.7) ? D : d.pick<idx>({8, 16, 40, 64});
  const tensor q = test::random_tensor(d.rng(), B, N, hq, D);
  const tensor k = test::random_tensor(d.rng(), B, N, hkv, D);
  const tensor v = test::random_tensor(d.rng(), B, N, hkv, E);
  linear::options opt;
  opt.threads = d.threads();
  opt.chunk = d.pick<idx>({1, 2, 5, 16, 32, 33, 64});
  std::vector<float> decay;
  std::ostringstream t;
  t << "linear " << shape_text(q, k, v) << " threads=" << opt.threads << " chunk=" << opt.chunk;
  if (d.chance(0.4)) {
    decay = d.chance(0.5) ? linear::retnet_decay(hq) : linear::lightning_decay(hq);
    opt.decay = decay;
    t << " decay";
  }
  if (d.chance(0.25)) {
    opt.normalise = false;
    t << " unnormalised";
  }
  if (d.chance(0.2)) {
    opt.scale = static_cast<float>(d.real(0.1, 1.0));
    t << " scale=" << opt.scale;
  }
  if (d.chance(0.6))
    check(d, ctx, t.str() + " map=elu1", linear::elu1{}, q, k, v, opt);
  else
    check(d, ctx, t.str() + " map=relu", linear::relu{}, q, k, v, opt);
}

}  // namespace linear_property
}  // namespace attn::property

ATTN_PROPERTY_FAMILY(linear, attn::property::linear_property::run_case, 2000, 200);
