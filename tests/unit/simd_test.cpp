// The vector operations of attn/simd/ on the arch under test: exp, exp2, the exponent-bit
// construction they share, and the horizontal reductions.
#include <algorithm>
#include <array>
#include <bit>
#include <cfenv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iomanip>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "attn/simd.hpp"
#include "support/arch.hpp"

namespace simd_test {

using A = attn::test::arch;
namespace simd = attn::simd;
constexpr int L = simd::lanes<A>;
constexpr float inf = std::numeric_limits<float>::infinity();

/// Applies f (a vector function of arch A) to every x, L lanes at a time.
template <class F>
std::vector<float> map_lanes(std::vector<float> xs, F f) {
  const std::size_t n = xs.size();
  xs.resize((n + L - 1) / L * L, 0.0f);
  std::vector<float> ys(xs.size());
  for (std::size_t i = 0; i < xs.size(); i += L) simd::store<A>(&ys[i], f(simd::load<A>(&xs[i])));
  ys.resize(n);
  return ys;
}

/// n points evenly spaced over [lo, hi], both ends included.
std::vector<float> linspace(double lo, double hi, int n) {
  std::vector<float> xs;
  xs.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) xs.push_back(static_cast<float>(lo + (hi - lo) * i / (n - 1)));
  return xs;
}

/// Distance in units in the last place between two finite floats.
std::int64_t ulp_distance(float a, float b) {
  // Maps the floats onto a line of integers on which neighbouring floats are neighbours.
  const auto key = [](float x) -> std::int64_t {
    const auto bits = static_cast<std::int64_t>(std::bit_cast<std::int32_t>(x));
    return bits >= 0 ? bits : std::int64_t{std::numeric_limits<std::int32_t>::min()} - bits;
  };
  const std::int64_t d = key(a) - key(b);
  return d < 0 ? -d : d;
}

struct ulp_report {
  std::int64_t worst = 0;
  float worst_x = 0.0f, worst_got = 0.0f, worst_want = 0.0f;
};

/// Compares f (vector) against ref (double) over xs, in ulps of the correctly rounded result.
template <class F, class Ref>
ulp_report compare_ulps(const std::vector<float>& xs, F f, Ref ref) {
  const std::vector<float> got = map_lanes(xs, f);
  ulp_report r;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const auto want = static_cast<float>(ref(static_cast<double>(xs[i])));
    const std::int64_t d = std::isfinite(got[i]) ? ulp_distance(got[i], want)
                                                 : std::numeric_limits<std::int64_t>::max();
    if (d > r.worst) r = {d, xs[i], got[i], want};
  }
  return r;
}

std::string describe(const ulp_report& r) {
  std::ostringstream s;
  s << std::setprecision(9) << "worst " << r.worst << " ulp at x=" << r.worst_x << ": got "
    << r.worst_got << ", want " << r.worst_want;
  return s.str();
}

const auto vexp = [](const simd::vec<A>& x) { return simd::exp(x); };
const auto vexp2 = [](const simd::vec<A>& x) { return simd::exp2(x); };

TEST(SimdExp, Within4UlpOfStdExpOverTheNormalRange) {
  std::vector<float> xs = linspace(-87.3, 88.7, 1'000'000);
  // Ends, zeros, tiny arguments, and the boundaries of the range reduction (x = (k + 1/2)·ln2,
  // where round(x·log2 e) changes) with their neighbours.
  for (float x : {-87.3f, 88.7f, 0.0f, -0.0f, 1e-30f, -1e-30f, 1e-7f, -1e-7f, 1.0f, -1.0f})
    xs.push_back(x);
  for (int k = -126; k <= 127; ++k) {
    const auto x = static_cast<float>((k + 0.5) * std::log(2.0));
    if (x < -87.3f || x > 88.7f) continue;
    xs.push_back(x);
    xs.push_back(std::nextafter(x, -inf));
    xs.push_back(std::nextafter(x, inf));
  }
  const ulp_report r = compare_ulps(xs, vexp, [](double x) { return std::exp(x); });
  RecordProperty("max_ulp", std::to_string(r.worst));
  EXPECT_LE(r.worst, 4) << describe(r);
}

