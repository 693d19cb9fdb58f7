// Block-sparse layouts (pattern/block_sparse.hpp): every generator against its paper's element
// rule written again here, the fused kernel with a layout against the double reference with the
// equivalent explicit mask (softmax and sigmoid, GQA, lengths that are not multiples of the
// block), tile classification against brute force, and the properties that tie layouts to the
// other patterns (all blocks = dense, the causal layout = attn::causal).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>
#include <attn/reference/reference.hpp>

#include "support/kernel_check.hpp"

namespace sparse_test {

using attn::idx;
using attn::test::expect_close;
using attn::test::kernel_result;
using attn::test::make_problem;
using attn::test::problem;
using attn::test::run_kernel;
using mask4 = attn::bool_tensor4;
constexpr float neg_inf = -std::numeric_limits<float>::infinity();
constexpr idx block_sizes[] = {16, 32, 64, 128};

/// The explicit element mask [1, heads, nq, nk] of a rule(h, i, j).
template <class Rule>
mask4 rule_mask(idx heads, idx nq, idx nk, Rule rule) {
  mask4 m(1, heads, nq, nk);
  for (idx h = 0; h < heads; ++h)
    for (idx i = 0; i < nq; ++i)
      for (idx j = 0; j < nk; ++j) m(0, h, i, j) = rule(h, i, j);
  return m;
}

/// Where two masks of the same shape differ, as text ("" if nowhere).
std::string mask_difference(const mask4& got, const mask4& want) {
  if (got.dimensions() != want.dimensions()) return "shapes differ";
  for (idx h = 0; h < want.dimension(1); ++h)
    for (idx i = 0; i < want.dimension(2); ++i)
      for (idx j = 0; j < want.dimension(3); ++j)
        if (got(0, h, i, j) != want(0, h, i, j))
          return "h=" + std::to_string(h) + " i=" + std::to_string(i) + " j=" + std::to_string(j) +
                 ": layout " + (got(0, h, i, j) ? "sees" : "hides");
  return "";
}

idx count(const mask4& m) {
  idx n = 0;
  for (idx e = 0; e < m.size(); ++e) n += m.data()[e];
  return n;
}

/// The layout's element mask is `want`, its density counts the same pairs, and every stored
/// block holds a visible pair (blocks are skipped wherever the rule allows).
void expect_layout_is(const attn::block_layout& layout, const mask4& want) {
  const mask4 got = layout.to_mask();
  ASSERT_EQ(mask_difference(got, want), "");
  EXPECT_DOUBLE_EQ(layout.visible_pairs(), static_cast<double>(count(want)));
  const double all = static_cast<double>(want.size());
  if (all > 0) {
    EXPECT_DOUBLE_EQ(layout.density(), static_cast<double>(count(want)) / all);
  }
  const idx b = layout.block_size();
  for (idx h = 0; h < layout.heads(); ++h)
    for (idx bi = 0; bi < layout.query_blocks(); ++bi) {
      const auto row = layout.row_blocks(h, bi);
      for (std::size_t n = 0; n < row.size(); ++n) {
        bool any = false, all_seen = true;
        for (idx i = bi * b; i < std::min(layout.seq_q(), bi * b + b); ++i)
          for (idx j = row[n] * b; j < std::min(layout.seq_k(), row[n] * b + b); ++j) {
            any |= want(0, h, i, j);
            all_seen &= want(0, h, i, j);
          }
        EXPECT_TRUE(any) << "block (" << bi << ", " << row[n] << ") of head " << h
                         << " is stored but holds no visible pair";
        EXPECT_EQ(layout.block_masked(h, bi, static_cast<idx>(n)), !all_seen)
            << "block (" << bi << ", " << row[n] << ") of head " << h;
      }
    }
}

/// The kernel with the layout against the reference with the explicit mask (and the reference
/// with the layout, which must agree exactly), softmax with LSE and sigmoid.
void expect_kernel_matches(const problem& p, const attn::block_layout& layout, const mask4& want,
                           const attn::options& opt = {}) {
  const attn::mask explicit_mask{want};
  {
    SCOPED_TRACE("softmax");
    const auto ref = attn::reference::attention(p.q, p.k, p.v, attn::softmax{}, explicit_mask, opt);
    const auto via_layout = attn::reference::attention(p.q, p.k, p.v, attn::softmax{}, layout, opt);
    idx differ = 0;
    for (idx e = 0; e < ref.out.size(); ++e)
      differ += via_layout.out.data()[e] != ref.out.data()[e];
    EXPECT_EQ(differ, 0) << "the reference reads the layout and its mask differently";
    expect_close(run_kernel(p, attn::softmax{}, layout, opt), ref);
  }
  {
    SCOPED_TRACE("sigmoid");
    const auto ref = attn::reference::attention(p.q, p.k, p.v, attn::sigmoid{}, explicit_mask, opt);
    expect_close(run_kernel(p, attn::sigmoid{}, layout, opt), ref);
  }
}

/// B = 1, Hq = 4 over Hkv = 2 (grouped-query), D = 16, Dv = 8: small enough for the scalar arch.
problem small_problem(idx n, unsigned seed, idx heads_kv = 2) {
  return make_problem(1, n, n, 4, heads_kv, 16, 8, seed + static_cast<unsigned>(n));
}

std::string describe(idx n, idx block) {
  return "N=" + std::to_string(n) + " block=" + std::to_string(block);
}

// ---- generators: element rules ------------------------------------------------------------------

TEST(SparseLayouts, DenseCausalAndWindow) {
  for (const idx b : block_sizes)
    for (const idx n : {idx{1}, idx{37}, idx{130}, idx{200}}) {
      SCOPED_TRACE(describe(n, b));
      expect_layout_is(attn::dense_layout(n, n, b),
                       rule_mask(1, n, n, [](idx, idx, idx) { return true; }));
      expect_layout_is(attn::causal_layout(n, b),
                       rule_mask(1, n, n, [](idx, idx i, idx j) { return j <= i; }));
      for (const auto& [left, right] : {std::pair<idx, idx>{5, 0}, {20, 7}, {0, 40}, {70, 70}}) {
        SCOPED_TRACE("window " + std::to_string(left) + " " + std::to_string(right));
        expect_layout_is(
            attn::window_layout(n, b, left, right),
            rule_mask(1, n, n, [&](idx, idx i, idx j) { return i - left <= j && j <= i + right; }));
      }
    }
  // Nq ≠ Nk.
  expect_layout_is(attn::dense_layout(70, 150, 32),
                   rule_mask(1, 70, 150, [](idx, idx, idx) { return true; }));
}

TEST(SparseLayouts, SparseTransformerStrided) {
  // Child et al. 2019 §4.2; openai/sparse_attention get_attn_mask('local' / 'strided').
  for (const idx b : block_sizes)
    for (const idx n : {idx{100}, idx{257}})
      for (const idx l : {idx{1}, idx{5}, idx{16}, idx{40}, idx{64}}) {
        SCOPED_TRACE(describe(n, b) + " l=" + std::to_string(l));
        const auto local = [=](idx, idx i, idx j) { return j <= i && i - j < l; };
        const auto strided = [=](idx, idx i, idx j) { return j <= i && (i - j) % l == 0; };
        expect_layout_is(
            attn::strided_layout(n, b, {.stride = l, .part = attn::strided_part::local}),
            rule_mask(1, n, n, local));
        expect_layout_is(
            attn::strided_layout(n, b, {.stride = l, .part = attn::strided_part::strided}),
            rule_mask(1, n, n, strided));
        expect_layout_is(attn::strided_layout(n, b, {.stride = l}),
                         rule_mask(1, n, n, [&](idx h, idx i, idx j) {
                           return local(h, i, j) || strided(h, i, j);
                         }));
      }
}

TEST(SparseLayouts, StridedLocalStoresTheOfficialBlocks) {
  // For l a multiple of b, the official block-sparse 'local' layout: key blocks [bi − l/b, bi].
  const idx n = 512, b = 32, l = 128;
  const auto layout = attn::strided_layout(n, b, {.stride = l, .part = attn::strided_part::local});
  for (idx bi = 0; bi < n / b; ++bi) {
    std::vector<std::int32_t> want;
    for (idx bj = std::max<idx>(bi - l / b, 0); bj <= bi; ++bj)
      want.push_back(static_cast<std::int32_t>(bj));
    const auto row = layout.row_blocks(0, bi);
    EXPECT_EQ(std::vector<std::int32_t>(row.begin(), row.end()), want) << "row " << bi;
  }
}

TEST(SparseLayouts, SparseTransformerFixed) {
  // Child et al. 2019 §4.2, "fixed": same chunk of length l, or one of the c summary positions
  // of head group g = h mod groups, counted from each chunk's end; causal.
  const idx heads = 4;
  for (const idx b : block_sizes)
    for (const idx n : {idx{100}, idx{300}})
      for (const auto& [l, c, groups] : {std::tuple<idx, idx, idx>{64, 16, 1},
                                         {64, 16, 4},
                                         {128, 32, 2},
                                         {100, 7, 3},
                                         {32, 32, 1}}) {
        SCOPED_TRACE(describe(n, b) + " l=" + std::to_string(l) + " c=" + std::to_string(c) +
                     " groups=" + std::to_string(groups));
        const auto layout = attn::fixed_layout(
            n, b, {.chunk = l, .summary = c, .head_groups = groups, .heads = heads});
        EXPECT_EQ(layout.heads(), groups == 1 ? 1 : heads);
        expect_layout_is(layout, rule_mask(layout.heads(), n, n, [&](idx h, idx i, idx j) {
                           if (j > i) return false;
                           const idx g = h % groups;
                           return i / l == j / l || (j % l >= l - (g + 1) * c && j % l < l - g * c);
                         }));
      }
}

TEST(SparseLayouts, FixedWithBlockMultiplesHasOnlyTheCausalDiagonalMasked) {
  // l and c multiples of b: the official layout (layout[:, idx::stride] = 1, the local chunk,
  // causal blocks) with the causal callback on the diagonal blocks only.
  const idx n = 512, b = 32, l = 128, c = 32;
  const auto layout =
      attn::fixed_layout(n, b, {.chunk = l, .summary = c, .head_groups = 2, .heads = 2});
  const idx stride = l / b;
  for (idx h = 0; h < 2; ++h)
    for (idx bi = 0; bi < n / b; ++bi) {
      std::vector<std::int32_t> want;
      for (idx bj = 0; bj <= bi; ++bj) {
        const bool summary = bj % stride == stride - 1 - h;  // vertsize 1, num_verts 2
        if (bj / stride == bi / stride || summary) want.push_back(static_cast<std::int32_t>(bj));
      }
      const auto row = layout.row_blocks(h, bi);
      ASSERT_EQ(std::vector<std::int32_t>(row.begin(), row.end()), want)
          << "head " << h << " row " << bi;
      for (std::size_t e = 0; e < row.size(); ++e)
        EXPECT_EQ(layout.block_masked(h, bi, static_cast<idx>(e)), row[e] == bi);
    }
}

TEST(SparseLayouts, Longformer) {
  // Beltagy et al. 2020 §3.1: w keys each side (dilated by d), global tokens both ways.
  for (const idx b : block_sizes)
    for (const idx n : {idx{100}, idx{300}})
      for (const auto& [w, d] :
           {std::pair<idx, idx>{0, 1}, {3, 1}, {20, 1}, {70, 1}, {5, 3}, {10, 2}, {400, 1}}) {
        for (const std::vector<idx>& global :
             {std::vector<idx>{}, std::vector<idx>{0, 5, 99}, std::vector<idx>{n - 1, 50, 50}}) {
          SCOPED_TRACE(describe(n, b) + " w=" + std::to_string(w) + " d=" + std::to_string(d) +
                       " globals=" + std::to_string(global.size()));
          std::vector<bool> is_global(static_cast<std::size_t>(n), false);
          for (idx g : global) is_global[static_cast<std::size_t>(g)] = true;
          expect_layout_is(
              attn::longformer_layout(n, b, {.window = w, .dilation = d, .global_tokens = global}),
              rule_mask(1, n, n, [&](idx, idx i, idx j) {
                if (is_global[static_cast<std::size_t>(i)] ||
                    is_global[static_cast<std::size_t>(j)])
                  return true;
                const idx delta = std::abs(i - j);
                return delta <= w * d && delta % d == 0;
              }));
        }
      }
}

TEST(SparseLayouts, LongformerWindowSeesTwoWPlusOneKeys) {
  const idx n = 400, w = 30;
  const auto layout = attn::longformer_layout(n, 32, {.window = w});
  const mask4 m = layout.to_mask();
  for (idx i = w; i < n - w; ++i) {
    idx seen = 0;
    for (idx j = 0; j < n; ++j) seen += m(0, 0, i, j);
    ASSERT_EQ(seen, 2 * w + 1) << "i=" << i;
  }
}

/// BigBird's block rule for a drawn layout: the expected block mask given the random blocks the
/// layout chose, after checking that those are r distinct blocks outside the window and globals.
void expect_bigbird(const attn::block_layout& layout, idx n, idx b, idx r) {
  const idx nb = (n + b - 1) / b;
  mask4 want(1, layout.heads(), n, n);
  for (idx h = 0; h < layout.heads(); ++h)
    for (idx bi = 0; bi < nb; ++bi) {
      const auto row = layout.row_blocks(h, bi);
      std::vector<bool> stored(static_cast<std::size_t>(nb), false);
      for (std::int32_t bj : row) stored[static_cast<std::size_t>(bj)] = true;
      const bool global_row = bi == 0 || bi == nb - 1;
      idx random = 0, pool = 0;
      for (idx bj = 0; bj < nb; ++bj) {
        const bool fixed = global_row || bj == 0 || bj == nb - 1 || std::abs(bi - bj) <= 1;
        if (fixed) {
          EXPECT_TRUE(stored[static_cast<std::size_t>(bj)])
              << "h=" << h << " (" << bi << ", " << bj << ")";
        } else {
          ++pool;
          random += stored[static_cast<std::size_t>(bj)];
        }
      }
      if (!global_row) {
        EXPECT_EQ(random, std::min(r, pool)) << "h=" << h << " row " << bi;
      }
      for (idx i = bi * b; i < std::min(n, bi * b + b); ++i)
        for (idx j = 0; j < n; ++j) want(0, h, i, j) = stored[static_cast<std::size_t>(j / b)];
    }
  expect_layout_is(layout, want);
}

TEST(SparseLayouts, BigBird) {
  for (const idx b : block_sizes)
    for (const idx n : {idx{100}, idx{700}, idx{1000}})
      for (const idx r : {idx{0}, idx{1}, idx{3}, idx{50}})
        for (const idx heads : {idx{1}, idx{4}}) {
          SCOPED_TRACE(describe(n, b) + " r=" + std::to_string(r) +
                       " heads=" + std::to_string(heads));
          const auto layout =
              attn::bigbird_layout(n, b, {.random_blocks = r, .seed = 7, .heads = heads});
          EXPECT_EQ(layout.heads(), heads);
          expect_bigbird(layout, n, b, r);
        }
  // The seed decides: equal seeds give equal layouts, different ones (almost surely) not.
  const auto a = attn::bigbird_layout(4096, 64, {.random_blocks = 3, .seed = 1}).to_mask();
  const auto same = attn::bigbird_layout(4096, 64, {.random_blocks = 3, .seed = 1}).to_mask();
  const auto other = attn::bigbird_layout(4096, 64, {.random_blocks = 3, .seed = 2}).to_mask();
  EXPECT_EQ(mask_difference(a, same), "");
  EXPECT_NE(mask_difference(a, other), "");
  // Heads draw independently.
  const auto per_head = attn::bigbird_layout(4096, 64, {.random_blocks = 3, .seed = 1, .heads = 2});
  const auto r0 = per_head.row_blocks(0, 20), r1 = per_head.row_blocks(1, 20);
  EXPECT_NE(std::vector<std::int32_t>(r0.begin(), r0.end()),
            std::vector<std::int32_t>(r1.begin(), r1.end()));
}

TEST(SparseLayouts, FromBlockMaskCsrAndRule) {
  std::mt19937 rng(3);
  std::bernoulli_distribution stored(0.4);
  for (const idx b : block_sizes)
    for (const auto& [nq, nk] : {std::pair<idx, idx>{100, 100}, {70, 150}, {150, 33}})
      for (const idx heads : {idx{1}, idx{4}})
        for (const bool diagonal : {false, true}) {
          SCOPED_TRACE(describe(nq, b) + " Nk=" + std::to_string(nk) +
                       " heads=" + std::to_string(heads) + (diagonal ? " causal diagonal" : ""));
          const idx nbq = (nq + b - 1) / b, nbk = (nk + b - 1) / b;
          attn::bool_tensor3 blocks(heads, nbq, nbk);
          for (idx e = 0; e < blocks.size(); ++e) blocks.data()[e] = stored(rng);
          const mask4 want = rule_mask(heads, nq, nk, [&](idx h, idx i, idx j) {
            return blocks(h, i / b, j / b) && (!diagonal || i / b != j / b || j <= i);
          });
          const auto layout = attn::block_layout::from_block_mask(blocks, b, nq, nk, diagonal);
          expect_layout_is(layout, want);
          // The same through block-CSR and through the element rule.
          std::vector<idx> offsets{0}, columns;
          for (idx h = 0; h < heads; ++h)
            for (idx bi = 0; bi < nbq; ++bi) {
              for (idx bj = 0; bj < nbk; ++bj)
                if (blocks(h, bi, bj)) columns.push_back(bj);
              offsets.push_back(static_cast<idx>(columns.size()));
            }
          EXPECT_EQ(
              mask_difference(
                  attn::block_layout(b, nq, nk, heads, offsets, columns, diagonal).to_mask(), want),
              "");
          EXPECT_EQ(mask_difference(
                        attn::block_layout::from_rule(
                            b, nq, nk, heads, [&](idx h, idx i, idx j) { return want(0, h, i, j); })
                            .to_mask(),
                        want),
                    "");
        }
}

// ---- tiles: classify() and keys() against brute force ---------------------------------------

TEST(SparseLayouts, ClassifyAndKeysAgreeWithVisible) {
  std::mt19937 rng(11);
  const idx n = 200;
  std::vector<attn::block_layout> layouts = {
      attn::causal_layout(n, 16),
      attn::longformer_layout(n, 32, {.window = 9, .dilation = 2}),
      attn::bigbird_layout(n, 16, {.random_blocks = 2, .seed = 5, .heads = 2}),
      attn::strided_layout(n, 64, {.stride = 24}),
      attn::dense_layout(n, n, 128),
      attn::longformer_layout(n, 128, {.window = 40, .dilation = 3}),  // 2-word mask columns
      attn::fixed_layout(n, 32, {.chunk = 64, .summary = 16, .head_groups = 2, .heads = 2})};
  std::uniform_int_distribution<idx> pos(0, n - 1);
  for (const auto& layout : layouts) {
    attn::head_ctx c;
    c.heads = layout.heads();
    c.seq_q = c.seq_k = n;
    for (int trial = 0; trial < 400; ++trial) {
      c.head = trial % layout.heads();
      idx q0 = pos(rng), k0 = pos(rng);
      if (trial % 2 == 0) {  // tile-aligned, as the kernel asks
        q0 = q0 / 64 * 64;
        k0 = k0 / 64 * 64;
      }
      const idx q1 = std::min(n, q0 + 1 + pos(rng) % 64), k1 = std::min(n, k0 + 1 + pos(rng) % 64);
      bool any = false, all = true;
      for (idx i = q0; i < q1; ++i)
        for (idx j = k0; j < k1; ++j) {
          const bool v = layout.visible(c, i, j);
          any |= v;
          all &= v;
        }
      const attn::tile_kind kind = layout.classify(c, q0, q1, k0, k1);
      if (kind == attn::tile_kind::none) {
        EXPECT_FALSE(any) << q0 << " " << q1 << " " << k0 << " " << k1;
      }
      if (kind == attn::tile_kind::full) {
        EXPECT_TRUE(all) << q0 << " " << q1 << " " << k0 << " " << k1;
      }
      // visible_rows(): per key, the bits of the rows that see it — what partial tiles are
      // masked with.
      std::uint64_t rows[64];
      layout.visible_rows(c, q0, q1, k0, k1, rows);
      for (idx j = k0; j < k1; ++j)
        for (idx i = q0; i < q1; ++i)
          ASSERT_EQ(((rows[j - k0] >> (i - q0)) & 1u) != 0, layout.visible(c, i, j))
              << "i=" << i << " j=" << j << " tile " << q0 << " " << q1 << " " << k0 << " " << k1;
      const attn::key_span keys = layout.keys(c, q0, q1);
      for (idx i = q0; i < q1; ++i)
        for (idx j = 0; j < n; ++j)
          if (layout.visible(c, i, j)) {
            ASSERT_GE(j, keys.begin);
            ASSERT_LT(j, keys.end);
          }
    }
    // Exact at block granularity: a tile of whole blocks is none iff nothing is visible, full
    // iff every pair is visible through unmasked blocks.
    const idx b = layout.block_size();
    for (idx bi = 0; bi < layout.query_blocks(); ++bi)
      for (idx bj = 0; bj < layout.key_blocks(); ++bj) {
        c.head = 0;
        const idx q0 = bi * b, q1 = std::min(n, q0 + b), k0 = bj * b, k1 = std::min(n, k0 + b);
        const auto row = layout.row_blocks(0, bi);
        const auto at = std::find(row.begin(), row.end(), static_cast<std::int32_t>(bj));
        const attn::tile_kind want = at == row.end() ? attn::tile_kind::none
                                     : layout.block_masked(0, bi, at - row.begin())
                                         ? attn::tile_kind::partial
                                         : attn::tile_kind::full;
        EXPECT_EQ(layout.classify(c, q0, q1, k0, k1), want) << bi << " " << bj;
      }
  }
}

// ---- the kernel with layouts ------------------------------------------------------------------

TEST(SparseKernel, GeneratorsMatchTheReference) {
  for (const idx b : block_sizes)
    for (const idx n : {idx{77}, idx{200}}) {
      SCOPED_TRACE(describe(n, b));
      const problem p = small_problem(n, 1);
      const std::vector<idx> global = {3, n - 10};
      const std::vector<attn::block_layout> layouts = {
          attn::causal_layout(n, b),
          attn::window_layout(n, b, 13, 4),
          attn::strided_layout(n, b, {.stride = 12}),
          attn::strided_layout(n, b, {.stride = 40, .part = attn::strided_part::strided}),
          attn::fixed_layout(n, b, {.chunk = 64, .summary = 16, .head_groups = 2, .heads = 4}),
          attn::longformer_layout(n, b, {.window = 9, .dilation = 2, .global_tokens = global}),
          attn::longformer_layout(n, b, {.window = 30}),
          attn::bigbird_layout(n, b, {.random_blocks = 1, .seed = 3, .heads = 4}),
      };
      for (std::size_t k = 0; k < layouts.size(); ++k) {
        SCOPED_TRACE("layout " + std::to_string(k));
        expect_kernel_matches(p, layouts[k], layouts[k].to_mask());
      }
    }
}

TEST(SparseKernel, RandomLayouts) {
  std::mt19937 rng(17);
  for (const idx b : block_sizes)
    for (const auto& [nq, nk] : {std::pair<idx, idx>{150, 150}, {70, 190}, {190, 45}}) {
      for (const double density : {0.1, 0.5}) {
        SCOPED_TRACE(describe(nq, b) + " Nk=" + std::to_string(nk) +
                     " density=" + std::to_string(density));
        const problem p = make_problem(2, nq, nk, 4, 1, 24, 16, 9);
        std::bernoulli_distribution stored(density);
        const idx nbq = (nq + b - 1) / b, nbk = (nk + b - 1) / b;
        attn::bool_tensor3 blocks(4, nbq, nbk);
        for (idx e = 0; e < blocks.size(); ++e) blocks.data()[e] = stored(rng);
        const auto layout = attn::block_layout::from_block_mask(blocks, b, nq, nk, true);
        expect_kernel_matches(p, layout, layout.to_mask());
        // An element rule with masks in most blocks.
        std::bernoulli_distribution seen(0.8);
        mask4 m(1, 1, nq, nk);
        for (idx i = 0; i < nq; ++i)
          for (idx j = 0; j < nk; ++j) m(0, 0, i, j) = blocks(0, i / b, j / b) && seen(rng);
        const auto masked = attn::block_layout::from_rule(
            b, nq, nk, 1, [&](idx, idx i, idx j) { return m(0, 0, i, j); });
        expect_kernel_matches(p, masked, m);
      }
    }
}

TEST(SparseKernel, AllBlocksIsDenseAndCausalLayoutIsCausal) {
  for (const idx b : block_sizes)
    for (const idx n : {idx{1}, idx{63}, idx{130}, idx{257}}) {
      SCOPED_TRACE(describe(n, b));
      const problem p = small_problem(n, 2, 1);
      for (const bool softmax : {true, false}) {
        SCOPED_TRACE(softmax ? "softmax" : "sigmoid");
        auto run = [&](const auto& pattern) {
          return softmax ? run_kernel(p, attn::softmax{}, pattern).out
                         : run_kernel(p, attn::sigmoid{}, pattern).out;
        };
        // Full blocks run the same code as dense tiles: the results agree to rounding.
        const auto dense = run(attn::dense{});
        const auto all = run(attn::dense_layout(n, n, b));
        const auto causal = run(attn::causal{});
        const auto causal_layout = run(attn::causal_layout(n, b));
        double worst_dense = 0, worst_causal = 0;
        for (idx e = 0; e < dense.size(); ++e) {
          worst_dense = std::max(worst_dense, double{std::abs(dense.data()[e] - all.data()[e])});
          worst_causal =
              std::max(worst_causal, double{std::abs(causal.data()[e] - causal_layout.data()[e])});
        }
        EXPECT_LE(worst_dense, 1e-6);
        EXPECT_LE(worst_causal, 1e-6);
      }
    }
}

TEST(SparseKernel, ComposesWithOtherPatternsAndLengths) {
  const idx n = 150;
  const problem p = small_problem(n, 4);
  const auto layout = attn::longformer_layout(n, 32, {.window = 20});
  const mask4 m = layout.to_mask();
  // layout & causal: the autoregressive Longformer.
  const auto want =
      attn::reference::attention(p.q, p.k, p.v, attn::softmax{}, attn::mask{m} & attn::causal{});
  expect_close(run_kernel(p, attn::softmax{}, layout & attn::causal{}), want);
  expect_close(
      run_kernel(p, attn::softmax{}, layout & attn::alibi{}),
      attn::reference::attention(p.q, p.k, p.v, attn::softmax{}, attn::mask{m} & attn::alibi{}));
  // Per-batch lengths cut the layout's rows and keys.
  const std::vector<std::int32_t> keys = {100}, queries = {120};
  attn::options opt;
  opt.key_lengths = keys;
  opt.query_lengths = queries;
  expect_kernel_matches(p, layout, m, opt);
}

TEST(SparseKernel, RowsThatSeeNothingAreZero) {
  const idx n = 200, b = 32, nb = (n + b - 1) / b;
  const problem p = small_problem(n, 5);
  attn::bool_tensor3 blocks(4, nb, nb);
  blocks.setConstant(false);
  for (idx h = 0; h < 4; ++h)
    for (idx bi = 0; bi < nb; ++bi)
      if ((bi + h) % 3 != 0) blocks(h, bi, (bi * 5 + h) % nb) = true;  // a third of rows empty
  const auto layout = attn::block_layout::from_block_mask(blocks, b, n, n);
  const mask4 m = layout.to_mask();
  expect_kernel_matches(p, layout, m);
  const kernel_result got = run_kernel(p, attn::softmax{}, layout);
  const kernel_result sig = run_kernel(p, attn::sigmoid{}, layout);
  idx empty = 0;
  for (idx h = 0; h < 4; ++h)
    for (idx i = 0; i < n; ++i) {
      if (blocks(h, i / b, 0) ||
          std::any_of(&m(0, h, i, 0), &m(0, h, i, 0) + n, [](bool v) { return v; }))
        continue;
      ++empty;
      EXPECT_EQ(got.lse(0, h, i), neg_inf);
      for (idx e = 0; e < got.out.dimension(3); ++e) {
        ASSERT_EQ(got.out(0, i, h, e), 0.0f);
        ASSERT_EQ(sig.out(0, i, h, e), 0.0f);
      }
    }
  EXPECT_GT(empty, n);
  // An empty layout of the right shape: every row sees nothing.
  attn::bool_tensor3 none(1, nb, nb);
  none.setConstant(false);
  const kernel_result nothing =
      run_kernel(p, attn::softmax{}, attn::block_layout::from_block_mask(none, b, n, n));
  for (idx e = 0; e < nothing.out.size(); ++e) ASSERT_EQ(nothing.out.data()[e], 0.0f);
  for (idx e = 0; e < nothing.lse.size(); ++e) ASSERT_EQ(nothing.lse.data()[e], neg_inf);
}

}  // namespace sparse_test
