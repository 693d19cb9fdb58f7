// Grid patterns (pattern/neighborhood.hpp, pattern/halo.hpp, attn/neighborhood.hpp): the
// per-dimension windows against the definitions of reference/neighborhood.hpp and hand-worked
// cases, tile classification against brute force, the fused kernel on rank-(3+K) tensors
// against the double reference (softmax with LSE and sigmoid; dilation, stride, even kernels,
// causal dimensions, extents that are not multiples of the tiles, GQA, Dv ≠ D, maps), additional
// keys merged by LSE, and the properties: a full non-causal kernel is dense attention, causal
// 1-D with k = L is attn::causal.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/neighborhood.hpp>
#include <attn/reference/neighborhood.hpp>

#include "support/kernel_check.hpp"

namespace neighborhood_test {

using attn::idx;
using attn::test::arch;
using attn::test::max_abs_diff;
using attn::test::tolerance;

template <int R>
using tensor = Eigen::Tensor<float, R, Eigen::RowMajor>;

template <int R>
tensor<R> random_grid(std::mt19937& rng, const std::array<idx, R>& dims) {
  tensor<R> t(dims);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (idx n = 0; n < t.size(); ++n) t.data()[n] = u(rng);
  return t;
}

/// q, k, v of a grid problem: batch 2, extents X, Hq = 4 over Hkv, D, Dv.
template <int K>
struct grid_problem {
  static constexpr int R = K + 3;
  tensor<R> q, k, v;
  grid_problem(const std::array<idx, K>& x, unsigned seed, idx heads_kv = 2, idx dv = 8,
               idx d = 16) {
    std::mt19937 rng(seed);
    auto dims = [&](idx heads, idx dim) {
      std::array<idx, R> r{};
      r[0] = 2;
      for (std::size_t i = 0; i < K; ++i) r[i + 1] = x[i];
      r[K + 1] = heads;
      r[K + 2] = dim;
      return r;
    };
    q = random_grid<R>(rng, dims(4, d));
    k = random_grid<R>(rng, dims(heads_kv, d));
    v = random_grid<R>(rng, dims(heads_kv, dv));
  }
  tensor<R> output() const {
    std::array<idx, R> d{};
    for (int i = 0; i < R; ++i) d[static_cast<std::size_t>(i)] = q.dimension(i);
    d[R - 1] = v.dimension(R - 1);
    tensor<R> o(d);
    o.setConstant(std::numeric_limits<float>::quiet_NaN());
    return o;
  }
};

/// A rank-(3+K) tensor as a rank-4 copy [batch, tokens, heads, dim].
template <class X>
attn::tensor4<float> flat(const X& x) {
  return attn::reference::detail::flat(x);
}

/// Kernel (softmax with LSE, then sigmoid) against the reference on a grid problem.
template <int K, class P>
void expect_grid_matches(const grid_problem<K>& p, const P& pattern) {
  {
    SCOPED_TRACE("softmax");
    auto out = p.output();
    const idx n = p.q.size() / (p.q.dimension(0) * p.q.dimension(K + 1) * p.q.dimension(K + 2));
    attn::lse_tensor lse(p.q.dimension(0), p.q.dimension(K + 1), n);
    attn::options opt;
    opt.lse = attn::lse_map(lse.data(), lse.dimensions());
    attn::attention<arch>(p.q, p.k, p.v, out, attn::softmax{}, pattern, opt);
    const auto want = attn::reference::grid_attention(p.q, p.k, p.v, attn::softmax{}, pattern);
    attn::test::expect_close({flat(out), lse}, want);
  }
  {
    // Without an LSE a dilated grid runs as one problem per dilation group (the LSE above keeps
    // the direct path): both must agree with the reference.
    SCOPED_TRACE("softmax without LSE");
    auto out = p.output();
    attn::options opt;
    opt.threads = 2;
    attn::attention<arch>(p.q, p.k, p.v, out, attn::softmax{.softcap = 4.0f}, pattern, opt);
    const auto want =
        attn::reference::grid_attention(p.q, p.k, p.v, attn::softmax{.softcap = 4.0f}, pattern);
    EXPECT_LE(max_abs_diff(flat(out), want.out), tolerance);
  }
  {
    SCOPED_TRACE("sigmoid");  // its default bias −ln N must count every key, not a group's
    auto out = p.output();
    attn::attention<arch>(p.q, p.k, p.v, out, attn::sigmoid{}, pattern);
    const auto want = attn::reference::grid_attention(p.q, p.k, p.v, attn::sigmoid{}, pattern);
    EXPECT_LE(max_abs_diff(flat(out), want.out), tolerance);
  }
  {
    // Lengths cut the flattened tokens mid-row: the grid loop (2D/3D) drops keys past the key
    // length from its boxes and writes zeros (LSE −inf) past the query length.
    SCOPED_TRACE("key and query lengths");
    const idx n = p.q.size() / (p.q.dimension(0) * p.q.dimension(K + 1) * p.q.dimension(K + 2));
    const std::vector<std::int32_t> keys{static_cast<std::int32_t>(n * 2 / 3),
                                         static_cast<std::int32_t>(n - 1)};
    const std::vector<std::int32_t> queries{static_cast<std::int32_t>(n - 3),
                                            static_cast<std::int32_t>(n * 3 / 4)};
    auto out = p.output();
    attn::lse_tensor lse(p.q.dimension(0), p.q.dimension(K + 1), n);
    attn::options opt;
    opt.key_lengths = keys;
    opt.query_lengths = queries;
    opt.lse = attn::lse_map(lse.data(), lse.dimensions());
    attn::attention<arch>(p.q, p.k, p.v, out, attn::softmax{}, pattern, opt);
    opt.lse.reset();
    const auto want = attn::reference::grid_attention(p.q, p.k, p.v, attn::softmax{}, pattern, opt);
    attn::test::expect_close({flat(out), lse}, want);
  }
}

/// The pattern prepared for a grid of extents x (as the entry point does).
template <class P, std::size_t K>
P prepared(P p, const std::array<idx, K>& x) {
  p.extent = x;
  attn::detail::problem_shape s;
  s.seq_q = s.seq_k = 1;
  for (idx e : x) s.seq_q = s.seq_k = s.seq_q * e;
  p.check(s);
  p.prepare(s);
  return p;
}

// ---- windows ------------------------------------------------------------------------------------

TEST(NeighborhoodWindows, HandWorkedCases) {
  struct example {
    idx x, extent, kernel, dilation, stride;
    bool causal;
    idx first, last;
    const char* why;
  };
  const example examples[] = {
      {0, 5, 3, 1, 1, false, 0, 2, "NAT: at the border the window shifts inwards, k keys"},
      {1, 5, 3, 1, 1, false, 0, 2, "NAT: k = 3 on L = 5"},
      {2, 5, 3, 1, 1, false, 1, 3, "NAT: centred"},
      {4, 5, 3, 1, 1, false, 2, 4, "NAT: the right border"},
      {4, 8, 4, 1, 1, false, 2, 5, "an even kernel has its extra key on the left"},
      {0, 10, 3, 3, 1, false, 0, 6, "dilation 3: group 0 is {0, 3, 6, 9}"},
      {9, 10, 3, 3, 1, false, 3, 9, "dilation 3: the group's right border"},
      {5, 10, 3, 3, 1, false, 2, 8, "group 2 is {2, 5, 8}: all of it"},
      {0, 8, 3, 1, 2, false, 0, 2, "stride 2: queries 0, 1 follow leader 1"},
      {3, 8, 3, 1, 2, false, 2, 4, "stride 2: queries 2, 3 follow leader 3"},
      {2, 8, 3, 1, 2, true, 1, 2, "causal stride 2: leader 3, but nothing after 2"},
      {3, 8, 3, 1, 2, true, 1, 3, "causal stride 2: the leader itself"},
  };
  for (const example& e : examples) {
    const auto w = attn::reference::neighborhood_window(e.x, e.extent, e.kernel, e.dilation,
                                                        e.stride, e.causal);
    EXPECT_EQ(w.first, e.first) << e.why;
    EXPECT_EQ(w.last, e.last) << e.why;
  }
}

TEST(NeighborhoodWindows, TablesMatchTheDefinition) {
  for (const idx L : {idx{2}, idx{7}, idx{10}, idx{33}})
    for (idx k = 2; k <= L; ++k)
      for (idx d = 1; k * d <= L; ++d)
        for (idx s = 1; s <= k; ++s)
          for (const bool causal : {false, true}) {
            SCOPED_TRACE("L=" + std::to_string(L) + " k=" + std::to_string(k) + " d=" +
                         std::to_string(d) + " s=" + std::to_string(s) + (causal ? " causal" : ""));
            const auto p = prepared(
                attn::neighborhood<1>{
                    .kernel = {k}, .dilation = {d}, .stride = {s}, .causal = {causal}},
                std::array<idx, 1>{L});
            const attn::detail::grid_axis& ax = p.tables.axes[0];
            for (idx x = 0; x < L; ++x) {
              const auto w = attn::reference::neighborhood_window(x, L, k, d, s, causal);
              if (causal) {
                ASSERT_GE(w.size(), 1);
                ASSERT_LE(w.size(), k);
                ASSERT_EQ(w.last, x);
              } else {
                ASSERT_EQ(w.size(), k) << "x=" << x;
              }
              for (idx y = 0; y < L; ++y) {
                ASSERT_EQ(ax.sees(x, y), w.contains(y)) << "x=" << x << " y=" << y;
                // The inverse table: the queries seeing y.
                const bool in_inverse = (x - y) % d == 0 &&
                                        x >= ax.qlo[static_cast<std::size_t>(y)] &&
                                        x <= ax.qhi[static_cast<std::size_t>(y)];
                ASSERT_EQ(in_inverse, w.contains(y)) << "x=" << x << " y=" << y;
              }
            }
          }
}

// ---- tiles --------------------------------------------------------------------------------------

template <class P>
void expect_tiles_agree(const P& p, idx n) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<idx> pos(0, n - 1);
  const attn::head_ctx c{};
  for (int trial = 0; trial < 300; ++trial) {
    idx q0 = pos(rng), k0 = pos(rng);
    if (trial % 2 == 0) {  // tile-aligned, as the kernel asks
      q0 = q0 / 64 * 64;
      k0 = k0 / 64 * 64;
    }
    const idx q1 = std::min(n, q0 + 1 + pos(rng) % 64), k1 = std::min(n, k0 + 1 + pos(rng) % 64);
    bool any = false, all = true;
    std::uint64_t rows[64];
    p.visible_rows(c, q0, q1, k0, k1, rows);
    for (idx i = q0; i < q1; ++i)
      for (idx j = k0; j < k1; ++j) {
        const bool v = attn::reference::detail::logit_term(p, {}, i, j) == 0.0;
        ASSERT_EQ(p.visible(c, i, j), v) << "i=" << i << " j=" << j;
        ASSERT_EQ(((rows[j - k0] >> (i - q0)) & 1u) != 0, v) << "i=" << i << " j=" << j;
        any |= v;
        all &= v;
      }
    const attn::tile_kind kind = p.classify(c, q0, q1, k0, k1);
    if (kind == attn::tile_kind::none) {
      EXPECT_FALSE(any) << q0 << " " << q1 << " " << k0 << " " << k1;
    }
    if (kind == attn::tile_kind::full) {
      EXPECT_TRUE(all) << q0 << " " << q1 << " " << k0 << " " << k1;
    }
    const attn::key_span keys = p.keys(c, q0, q1);
    for (idx i = q0; i < q1; ++i)
      for (idx j = 0; j < n; ++j)
        if (p.visible(c, i, j)) {
          ASSERT_GE(j, keys.begin);
          ASSERT_LT(j, keys.end);
        }
  }
}

