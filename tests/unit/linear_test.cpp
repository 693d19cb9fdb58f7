// Linear attention (attn/linear/) against the double-precision reference
// (attn/reference/linear.hpp): shapes with grouped-query heads and Dv ≠ D, every feature map,
// decay and not, normalised and not; the chunked causal form against the recurrent form and the
// O(N²) masked form for every chunk size 1…N (ragged last chunks included); prefill + decode
// through a state; long sequences; threads, executors, views.
//
// Tolerance. Every output is a sum of terms w_ij·v_j (through a denominator when normalised);
// computed in float, its error is a modest multiple of u = 2^−24 times the sum of the terms'
// absolute values, which the reference returns per element as error_scale:
//   unnormalised  Σ_j |w_ij|·|v_j|,     normalised  (Σ_j |w_ij|·|v_j| + |o_i|·Σ_j |w_ij|) / |den_i|
// (|w_ij| with |φ(q)|·|φ(k)|, so cancellation inside the dot products is covered too). The tests
// require |kernel − reference| ≤ 2e-5 · error_scale: for positive maps on unit-scale inputs
// (|v| ≤ 1) the normalised error_scale is at most 2, i.e. the design's 2e-5 up to that factor;
// for sign-changing maps (identity) the bound grows with the conditioning of the denominator.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>
#include <attn/reference/linear.hpp>

#include "support/arch.hpp"
#include "support/random.hpp"

