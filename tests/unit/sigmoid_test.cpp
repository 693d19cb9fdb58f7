// The fused sigmoid kernel (score/sigmoid.hpp) against the double-precision reference
// (reference/sigmoid.hpp): shapes, every pattern, per-batch lengths, the three kinds of bias,
// soft-capping, huge logits, threads; then properties that do not need the reference: the
// weights are the elementwise formula σ(s + β), masked keys weigh exactly 0 and the default β
// follows the effective key length.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>
#include <attn/reference/sigmoid.hpp>

#include "support/kernel_check.hpp"

namespace sigmoid_test {

using attn::idx;
using attn::test::expect_close;
using attn::test::kernel_result;
using attn::test::make_problem;
using attn::test::problem;
using attn::test::run_kernel;
using attn::test::shape;
using attn::test::tensor;
using attn::test::tolerance;
using bool_tensor = Eigen::Tensor<bool, 4, Eigen::RowMajor>;
constexpr float neg_inf = -std::numeric_limits<float>::infinity();

// In this file a score written `{}` means sigmoid.
template <class Pattern = attn::dense>
tensor sigmoid_output(const problem& p, const attn::sigmoid& score = {},
                      const Pattern& pattern = {}, const attn::options& opt = {}) {
  return attn::test::kernel_output(p, score, pattern, opt);
}

template <class Pattern = attn::dense>
attn::reference::result expect_sigmoid_matches(const problem& p, const attn::sigmoid& score = {},
                                               const Pattern& pattern = {},
                                               const attn::options& opt = {},
                                               double tol = tolerance) {
  attn::reference::result want = attn::test::expect_matches_reference(p, score, pattern, opt, tol);
  EXPECT_EQ(want.lse.size(), 0);  // sigmoid defines no log-sum-exp
  return want;
}

// ---- shapes ----------------------------------------------------------------------------------

class SigmoidShapes : public ::testing::TestWithParam<shape> {};

TEST_P(SigmoidShapes, DenseAndCausalMatchReference) {
  const shape s = GetParam();
  const problem p =
      make_problem(s, static_cast<unsigned>(s.seq_q * 7919 + s.seq_k * 31 + s.head_dim));
  {
    SCOPED_TRACE("dense");
    expect_sigmoid_matches(p);
  }
  {
    SCOPED_TRACE("causal");
    expect_sigmoid_matches(p, {}, attn::causal{});
  }
}

INSTANTIATE_TEST_SUITE_P(Sweep, SigmoidShapes, ::testing::ValuesIn(attn::test::shape_sweep()),
                         attn::test::shape_name);

// ---- patterns -----------------------------------------------------------------------------------

/// Query/key lengths of the pattern tests: Nq < Nk, Nq > Nk, tile-sized, a single query or key,
/// and lengths that are not multiples of any tile.
struct geometry {
  idx seq_q, seq_k;
};
constexpr geometry geometries[] = {{70, 150}, {150, 70}, {64, 64}, {1, 150}, {150, 1}, {5, 3}};

/// B = 2, 4 query heads over 2 KV heads, D = 16, Dv = 24.
problem make_problem(const geometry& g, unsigned seed = 1) {
  return make_problem(shape{2, g.seq_q, g.seq_k, 4, 2, 16, 24},
                      seed + static_cast<unsigned>(g.seq_q * 1000 + g.seq_k));
}

std::string describe(const geometry& g) {
  return "Nq=" + std::to_string(g.seq_q) + " Nk=" + std::to_string(g.seq_k);
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

/// Rows (b, i, h) of `got` that are not exactly zero among those `zero(b, i, h)` selects.
template <class F>
idx nonzero_rows(const tensor& got, F&& zero) {
  idx bad = 0;
  for (idx b = 0; b < got.dimension(0); ++b)
    for (idx i = 0; i < got.dimension(1); ++i)
      for (idx h = 0; h < got.dimension(2); ++h) {
        if (!zero(b, i, h)) continue;
        for (idx e = 0; e < got.dimension(3); ++e)
          if (got(b, i, h, e) != 0.0f) {
            ++bad;
            break;
          }
      }
  return bad;
}

TEST(SigmoidPatterns, DenseCausalAndWindows) {
  const attn::window windows[] = {
      make_window(20, attn::unbounded),                    // left only
      make_window(attn::unbounded, 15),                    // right only
      make_window(0, 0),                                   // the diagonal
      make_window(16, 0, attn::align::bottom_right, 4),    // sliding window + sink keys
      make_window(5, 3, attn::align::top_left, 2),         // top-left, sinks
      make_window(70, 70, attn::align::top_left),          // wider than a tile
      make_window(3, 0, attn::align::bottom_right, 1000),  // sinks beyond the keys
  };
  for (const geometry& g : geometries) {
    SCOPED_TRACE(describe(g));
    const problem p = make_problem(g);
    expect_sigmoid_matches(p);
    expect_sigmoid_matches(p, {}, attn::causal{attn::align::top_left});
    expect_sigmoid_matches(p, {}, attn::causal{});
    // Bottom-right with Nq > Nk: the first Nq − Nk rows see nothing and are exactly zero.
    const tensor got = sigmoid_output(p, {}, attn::causal{});
    EXPECT_EQ(nonzero_rows(got, [&](idx, idx i, idx) { return i < g.seq_q - g.seq_k; }), 0);
    for (const attn::window& w : windows) {
      SCOPED_TRACE("window left=" + std::to_string(w.left) + " right=" + std::to_string(w.right) +
                   " sinks=" + std::to_string(w.sink_keys));
      expect_sigmoid_matches(p, {}, w);
    }
  }
}

TEST(SigmoidPatterns, KeyAndQueryLengths) {
  for (const geometry& g : geometries) {
    SCOPED_TRACE(describe(g));
    const problem p = make_problem(g);
    const auto nq = static_cast<std::int32_t>(g.seq_q), nk = static_cast<std::int32_t>(g.seq_k);
    const std::vector<std::vector<std::int32_t>> key_sets = {{nk, nk / 2 + 1}, {0, nk - 1}};
    const std::vector<std::vector<std::int32_t>> query_sets = {{}, {nq / 2 + 1, 0}};
    for (const auto& keys : key_sets)
      for (const auto& queries : query_sets) {
        SCOPED_TRACE("key_lengths {" + std::to_string(keys[0]) + ", " + std::to_string(keys[1]) +
                     "}, query_lengths " + (queries.empty() ? "none" : "given"));
        attn::options opt;
        opt.key_lengths = keys;
        opt.query_lengths = queries;
        expect_sigmoid_matches(p, {}, attn::dense{}, opt);
        expect_sigmoid_matches(p, {}, attn::causal{}, opt);
        expect_sigmoid_matches(p, {}, make_window(7, 2, attn::align::top_left, 2), opt);
        // Batches with no keys and padded query rows: exactly zero.
        const tensor got = sigmoid_output(p, {}, attn::causal{}, opt);
        EXPECT_EQ(nonzero_rows(got,
                               [&](idx b, idx i, idx) {
                                 const auto bb = static_cast<std::size_t>(b);
                                 return keys[bb] == 0 || (!queries.empty() && i >= queries[bb]);
                               }),
                  0);
      }
  }
}

using attn::test::random_bias;
using attn::test::random_mask;

TEST(SigmoidPatterns, BiasTensorAndBoolMask) {
  std::mt19937 rng(5);
  for (const geometry& g : geometries) {
    SCOPED_TRACE(describe(g));
    const problem p = make_problem(g);
    // Query 0 of batch 0, head 0 sees nothing under either: exactly zero.
    auto first_row = [](idx b, idx i, idx h) { return b == 0 && i == 0 && h == 0; };
    const tensor full = random_bias(rng, p.batch(), p.heads(), g.seq_q, g.seq_k);
    expect_sigmoid_matches(p, {}, attn::bias{full});
    EXPECT_EQ(nonzero_rows(sigmoid_output(p, {}, attn::bias{full}), first_row), 0);
    const tensor broadcast = random_bias(rng, 1, 1, g.seq_q, g.seq_k);
    expect_sigmoid_matches(p, {}, attn::bias{broadcast});
    const bool_tensor m = random_mask(rng, p.batch(), 1, g.seq_q, g.seq_k);
    expect_sigmoid_matches(p, {}, attn::mask{m});
    EXPECT_EQ(nonzero_rows(sigmoid_output(p, {}, attn::mask{m}), first_row), 0);
    // Sparse masks leave whole tiles empty; an all-false mask leaves every row empty.
    const bool_tensor sparse = random_mask(rng, 1, p.heads(), g.seq_q, g.seq_k, 0.02);
    expect_sigmoid_matches(p, {}, attn::mask{sparse});
    const bool_tensor none = random_mask(rng, 1, 1, g.seq_q, g.seq_k, 0.0);
    EXPECT_EQ(
        nonzero_rows(sigmoid_output(p, {}, attn::mask{none}), [](idx, idx, idx) { return true; }),
        0);
  }
}

TEST(SigmoidPatterns, AlibiAndCombinations) {
  std::mt19937 rng(12);
  for (const geometry& g : geometries) {
    SCOPED_TRACE(describe(g));
    const problem p = make_problem(g);
    expect_sigmoid_matches(p, {}, attn::alibi{});
    std::vector<float> user(static_cast<std::size_t>(p.heads()));
    std::uniform_real_distribution<float> slope(0.0f, 1.0f);
    for (float& s : user) s = slope(rng);
    attn::alibi custom;
    custom.slopes = user;
    custom.alignment = attn::align::top_left;
    expect_sigmoid_matches(p, {}, custom);
    expect_sigmoid_matches(p, {}, attn::causal{} & attn::alibi{});
    const bool_tensor m = random_mask(rng, 1, p.heads(), g.seq_q, g.seq_k);
    expect_sigmoid_matches(p, {}, make_window(20, 5) & attn::mask{m});
    const tensor t = random_bias(rng, p.batch(), 1, g.seq_q, g.seq_k);
    expect_sigmoid_matches(p, {}, attn::causal{attn::align::top_left} & attn::bias{t});
    const std::vector<std::int32_t> keys = {static_cast<std::int32_t>(g.seq_k / 2 + 1), 0};
    attn::options opt;
    opt.key_lengths = keys;
    expect_sigmoid_matches(p, {}, attn::causal{} & attn::alibi{} & attn::mask{m}, opt);
  }
}

// ---- the bias β, soft-capping, scale -----------------------------------------------------------

TEST(SigmoidScore, ScalarHeadAndDefaultBias) {
  for (const geometry& g : {geometry{70, 150}, geometry{150, 70}, geometry{5, 3}}) {
    SCOPED_TRACE(describe(g));
    const problem p = make_problem(g);
    const std::vector<float> head_bias = {-4.0f, 0.0f, 2.5f, -0.5f};
    const std::vector<std::int32_t> keys = {static_cast<std::int32_t>(g.seq_k / 3 + 1), 0};
    attn::options lengths;
    lengths.key_lengths = keys;
    for (const attn::sigmoid& score : {attn::sigmoid{.bias = -4.0f}, attn::sigmoid{.bias = 3.0f},
                                       attn::sigmoid{.head_bias = head_bias}, attn::sigmoid{}}) {
      SCOPED_TRACE(score.bias                ? "bias " + std::to_string(*score.bias)
                   : score.head_bias.empty() ? "default bias"
                                             : "head_bias");
      expect_sigmoid_matches(p, score);
      expect_sigmoid_matches(p, score, attn::causal{} & attn::alibi{});
      expect_sigmoid_matches(p, score, make_window(9, 0), lengths);
    }
  }
}

TEST(SigmoidScore, DefaultBiasIsMinusLogOfTheEffectiveKeyLength) {
  // Under key_lengths the default β is −ln key_lengths[b], not −ln Nk and not −ln(the keys a
  // row sees): it equals the explicit scalar bias −ln L with the same lengths, for every
  // pattern.
  const problem p = make_problem(shape{2, 40, 100, 4, 2, 16, 24}, 3);
  const std::int32_t length = 37;
  const std::vector<std::int32_t> keys = {length, length};
  attn::options opt;
  opt.key_lengths = keys;
  const attn::sigmoid explicit_bias{.bias = -std::log(static_cast<float>(length))};
  for (const bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "dense");
    const tensor by_default = causal ? sigmoid_output(p, {}, attn::causal{}, opt)
                                     : sigmoid_output(p, {}, attn::dense{}, opt);
    const tensor by_hand = causal ? sigmoid_output(p, explicit_bias, attn::causal{}, opt)
                                  : sigmoid_output(p, explicit_bias, attn::dense{}, opt);
    EXPECT_LE(attn::test::max_abs_diff(by_default, by_hand.cast<double>()), 1e-6);
    // ... and differs from β = −ln Nk.
    const attn::sigmoid full_length{.bias = -std::log(100.0f)};
    const tensor other = causal ? sigmoid_output(p, full_length, attn::causal{}, opt)
                                : sigmoid_output(p, full_length, attn::dense{}, opt);
    EXPECT_GT(attn::test::max_abs_diff(by_default, other.cast<double>()), 1e-3);
  }
  // Two batches of different lengths: each gets its own β.
  const std::vector<std::int32_t> mixed = {10, 90};
  opt.key_lengths = mixed;
  const tensor got = sigmoid_output(p, {}, attn::dense{}, opt);
  for (std::size_t b = 0; b < 2; ++b) {
    const attn::sigmoid beta{.bias = -std::log(static_cast<float>(mixed[b]))};
    const tensor want = sigmoid_output(p, beta, attn::dense{}, opt);
    const Eigen::array<Eigen::Index, 4> offsets = {static_cast<Eigen::Index>(b), 0, 0, 0};
    const Eigen::array<Eigen::Index, 4> extents = {1, p.seq_q(), p.heads(), p.v.dimension(3)};
    const tensor got_b = got.slice(offsets, extents);
    const tensor want_b = want.slice(offsets, extents);
    EXPECT_LE(attn::test::max_abs_diff(got_b, want_b.cast<double>()), 1e-6) << "batch " << b;
  }
}

TEST(SigmoidScore, SoftcapAndScale) {
  for (const geometry& g : geometries) {
    const problem p = make_problem(g);
    for (float cap : {0.5f, 5.0f}) {
      SCOPED_TRACE(describe(g) + " softcap " + std::to_string(cap));
      attn::options opt;
      opt.scale = 2.0f;  // logits up to ~±10: the cap bites
      expect_sigmoid_matches(p, attn::sigmoid{.softcap = cap}, attn::dense{}, opt);
      expect_sigmoid_matches(p, attn::sigmoid{.bias = -1.0f, .softcap = cap},
                             attn::causal{} & attn::alibi{}, opt);
    }
    for (float scale : {0.05f, -0.7f, 3.0f}) {
      SCOPED_TRACE(describe(g) + " scale " + std::to_string(scale));
      attn::options opt;
      opt.scale = scale;
      expect_sigmoid_matches(p, {}, attn::causal{}, opt);
    }
  }
}

TEST(SigmoidScore, HugeLogitsStayFiniteAndCorrect) {
  // q, k in {−1, 0, 1} and scale ±1024: logits are exact multiples of 1024 up to ±16384, so σ is
  // exactly 0 or 1 there, or σ(β) where the logit is 0. A bias tensor of ±1e4 on top. (A float
  // logit computed from partial sums that large carries an absolute error of their ulp, which
  // σ′ ≤ ¼ passes on: the inputs are chosen so that the sums are exact.)
  std::mt19937 rng(31);
  std::uniform_int_distribution<int> digit(-1, 1);
  problem p = make_problem(shape{2, 70, 150, 4, 2, 16, 24}, 4);
  for (tensor* t : {&p.q, &p.k})
    for (idx n = 0; n < t->size(); ++n) t->data()[n] = static_cast<float>(digit(rng));
  tensor huge_bias = attn::test::random_tensor(rng, 1, 4, 70, 150, -1e4f, 1e4f);
  for (float scale : {1024.0f, -1024.0f}) {
    SCOPED_TRACE("scale " + std::to_string(scale));
    attn::options opt;
    opt.scale = scale;
    const auto want = expect_sigmoid_matches(p, {}, attn::dense{}, opt);
    double largest = 0;
    for (idx n = 0; n < want.out.size(); ++n)
      largest = std::max(largest, std::abs(want.out.data()[n]));
    EXPECT_GT(largest, 1.0);  // many weights are 1: the logits are as large as intended
    expect_sigmoid_matches(p, {}, attn::causal{} & attn::alibi{}, opt);
    // softcap 32 keeps the logits exact (the kernel multiplies Q by scale / softcap = ±32).
    expect_sigmoid_matches(p, attn::sigmoid{.bias = 2.0f, .softcap = 32.0f}, attn::causal{}, opt);
    expect_sigmoid_matches(p, {}, attn::bias{huge_bias}, opt);
  }
}

// ---- properties ---------------------------------------------------------------------------------

/// σ(x) in double, the textbook formula.
double sigma(double x) { return 1.0 / (1.0 + std::exp(-x)); }

TEST(SigmoidProperties, WeightsAreTheElementwiseFormula) {
  // With V = identity (Dv = Nk, v[j, e] = δ_je), out[i, e] is the weight of key e for query i:
  // it must be σ(scale·q_i·k_e + bias_ie + β), and exactly 0 where the pattern hides the key.
  const idx nq = 70, nk = 90, d = 24;
  std::mt19937 rng(51);
  problem p;
  p.q = attn::test::random_tensor(rng, 1, nq, 2, d, -2.0f, 2.0f);
  p.k = attn::test::random_tensor(rng, 1, nk, 1, d, -2.0f, 2.0f);
  p.v = tensor(1, nk, 1, nk);
  p.v.setZero();
  for (idx j = 0; j < nk; ++j) p.v(0, j, 0, j) = 1.0f;
  const bool_tensor m = random_mask(rng, 1, 2, nq, nk, 0.6);
  const float beta[2] = {-1.5f, 0.75f};
  const attn::sigmoid score{.head_bias = beta};
  const auto pattern = attn::causal{attn::align::top_left} & attn::mask{m};
  const tensor got = sigmoid_output(p, score, pattern);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  idx visible = 0, hidden_nonzero = 0;
  double worst = 0;
  for (idx h = 0; h < 2; ++h)
    for (idx i = 0; i < nq; ++i)
      for (idx j = 0; j < nk; ++j) {
        const float w = got(0, i, h, j);
        if (j > i || !m(0, h, i, j)) {
          hidden_nonzero += w != 0.0f;
          continue;
        }
        ++visible;
        double s = 0;
        for (idx e = 0; e < d; ++e)
          s += static_cast<double>(p.q(0, i, h, e)) * static_cast<double>(p.k(0, j, 0, e));
        worst = std::max(worst, std::abs(static_cast<double>(w) - sigma(scale * s + beta[h])));
      }
  EXPECT_EQ(hidden_nonzero, 0) << "hidden keys must weigh exactly 0";
  EXPECT_GT(visible, 1000);
  EXPECT_LE(worst, 1e-6);
}

TEST(SigmoidProperties, ExtremeLogits) {
  // One key, V = 1, β = 0: the output is the weight σ(logit). Logits ±1e4 and beyond give
  // exactly 1 and 0, logit 0 exactly ½; weights down to FLT_MIN keep their relative accuracy,
  // smaller ones are exactly 0 (never a denormal), and no NaN anywhere.
  const std::vector<float> logits = {1e4f,   -1e4f,  0.0f,   3e38f,   -3e38f, 87.0f,
                                     -80.0f, -87.0f, -88.0f, -100.0f, 30.0f,  -30.0f};
  const auto n = static_cast<idx>(logits.size());
  problem p;
  p.q = tensor(1, n, 1, 1);
  p.k = tensor(1, 1, 1, 1);
  p.v = tensor(1, 1, 1, 1);
  for (idx i = 0; i < n; ++i) p.q(0, i, 0, 0) = logits[static_cast<std::size_t>(i)];
  p.k.setConstant(1.0f);
  p.v.setConstant(1.0f);
  attn::options opt;
  opt.scale = 1.0f;
  const tensor got = sigmoid_output(p, attn::sigmoid{.bias = 0.0f}, attn::dense{}, opt);
  const float exact[6] = {1.0f, 0.0f, 0.5f, 1.0f, 0.0f, 1.0f};
  for (idx i = 0; i < 6; ++i) EXPECT_EQ(got(0, i, 0, 0), exact[i]) << "logit " << logits[i];
  for (idx i = 6; i < n; ++i) {
    const float x = logits[static_cast<std::size_t>(i)];
    const float w = got(0, i, 0, 0);
    const double want = sigma(static_cast<double>(x));
    EXPECT_TRUE(w == 0.0f || std::isnormal(w)) << "logit " << x << ": " << w;
    // For x ≪ 0, σ(x) ≈ e^x has condition number |x|: a relative error of a few |x|·ε.
    const double relative = 4.0 * (1.0 + std::abs(x)) * std::numeric_limits<float>::epsilon();
    if (want >= static_cast<double>(std::numeric_limits<float>::min()))
      EXPECT_NEAR(w / want, 1.0, relative) << "logit " << x;
    else
      EXPECT_EQ(w, 0.0f) << "logit " << x;
  }
}

TEST(SigmoidProperties, ThreadCountsAgreeExactly) {
  const problem p = make_problem(shape{3, 150, 200, 8, 2, 32, 40}, 13);
  const std::vector<float> head_bias = {0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -0.5f, 0.25f, -3.0f};
  const attn::sigmoid score{.head_bias = head_bias, .softcap = 4.0f};
  const auto want = attn::reference::attention(p.q, p.k, p.v, score, attn::causal{});
  tensor first;
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE("threads = " + std::to_string(threads));
    attn::options opt;
    opt.threads = threads;
    tensor got = sigmoid_output(p, score, attn::causal{}, opt);
    EXPECT_LE(attn::test::max_abs_diff(got, want.out), tolerance);
    if (threads == 1) {
      first = std::move(got);
      continue;
    }
    // Each row is computed by one worker in one order: the thread count changes nothing.
    EXPECT_EQ(attn::test::max_abs_diff(got, first.cast<double>()), 0.0);
  }
}

