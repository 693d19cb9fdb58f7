// The fused softmax kernel against the double-precision reference for every pattern kind,
// per-batch lengths, the score modifiers (scale, soft-capping, sinks), huge logits, and the
// property that softmax weights sum to one.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>
#include <attn/reference/softmax.hpp>

#include "support/kernel_check.hpp"

namespace softmax_semantics_test {

using attn::idx;
using attn::test::expect_close;
using attn::test::expect_matches_reference;
using attn::test::kernel_output;
using attn::test::kernel_result;
using attn::test::make_problem;
using attn::test::problem;
using attn::test::run_kernel;
using attn::test::shape;
using attn::test::tensor;
using attn::test::tolerance;
using bool_tensor = Eigen::Tensor<bool, 4, Eigen::RowMajor>;
constexpr float neg_inf = -std::numeric_limits<float>::infinity();

/// Query/key lengths of the pattern tests: Nq < Nk, Nq > Nk, a single query or key, and
/// lengths that are not multiples of any tile.
struct geometry {
  idx seq_q, seq_k;
};
constexpr geometry geometries[] = {{70, 150}, {150, 70}, {64, 64}, {1, 150}, {150, 1}, {5, 3}};

/// B = 2, 4 query heads over 2 KV heads, D = 32, Dv = 24.
problem make_problem(const geometry& g, unsigned seed = 1) {
  return make_problem(2, g.seq_q, g.seq_k, 4, 2, 32, 24,
                      seed + static_cast<unsigned>(g.seq_q * 1000 + g.seq_k));
}

std::string describe(const geometry& g) {
  return "Nq=" + std::to_string(g.seq_q) + " Nk=" + std::to_string(g.seq_k);
}

/// Rows of batch b, head h, query i that the reference says see nothing (no sink): the kernel
/// must write zeros and LSE −inf there. Returns how many such rows there are.
idx expect_empty_rows_are_zero(const kernel_result& got, const attn::reference::result& want) {
  idx empty = 0;
  for (idx b = 0; b < want.lse.dimension(0); ++b)
    for (idx h = 0; h < want.lse.dimension(1); ++h)
      for (idx i = 0; i < want.lse.dimension(2); ++i) {
        if (want.lse(b, h, i) != -std::numeric_limits<double>::infinity()) continue;
        ++empty;
        EXPECT_EQ(got.lse(b, h, i), neg_inf) << "b=" << b << " h=" << h << " i=" << i;
        idx nonzero = 0;
        for (idx e = 0; e < got.out.dimension(3); ++e) nonzero += got.out(b, i, h, e) != 0.0f;
        EXPECT_EQ(nonzero, 0) << "b=" << b << " h=" << h << " i=" << i;
      }
  return empty;
}

attn::window make_window(idx left, idx right, attn::align a = attn::align::bottom_right,
                         idx sink_keys = 0) {
  attn::window w;
  w.left = left;
  w.right = right;
  w.alignment = a;
  w.sink_keys = sink_keys;
  return w;
}

// ---- visibility patterns ----------------------------------------------------------------------

TEST(SoftmaxPatterns, Dense) {
  for (const geometry& g : geometries) {
    SCOPED_TRACE(describe(g));
    expect_matches_reference(make_problem(g));
  }
}

TEST(SoftmaxPatterns, CausalBothAlignments) {
  for (const geometry& g : geometries) {
    SCOPED_TRACE(describe(g));
    const problem p = make_problem(g);
    {
      SCOPED_TRACE("bottom_right");
      const auto want = expect_matches_reference(p, {}, attn::causal{});
      // Bottom-right with Nq > Nk: the first Nq − Nk rows see nothing.
      if (g.seq_q > g.seq_k) {
        EXPECT_EQ(expect_empty_rows_are_zero(run_kernel(p, {}, attn::causal{}), want),
                  p.batch() * p.heads() * (g.seq_q - g.seq_k));
      }
    }
    {
      SCOPED_TRACE("top_left");
      expect_matches_reference(p, {}, attn::causal{attn::align::top_left});
    }
  }
}

TEST(SoftmaxPatterns, SlidingWindows) {
  const attn::window windows[] = {
      make_window(20, attn::unbounded),                    // left only
      make_window(attn::unbounded, 15),                    // right only
      make_window(20, 15),                                 // both
      make_window(0, 0),                                   // the diagonal
      make_window(16, 0, attn::align::bottom_right, 4),    // sliding window + sink keys
      make_window(5, 3, attn::align::top_left, 2),         // top-left, sinks
      make_window(3, 0, attn::align::bottom_right, 1000),  // sinks beyond the keys
      make_window(70, 70, attn::align::top_left),          // wider than a tile
      make_window(attn::unbounded, attn::unbounded),       // = dense
  };
  for (const geometry& g : geometries) {
    const problem p = make_problem(g);
    for (const attn::window& w : windows) {
      SCOPED_TRACE(describe(g) + " window left=" + std::to_string(w.left) +
                   " right=" + std::to_string(w.right) + " sinks=" + std::to_string(w.sink_keys) +
                   (w.alignment == attn::align::top_left ? " top_left" : " bottom_right"));
      expect_matches_reference(p, {}, w);
    }
  }
}

// ---- per-batch lengths --------------------------------------------------------------------------

TEST(SoftmaxLengths, KeyAndQueryLengths) {
  for (const geometry& g : geometries) {
    SCOPED_TRACE(describe(g));
    const problem p = make_problem(g);
    const auto nq = static_cast<std::int32_t>(g.seq_q), nk = static_cast<std::int32_t>(g.seq_k);
    const std::vector<std::vector<std::int32_t>> key_sets = {
        {}, {nk, nk / 2 + 1}, {0, nk - 1}, {nk, 0}};
    const std::vector<std::vector<std::int32_t>> query_sets = {
        {}, {nq / 2 + 1, nq}, {0, nq}, {nq, 0}};
    for (const auto& keys : key_sets)
      for (const auto& queries : query_sets) {
        SCOPED_TRACE("key_lengths " + std::to_string(keys.size()) + " query_lengths " +
                     std::to_string(queries.size()));
        attn::options opt;
        opt.key_lengths = keys;
        opt.query_lengths = queries;
        const auto want = expect_matches_reference(p, {}, attn::dense{}, opt);
        expect_matches_reference(p, {}, attn::causal{}, opt);
        expect_matches_reference(p, {}, attn::causal{attn::align::top_left}, opt);
        expect_matches_reference(p, {}, make_window(7, 2, attn::align::bottom_right, 2), opt);
        // Zero lengths: zeros and LSE −inf, never NaN.
        const kernel_result got = run_kernel(p, {}, attn::dense{}, opt);
        expect_empty_rows_are_zero(got, want);
        for (std::size_t b = 0; b < 2; ++b) {
          const bool nothing =
              (!keys.empty() && keys[b] == 0) || (!queries.empty() && queries[b] == 0);
          if (!nothing) continue;
          for (idx h = 0; h < p.heads(); ++h)
            for (idx i = 0; i < g.seq_q; ++i)
              EXPECT_EQ(got.lse(static_cast<idx>(b), h, i), neg_inf);
        }
      }
  }
}

// ---- tensor patterns ----------------------------------------------------------------------------

using attn::test::random_bias;
using attn::test::random_mask;

struct broadcast_dims {
  bool batch, heads;
};
constexpr broadcast_dims broadcasts[] = {
    {false, false}, {true, false}, {false, true}, {true, true}};

std::string describe(const broadcast_dims& d) {
  return std::string("batch ") + (d.batch ? "1" : "B") + ", heads " + (d.heads ? "1" : "H");
}

TEST(SoftmaxTensorPatterns, BiasTensor) {
  std::mt19937 rng(5);
  for (const geometry& g : geometries) {
    const problem p = make_problem(g);
    for (const broadcast_dims& d : broadcasts) {
      SCOPED_TRACE(describe(g) + " bias " + describe(d));
      const tensor t =
          random_bias(rng, d.batch ? 1 : p.batch(), d.heads ? 1 : p.heads(), g.seq_q, g.seq_k);
      const auto want = expect_matches_reference(p, {}, attn::bias{t});
      EXPECT_GE(expect_empty_rows_are_zero(run_kernel(p, {}, attn::bias{t}), want), 1);
    }
  }
}

TEST(SoftmaxTensorPatterns, BoolMask) {
  std::mt19937 rng(6);
  for (const geometry& g : geometries) {
    const problem p = make_problem(g);
    for (const broadcast_dims& d : broadcasts) {
      SCOPED_TRACE(describe(g) + " mask " + describe(d));
      const bool_tensor m =
          random_mask(rng, d.batch ? 1 : p.batch(), d.heads ? 1 : p.heads(), g.seq_q, g.seq_k);
      const auto want = expect_matches_reference(p, {}, attn::mask{m});
      EXPECT_GE(expect_empty_rows_are_zero(run_kernel(p, {}, attn::mask{m}), want), 1);
    }
    // Sparse masks leave whole tiles empty; an all-false mask leaves everything empty.
    for (double density : {0.02, 0.0}) {
      SCOPED_TRACE(describe(g) + " mask density " + std::to_string(density));
      const bool_tensor m = random_mask(rng, p.batch(), 1, g.seq_q, g.seq_k, density);
      const auto want = expect_matches_reference(p, {}, attn::mask{m});
      expect_empty_rows_are_zero(run_kernel(p, {}, attn::mask{m}), want);
    }
  }
}

// ---- ALiBi
// ---------------------------------------------------------------------------------------

/// Press et al.'s get_slopes, restated: a geometric sequence starting at 2^(−8/n) for n a power of
/// two; otherwise the power of two below n, then every other slope of twice that many.
std::vector<double> press_slopes(int n) {
  auto power_of_two = [](int m) {
    std::vector<double> s;
    const double start = std::pow(2.0, -std::pow(2.0, -(std::log2(m) - 3.0)));
    for (int i = 0; i < m; ++i) s.push_back(start * std::pow(start, i));
    return s;
  };
  const double l = std::log2(n);
  if (l == std::floor(l)) return power_of_two(n);
  const int closest = 1 << static_cast<int>(std::floor(l));
  std::vector<double> s = power_of_two(closest);
  const std::vector<double> extra = press_slopes(2 * closest);
  for (std::size_t i = 0; static_cast<int>(s.size()) < n; i += 2) s.push_back(extra[i]);
  return s;
}

TEST(SoftmaxAlibi, StandardSlopes) {
  for (int heads = 1; heads <= 40; ++heads) {
    const std::vector<double> want = press_slopes(heads);
    const std::vector<float> got = attn::alibi_slopes(heads);
    ASSERT_EQ(got.size(), want.size()) << heads << " heads";
    for (std::size_t h = 0; h < want.size(); ++h)
      EXPECT_NEAR(got[h], want[h], 1e-7 * want[h]) << heads << " heads, head " << h;
  }
}

TEST(SoftmaxAlibi, StandardAndUserSlopes) {
  std::mt19937 rng(9);
  for (const idx heads : {8, 6}) {
    for (const geometry& g : {geometry{70, 150}, geometry{150, 70}, geometry{64, 64}}) {
      SCOPED_TRACE(describe(g) + " heads=" + std::to_string(heads));
      const problem p = make_problem(2, g.seq_q, g.seq_k, heads, 2, 32, 24, 3);
      // The reference's standard slopes are the ones of the paper.
      std::vector<float> paper;
      for (double s : press_slopes(static_cast<int>(heads))) paper.push_back(static_cast<float>(s));
      attn::alibi explicit_slopes;
      explicit_slopes.slopes = paper;
      const auto standard = attn::reference::attention(p.q, p.k, p.v, {}, attn::alibi{});
      const auto restated = attn::reference::attention(p.q, p.k, p.v, {}, explicit_slopes);
      EXPECT_LE(attn::test::max_abs_diff(standard.out.cast<float>(), restated.out), 1e-6);

      expect_matches_reference(p, {}, attn::alibi{});
      attn::alibi top_left;
      top_left.alignment = attn::align::top_left;
      expect_matches_reference(p, {}, top_left);
      std::vector<float> user(static_cast<std::size_t>(heads));
      std::uniform_real_distribution<float> slope(0.0f, 1.0f);
      for (float& s : user) s = slope(rng);
      attn::alibi custom;
      custom.slopes = user;
      expect_matches_reference(p, {}, custom);
    }
  }
}

// ---- combinations -----------------------------------------------------------------------------

TEST(SoftmaxPatterns, Combinations) {
  std::mt19937 rng(12);
  for (const geometry& g : geometries) {
    SCOPED_TRACE(describe(g));
    const problem p = make_problem(g);
    expect_matches_reference(p, {}, attn::causal{} & attn::alibi{});
    attn::alibi top_left;
    top_left.alignment = attn::align::top_left;
    expect_matches_reference(p, {}, attn::causal{attn::align::top_left} & top_left);
    const bool_tensor m = random_mask(rng, 1, p.heads(), g.seq_q, g.seq_k);
    expect_matches_reference(p, {}, make_window(20, 5) & attn::mask{m});
    const tensor t = random_bias(rng, p.batch(), 1, g.seq_q, g.seq_k);
    expect_matches_reference(p, {}, attn::causal{} & attn::bias{t});
    expect_matches_reference(p, {}, attn::causal{} & attn::alibi{} & attn::mask{m});
    const std::vector<std::int32_t> keys = {static_cast<std::int32_t>(g.seq_k / 2 + 1), 0};
    attn::options opt;
    opt.key_lengths = keys;
    expect_matches_reference(p, {}, attn::causal{} & attn::alibi{}, opt);
  }
}

// ---- score modifiers ---------------------------------------------------------------------------

TEST(SoftmaxScore, ScaleOverride) {
  for (const geometry& g : geometries) {
    const problem p = make_problem(g);
    for (float scale : {0.05f, 0.7f, 3.0f, -0.4f}) {
      SCOPED_TRACE(describe(g) + " scale " + std::to_string(scale));
      attn::options opt;
      opt.scale = scale;
      expect_matches_reference(p, {}, attn::dense{}, opt);
      expect_matches_reference(p, {}, attn::causal{}, opt);
    }
  }
}

TEST(SoftmaxScore, Softcap) {
  for (const geometry& g : geometries) {
    const problem p = make_problem(g);
    for (float cap : {0.5f, 5.0f, 50.0f}) {
      SCOPED_TRACE(describe(g) + " softcap " + std::to_string(cap));
      attn::softmax score;
      score.softcap = cap;
      attn::options opt;
      opt.scale = 2.0f;  // logits up to ~±20: the cap bites
      expect_matches_reference(p, score, attn::dense{}, opt);
      expect_matches_reference(p, score, attn::causal{} & attn::alibi{}, opt);
      const std::vector<std::int32_t> keys = {0, static_cast<std::int32_t>(g.seq_k)};
      opt.key_lengths = keys;
      expect_matches_reference(p, score, make_window(10, 10), opt);
    }
  }
}

TEST(SoftmaxScore, Sinks) {
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> logit(-2.0f, 3.0f);
  for (const geometry& g : geometries) {
    SCOPED_TRACE(describe(g));
    const problem p = make_problem(g);
    std::vector<float> sinks(static_cast<std::size_t>(p.heads()));
    for (float& s : sinks) s = logit(rng);
    sinks[1] = 30.0f;  // a sink that dominates every row
    attn::softmax score;
    score.sinks = sinks;
    expect_matches_reference(p, score);
    expect_matches_reference(p, score, attn::causal{});
    attn::softmax capped = score;
    capped.softcap = 3.0f;
    expect_matches_reference(p, capped, make_window(4, 0) & attn::alibi{});
    // A batch with no keys: zeros, LSE = the sink; padded query rows: LSE −inf.
    const std::vector<std::int32_t> keys = {0, static_cast<std::int32_t>(g.seq_k)};
    const std::vector<std::int32_t> queries = {static_cast<std::int32_t>(g.seq_q),
                                               static_cast<std::int32_t>(g.seq_q / 2)};
    attn::options opt;
    opt.key_lengths = keys;
    opt.query_lengths = queries;
    expect_matches_reference(p, score, attn::dense{}, opt);
    const kernel_result got = run_kernel(p, score, attn::dense{}, opt);
    for (idx h = 0; h < p.heads(); ++h)
      for (idx i = 0; i < g.seq_q; ++i) {
        EXPECT_FLOAT_EQ(got.lse(0, h, i), sinks[static_cast<std::size_t>(h)]);
        for (idx e = 0; e < got.out.dimension(3); ++e) ASSERT_EQ(got.out(0, i, h, e), 0.0f);
      }
    for (idx h = 0; h < p.heads(); ++h)
      for (idx i = g.seq_q / 2; i < g.seq_q; ++i) EXPECT_EQ(got.lse(1, h, i), neg_inf);
  }
}

TEST(SoftmaxScore, HugeLogitsStayFinite) {
  // Logits up to ±16384: exp must not overflow, and masked or tiny weights must not turn into
  // NaN. A float logit that large carries an absolute error of ~1e-3 (its ulp), so near-tied
  // keys get weights that are off by that much relative: the tolerance here is 2e-3.
  constexpr double huge_tolerance = 2e-3;
  std::mt19937 rng(31);
  std::uniform_int_distribution<int> digit(-1, 1);
  problem p = make_problem(2, 70, 150, 4, 2, 16, 24, 4);
  for (tensor* t : {&p.q, &p.k})
    for (idx n = 0; n < t->size(); ++n) t->data()[n] = static_cast<float>(digit(rng));
  for (float scale : {1024.0f, -1024.0f}) {
    SCOPED_TRACE("scale " + std::to_string(scale));
    attn::options opt;
    opt.scale = scale;
    const auto want = expect_matches_reference(p, {}, attn::dense{}, opt, huge_tolerance);
    EXPECT_GT(want.lse(0, 0, 0), 1000.0);  // the logits are as large as intended
    expect_matches_reference(p, {}, attn::causal{} & attn::alibi{}, opt, huge_tolerance);
    attn::softmax capped;
    capped.softcap = 30.0f;
    expect_matches_reference(p, capped, attn::causal{}, opt, huge_tolerance);
    const std::vector<float> sinks = {1e4f, -1e4f, 0.0f, 2e4f};
    attn::softmax with_sinks;
    with_sinks.sinks = sinks;
    expect_matches_reference(p, with_sinks, attn::dense{}, opt, huge_tolerance);
  }
}

// ---- properties ---------------------------------------------------------------------------------

/// With V = 1 every row that sees a key outputs exactly the sum of its weights: 1.
template <class Pattern>
void expect_weights_sum_to_one(const problem& p, const Pattern& pattern,
                               const attn::options& opt = {}) {
  problem ones = p;
  ones.v.setConstant(1.0f);
  const kernel_result got = run_kernel(ones, {}, pattern, opt);
  idx seen = 0;
  for (idx b = 0; b < p.batch(); ++b)
    for (idx h = 0; h < p.heads(); ++h)
      for (idx i = 0; i < p.seq_q(); ++i) {
        const bool sees = got.lse(b, h, i) != neg_inf;
        seen += sees;
        for (idx e = 0; e < got.out.dimension(3); ++e)
          ASSERT_NEAR(got.out(b, i, h, e), sees ? 1.0f : 0.0f, 1e-5)
              << "b=" << b << " h=" << h << " i=" << i;
      }
  EXPECT_GT(seen, 0);
}

TEST(SoftmaxProperties, WeightsSumToOne) {
  std::mt19937 rng(41);
  for (const geometry& g : geometries) {
    SCOPED_TRACE(describe(g));
    const problem p = make_problem(g);
    expect_weights_sum_to_one(p, attn::dense{});
    expect_weights_sum_to_one(p, attn::causal{});
    expect_weights_sum_to_one(p, make_window(3, 1, attn::align::top_left, 2));
    expect_weights_sum_to_one(p, attn::causal{} & attn::alibi{});
    const bool_tensor m = random_mask(rng, p.batch(), p.heads(), g.seq_q, g.seq_k);
    expect_weights_sum_to_one(p, attn::mask{m});
    const std::vector<std::int32_t> keys = {static_cast<std::int32_t>(g.seq_k / 3 + 1), 0};
    attn::options opt;
    opt.key_lengths = keys;
    opt.scale = 8.0f;
    expect_weights_sum_to_one(p, attn::causal{}, opt);
  }
}

}  // namespace softmax_semantics_test
