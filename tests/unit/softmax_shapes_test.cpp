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

#include "support/kernel_check.hpp"

namespace softmax_shapes_test {

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

INSTANTIATE_TEST_SUITE_P(Sweep, SoftmaxShapes, ::testing::ValuesIn(attn::test::shape_sweep()),
                         attn::test::shape_name);

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

}  // namespace softmax_shapes_test