TEST(NeighborhoodTiles, ClassifyKeysAndRowsAgreeWithTheDefinition) {
  expect_tiles_agree(prepared(attn::neighborhood<2>{.kernel = {5, 4}, .dilation = {1, 2}},
                              std::array<idx, 2>{13, 19}),
                     13 * 19);
  expect_tiles_agree(
      prepared(attn::neighborhood<2>{.kernel = {7, 7}, .stride = {2, 3}, .causal = {true, false}},
               std::array<idx, 2>{16, 64}),
      16 * 64);
  expect_tiles_agree(prepared(attn::neighborhood<3>{.kernel = {2, 3, 3},
                                                    .dilation = {2, 1, 3},
                                                    .causal = {false, true, false}},
                              std::array<idx, 3>{5, 7, 11}),
                     5 * 7 * 11);
  expect_tiles_agree(prepared(attn::neighborhood<1>{.kernel = {33}, .dilation = {3}, .stride = {4}},
                              std::array<idx, 1>{300}),
                     300);
  expect_tiles_agree(
      prepared(attn::blocked_local<2>{.block = {4, 8}, .halo = {1, 3}}, std::array<idx, 2>{10, 30}),
      300);
}

TEST(NeighborhoodTiles, InteriorTilesAreFullOrNone) {
  // 1-D, k = 257: a query tile's key tiles well inside its windows run without masks.
  const auto p = prepared(attn::neighborhood<1>{.kernel = {257}}, std::array<idx, 1>{4096});
  const attn::head_ctx c{};
  EXPECT_EQ(p.classify(c, 2048, 2112, 2048, 2112), attn::tile_kind::full);
  EXPECT_EQ(p.classify(c, 2048, 2112, 0, 64), attn::tile_kind::none);
  EXPECT_EQ(p.classify(c, 2048, 2112, 1920, 1984), attn::tile_kind::partial);
}

