// Partial results over disjoint key sets merge into the full result (attn::merge), and the
// Eigen thread-pool executor runs the kernel like the others.
#define EIGEN_USE_THREADS
#include <gtest/gtest.h>

#include <attn/attn.hpp>
#include <attn/exec/eigen_pool.hpp>
#include <attn/reference/softmax.hpp>

#include "support/random.hpp"

namespace softmax_merge_test {

using bool4 = Eigen::Tensor<bool, 4, Eigen::RowMajor>;

/// A [1, 1, nq, nk] mask that shows keys [lo, hi).
bool4 key_range_mask(Eigen::Index nq, Eigen::Index nk, Eigen::Index lo, Eigen::Index hi) {
  bool4 m(1, 1, nq, nk);
  for (Eigen::Index i = 0; i < nq; ++i)
    for (Eigen::Index j = 0; j < nk; ++j) m(0, 0, i, j) = j >= lo && j < hi;
  return m;
}

struct partial {
  attn::tensor4<float> out;
  attn::lse_tensor lse;
};

template <class Pattern>
partial run(const attn::tensor4<float>& q, const attn::tensor4<float>& k,
            const attn::tensor4<float>& v, const Pattern& pattern) {
  partial p{attn::tensor4<float>(q.dimension(0), q.dimension(1), q.dimension(2), v.dimension(3)),
            attn::lse_tensor(q.dimension(0), q.dimension(2), q.dimension(1))};
  attn::options opt;
  opt.lse = attn::lse_map(p.lse.data(), p.lse.dimensions());
  attn::attention(q, k, v, p.out, attn::softmax{}, pattern, opt);
  return p;
}

TEST(SoftmaxMerge, TwoHalvesOfTheKeysMergeIntoTheWhole) {
  std::mt19937 rng(11);
  const Eigen::Index nq = 37, nk = 150;
  const auto q = attn::test::random_tensor(rng, 2, nq, 4, 40);
  const auto k = attn::test::random_tensor(rng, 2, nk, 2, 40);
  const auto v = attn::test::random_tensor(rng, 2, nk, 2, 24);
  for (const Eigen::Index split : {Eigen::Index{0}, Eigen::Index{1}, Eigen::Index{64}, nk}) {
    partial a = run(q, k, v, attn::mask{key_range_mask(nq, nk, 0, split)});
    const partial b = run(q, k, v, attn::mask{key_range_mask(nq, nk, split, nk)});
    attn::merge(a.out, a.lse, b.out, b.lse);
    const partial whole = run(q, k, v, attn::dense{});
    const auto ref = attn::reference::attention(q, k, v);
    EXPECT_LE(attn::test::max_abs_diff(a.out, ref.out), 2e-5) << "split at " << split;
    for (Eigen::Index i = 0; i < whole.lse.size(); ++i)
      EXPECT_NEAR(a.lse.data()[i], whole.lse.data()[i], 1e-5) << "split at " << split;
  }
}

TEST(SoftmaxMerge, TwoEmptyPartsGiveZerosAndMinusInfinity) {
  std::mt19937 rng(12);
  const auto q = attn::test::random_tensor(rng, 1, 5, 2, 16);
  const auto k = attn::test::random_tensor(rng, 1, 7, 2, 16);
  const auto v = attn::test::random_tensor(rng, 1, 7, 2, 8);
  const auto none = key_range_mask(5, 7, 0, 0);
  partial a = run(q, k, v, attn::mask{none});
  const partial b = run(q, k, v, attn::mask{none});
  attn::merge(a.out, a.lse, b.out, b.lse);
  for (Eigen::Index i = 0; i < a.out.size(); ++i) EXPECT_EQ(a.out.data()[i], 0.0f);
  for (Eigen::Index i = 0; i < a.lse.size(); ++i)
    EXPECT_EQ(a.lse.data()[i], -std::numeric_limits<float>::infinity());
}

TEST(SoftmaxMerge, MismatchedShapesAreRejected) {
  attn::tensor4<float> oa(1, 4, 2, 8), ob(1, 4, 2, 9);
  attn::lse_tensor la(1, 2, 4), lb(1, 2, 4);
  oa.setZero();
  ob.setZero();
  EXPECT_THROW(attn::merge(oa, la, ob, lb), attn::error);
  attn::tensor4<float> oc(1, 4, 2, 8);
  attn::lse_tensor lc(1, 4, 2);
  EXPECT_THROW(attn::merge(oa, la, oc, lc), attn::error);
}

TEST(SoftmaxExecutors, EigenThreadPoolMatchesSerial) {
  std::mt19937 rng(13);
  const auto q = attn::test::random_tensor(rng, 2, 300, 4, 64);
  const auto k = attn::test::random_tensor(rng, 2, 300, 4, 64);
  const auto v = attn::test::random_tensor(rng, 2, 300, 4, 64);
  attn::tensor4<float> serial(2, 300, 4, 64), pooled(2, 300, 4, 64);
  attn::options opt;
  opt.executor = attn::exec::serial();
  attn::attention(q, k, v, serial, attn::softmax{}, attn::causal{}, opt);
  Eigen::ThreadPool pool(3);
  Eigen::ThreadPoolDevice device(&pool, 3);
  opt.executor = attn::exec::eigen_pool(device);
  opt.threads = 4;
  attn::attention(q, k, v, pooled, attn::softmax{}, attn::causal{}, opt);
  for (Eigen::Index i = 0; i < serial.size(); ++i)
    ASSERT_FLOAT_EQ(serial.data()[i], pooled.data()[i]) << i;
}

}  // namespace softmax_merge_test
