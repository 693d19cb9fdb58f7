// bfloat16 / half Q, K, V and out tensors (narrow_tensors.hpp) against the double reference,
// on both loops (prefill, split-KV decoding), every mix of element types, GQA and patterns.
//
// The reference runs on the narrow inputs widened exactly to float, so a float output must
// match it as tightly as an all-float call does (2e-5 here). A narrow output adds one rounding
// to nearest even: |error| ≤ 2^-(p+1)·|o| with p = 7 (bfloat16) or 10 (half) stored mantissa
// bits; outputs lie in [-1, 1], so 2^-8 and 2^-11 plus the float bound. Where the bf16 tile
// products run (all of q, k, v bf16, prefill, compiled with AVX512-BF16: the avx512_bf16 test
// binary), P is rounded to bfloat16 before P·V: each weight moves by ≤ 2^-9 of itself, so the
// output by ≤ 2^-9·Σ_j w_j·max|v| — 2^-9 for softmax (weights sum to 1) and, with the
// sigmoid weights here summing to less than 2, 2^-8 covers both.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>
#include <attn/reference/reference.hpp>

#include "support/arch.hpp"
#include "support/random.hpp"

namespace narrow_tensors_test {

using attn::idx;
template <class T>
using tensor = Eigen::Tensor<T, 4, Eigen::RowMajor>;

template <class T>
tensor<T> narrowed(const attn::tensor4<float>& t) {
  return t.cast<T>();
}

template <class T>
attn::tensor4<float> widened(const tensor<T>& t) {
  return t.template cast<float>();
}

/// The extra error of the bf16 tile products (see the file comment), 0 where they do not run.
template <class TQ, class TK, class TV>
double products_bound(attn::kernel_path path, idx nq, idx d) {
  if constexpr (attn::detail::bf16_products_compiled<attn::test::arch, TQ, TK, TV>) {
    const bool prefill_runs =
        path == attn::kernel_path::prefill ||
        (path == attn::kernel_path::automatic && nq > attn::decode_max_queries);
    if (prefill_runs && d % 2 == 0) return 1.0 / 256;
  }
  (void)path, (void)nq, (void)d;
  return 0.0;
}

template <class T>
constexpr double rounding_bound() {
  if constexpr (std::is_same_v<T, Eigen::bfloat16>) return 1.0 / 256;
  if constexpr (std::is_same_v<T, Eigen::half>) return 1.0 / 2048;
  return 0.0;
}

/// Runs attention with Q, K, V, out stored as TQ, TK, TV, TO and compares with the reference on
/// the widened inputs.
template <class TQ, class TK, class TV, class TO, class Score, class Pattern>
void expect_matches(idx batch, idx nq, idx nk, idx hq, idx hkv, idx d, Score score, Pattern pattern,
                    attn::kernel_path path) {
  std::mt19937 rng(static_cast<unsigned>(nq * 131 + nk));
  const auto q = narrowed<TQ>(attn::test::random_tensor(rng, batch, nq, hq, d));
  const auto k = narrowed<TK>(attn::test::random_tensor(rng, batch, nk, hkv, d));
  const auto v = narrowed<TV>(attn::test::random_tensor(rng, batch, nk, hkv, d));
  tensor<TO> out(batch, nq, hq, d);
  attn::options opt;
  opt.path = path;
  opt.threads = 2;
  attn::attention(q, k, v, out, score, pattern, opt);
  const auto ref = attn::reference::attention(widened(q), widened(k), widened(v), score, pattern);
  const double bound = 2e-5 + rounding_bound<TO>() + products_bound<TQ, TK, TV>(path, nq, d);
  EXPECT_LE(attn::test::max_abs_diff(widened(out), ref.out), bound);
}

constexpr auto prefill = attn::kernel_path::prefill;
constexpr auto split_kv = attn::kernel_path::split_kv;
using bf16 = Eigen::bfloat16;
using fp16 = Eigen::half;

TEST(NarrowTensors, Bf16InputsFloatOutputBothLoops) {
  for (auto path : {prefill, split_kv}) {
    SCOPED_TRACE(path == prefill ? "prefill" : "split-kv");
    expect_matches<bf16, bf16, bf16, float>(2, 37, 150, 8, 2, 64, attn::softmax{}, attn::causal{},
                                            path);
    expect_matches<bf16, bf16, bf16, float>(1, 5, 300, 4, 4, 32, attn::sigmoid{},
                                            attn::window{.left = 40}, path);
  }
}

TEST(NarrowTensors, Bf16TileProductsOddOffsetsAndShapes) {
  // Parts of a key tile that start at odd keys (windows, causal diagonals), odd key counts, a
  // head_dim that is a multiple of 2 but not of 16, GQA: the pair layouts of bf16_products.
  expect_matches<bf16, bf16, bf16, float>(1, 100, 77, 4, 2, 30, attn::softmax{},
                                          attn::window{.left = 13}, prefill);
  expect_matches<bf16, bf16, bf16, float>(2, 131, 131, 6, 3, 64, attn::softmax{.softcap = 10},
                                          attn::causal{}, prefill);
  expect_matches<bf16, bf16, bf16, bf16>(1, 70, 201, 2, 1, 128, attn::sigmoid{},
                                         attn::window{.left = 50, .right = 7}, prefill);
  expect_matches<bf16, bf16, bf16, float>(1, 65, 90, 2, 2, 17, attn::softmax{}, attn::dense{},
                                          prefill);  // odd head_dim: the float loop
}

TEST(NarrowTensors, Bf16NonFiniteValueRowReachesOnlyRowsThatSeeIt) {
  // Causal: key 40's value row holds NaN and inf; queries before 40 do not see it.
  std::mt19937 rng(7);
  const auto q = narrowed<bf16>(attn::test::random_tensor(rng, 1, 128, 2, 64));
  const auto k = narrowed<bf16>(attn::test::random_tensor(rng, 1, 128, 2, 64));
  auto v = narrowed<bf16>(attn::test::random_tensor(rng, 1, 128, 2, 64));
  v(0, 40, 1, 3) = bf16(std::numeric_limits<float>::quiet_NaN());
  v(0, 40, 1, 9) = bf16(std::numeric_limits<float>::infinity());
  attn::tensor4<float> out(1, 128, 2, 64);
  attn::options opt;
  opt.path = prefill;
  attn::attention(q, k, v, out, attn::softmax{}, attn::causal{}, opt);
  for (idx i = 0; i < 128; ++i)
    for (idx h = 0; h < 2; ++h)
      for (idx e = 0; e < 64; ++e) {
        const bool sees = i >= 40 && h == 1 && (e == 3 || e == 9);
        if (!sees) {
          ASSERT_TRUE(std::isfinite(out(0, i, h, e))) << i << " " << h << " " << e;
        }
      }
  EXPECT_TRUE(std::isnan(out(0, 40, 1, 3)));
}

TEST(NarrowTensors, HalfAndMixedTypes) {
  for (auto path : {prefill, split_kv}) {
    SCOPED_TRACE(path == prefill ? "prefill" : "split-kv");
    expect_matches<fp16, fp16, fp16, fp16>(1, 20, 129, 4, 2, 48, attn::softmax{}, attn::causal{},
                                           path);
    expect_matches<float, bf16, fp16, float>(1, 16, 200, 6, 3, 64, attn::softmax{.softcap = 20},
                                             attn::dense{}, path);
    expect_matches<bf16, float, float, bf16>(2, 9, 77, 2, 1, 16, attn::softmax{}, attn::alibi{},
                                             path);
  }
}

TEST(NarrowTensors, AutomaticPathPicksEitherLoop) {
  // 1 query per head: split-KV, K/V widened while packed; 64 queries: prefill on widened copies.
  expect_matches<bf16, bf16, bf16, bf16>(1, 1, 1000, 8, 2, 128, attn::softmax{}, attn::causal{},
                                         attn::kernel_path::automatic);
  expect_matches<bf16, bf16, bf16, bf16>(1, 64, 64, 8, 2, 128, attn::softmax{}, attn::causal{},
                                         attn::kernel_path::automatic);
}

TEST(NarrowTensors, BadShapeThrowsBeforeWriting) {
  tensor<bf16> q(1, 4, 8, 32), k(1, 10, 3, 32), v(1, 10, 3, 32), out(1, 4, 8, 32);
  q.setZero();
  k.setZero();
  v.setZero();
  out.setConstant(bf16(7.0f));
  EXPECT_THROW(attn::attention(q, k, v, out), attn::error);  // 3 KV heads do not divide 8
  for (idx i = 0; i < out.size(); ++i) ASSERT_EQ(static_cast<float>(out.data()[i]), 7.0f);
}

}  // namespace narrow_tensors_test