TEST(SimdExp, ExactlyZeroForMinusInfinityAndBelowTheSmallestNormalResult) {
  const std::vector<float> xs = {-87.35f, -87.5f,   -88.0f, -90.0f,
                                 -100.0f, -1000.0f, -1e30f, std::numeric_limits<float>::lowest(),
                                 -inf};
  const std::vector<float> ys = map_lanes(xs, vexp);
  for (std::size_t i = 0; i < xs.size(); ++i) {
    EXPECT_EQ(ys[i], 0.0f) << "exp(" << xs[i] << ")";
    EXPECT_FALSE(std::signbit(ys[i])) << "exp(" << xs[i] << ") is -0";
  }
}

TEST(SimdExp, ExactValuesAndOverflow) {
  const std::vector<float> xs = {
      0.0f, -0.0f, 88.73f, 89.0f, 100.0f, 1e30f, std::numeric_limits<float>::max(), inf};
  const std::vector<float> ys = map_lanes(xs, vexp);
  EXPECT_EQ(ys[0], 1.0f);
  EXPECT_EQ(ys[1], 1.0f);
  for (std::size_t i = 2; i < xs.size(); ++i) EXPECT_EQ(ys[i], inf) << "exp(" << xs[i] << ")";
}

TEST(SimdExp, IsMonotonicOnAFineGrid) {
  const std::vector<float> xs = linspace(-20.0, 20.0, 200'001);
  const std::vector<float> ys = map_lanes(xs, vexp);
  for (std::size_t i = 1; i < xs.size(); ++i)
    ASSERT_LE(ys[i - 1], ys[i]) << "exp(" << xs[i - 1] << ") > exp(" << xs[i] << ")";
}

TEST(SimdExp2, Within4UlpOfStdExp2ForNonPositiveArguments) {
  std::vector<float> xs = linspace(-126.0, 0.0, 1'000'000);
  for (float x : {0.0f, -0.0f, -1e-30f, -1e-7f, -0.5f, -1.0f, -1.5f, -125.5f, -126.0f})
    xs.push_back(x);
  for (int k = -126; k <= 0; ++k) {  // n = round(x) changes at half-integers
    const float x = static_cast<float>(k) - 0.5f;
    if (x < -126.0f) continue;
    xs.push_back(x);
    xs.push_back(std::nextafter(x, -inf));
    xs.push_back(std::nextafter(x, inf));
  }
  const ulp_report r = compare_ulps(xs, vexp2, [](double x) { return std::exp2(x); });
  RecordProperty("max_ulp", std::to_string(r.worst));
  EXPECT_LE(r.worst, 4) << describe(r);
}

TEST(SimdExp2, ExactAtIntegersAndZeroForMinusInfinity) {
  std::vector<float> xs;
  for (int k = -126; k <= 0; ++k) xs.push_back(static_cast<float>(k));
  const std::vector<float> ys = map_lanes(xs, vexp2);
  for (std::size_t i = 0; i < xs.size(); ++i)
    EXPECT_EQ(ys[i], std::ldexp(1.0f, static_cast<int>(xs[i]))) << "exp2(" << xs[i] << ")";

  // Masked scores are -inf: their weight must be exactly 0, never NaN.
  const std::vector<float> low = {
      -150.0f, -160.0f, -1000.0f, -1e30f, std::numeric_limits<float>::lowest(), -inf};
  const std::vector<float> zeros = map_lanes(low, vexp2);
  for (std::size_t i = 0; i < low.size(); ++i)
    EXPECT_EQ(zeros[i], 0.0f) << "exp2(" << low[i] << ")";
}

// A result below the normal range costs a microcode assist on Intel cores (~100+ cycles, unless
// flush-to-zero is set), and masked scores (−inf) reach exp2 on every partial tile: the inputs
// whose result is 0 by definition must give it without computing a subnormal or an underflow,
// which the floating-point environment's underflow flag records.
TEST(SimdExpAndExp2, ZeroResultsRaiseNoUnderflow) {
  const std::vector<float> to_zero = {-inf, -1e30f, -1000.0f, -160.0f, -150.0f, -127.0f, -126.6f};
  const std::vector<float> exp_to_zero = {-inf, -1e30f, -1000.0f, -90.0f, -87.5f, -87.34f};
  std::feclearexcept(FE_ALL_EXCEPT);
  const std::vector<float> ys = map_lanes(to_zero, vexp2);
  const std::vector<float> exp_ys = map_lanes(exp_to_zero, vexp);
  const std::vector<float> scaled = map_lanes({1.0f, 1.4f, 0.75f}, [](const simd::vec<A>& p) {
    return simd::scale2(p, simd::splat<A>(-127.0f));
  });
  EXPECT_FALSE(std::fetestexcept(FE_UNDERFLOW)) << "a flushed exp2, exp or scale2 underflowed";
  for (float y : ys) EXPECT_EQ(y, 0.0f);
  for (float y : exp_ys) EXPECT_EQ(y, 0.0f);
  for (float y : scaled) EXPECT_EQ(y, 0.0f);
}

TEST(SimdPow2i, BuildsEveryPowerOfTwoFromItsExponent) {
  std::vector<float> ns;
  for (int n = -126; n <= 127; ++n) ns.push_back(static_cast<float>(n));
  const std::vector<float> ys = map_lanes(ns, [](const simd::vec<A>& n) { return simd::pow2i(n); });
  for (std::size_t i = 0; i < ns.size(); ++i)
    EXPECT_EQ(ys[i], std::ldexp(1.0f, static_cast<int>(ns[i]))) << "2^" << ns[i];
  const std::vector<float> zero =
      map_lanes({-127.0f}, [](const simd::vec<A>& n) { return simd::pow2i(n); });
  EXPECT_EQ(zero[0], 0.0f);
}

TEST(SimdRound, RoundsHalfwayCasesToEven) {
  const std::vector<float> xs = {-2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f, 0.49999997f, -3.7f, 3.2f};
  const std::vector<float> want = {-2.0f, -2.0f, -0.0f, 0.0f, 2.0f, 2.0f, 0.0f, -4.0f, 3.0f};
  const std::vector<float> ys = map_lanes(xs, [](const simd::vec<A>& x) { return simd::round(x); });
  for (std::size_t i = 0; i < xs.size(); ++i) EXPECT_EQ(ys[i], want[i]) << "round(" << xs[i] << ")";
}

/// A register of arch A holding lanes[0..L).
simd::vec<A> from_lanes(const std::vector<float>& lanes) { return simd::load<A>(lanes.data()); }

TEST(SimdReduce, AddSumsEveryLane) {
  std::vector<float> lanes(L);
  for (int i = 0; i < L; ++i) lanes[static_cast<std::size_t>(i)] = static_cast<float>(i + 1);
  EXPECT_EQ(simd::reduce_add(from_lanes(lanes)),
            static_cast<float>(L) * static_cast<float>(L + 1) / 2);

  for (int i = 0; i < L; ++i)
    lanes[static_cast<std::size_t>(i)] = (i % 2 == 0 ? -0.25f : 0.5f) * static_cast<float>(i + 1);
  float want = 0.0f;
  for (float x : lanes) want += x;  // every partial sum is exact
  EXPECT_EQ(simd::reduce_add(from_lanes(lanes)), want);
  EXPECT_EQ(simd::reduce_add(simd::splat<A>(0.0f)), 0.0f);
}

TEST(SimdReduce, MaxFindsTheMaximumInEveryLane) {
  for (int where = 0; where < L; ++where) {
    std::vector<float> lanes(L);
    for (int i = 0; i < L; ++i)
      lanes[static_cast<std::size_t>(i)] = -100.0f - static_cast<float>(i);
    lanes[static_cast<std::size_t>(where)] = -3.5f;
    EXPECT_EQ(simd::reduce_max(from_lanes(lanes)), -3.5f) << "maximum in lane " << where;

    std::vector<float> masked(L, -inf);  // a fully masked row, then one visible score
    EXPECT_EQ(simd::reduce_max(from_lanes(masked)), -inf);
    masked[static_cast<std::size_t>(where)] = 7.0f;
    EXPECT_EQ(simd::reduce_max(from_lanes(masked)), 7.0f) << "maximum in lane " << where;
  }
}

TEST(SimdReduce, AddEachSumsEveryRowIntoItsOwnLane) {
  std::array<attn::simd::vec<A>, L> rows;
  std::array<float, L> lane{};
  for (int r = 0; r < L; ++r) {
    for (int i = 0; i < L; ++i) lane[static_cast<std::size_t>(i)] = static_cast<float>(r * 100 + i);
    rows[static_cast<std::size_t>(r)] = attn::simd::load<A>(lane.data());
  }
  std::array<float, L> sums{};
  attn::simd::store<A>(sums.data(), attn::simd::reduce_add_each(rows.data()));
  for (int r = 0; r < L; ++r)
    EXPECT_EQ(sums[static_cast<std::size_t>(r)], static_cast<float>(r * 100 * L + L * (L - 1) / 2))
        << "row " << r;
}

}  // namespace simd_test

