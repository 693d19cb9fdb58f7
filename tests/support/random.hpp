// Seeded random inputs and error measures shared by the tests.
#pragma once

#include <cmath>
#include <limits>
#include <random>

#include <unsupported/Eigen/CXX11/Tensor>

#include "attn/tensor.hpp"

namespace attn::test {

/// A [b, s, h, d] float tensor of values drawn uniformly from [lo, hi) with `rng`.
inline tensor4<float> random_tensor(std::mt19937& rng, Eigen::Index b, Eigen::Index s,
                                    Eigen::Index h, Eigen::Index d, float lo = -1.0f,
                                    float hi = 1.0f) {
  tensor4<float> t(b, s, h, d);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = dist(rng);
  return t;
}

/// max |a - ref| over all elements, in double (equal infinities count as equal). +inf when the
/// shapes differ or either side holds a NaN, so that `max_abs_diff(...) <= tol` fails then.
inline double max_abs_diff(const tensor4<float>& a,
                           const Eigen::Tensor<double, 4, Eigen::RowMajor>& ref) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  if (a.dimensions() != ref.dimensions()) return inf;
  double worst = 0.0;
  for (Eigen::Index i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a.data()[i]);
    if (x == ref.data()[i]) continue;
    const double diff = std::abs(x - ref.data()[i]);
    if (std::isnan(diff)) return inf;
    if (diff > worst) worst = diff;
  }
  return worst;
}

using bool_tensor4 = Eigen::Tensor<bool, 4, Eigen::RowMajor>;

/// A [b, h, nq, nk] float bias in [−2, 2] with ~10% −inf, and row 0 of (0, 0) all −inf (a row
/// that sees nothing).
inline tensor4<float> random_bias(std::mt19937& rng, Eigen::Index b, Eigen::Index h,
                                  Eigen::Index nq, Eigen::Index nk) {
  tensor4<float> t = random_tensor(rng, b, h, nq, nk, -2.0f, 2.0f);
  std::bernoulli_distribution hidden(0.1);
  for (Eigen::Index n = 0; n < t.size(); ++n)
    if (hidden(rng)) t.data()[n] = -std::numeric_limits<float>::infinity();
  for (Eigen::Index j = 0; j < nk; ++j) t(0, 0, 0, j) = -std::numeric_limits<float>::infinity();
  return t;
}

/// A [b, h, nq, nk] mask, visible with probability p, with row 0 of (0, 0) all false.
inline bool_tensor4 random_mask(std::mt19937& rng, Eigen::Index b, Eigen::Index h, Eigen::Index nq,
                                Eigen::Index nk, double p = 0.7) {
  bool_tensor4 m(b, h, nq, nk);
  std::bernoulli_distribution visible(p);
  for (Eigen::Index n = 0; n < m.size(); ++n) m.data()[n] = visible(rng);
  for (Eigen::Index j = 0; j < nk; ++j) m(0, 0, 0, j) = false;
  return m;
}

}  // namespace attn::test