// ---- the kernel ---------------------------------------------------------------------------------

TEST(NeighborhoodKernel, TwoDimensional) {
  const grid_problem<2> p({13, 19}, 1);
  expect_grid_matches(p, attn::neighborhood<2>{.kernel = {3, 5}});
  expect_grid_matches(p, attn::neighborhood<2>{.kernel = {4, 6}, .dilation = {3, 2}});
  expect_grid_matches(p, attn::neighborhood<2>{.kernel = {5, 7}, .stride = {2, 7}});
  expect_grid_matches(
      p, attn::neighborhood<2>{
             .kernel = {3, 4}, .dilation = {2, 3}, .stride = {3, 2}, .causal = {true, false}});
  expect_grid_matches(p, attn::neighborhood<2>{.kernel = {6, 5}, .causal = {true, true}});
}

TEST(NeighborhoodKernel, OneAndThreeDimensional) {
  const grid_problem<1> p1({150}, 2, 4, 72, 72);
  expect_grid_matches(p1, attn::neighborhood<1>{.kernel = {17}});
  expect_grid_matches(p1, attn::neighborhood<1>{.kernel = {8}, .dilation = {7}, .stride = {3}});
  expect_grid_matches(p1, attn::neighborhood<1>{.kernel = {64}, .causal = {true}});
  const grid_problem<3> p3({5, 6, 9}, 3, 1, 24, 40);  // MQA, D = 40, Dv = 24
  expect_grid_matches(p3, attn::neighborhood<3>{.kernel = {3, 3, 3}});
  expect_grid_matches(p3, attn::neighborhood<3>{.kernel = {2, 3, 4},
                                                .dilation = {2, 1, 2},
                                                .stride = {1, 3, 2},
                                                .causal = {true, false, true}});
}