namespace simd_test::transpose {

using idx = std::ptrdiff_t;

/// Every shape the loops use and their edges: whole 16 × 16 blocks, partial row and column
/// blocks, a single row or column, padding lanes past `rows`, one factor or one per column.
TEST(SimdTranspose, MatchesTheElementwiseDefinition) {
  struct shape {
    idx rows, cols, dst_cols, src_ld, dst_ld;
  };
  const shape shapes[] = {{64, 64, 64, 64, 64}, {37, 64, 64, 64, 64}, {64, 70, 64, 70, 64},
                          {1, 16, 16, 16, 16},  {16, 1, 16, 1, 16},   {5, 33, 48, 40, 50},
                          {48, 48, 48, 64, 48}, {0, 8, 16, 8, 16}};
  for (const shape& s : shapes)
    for (int per_column = 0; per_column < 2; ++per_column) {
      SCOPED_TRACE(testing::Message() << "rows=" << s.rows << " cols=" << s.cols << " dst_cols="
                                      << s.dst_cols << " per_column=" << per_column);
      std::vector<float> src(static_cast<std::size_t>(std::max<idx>(s.rows, 1) * s.src_ld));
      for (std::size_t n = 0; n < src.size(); ++n) src[n] = static_cast<float>(n % 251) - 125.5f;
      std::vector<float> factor(static_cast<std::size_t>(s.cols));
      for (std::size_t c = 0; c < factor.size(); ++c) factor[c] = 0.25f * static_cast<float>(c + 1);
      std::vector<float> dst(static_cast<std::size_t>(s.cols * s.dst_ld), -7.0f);
      if (per_column)
        simd::transpose_scaled<A>(src.data(), s.src_ld, s.rows, s.cols, factor.data(), dst.data(),
                                  s.dst_ld, s.dst_cols);
      else
        simd::transpose_scaled<A>(src.data(), s.src_ld, s.rows, s.cols, 0.5f, dst.data(), s.dst_ld,
                                  s.dst_cols);
      for (idx c = 0; c < s.cols; ++c)
        for (idx r = 0; r < s.dst_ld; ++r) {
          const float f = per_column ? factor[static_cast<std::size_t>(c)] : 0.5f;
          const float want = r < s.rows       ? src[static_cast<std::size_t>(r * s.src_ld + c)] * f
                             : r < s.dst_cols ? 0.0f
                                              : -7.0f;  // past dst_cols: untouched
          ASSERT_EQ(dst[static_cast<std::size_t>(c * s.dst_ld + r)], want)
              << "c=" << c << " r=" << r;
        }
    }
}

}  // namespace simd_test::transpose