TEST(SigmoidProperties, MisalignedViewsAndShortOverloads) {
  const problem p = make_problem(shape{2, 33, 70, 4, 2, 40, 24}, 7);
  auto misaligned = [](const tensor& t, std::vector<float>& storage) {
    storage.assign(static_cast<std::size_t>(t.size()) + 1, 0.0f);
    std::copy(t.data(), t.data() + t.size(), storage.data() + 1);
    return attn::const_tensor4_map<float>(storage.data() + 1, t.dimensions());
  };
  std::vector<float> qs, ks, vs;
  const auto q = misaligned(p.q, qs), k = misaligned(p.k, ks), v = misaligned(p.v, vs);
  tensor out(2, 33, 4, 24);
  attn::attention<attn::test::arch>(q, k, v, out, attn::sigmoid{}, attn::causal{});
  const auto causal = attn::reference::attention(p.q, p.k, p.v, attn::sigmoid{}, attn::causal{});
  EXPECT_LE(attn::test::max_abs_diff(out, causal.out), tolerance);
  out.setZero();
  attn::attention(p.q, p.k, p.v, out, attn::sigmoid{});  // dense, default arch
  const auto dense = attn::reference::attention(p.q, p.k, p.v, attn::sigmoid{});
  EXPECT_LE(attn::test::max_abs_diff(out, dense.out), tolerance);
}