TEST(NeighborhoodKernel, PatchesAtEveryBorder) {
  // Extents that are not multiples of the grid loop's patches (8 × 8 on AVX-512), a grid
  // narrower than one patch, and a 3D grid whose patches are clipped in every dimension.
  expect_grid_matches(grid_problem<2>({21, 11}, 6), attn::neighborhood<2>{.kernel = {7, 7}});
  expect_grid_matches(grid_problem<2>({3, 30}, 7), attn::neighborhood<2>{.kernel = {2, 9}});
  expect_grid_matches(grid_problem<3>({3, 10, 9}, 8),
                      attn::neighborhood<3>{.kernel = {3, 5, 3}, .stride = {1, 2, 3}});
}

TEST(NeighborhoodKernel, NonFiniteValuesReachOnlyTheQueriesThatSeeThem) {
  grid_problem<2> p({16, 16}, 9);
  const attn::neighborhood<2> pattern{.kernel = {5, 5}};
  const idx hot = 5 * 16 + 6;  // token (5, 6); batch 0, KV head 1 (query heads 2, 3)
  for (idx e = 0; e < p.v.dimension(4); ++e)
    p.v(0, hot / 16, hot % 16, 1, e) = std::numeric_limits<float>::infinity();
  auto out = p.output();
  attn::attention<arch>(p.q, p.k, p.v, out, attn::softmax{}, pattern);
  grid_problem<2> clean({16, 16}, 9);
  auto want_out = clean.output();
  attn::attention<arch>(clean.q, clean.k, clean.v, want_out, attn::softmax{}, pattern);
  const auto tables = prepared(pattern, std::array<idx, 2>{16, 16}).tables;
  for (idx b = 0; b < 2; ++b)
    for (idx t = 0; t < 256; ++t)
      for (idx h = 0; h < 4; ++h) {
        const bool sees = b == 0 && h >= 2 && tables.visible(t, hot);
        for (idx e = 0; e < p.v.dimension(4); ++e) {
          const float got = out(b, t / 16, t % 16, h, e);
          if (sees)
            EXPECT_FALSE(std::isfinite(got)) << "t=" << t << " h=" << h;
          else
            ASSERT_EQ(got, want_out(b, t / 16, t % 16, h, e)) << "t=" << t << " h=" << h;
        }
      }
}