namespace linear_test {

using attn::idx;
using tensor = attn::tensor4<float>;
using attn::linear::options;
using A = attn::test::arch;

constexpr double tolerance = 2e-5;

struct shape {
  idx batch, seq_q, seq_k, heads_q, heads_kv, head_dim, head_dim_v;
};

std::ostream& operator<<(std::ostream& os, const shape& s) {
  return os << "B" << s.batch << "_Nq" << s.seq_q << "_Nk" << s.seq_k << "_H" << s.heads_q << "x"
            << s.heads_kv << "_D" << s.head_dim << "_Dv" << s.head_dim_v;
}

struct problem {
  tensor q, k, v;
  idx batch() const { return q.dimension(0); }
  idx seq() const { return q.dimension(1); }
  idx heads() const { return q.dimension(2); }
  idx head_dim_v() const { return v.dimension(3); }
};

problem make(const shape& s, unsigned seed) {
  std::mt19937 rng(seed);
  return {attn::test::random_tensor(rng, s.batch, s.seq_q, s.heads_q, s.head_dim),
          attn::test::random_tensor(rng, s.batch, s.seq_k, s.heads_kv, s.head_dim),
          attn::test::random_tensor(rng, s.batch, s.seq_k, s.heads_kv, s.head_dim_v)};
}

tensor nan_output(const problem& p) {
  tensor out(p.batch(), p.seq(), p.heads(), p.head_dim_v());
  out.setConstant(std::numeric_limits<float>::quiet_NaN());
  return out;
}

/// |got − want| ≤ tol·error_scale everywhere (NaN fails); reports the worst element.
void expect_within(const tensor& got, const attn::reference::linear_result& want,
                   double tol = tolerance) {
  ASSERT_EQ(got.dimensions(), want.out.dimensions());
  double worst = 0.0;
  idx at = -1, bad = 0;
  for (idx n = 0; n < got.size(); ++n) {
    const double g = static_cast<double>(got.data()[n]), w = want.out.data()[n];
    const double allowed = tol * want.error_scale.data()[n] + 1e-30;
    const double ratio = std::abs(g - w) / allowed;
    if (!(ratio <= 1.0)) ++bad;
    if (!(ratio <= worst)) {
      worst = ratio;
      at = n;
    }
  }
  EXPECT_EQ(bad, 0) << "worst element " << at << ": " << got.data()[at] << " vs "
                    << want.out.data()[at] << " (error scale " << want.error_scale.data()[at]
                    << ", " << worst << "x the tolerance)";
}

template <class Map, class Pattern>
tensor run(const problem& p, const Map& map, const Pattern& pattern, const options& opt = {}) {
  tensor out = nan_output(p);
  attn::linear_attention<A>(p.q, p.k, p.v, out, map, pattern, opt);
  return out;
}

/// The recurrent form through the public step API, `step` tokens per call.
template <class Map>
tensor run_steps(const problem& p, const Map& map, const options& opt, idx step = 1,
                 attn::linear::state* st_out = nullptr) {
  const idx B = p.batch(), N = p.seq(), H = p.heads(), D = p.q.dimension(3), E = p.head_dim_v();
  const idx Hk = p.k.dimension(2);
  attn::linear::state st(B, H, D, E);
  tensor out = nan_output(p);
  for (idx t0 = 0; t0 < N; t0 += step) {
    const idx n = std::min(step, N - t0);
    const Eigen::array<idx, 4> off{0, t0, 0, 0};
    const tensor qt = p.q.slice(off, Eigen::array<idx, 4>{B, n, H, D});
    const tensor kt = p.k.slice(off, Eigen::array<idx, 4>{B, n, Hk, D});
    const tensor vt = p.v.slice(off, Eigen::array<idx, 4>{B, n, Hk, E});
    tensor ot(B, n, H, E);
    attn::linear_attention_step<A>(qt, kt, vt, ot, map, st, opt);
    out.slice(off, Eigen::array<idx, 4>{B, n, H, E}) = ot;
  }
  if (st_out) *st_out = st;
  return out;
}

// ---- shapes
// --------------------------------------------------------------------------------------

class LinearShapes : public ::testing::TestWithParam<shape> {};

TEST_P(LinearShapes, DenseAndCausalMatchReference) {
  const shape s = GetParam();
  const problem p = make(s, static_cast<unsigned>(s.seq_q * 131 + s.head_dim * 7 + s.heads_q));
  {
    SCOPED_TRACE("dense");
    expect_within(
        run(p, attn::linear::elu1{}, attn::dense{}),
        attn::reference::linear_attention(p.q, p.k, p.v, attn::linear::elu1{}, attn::dense{}));
  }
  if (s.seq_q == s.seq_k) {
    SCOPED_TRACE("causal");
    expect_within(
        run(p, attn::linear::elu1{}, attn::causal{}),
        attn::reference::linear_attention(p.q, p.k, p.v, attn::linear::elu1{}, attn::causal{}));
  }
}

// (batch, Nq, Nk, Hq, Hkv, D, Dv): lengths around the chunk (64) and the SIMD widths, every
// head_dim remainder class, GQA 8:2, 8:1, 3:3, Dv ≠ D both ways, Nq ≠ Nk for the dense form.
const shape shapes[] = {
    {1, 1, 1, 1, 1, 8, 8},        {2, 17, 17, 8, 2, 40, 24},     {1, 64, 64, 4, 4, 64, 64},
    {2, 3, 100, 4, 1, 16, 72},    {1, 200, 200, 2, 1, 128, 128}, {1, 130, 130, 3, 3, 72, 80},
    {2, 65, 65, 8, 1, 96, 8},     {1, 129, 33, 2, 2, 112, 16},   {3, 1, 17, 8, 8, 8, 8},
    {1, 300, 300, 1, 1, 256, 32}, {1, 63, 63, 4, 2, 5, 3},       {2, 0, 5, 2, 1, 8, 8}};

std::string shape_name(const ::testing::TestParamInfo<shape>& param) {
  std::ostringstream name;
  name << param.param;
  return name.str();
}

INSTANTIATE_TEST_SUITE_P(Sweep, LinearShapes, ::testing::ValuesIn(shapes), shape_name);

TEST(LinearShapes, NoKeysGivesZeros) {
  const problem p = make({2, 5, 0, 4, 2, 8, 6}, 3);
  const tensor out = run(p, attn::linear::elu1{}, attn::dense{});
  for (idx n = 0; n < out.size(); ++n) ASSERT_EQ(out.data()[n], 0.0f);
}

// ---- feature maps, decay, normalisation
// -------------------------------------------------------------

const std::vector<float> focused_scale = [] {
  std::vector<float> s(4 * 24);
  for (std::size_t c = 0; c < s.size(); ++c) s[c] = -1.0f + 0.02f * static_cast<float>(c);
  return s;
}();
const std::vector<float> focused_key_scale = [] {
  std::vector<float> s(2 * 24);
  for (std::size_t c = 0; c < s.size(); ++c) s[c] = 0.5f - 0.03f * static_cast<float>(c);
  return s;
}();

/// Every map on dense and (where it has a causal form) causal, normalised or not, with and
/// without decay.
template <class Map>
void check_map(const Map& map, bool causal_form = true, double tol = tolerance) {
  const problem p = make({2, 77, 77, 4, 2, 24, 20}, 21);
  const std::vector<float> decays[] = {{},
                                       attn::linear::retnet_decay(4),
                                       attn::linear::lightning_decay(4),
                                       {0.5f, 1.0f, 0.9f, 0.2f}};
  for (const bool normalise : {true, false}) {
    SCOPED_TRACE(normalise ? "normalised" : "unnormalised");
    options opt;
    opt.normalise = normalise;
    opt.scale = 0.7f;
    {
      SCOPED_TRACE("dense");
      expect_within(run(p, map, attn::dense{}, opt),
                    attn::reference::linear_attention(p.q, p.k, p.v, map, attn::dense{}, opt), tol);
    }
    if (!causal_form) continue;
    for (const std::vector<float>& decay : decays) {
      SCOPED_TRACE("causal, decay " + std::to_string(decay.size()));
      opt.decay = decay;
      opt.chunk = 16;
      expect_within(run(p, map, attn::causal{}, opt),
                    attn::reference::linear_attention(p.q, p.k, p.v, map, attn::causal{}, opt),
                    tol);
    }
  }
}

TEST(LinearMaps, Elu1) { check_map(attn::linear::elu1{}); }
TEST(LinearMaps, Relu) { check_map(attn::linear::relu{}); }
TEST(LinearMaps, Identity) { check_map(attn::linear::identity{}); }
TEST(LinearMaps, Efficient) { check_map(attn::linear::efficient{}, false); }
TEST(LinearMaps, FocusedDefault) { check_map(attn::linear::focused{}); }
TEST(LinearMaps, FocusedPerChannelScales) {
  for (const int p : {1, 2, 3, 5}) {
    SCOPED_TRACE("p = " + std::to_string(p));
    check_map(
        attn::linear::focused{.p = p, .scale = focused_scale, .key_scale = focused_key_scale});
  }
  const std::vector<float> one = {1.5f};
  check_map(attn::linear::focused{.p = 3, .scale = one});
}
TEST(LinearMaps, UserCallable) {
  check_map([](std::span<float> row) {
    for (float& x : row) x = x * x + 0.1f;
  });
  check_map([](std::span<float> row, attn::linear::role r) {
    for (float& x : row) x = r == attn::linear::role::query ? std::exp(x) : std::abs(x);
  });
}

TEST(LinearMaps, EfficientIsNormalisedByConstruction) {
  // Every key channel sums to 1 over the positions, so the normaliser is the scale: normalised
  // and unnormalised outputs agree up to the ε in the denominator.
  const problem p = make({1, 40, 50, 2, 1, 16, 16}, 5);
  options on, off;
  off.normalise = false;
  const tensor a = run(p, attn::linear::efficient{}, attn::dense{}, on);
  const tensor b = run(p, attn::linear::efficient{}, attn::dense{}, off);
  for (idx n = 0; n < a.size(); ++n) ASSERT_NEAR(a.data()[n], b.data()[n], 1e-5);
}

TEST(LinearMaps, FocusedNormsSpanAllHeads) {
  // The focused map of one head depends on the other heads' channels of the same token.
  const problem p = make({1, 9, 9, 2, 2, 8, 8}, 8);
  problem changed = p;
  for (idx i = 0; i < 9; ++i)
    for (idx d = 0; d < 8; ++d) changed.k(0, i, 1, d) *= 3.0f;  // only head 1 of k
  options opt;
  opt.normalise = false;
  const tensor a = run(p, attn::linear::focused{}, attn::dense{}, opt);
  const tensor b = run(changed, attn::linear::focused{}, attn::dense{}, opt);
  double head0_change = 0.0;
  for (idx i = 0; i < 9; ++i)
    for (idx e = 0; e < 8; ++e) head0_change += std::abs(a(0, i, 0, e) - b(0, i, 0, e));
  EXPECT_GT(head0_change, 1e-3);
  expect_within(b, attn::reference::linear_attention(changed.q, changed.k, changed.v,
                                                     attn::linear::focused{}, attn::dense{}, opt));
}

TEST(LinearDecay, PublishedDecays) {
  const std::vector<float> retnet = attn::linear::retnet_decay(4);
  ASSERT_EQ(retnet.size(), 4u);
  for (idx h = 0; h < 4; ++h)
    EXPECT_FLOAT_EQ(retnet[static_cast<std::size_t>(h)],
                    static_cast<float>(1.0 - std::exp2(-5.0 - static_cast<double>(h))));
  const std::vector<float> slopes = attn::alibi_slopes(6);
  const std::vector<float> lightning = attn::linear::lightning_decay(6);
  ASSERT_EQ(lightning.size(), 6u);
  for (std::size_t h = 0; h < 6; ++h) EXPECT_FLOAT_EQ(lightning[h], std::exp(-slopes[h]));
  const std::vector<float> last_layer = attn::linear::lightning_decay(6, 3, 4);
  for (std::size_t h = 0; h < 6; ++h)
    EXPECT_FLOAT_EQ(last_layer[h], static_cast<float>(std::exp(-slopes[h] * 1e-5)));
}

// ---- the three forms agree
// -----------------------------------------------------------------------

TEST(LinearForms, ChunkedEqualsRecurrentAndMaskedForEveryChunk) {
  const problem p = make({2, 37, 37, 4, 2, 12, 20}, 37);
  const std::vector<float> decay = {0.9f, 0.5f, 1.0f, 0.99f};
  for (const bool decayed : {false, true}) {
    for (const bool normalise : {true, false}) {
      SCOPED_TRACE(std::string(decayed ? "decay" : "no decay") +
                   (normalise ? ", normalised" : ", unnormalised"));
      options opt;
      opt.normalise = normalise;
      if (decayed) opt.decay = decay;
      const auto masked = attn::reference::linear_attention(p.q, p.k, p.v, attn::linear::elu1{},
                                                            attn::causal{}, opt);
      const auto recurrence =
          attn::reference::linear_recurrence(p.q, p.k, p.v, attn::linear::elu1{}, opt);
      for (idx n = 0; n < masked.out.size(); ++n)
        ASSERT_NEAR(masked.out.data()[n], recurrence.out.data()[n],
                    1e-12 * (1.0 + masked.error_scale.data()[n]));
      for (idx step : {1, 3, 37}) {
        SCOPED_TRACE("recurrent, " + std::to_string(step) + " token(s) per step");
        expect_within(run_steps(p, attn::linear::elu1{}, opt, step), masked);
      }
      for (idx chunk = 1; chunk <= 40; ++chunk) {
        SCOPED_TRACE("chunk " + std::to_string(chunk));
        opt.chunk = chunk;
        expect_within(run(p, attn::linear::elu1{}, attn::causal{}, opt), masked);
      }
    }
  }
}

TEST(LinearForms, PrefillThenDecodeThroughTheState) {
  const problem p = make({2, 50, 50, 4, 2, 16, 24}, 50);
  const std::vector<float> decay = attn::linear::retnet_decay(4);
  options opt;
  opt.decay = decay;
  opt.chunk = 8;
  const auto want = attn::reference::linear_recurrence(p.q, p.k, p.v, attn::linear::elu1{}, opt);

  // The first 29 tokens through the chunked form into a state, the rest by steps of 1 and 4.
  const idx B = 2, H = 4, D = 16, E = 24, split = 29;
  auto part = [&](const tensor& t, idx t0, idx n) {
    const tensor s = t.slice(Eigen::array<idx, 4>{0, t0, 0, 0},
                             Eigen::array<idx, 4>{B, n, t.dimension(2), t.dimension(3)});
    return s;
  };
  attn::linear::state st(B, H, D, E);
  tensor out(B, 50, H, E);
  tensor head = nan_output({part(p.q, 0, split), part(p.k, 0, split), part(p.v, 0, split)});
  attn::linear_attention<A>(part(p.q, 0, split), part(p.k, 0, split), part(p.v, 0, split), head,
                            attn::linear::elu1{}, attn::causal{}, st, opt);
  out.slice(Eigen::array<idx, 4>{0, 0, 0, 0}, Eigen::array<idx, 4>{B, split, H, E}) = head;
  for (idx t0 = split, step = 1; t0 < 50; t0 += step, step = 5 - step) {
    const idx n = std::min<idx>(step, 50 - t0);
    tensor ot(B, n, H, E);
    attn::linear_attention_step<A>(part(p.q, t0, n), part(p.k, t0, n), part(p.v, t0, n), ot,
                                   attn::linear::elu1{}, st, opt);
    out.slice(Eigen::array<idx, 4>{0, t0, 0, 0}, Eigen::array<idx, 4>{B, n, H, E}) = ot;
  }
  expect_within(out, want);
  // The state after the last token is the recurrence's.
  for (std::size_t n = 0; n < want.kv.size(); ++n)
    ASSERT_NEAR(st.kv.data()[n], want.kv[n], 1e-4 * (1.0 + std::abs(want.kv[n])));
  for (std::size_t n = 0; n < want.z.size(); ++n)
    ASSERT_NEAR(st.z.data()[n], want.z[n], 1e-4 * (1.0 + std::abs(want.z[n])));

  // A state reused after reset() starts over.
  st.reset();
  tensor again = nan_output(p);
  attn::linear_attention<A>(p.q, p.k, p.v, again, attn::linear::elu1{}, attn::causal{}, st, opt);
  expect_within(again, want);
}

TEST(LinearForms, ChunkedFromAGivenState) {
  // A non-zero initial state, continued by the chunked form and by steps: both equal the
  // reference recurrence started from it.
  const problem p = make({1, 45, 45, 2, 1, 8, 12}, 45);
  attn::linear::state start(1, 2, 8, 12);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.0f, 2.0f);
  for (idx n = 0; n < start.kv.size(); ++n) start.kv.data()[n] = u(rng) - 1.0f;
  for (idx n = 0; n < start.z.size(); ++n) start.z.data()[n] = u(rng) + 1.0f;
  const std::vector<float> decay = {0.8f, 0.95f};
  for (const bool decayed : {false, true}) {
    options opt;
    opt.chunk = 7;
    if (decayed) opt.decay = decay;
    const auto want =
        attn::reference::linear_recurrence(p.q, p.k, p.v, attn::linear::elu1{}, opt, &start);
    attn::linear::state st = start;
    tensor out = nan_output(p);
    attn::linear_attention<A>(p.q, p.k, p.v, out, attn::linear::elu1{}, attn::causal{}, st, opt);
    expect_within(out, want);
    attn::linear::state st2 = start;
    tensor out2 = nan_output(p);
    attn::linear_attention_step<A>(p.q, p.k, p.v, out2, attn::linear::elu1{}, st2, opt);
    expect_within(out2, want);
    for (std::size_t n = 0; n < want.kv.size(); ++n) {
      ASSERT_NEAR(st.kv.data()[n], want.kv[n], 1e-4 * (1.0 + std::abs(want.kv[n])));
      ASSERT_NEAR(st2.kv.data()[n], want.kv[n], 1e-4 * (1.0 + std::abs(want.kv[n])));
    }
  }
}