namespace simd_test::fill_unkept {

/// Every lane whose bit is clear becomes the fill value, every other lane keeps its value and
/// nothing past n is touched: whole vectors, a ragged tail, all-kept and none-kept words.
TEST(SimdFillUnkept, ReplacesExactlyTheLanesWhoseBitIsClear) {
  using idx = std::ptrdiff_t;
  const std::uint64_t words[] = {0, ~std::uint64_t{0}, 0x8000000000000001ull, 0x5555aaaa0f0ff0f0ull,
                                 0xfffffffeffffffffull};
  for (idx n : {idx{0}, idx{1}, idx{7}, idx{16}, idx{37}, idx{64}})
    for (std::uint64_t keep : words) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " keep=" << std::hex << keep);
      std::vector<float> row(65);
      for (std::size_t i = 0; i < row.size(); ++i) row[i] = static_cast<float>(i) + 0.5f;
      simd::fill_unkept<A>(row.data(), n, keep, -inf);
      for (idx i = 0; i < 65; ++i) {
        const bool kept = i >= n || ((keep >> i) & 1u) != 0;
        ASSERT_EQ(row[static_cast<std::size_t>(i)], kept ? static_cast<float>(i) + 0.5f : -inf)
            << "i=" << i;
      }
    }
}

}  // namespace simd_test::fill_unkept