TEST(NeighborhoodKernel, BlockedLocalHalo) {
  const grid_problem<2> p({12, 20}, 4);
  expect_grid_matches(p, attn::blocked_local<2>{.block = {4, 4}, .halo = {1, 2}});
  expect_grid_matches(p, attn::blocked_local<2>{.block = {5, 8}, .halo = {0, 3}});
}

TEST(NeighborhoodKernel, MapsAndRankFourOneDimensional) {
  // Rank-5 TensorMaps over offset buffers; 1-D on plain rank-4 tensors (extent from N).
  const grid_problem<2> p({9, 10}, 5);
  std::vector<float> qb(static_cast<std::size_t>(p.q.size()) + 1), ob;
  std::copy(p.q.data(), p.q.data() + p.q.size(), qb.begin() + 1);
  Eigen::TensorMap<const tensor<5>> q(qb.data() + 1, p.q.dimensions());
  auto out = p.output();
  ob.assign(static_cast<std::size_t>(out.size()) + 1, 0.0f);
  Eigen::TensorMap<tensor<5>> om(ob.data() + 1, out.dimensions());
  const attn::neighborhood<2> nb{.kernel = {3, 5}, .dilation = {2, 1}};
  attn::attention<arch>(q, p.k, p.v, om, attn::softmax{}, nb);
  const auto want = attn::reference::grid_attention(p.q, p.k, p.v, attn::softmax{}, nb);
  EXPECT_LE(max_abs_diff(flat(om), want.out), tolerance);

  const grid_problem<1> p1({100}, 6);
  auto o1 = p1.output();
  const attn::neighborhood<1> n1{.kernel = {9}, .stride = {2}};
  attn::attention<arch>(p1.q, p1.k, p1.v, o1, attn::softmax{}, n1);
  EXPECT_LE(max_abs_diff(o1, attn::reference::attention(p1.q, p1.k, p1.v, attn::softmax{}, n1).out),
            tolerance);
}