TEST(LinearForms, LongSequencesStayFinite) {
  // N = 65,536, one small head: the state sums 65,536 terms (no decay) or forgets (decay).
  const problem p = make({1, 65536, 65536, 1, 1, 16, 16}, 65536);
  const std::vector<float> decay = {0.999f};
  for (const bool decayed : {false, true})
    for (const bool normalise : {true, false}) {
      SCOPED_TRACE(std::string(decayed ? "decay" : "no decay") +
                   (normalise ? ", normalised" : ", unnormalised"));
      options opt;
      opt.normalise = normalise;
      if (decayed) opt.decay = decay;
      const tensor out = run(p, attn::linear::elu1{}, attn::causal{}, opt);
      for (idx n = 0; n < out.size(); ++n) ASSERT_TRUE(std::isfinite(out.data()[n])) << n;
      expect_within(out,
                    attn::reference::linear_recurrence(p.q, p.k, p.v, attn::linear::elu1{}, opt));
    }
  options opt;
  const tensor dense = run(p, attn::linear::elu1{}, attn::dense{}, opt);
  for (idx n = 0; n < dense.size(); ++n) ASSERT_TRUE(std::isfinite(dense.data()[n])) << n;
}

// ---- the micro-kernels linear attention adds to attn/simd/microkernel.hpp
// -------------------------

