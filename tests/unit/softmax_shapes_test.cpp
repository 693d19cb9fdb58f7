// The fused softmax kernel against the double-precision reference over shapes: sequence lengths
// 1, 3, 17, 64, 1000 on both sides (Nq < Nk and Nq > Nk), every head_dim the design names,
// V head_dim != Q head_dim, grouped-query 8:2 and 8:1; then views, the entry point's overloads,
// thread counts and executors.
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
#include <attn/reference/softmax.hpp>

#include "support/arch.hpp"
#include "support/random.hpp"

namespace {

using attn::idx;
using tensor = attn::tensor4<float>;
constexpr double tolerance = 2e-5;

struct problem {
  tensor q, k, v;
};

struct shape {
  idx batch, seq_q, seq_k, heads_q, heads_kv, head_dim, head_dim_v;
};

std::ostream& operator<<(std::ostream& os, const shape& s) {
  return os << "B" << s.batch << "_Nq" << s.seq_q << "_Nk" << s.seq_k << "_H" << s.heads_q << "x"
            << s.heads_kv << "_D" << s.head_dim << "_Dv" << s.head_dim_v;
}

problem make_problem(const shape& s, unsigned seed) {
  std::mt19937 rng(seed);
  problem p;
  p.q = attn::test::random_tensor(rng, s.batch, s.seq_q, s.heads_q, s.head_dim);
  p.k = attn::test::random_tensor(rng, s.batch, s.seq_k, s.heads_kv, s.head_dim);
  p.v = attn::test::random_tensor(rng, s.batch, s.seq_k, s.heads_kv, s.head_dim_v);
  return p;
}

struct kernel_result {
  tensor out;
  attn::lse_tensor lse;
};

/// The kernel's output and LSE, both pre-filled with NaN so that an unwritten element shows.
template <class Pattern = attn::dense>
kernel_result run_kernel(const problem& p, const attn::softmax& score = {},
                         const Pattern& pattern = {}, attn::options opt = {}) {
  const idx b = p.q.dimension(0), nq = p.q.dimension(1), hq = p.q.dimension(2);
  kernel_result r{tensor(b, nq, hq, p.v.dimension(3)), attn::lse_tensor(b, hq, nq)};
  r.out.setConstant(std::numeric_limits<float>::quiet_NaN());
  r.lse.setConstant(std::numeric_limits<float>::quiet_NaN());
  opt.lse = attn::lse_map(r.lse.data(), b, hq, nq);
  attn::attention<attn::test::arch>(p.q, p.k, p.v, r.out, score, pattern, opt);
  return r;
}

/// Output within `tol` of the reference; LSE equal where the reference is −inf, else within
/// `tol` relative to max(1, |LSE|).
void expect_close(const kernel_result& got, const attn::reference::result& want,
                  double tol = tolerance) {
  EXPECT_LE(attn::test::max_abs_diff(got.out, want.out), tol);
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

template <class Pattern = attn::dense>
void expect_matches_reference(const problem& p, const attn::softmax& score = {},
                              const Pattern& pattern = {}, const attn::options& opt = {}) {
  expect_close(run_kernel(p, score, pattern, opt),
               attn::reference::attention(p.q, p.k, p.v, score, pattern, opt));
}

// ---- shapes ----------------------------------------------------------------------------------

class SoftmaxShapes : public ::testing::TestWithParam<shape> {};

TEST_P(SoftmaxShapes, DenseAndCausalMatchReference) {
  const shape s = GetParam();
  const problem p =
      make_problem(s, static_cast<unsigned>(s.seq_q * 7919 + s.seq_k * 31 + s.head_dim));
  {
    SCOPED_TRACE("dense");
    expect_matches_reference(p);
  }
  {
    SCOPED_TRACE("causal");
    expect_matches_reference(p, {}, attn::causal{});
  }
}

// batch, Nq, Nk, Hq, Hkv, D, Dv. Each of 1, 3, 17, 64, 1000 appears as Nq and as Nk, with
// Nq < Nk and Nq > Nk; every head_dim of the design; GQA 8:2 and 8:1 and plain multi-head.
// The reference costs B·Hq·Nq·Nk·(D + Dv) multiply-adds in double, ~1e9 per second: the long
// sequences come with few heads or a short other side.
INSTANTIATE_TEST_SUITE_P(
    Sweep, SoftmaxShapes,
    ::testing::Values(shape{2, 1, 1, 8, 2, 64, 64}, shape{3, 1, 1000, 8, 2, 128, 128},
                      shape{2, 3, 17, 8, 1, 40, 40}, shape{3, 17, 3, 8, 2, 72, 72},
                      shape{2, 17, 64, 8, 2, 80, 80}, shape{2, 64, 17, 8, 1, 96, 96},
                      shape{2, 64, 64, 3, 3, 112, 112}, shape{2, 3, 1000, 8, 2, 256, 256},
                      shape{2, 1000, 3, 8, 1, 256, 256}, shape{2, 1000, 1000, 2, 1, 8, 8},
                      shape{2, 1000, 64, 2, 2, 40, 40}, shape{2, 64, 1000, 8, 2, 64, 64},
                      shape{3, 1, 17, 8, 8, 8, 8},
                      // V head_dim != Q head_dim
                      shape{2, 17, 17, 8, 2, 64, 40}, shape{3, 64, 3, 8, 2, 8, 72},
                      shape{2, 1, 64, 8, 1, 128, 16}, shape{2, 17, 1000, 8, 2, 256, 64},
                      shape{2, 3, 3, 8, 1, 80, 96}),
    [](const ::testing::TestParamInfo<shape>& param) {
      std::ostringstream name;
      name << param.param;
      return name.str();
    });

// ---- views and overloads -----------------------------------------------------------------------

TEST(SoftmaxViews, MisalignedMapsMatchOwningTensors) {
  const shape s{2, 33, 70, 4, 2, 40, 24};
  const problem p = make_problem(s, 7);
  // Copies one float past a 64-byte boundary: no SIMD load may assume alignment.
  auto misaligned = [](const tensor& t, std::vector<float>& storage) {
    storage.assign(static_cast<std::size_t>(t.size()) + 1, 0.0f);
    std::copy(t.data(), t.data() + t.size(), storage.data() + 1);
    return attn::const_tensor4_map<float>(storage.data() + 1, t.dimensions());
  };
  std::vector<float> qs, ks, vs;
  const auto q = misaligned(p.q, qs), k = misaligned(p.k, ks), v = misaligned(p.v, vs);
  std::vector<float> out_storage(
      static_cast<std::size_t>(s.batch * s.seq_q * s.heads_q * s.head_dim_v) + 1);
  attn::tensor4_map<float> out(out_storage.data() + 1, s.batch, s.seq_q, s.heads_q, s.head_dim_v);
  attn::attention<attn::test::arch>(q, k, v, out, attn::softmax{}, attn::causal{});
  const auto want = attn::reference::attention(p.q, p.k, p.v, {}, attn::causal{});
  const tensor got = out;
  EXPECT_LE(attn::test::max_abs_diff(got, want.out), tolerance);
  // An rvalue map as the output.
  tensor owned(s.batch, s.seq_q, s.heads_q, s.head_dim_v);
  attn::attention<attn::test::arch>(q, k, v,
                                    attn::tensor4_map<float>(owned.data(), owned.dimensions()),
                                    attn::softmax{}, attn::causal{});
  EXPECT_LE(attn::test::max_abs_diff(owned, want.out), tolerance);
}

TEST(SoftmaxViews, ShorterOverloadsMeanTheDefaults) {
  const shape s{2, 17, 40, 4, 1, 64, 32};
  const problem p = make_problem(s, 11);
  const auto want = attn::reference::attention(p.q, p.k, p.v);
  tensor out(s.batch, s.seq_q, s.heads_q, s.head_dim_v);
  attn::attention(p.q, p.k, p.v, out);
  EXPECT_LE(attn::test::max_abs_diff(out, want.out), tolerance);
  out.setZero();
  attn::attention(p.q, p.k, p.v, out, attn::softmax{});
  EXPECT_LE(attn::test::max_abs_diff(out, want.out), tolerance);
  out.setZero();
  attn::attention(p.q, p.k, p.v, out, attn::softmax{}, attn::dense{});
  EXPECT_LE(attn::test::max_abs_diff(out, want.out), tolerance);
}

// ---- threads and executors ---------------------------------------------------------------------

TEST(SoftmaxThreads, ThreadCountsAgree) {
  const shape s{3, 150, 200, 8, 2, 64, 48};
  const problem p = make_problem(s, 13);
  const std::vector<float> sinks = {0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -0.5f, 0.25f, 3.0f};
  attn::softmax score;
  score.sinks = sinks;
  const auto want = attn::reference::attention(p.q, p.k, p.v, score, attn::causal{});
  kernel_result first;
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE("threads = " + std::to_string(threads));
    attn::options opt;
    opt.threads = threads;
    kernel_result got = run_kernel(p, score, attn::causal{}, opt);
    expect_close(got, want);
    if (threads == 1) {
      first = std::move(got);
      continue;
    }
    // Each row is computed by one worker in one order: the thread count changes nothing.
    const Eigen::Tensor<double, 4, Eigen::RowMajor> first_out = first.out.cast<double>();
    EXPECT_LE(attn::test::max_abs_diff(got.out, first_out), 1e-6);
  }
}

TEST(SoftmaxThreads, Executors) {
  const shape s{2, 100, 90, 4, 2, 32, 32};
  const problem p = make_problem(s, 17);
  const auto want = attn::reference::attention(p.q, p.k, p.v, {}, attn::causal{});
  std::vector<std::pair<std::string, attn::exec::executor>> executors = {
      {"serial", attn::exec::serial()}, {"std_threads", attn::exec::std_threads()}};
#if defined(_OPENMP)
  executors.emplace_back("openmp", attn::exec::openmp());
#endif
  for (const auto& [name, executor] : executors) {
    SCOPED_TRACE(name);
    for (int threads : {0, 1, 3}) {
      attn::options opt;
      opt.executor = executor;
      opt.threads = threads;
      expect_close(run_kernel(p, {}, attn::causal{}, opt), want);
    }
  }
}

}  // namespace
