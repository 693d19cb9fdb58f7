// Property family "neighborhood": attn::neighborhood<K> (K = 1, 2, 3; kernel, dilation, stride,
// causal per dimension, drawn within their valid ranges) on rank-(3+K) grids, softmax with LSE
// and sigmoid, against reference::grid_attention; a full non-causal kernel equals dense
// attention over the flattened grid.
#include <attn/reference/neighborhood.hpp>

#include "property/harness.hpp"

namespace attn::property {
namespace neighborhood_property {

constexpr double tolerance = 3e-5;

template <int R>
using grid = Eigen::Tensor<float, R, Eigen::RowMajor>;

template <int R>
grid<R> random_grid(draw& d, const std::array<idx, R>& dims) {
  grid<R> t(dims);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (idx n = 0; n < t.size(); ++n) t.data()[n] = u(d.rng());
  return t;
}

template <int K>
void run_rank(draw& d, const case_context& ctx) {
  constexpr int R = K + 3;
  const idx B = d.pick<idx>({1, 1, 2});
  const auto [hq, hkv] = d.heads();
  const idx D = d.chance(0.8) ? d.pick<idx>({8, 16, 24, 40}) : d.head_dim();
  const idx E = d.chance(0.7) ? D : d.pick<idx>({8, 24});
  neighborhood<K> nb;
  std::array<idx, K> x{};
  std::ostringstream t;
  t << "neighborhood<" << K << "> B=" << B << " Hq=" << hq << " Hkv=" << hkv << " D=" << D
    << " Dv=" << E;
  const idx max_extent = K == 1 ? 130 : K == 2 ? 14 : 6;
  for (std::size_t i = 0; i < K; ++i) {
    x[i] = d.uniform(2, max_extent);
    nb.dilation[i] = d.chance(0.6) ? 1 : d.uniform(1, x[i] / 2);
    nb.kernel[i] = d.uniform(2, x[i] / nb.dilation[i]);
    nb.stride[i] = d.chance(0.6) ? 1 : d.uniform(1, nb.kernel[i]);
    nb.causal[i] = d.chance(0.3);
    t << " [extent=" << x[i] << " kernel=" << nb.kernel[i] << " dilation=" << nb.dilation[i]
      << " stride=" << nb.stride[i] << (nb.causal[i] ? " causal" : "") << "]";
  }
  auto dims = [&](idx heads, idx dim) {
    std::array<idx, R> r{};
    r[0] = B;
    for (std::size_t i = 0; i < K; ++i) r[i + 1] = x[i];
    r[K + 1] = heads;
    r[K + 2] = dim;
    return r;
  };
  const grid<R> q = random_grid<R>(d, dims(hq, D));
  const grid<R> k = random_grid<R>(d, dims(hkv, D));
  const grid<R> v = random_grid<R>(d, dims(hkv, E));
  grid<R> out(dims(hq, E));
  out.setConstant(std::numeric_limits<float>::quiet_NaN());
  idx tokens = 1;
  for (const idx e : x) tokens *= e;
  options opt;
  opt.threads = d.threads();
  t << " threads=" << opt.threads;

  if (d.chance(0.75)) {
    ATTN_PROPERTY_TRACE(ctx, t.str() + " softmax");
    lse_tensor lse(B, hq, tokens);
    lse.setConstant(std::numeric_limits<float>::quiet_NaN());
    options with_lse = opt;
    with_lse.lse = lse_map(lse.data(), lse.dimensions());
    attention<arch>(q, k, v, out, softmax{}, nb, with_lse);
    const auto want = reference::grid_attention(q, k, v, softmax{}, nb, opt);
    const auto got = tensor4_map<float>(out.data(), B, tokens, hq, E);
    ATTN_EXPECT_CLOSE(got, want.out, tolerance);
    idx bad = 0;
    for (idx n = 0; n < lse.size(); ++n)
      bad += !(std::abs(static_cast<double>(lse.data()[n]) - want.lse.data()[n]) <=
               tolerance * std::max(1.0, std::abs(want.lse.data()[n])));
    EXPECT_EQ(bad, 0) << "LSE differs from the reference";
    bool full = true;
    for (std::size_t i = 0; i < K; ++i)
      full = full && nb.kernel[i] == x[i] && !nb.causal[i] && nb.dilation[i] == 1;
    if (full) {
      const auto flat = [&](const grid<R>& g) {
        return tensor4<float>(tensor4_map<float>(const_cast<float*>(g.data()), B, tokens,
                                                 g.dimension(K + 1), g.dimension(K + 2)));
      };
      ATTN_EXPECT_CLOSE(got, reference::attention(flat(q), flat(k), flat(v)).out, tolerance);
    }
  } else {
    ATTN_PROPERTY_TRACE(ctx, t.str() + " sigmoid");
    attention<arch>(q, k, v, out, sigmoid{}, nb, opt);
    const auto want = reference::grid_attention(q, k, v, sigmoid{}, nb, opt);
    ATTN_EXPECT_CLOSE(tensor4_map<float>(out.data(), B, tokens, hq, E), want.out, tolerance);
  }
}

void run_case(const case_context& ctx) {
  draw d(ctx.seed());
  switch (d.uniform(1, 3)) {
    case 1:
      run_rank<1>(d, ctx);
      break;
    case 2:
      run_rank<2>(d, ctx);
      break;
    default:
      run_rank<3>(d, ctx);
      break;
  }
}

}  // namespace neighborhood_property
}  // namespace attn::property

ATTN_PROPERTY_FAMILY(neighborhood, attn::property::neighborhood_property::run_case, 1500, 150);