TEST(LinearMicrokernels, BroadcastGemmMatchesLoops) {
  namespace simd = attn::simd;
  constexpr idx L = simd::lanes<A>;
  std::mt19937 rng(99);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const simd::triangle parts[] = {simd::triangle::none, simd::triangle::columns,
                                  simd::triangle::depth};
  int checked = 0;
  for (const idx rows : {1, 5, 6, 7, 13, 24})
    for (const idx vectors : {1, 3, 4, 5, 9})
      for (const idx depth : {1, 7, 24})
        for (const bool transposed_a : {false, true})
          for (const bool accumulate : {false, true})
            for (const simd::triangle part : parts) {
              const idx cols = vectors * L, ldb = cols + L, ldc = cols + 2 * L;
              // A(i, p) at a[i·a_row + p·a_col]: row-major or column-major, padded.
              const idx a_row = transposed_a ? 1 : depth + 3, a_col = transposed_a ? rows + 2 : 1;
              std::vector<float> a(static_cast<std::size_t>((rows + 2) * (depth + 3))),
                  b(static_cast<std::size_t>(depth * ldb)), c(static_cast<std::size_t>(rows * ldc));
              for (float& x : a) x = u(rng);
              for (float& x : b) x = u(rng);
              for (float& x : c) x = u(rng);
              std::vector<float> want = c;
              for (idx i = 0; i < rows; ++i)
                for (idx j = 0; j < cols; ++j) {
                  // Which entries the part promises: `columns` leaves columns past the row's
                  // band (rounded to vectors) unspecified; `depth` assumes A(i, p) = 0 for p > i.
                  double acc = accumulate ? c[static_cast<std::size_t>(i * ldc + j)] : 0.0;
                  for (idx p = 0; p < depth; ++p) {
                    if (part == simd::triangle::depth && p > i) continue;
                    acc += static_cast<double>(a[static_cast<std::size_t>(i * a_row + p * a_col)]) *
                           b[static_cast<std::size_t>(p * ldb + j)];
                  }
                  want[static_cast<std::size_t>(i * ldc + j)] = static_cast<float>(acc);
                }
              if (part == simd::triangle::depth)  // make the promise true: A(i, p) = 0, p > i
                for (idx i = 0; i < rows; ++i)
                  for (idx p = i + 1; p < depth; ++p)
                    a[static_cast<std::size_t>(i * a_row + p * a_col)] = 0.0f;
              simd::broadcast_gemm<A>(rows, cols, depth, a.data(), a_row, a_col, b.data(), ldb,
                                      c.data(), ldc, accumulate, part);
              for (idx i = 0; i < rows; ++i)
                for (idx j = 0; j < cols; ++j) {
                  if (part == simd::triangle::columns && j > i) continue;
                  ASSERT_NEAR(c[static_cast<std::size_t>(i * ldc + j)],
                              want[static_cast<std::size_t>(i * ldc + j)],
                              1e-5 * static_cast<double>(depth + 1))
                      << "rows " << rows << " vectors " << vectors << " depth " << depth << " at ("
                      << i << ", " << j << ")";
                }
              // Padding columns are never written.
              for (idx i = 0; i < rows; ++i)
                for (idx j = cols; j < ldc; ++j)
                  ASSERT_EQ(c[static_cast<std::size_t>(i * ldc + j)],
                            want[static_cast<std::size_t>(i * ldc + j)]);
              ++checked;
            }
  EXPECT_GT(checked, 0);
}