// ---- the reference itself, by hand
// ----------------------------------------------------------------

TEST(SigmoidReference, ByHand) {
  // D = 1 (scale 1), one query q = 1 over keys k = [1, 0, −1], v = [1, 2, 4].
  tensor q(1, 1, 1, 1), k(1, 3, 1, 1), v(1, 3, 1, 1);
  q.setConstant(1.0f);
  k(0, 0, 0, 0) = 1.0f;
  k(0, 1, 0, 0) = 0.0f;
  k(0, 2, 0, 0) = -1.0f;
  v(0, 0, 0, 0) = 1.0f;
  v(0, 1, 0, 0) = 2.0f;
  v(0, 2, 0, 0) = 4.0f;
  // Default β = −ln 3.
  const double b = -std::log(3.0);
  auto r = attn::reference::attention(q, k, v, attn::sigmoid{});
  EXPECT_NEAR(r.out(0, 0, 0, 0), sigma(1 + b) + 2 * sigma(b) + 4 * sigma(-1 + b), 1e-15);
  EXPECT_EQ(r.lse.size(), 0);
  // key_lengths {2}: β = −ln 2 and key 2 is gone.
  const std::vector<std::int32_t> two = {2};
  attn::options opt;
  opt.key_lengths = two;
  r = attn::reference::attention(q, k, v, attn::sigmoid{}, attn::dense{}, opt);
  const double b2 = -std::log(2.0);
  EXPECT_NEAR(r.out(0, 0, 0, 0), sigma(1 + b2) + 2 * sigma(b2), 1e-15);
  // A mask that hides key 0: β stays −ln 3, the key length, not the number of visible keys.
  Eigen::Tensor<bool, 4, Eigen::RowMajor> m(1, 1, 1, 3);
  m.setConstant(true);
  m(0, 0, 0, 0) = false;
  r = attn::reference::attention(q, k, v, attn::sigmoid{}, attn::mask{m});
  EXPECT_NEAR(r.out(0, 0, 0, 0), 2 * sigma(b) + 4 * sigma(-1 + b), 1e-15);
  // Scalar bias, soft-cap c = 0.5: logits 0.5·tanh(2·s).
  r = attn::reference::attention(q, k, v, attn::sigmoid{.bias = 1.0f, .softcap = 0.5f});
  const double c1 = 0.5 * std::tanh(2.0);
  EXPECT_NEAR(r.out(0, 0, 0, 0), sigma(c1 + 1) + 2 * sigma(1) + 4 * sigma(-c1 + 1), 1e-15);
  // The extremes: σ(±1e4) without overflow.
  opt.key_lengths = {};
  opt.scale = 1e4f;
  r = attn::reference::attention(q, k, v, attn::sigmoid{.bias = 0.0f}, attn::dense{}, opt);
  EXPECT_EQ(r.out(0, 0, 0, 0), 1.0 + 2 * 0.5);
}

}  // namespace sigmoid_test
