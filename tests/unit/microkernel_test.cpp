// The register-blocked micro-kernels of attn/simd/microkernel.hpp against plain loops, for every
// remainder of the key count (scores_tile) and of head_dim_v (accumulate_tile) on the arch under
// test, with row strides larger than the head dim as in a [batch, seq, heads, head_dim] tensor.
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "attn/simd/microkernel.hpp"
#include "support/arch.hpp"

namespace microkernel_test {

using A = attn::test::arch;
namespace simd = attn::simd;
using ix = std::ptrdiff_t;  // sizes and strides, as the kernels take them
constexpr ix M = simd::tile_queries<A>;
constexpr ix R = simd::tile_shape<A>::rows;
constexpr float sentinel = -12345.0f;

/// The head dims tried: every remainder up to 40, then the common sizes.
std::vector<ix> head_dims() {
  std::vector<ix> dims;
  for (ix d = 1; d <= 40; ++d) dims.push_back(d);
  dims.push_back(64);
  dims.push_back(128);
  return dims;
}

/// The key counts tried: 0, every remainder of the register block, and more than two blocks.
std::vector<ix> key_counts() {
  std::vector<ix> keys;
  for (ix n = 0; n <= 2 * R + 1; ++n) keys.push_back(n);
  return keys;
}

std::vector<float> random_floats(std::mt19937& rng, ix n) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> xs(static_cast<std::size_t>(n));
  for (float& x : xs) x = dist(rng);
  return xs;
}

/// Elements a buffer of `rows` rows of `width` needs when consecutive rows are `stride` apart:
/// exactly up to the end of the last row, so that reading past it is caught by ASan.
ix strided_size(ix rows, ix width, ix stride) {
  return rows == 0 ? 0 : (rows - 1) * stride + width;
}

float at(const std::vector<float>& xs, ix i) { return xs[static_cast<std::size_t>(i)]; }

TEST(Microkernel, ScoresTileMatchesLoops) {
  std::mt19937 rng(1234);
  int checked = 0;
  for (ix head_dim : head_dims()) {
    for (ix pad : {ix{0}, ix{7}}) {
      const ix k_stride = head_dim + pad;
      for (ix keys : key_counts()) {
        SCOPED_TRACE(testing::Message()
                     << "head_dim=" << head_dim << " k_stride=" << k_stride << " keys=" << keys);
        const std::vector<float> qt = random_floats(rng, head_dim * M);
        const std::vector<float> k = random_floats(rng, strided_size(keys, head_dim, k_stride));
        std::vector<float> st(static_cast<std::size_t>((keys + 1) * M), sentinel);

        simd::scores_tile<A>(qt.data(), head_dim, k.data(), k_stride, keys, st.data());

        for (ix j = 0; j < keys; ++j) {
          for (ix m = 0; m < M; ++m) {
            double want = 0.0, magnitude = 0.0;
            for (ix d = 0; d < head_dim; ++d) {
              const double term = static_cast<double>(at(k, j * k_stride + d)) * at(qt, d * M + m);
              want += term;
              magnitude += std::abs(term);
            }
            const double tol = static_cast<double>(head_dim + 1) * FLT_EPSILON * magnitude;
            ASSERT_NEAR(at(st, j * M + m), want, tol) << "S[key " << j << ", query " << m << "]";
          }
        }
        for (ix m = 0; m < M; ++m)
          ASSERT_EQ(at(st, keys * M + m), sentinel) << "wrote past key " << keys;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 0);
}

TEST(Microkernel, AccumulateTileMatchesLoops) {
  std::mt19937 rng(5678);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (ix head_dim_v : head_dims()) {
    for (ix pad : {ix{0}, ix{3}}) {
      const ix v_stride = head_dim_v + pad;
      for (ix keys : key_counts()) {
        SCOPED_TRACE(testing::Message() << "head_dim_v=" << head_dim_v << " v_stride=" << v_stride
                                        << " keys=" << keys);
        const std::vector<float> pt = random_floats(rng, keys * M);
        const std::vector<float> v = random_floats(rng, strided_size(keys, head_dim_v, v_stride));
        std::vector<float> alpha(static_cast<std::size_t>(M));
        for (float& a : alpha) a = unit(rng);
        std::vector<float> ot = random_floats(rng, head_dim_v * M);
        const std::vector<float> ot_before = ot;
        ot.resize(static_cast<std::size_t>((head_dim_v + 1) * M), sentinel);

        simd::accumulate_tile<A>(pt.data(), keys, v.data(), v_stride, head_dim_v, alpha.data(),
                                 ot.data());

        for (ix e = 0; e < head_dim_v; ++e) {
          for (ix m = 0; m < M; ++m) {
            const double scaled = static_cast<double>(at(alpha, m)) * at(ot_before, e * M + m);
            double want = scaled, magnitude = std::abs(scaled);
            for (ix j = 0; j < keys; ++j) {
              const double term = static_cast<double>(at(v, j * v_stride + e)) * at(pt, j * M + m);
              want += term;
              magnitude += std::abs(term);
            }
            const double tol = static_cast<double>(keys + 2) * FLT_EPSILON * magnitude;
            ASSERT_NEAR(at(ot, e * M + m), want, tol) << "O[dim " << e << ", query " << m << "]";
          }
        }
        for (ix m = 0; m < M; ++m)
          ASSERT_EQ(at(ot, head_dim_v * M + m), sentinel) << "wrote past dim " << head_dim_v;
      }
    }
  }
}

TEST(Microkernel, AccumulateTileWithAlphaOneAndNoKeysLeavesTheOutputAlone) {
  const ix head_dim_v = 2 * R + 1;
  std::mt19937 rng(9);
  std::vector<float> ot = random_floats(rng, head_dim_v * M);
  const std::vector<float> before = ot;
  const std::vector<float> alpha(static_cast<std::size_t>(M), 1.0f);
  simd::accumulate_tile<A>(nullptr, 0, nullptr, head_dim_v, head_dim_v, alpha.data(), ot.data());
  EXPECT_EQ(ot, before);
}

}  // namespace microkernel_test