TEST(LinearMicrokernels, TransposeMatchesLoops) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (const idx rows : {1, 15, 16, 17, 32, 45})
    for (const idx cols : {1, 8, 16, 20, 64, 72}) {
      const idx lds = cols + 3, ldd = rows + 5;
      std::vector<float> src(static_cast<std::size_t>(rows * lds)),
          dst(static_cast<std::size_t>(cols * ldd), -7.0f);
      for (float& x : src) x = u(rng);
      attn::simd::transpose<A>(src.data(), lds, rows, cols, dst.data(), ldd);
      for (idx c = 0; c < cols; ++c)
        for (idx r = 0; r < ldd; ++r)
          ASSERT_EQ(dst[static_cast<std::size_t>(c * ldd + r)],
                    r < rows ? src[static_cast<std::size_t>(r * lds + c)] : -7.0f)
              << rows << "x" << cols << " at (" << r << ", " << c << ")";
    }
}

// ---- threads, executors, views
// --------------------------------------------------------------------

TEST(LinearThreads, ThreadCountsAndExecutorsAgree) {
  // One K/V head and a long sequence: the dense form splits key and query ranges over workers.
  const problem p = make({1, 1500, 1800, 2, 1, 16, 8}, 15);
  const auto dense =
      attn::reference::linear_attention(p.q, p.k, p.v, attn::linear::elu1{}, attn::dense{});
  const problem c = make({2, 300, 300, 4, 2, 16, 8}, 16);
  const std::vector<float> decay = attn::linear::retnet_decay(4);
  options copt;
  copt.decay = decay;
  const auto causal =
      attn::reference::linear_attention(c.q, c.k, c.v, attn::linear::elu1{}, attn::causal{}, copt);
  std::vector<std::pair<std::string, attn::exec::executor>> executors = {
      {"serial", attn::exec::serial()}, {"std_threads", attn::exec::std_threads()}};
#if defined(_OPENMP)
  executors.emplace_back("openmp", attn::exec::openmp());
#endif
  for (const auto& [name, executor] : executors)
    for (int threads : {0, 1, 2, 3, 5}) {
      SCOPED_TRACE(name + ", threads " + std::to_string(threads));
      options opt;
      opt.executor = executor;
      opt.threads = threads;
      expect_within(run(p, attn::linear::elu1{}, attn::dense{}, opt), dense);
      copt.executor = executor;
      copt.threads = threads;
      expect_within(run(c, attn::linear::elu1{}, attn::causal{}, copt), causal);
    }
}

