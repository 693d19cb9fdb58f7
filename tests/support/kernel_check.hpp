// Running a fused kernel and comparing it with the double-precision reference: the helpers
// every family's tests share (problems, shapes, run, compare).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>
#include <attn/reference/reference.hpp>

#include "support/arch.hpp"
#include "support/random.hpp"

namespace attn::test {

using tensor = tensor4<float>;
/// Max |kernel − reference| for unit-scale inputs (DESIGN.md §4).
inline constexpr double tolerance = 2e-5;

/// Q, K, V of one attention problem.
struct problem {
  tensor q, k, v;
  idx batch() const { return q.dimension(0); }
  idx seq_q() const { return q.dimension(1); }
  idx seq_k() const { return k.dimension(1); }
  idx heads() const { return q.dimension(2); }
};

/// The shape of a problem: batch, Nq, Nk, Hq, Hkv, D, Dv.
struct shape {
  idx batch, seq_q, seq_k, heads_q, heads_kv, head_dim, head_dim_v;
};

inline std::ostream& operator<<(std::ostream& os, const shape& s) {
  return os << "B" << s.batch << "_Nq" << s.seq_q << "_Nk" << s.seq_k << "_H" << s.heads_q << "x"
            << s.heads_kv << "_D" << s.head_dim << "_Dv" << s.head_dim_v;
}

/// The shapes every family's kernel is checked over (batch, Nq, Nk, Hq, Hkv, D, Dv): each of
/// 1, 3, 17, 64, 1000 as Nq and as Nk, with Nq < Nk and Nq > Nk; every head_dim of the design;
/// V head_dim ≠ Q head_dim; GQA 8:2 and 8:1 and plain multi-head. The reference costs
/// B·Hq·Nq·Nk·(D + Dv) multiply-adds in double: the long sequences come with few heads or a
/// short other side.
inline const std::vector<shape>& shape_sweep() {
  static const std::vector<shape> shapes = {
      {2, 1, 1, 8, 2, 64, 64},     {2, 1, 1000, 8, 2, 128, 128}, {2, 3, 17, 8, 1, 40, 40},
      {2, 17, 3, 8, 2, 72, 72},    {2, 17, 64, 8, 2, 80, 80},    {2, 64, 17, 8, 1, 96, 96},
      {2, 64, 64, 3, 3, 112, 112}, {1, 3, 1000, 8, 2, 256, 256}, {1, 1000, 3, 8, 1, 256, 256},
      {1, 1000, 1000, 2, 1, 8, 8}, {1, 1000, 64, 2, 2, 40, 40},  {1, 64, 1000, 8, 2, 64, 64},
      {3, 1, 17, 8, 8, 8, 8},      {2, 17, 17, 8, 2, 64, 40},    {2, 64, 3, 8, 2, 8, 72},
      {2, 1, 64, 8, 1, 128, 16},   {1, 17, 1000, 8, 2, 256, 64}, {2, 3, 3, 8, 1, 80, 96}};
  return shapes;
}

/// A gtest name for a shape parameter.
inline std::string shape_name(const ::testing::TestParamInfo<shape>& param) {
  std::ostringstream name;
  name << param.param;
  return name.str();
}

/// Uniform [-1, 1) Q, K, V of shape s from `seed`.
inline problem make_problem(const shape& s, unsigned seed) {
  std::mt19937 rng(seed);
  problem p;
  p.q = random_tensor(rng, s.batch, s.seq_q, s.heads_q, s.head_dim);
  p.k = random_tensor(rng, s.batch, s.seq_k, s.heads_kv, s.head_dim);
  p.v = random_tensor(rng, s.batch, s.seq_k, s.heads_kv, s.head_dim_v);
  return p;
}

inline problem make_problem(idx batch, idx seq_q, idx seq_k, idx heads_q, idx heads_kv,
                            idx head_dim, idx head_dim_v, unsigned seed) {
  return make_problem(shape{batch, seq_q, seq_k, heads_q, heads_kv, head_dim, head_dim_v}, seed);
}

/// A kernel's output and, for score functions that define one, its LSE.
struct kernel_result {
  tensor out;
  lse_tensor lse;  // empty for score functions without a log-sum-exp
};

/// Runs the kernel for the arch under test. Output and LSE are pre-filled with NaN so that an
/// element the kernel did not write shows.
template <class Score = softmax, class Pattern = dense>
kernel_result run_kernel(const problem& p, const Score& score = {}, const Pattern& pattern = {},
                         options opt = {}) {
  kernel_result r{tensor(p.batch(), p.seq_q(), p.heads(), p.v.dimension(3)), lse_tensor()};
  r.out.setConstant(std::numeric_limits<float>::quiet_NaN());
  if constexpr (Score::has_lse) {
    r.lse = lse_tensor(p.batch(), p.heads(), p.seq_q());
    r.lse.setConstant(std::numeric_limits<float>::quiet_NaN());
    opt.lse = lse_map(r.lse.data(), p.batch(), p.heads(), p.seq_q());
  }
  attention<arch>(p.q, p.k, p.v, r.out, score, pattern, opt);
  return r;
}

/// The output alone (any score function).
template <class Score = softmax, class Pattern = dense>
tensor kernel_output(const problem& p, const Score& score = {}, const Pattern& pattern = {},
                     const options& opt = {}) {
  options without_lse = opt;
  without_lse.lse.reset();
  return run_kernel(p, score, pattern, without_lse).out;
}

/// Output within `tol` of the reference; LSE (when both have one) equal where the reference is
/// −inf, else within `tol` relative to max(1, |LSE|).
inline void expect_close(const kernel_result& got, const reference::result& want,
                         double tol = tolerance) {
  EXPECT_LE(max_abs_diff(got.out, want.out), tol);
  if (got.lse.size() == 0) return;
  idx wrong = 0, first = -1;
  for (idx n = 0; n < want.lse.size(); ++n) {
    const double g = static_cast<double>(got.lse.data()[n]), w = want.lse.data()[n];
    const bool ok = std::isinf(w) ? g == w : std::abs(g - w) <= tol * std::max(1.0, std::abs(w));
    if (!ok && wrong++ == 0) first = n;
  }
  EXPECT_EQ(wrong, 0) << "first wrong LSE at flat index " << first << ": "
                      << (first >= 0 ? got.lse.data()[first] : 0.0f) << " vs "
                      << (first >= 0 ? want.lse.data()[first] : 0.0);
}

/// Runs kernel and reference on the same call and compares them; returns the reference.
template <class Score = softmax, class Pattern = dense>
reference::result expect_matches_reference(const problem& p, const Score& score = {},
                                           const Pattern& pattern = {}, const options& opt = {},
                                           double tol = tolerance) {
  reference::result want = reference::attention(p.q, p.k, p.v, score, pattern, opt);
  expect_close(run_kernel(p, score, pattern, opt), want, tol);
  return want;
}

}  // namespace attn::test