TEST(NeighborhoodKernel, AdditionalKeysMergedExactly) {
  const grid_problem<2> p({7, 11}, 7, 2, 8);
  std::mt19937 rng(8);
  const auto ka = attn::test::random_tensor(rng, 2, 5, 2, 16);
  const auto va = attn::test::random_tensor(rng, 2, 5, 2, 8);
  const attn::neighborhood<2> nb{.kernel = {3, 4}, .causal = {false, true}};
  const auto want = attn::reference::grid_attention(p.q, p.k, p.v, attn::softmax{}, nb, {}, ka, va);
  // With and without an LSE output.
  auto out = p.output();
  attn::lse_tensor lse(2, 4, 77);
  attn::options opt;
  opt.lse = attn::lse_map(lse.data(), lse.dimensions());
  attn::attention<arch>(p.q, p.k, p.v, out, attn::softmax{}, nb, opt, attn::additional_kv{ka, va});
  attn::test::expect_close({flat(out), lse}, want);
  auto plain = p.output();
  attn::attention<arch>(p.q, p.k, p.v, plain, attn::softmax{}, nb, {}, attn::additional_kv{ka, va});
  EXPECT_LE(max_abs_diff(flat(plain), want.out), tolerance);
  // 1-D on rank-4 tensors, 130 keys of which 3 additional, GQA 4:1.
  const grid_problem<1> p1({127}, 11, 1, 16);
  const auto ka1 = attn::test::random_tensor(rng, 2, 3, 1, 16);
  const auto va1 = attn::test::random_tensor(rng, 2, 3, 1, 16);
  const attn::neighborhood<1> n1{.kernel = {20}, .dilation = {3}};
  auto o1 = p1.output();
  attn::attention<arch>(p1.q, p1.k, p1.v, o1, attn::softmax{}, n1, {},
                        attn::additional_kv{ka1, va1});
  EXPECT_LE(
      max_abs_diff(
          o1,
          attn::reference::grid_attention(p1.q, p1.k, p1.v, attn::softmax{}, n1, {}, ka1, va1).out),
      tolerance);
}

// ---- properties ---------------------------------------------------------------------------------

template <class X, class Y>
double max_diff(const X& a, const Y& b) {
  double worst = 0;
  for (idx e = 0; e < a.size(); ++e)
    worst = std::max(worst, static_cast<double>(std::abs(a.data()[e] - b.data()[e])));
  return worst;
}

TEST(NeighborhoodProperties, FullKernelIsDense) {
  const grid_problem<2> p({9, 70}, 9);
  for (const bool softmax : {true, false}) {
    SCOPED_TRACE(softmax ? "softmax" : "sigmoid");
    auto out = p.output();
    attn::tensor4<float> dense(2, 9 * 70, 4, 8);
    const attn::neighborhood<2> nb{.kernel = {9, 70}};
    if (softmax) {
      attn::attention<arch>(p.q, p.k, p.v, out, attn::softmax{}, nb);
      attn::attention<arch>(flat(p.q), flat(p.k), flat(p.v), dense);
    } else {
      attn::attention<arch>(p.q, p.k, p.v, out, attn::sigmoid{}, nb);
      attn::attention<arch>(flat(p.q), flat(p.k), flat(p.v), dense, attn::sigmoid{});
    }
    EXPECT_LE(max_diff(flat(out), dense), 1e-6);
  }
}

TEST(NeighborhoodProperties, CausalFullKernelIsCausal) {
  const grid_problem<1> p({200}, 10);
  auto out = p.output();
  auto causal = p.output();
  attn::attention<arch>(p.q, p.k, p.v, out, attn::softmax{},
                        attn::neighborhood<1>{.kernel = {200}, .causal = {true}});
  attn::attention<arch>(p.q, p.k, p.v, causal, attn::softmax{}, attn::causal{});
  EXPECT_LE(max_diff(out, causal), 1e-6);
}

}  // namespace neighborhood_test