TEST(LinearViews, MisalignedMapsAndRvalueOutput) {
  const shape s{2, 33, 33, 4, 2, 40, 24};
  const problem p = make(s, 7);
  auto misaligned = [](const tensor& t, std::vector<float>& storage) {
    storage.assign(static_cast<std::size_t>(t.size()) + 1, 0.0f);
    std::copy(t.data(), t.data() + t.size(), storage.data() + 1);
    return attn::const_tensor4_map<float>(storage.data() + 1, t.dimensions());
  };
  std::vector<float> qs, ks, vs;
  const auto q = misaligned(p.q, qs), k = misaligned(p.k, ks), v = misaligned(p.v, vs);
  std::vector<float> out_storage(static_cast<std::size_t>(2 * 33 * 4 * 24) + 1);
  const auto want =
      attn::reference::linear_attention(p.q, p.k, p.v, attn::linear::relu{}, attn::causal{});
  attn::linear_attention<A>(q, k, v, attn::tensor4_map<float>(out_storage.data() + 1, 2, 33, 4, 24),
                            attn::linear::relu{}, attn::causal{});
  const tensor got = attn::tensor4_map<float>(out_storage.data() + 1, 2, 33, 4, 24);
  expect_within(got, want);
  // Non-const maps as inputs.
  tensor qc = p.q, kc = p.k, vc = p.v;
  const attn::tensor4_map<float> qm(qc.data(), qc.dimensions()), km(kc.data(), kc.dimensions()),
      vm(vc.data(), vc.dimensions());
  tensor from_maps = nan_output(p);
  attn::linear_attention<A>(qm, km, vm, from_maps, attn::linear::relu{}, attn::causal{});
  expect_within(from_maps, want);
  // The defaults: dense, elu1.
  tensor out = nan_output(p);
  attn::linear_attention(p.q, p.k, p.v, out);
  expect_within(
      out, attn::reference::linear_attention(p.q, p.k, p.v, attn::linear::elu1{}, attn::dense{}));
}

}  // namespace linear_test
