// The randomized property harness: each family registers a name and a run_case(seed) that
// draws one case from the seed alone, runs the fused kernel and the double-precision reference,
// and checks the family's properties with gtest assertions.
//
//   ATTN_PROPERTY_FAMILY(softmax, run_case, 6000, 600);   // in the family's own .cpp
//
// registers the family (name, run_case, default case counts: Release, sanitizers) and defines
// its test, Property.softmax; a new family is one new .cpp in tests/property/ (the CMake glob
// picks it up) and nothing else. Environment (read when the family runs):
//   ATTN_FUZZ_ITERATIONS  cases per family (default: the family's own, lower under ASan/TSan)
//   ATTN_FUZZ_SEED        the first case's seed (default: fixed per family, so CI is
//                         reproducible); case n uses seed + n
//   ATTN_FUZZ_FAMILY      run only this family (the others report 0 cases)
// A failing case prints the line that replays it alone, and the family stops at its first
// failing case. At the end every family that ran prints `property: <family> <n> cases`.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>

#include "support/arch.hpp"
#include "support/random.hpp"

namespace attn::property {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif
#else
inline constexpr bool sanitized = false;
#endif

using arch = attn::test::arch;
using tensor = tensor4<float>;

/// What one case tells the harness about itself: a description of its shapes and policies,
/// printed (with the replay command) when one of its checks fails.
class case_context {
 public:
  case_context(std::string family, std::uint64_t seed) : family_(std::move(family)), seed_(seed) {}
  std::uint64_t seed() const { return seed_; }
  /// The replay line for `description`.
  std::string replay(const std::string& description) const {
    std::ostringstream s;
    s << "property case: " << description << "\n  replay: ATTN_FUZZ_SEED=" << seed_
      << " ATTN_FUZZ_FAMILY=" << family_
      << " ATTN_FUZZ_ITERATIONS=1 attn_tests_property --gtest_filter=Property." << family_;
    return s.str();
  }

 private:
  std::string family_;
  std::uint64_t seed_;
};

/// Scopes every assertion of the rest of the block to the case: a failure prints it.
#define ATTN_PROPERTY_TRACE(ctx, description) SCOPED_TRACE((ctx).replay(description))

using run_case_fn = void (*)(const case_context&);

struct family {
  const char* name;
  run_case_fn run_case;
  int cases;            ///< default number of cases (Release)
  int sanitized_cases;  ///< default under ASan / TSan, whose slowdown is 10–50×
};

struct family_result {
  std::string name;
  long cases = 0;
  double seconds = 0.0;
};

/// Every registered family, in registration order (a deque: references stay valid).
inline std::deque<family>& registry() {
  static std::deque<family> r;
  return r;
}

inline const family& register_family(const family& f) {
  registry().push_back(f);
  return registry().back();
}

inline std::vector<family_result>& results() {
  static std::vector<family_result> r;
  return r;
}

inline long env_long(const char* name, long fallback) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  return end && *end == '\0' ? value : fallback;
}

/// A default first seed per family, so that families do not share case streams.
inline std::uint64_t default_seed(const std::string& name) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (const char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h % 1000000007ull;
}

/// Runs one family's cases; the body of its Property.<name> test.
inline void run_family(const family& f) {
  const char* only = std::getenv("ATTN_FUZZ_FAMILY");
  if (only && *only && std::string(only) != f.name) GTEST_SKIP() << "ATTN_FUZZ_FAMILY=" << only;
  const long n = env_long("ATTN_FUZZ_ITERATIONS", sanitized ? f.sanitized_cases : f.cases);
  const auto first = static_cast<std::uint64_t>(
      env_long("ATTN_FUZZ_SEED", static_cast<long>(default_seed(f.name))));
  const auto start = std::chrono::steady_clock::now();
  long ran = 0;
  for (long c = 0; c < n; ++c) {
    const case_context ctx(f.name, first + static_cast<std::uint64_t>(c));
    f.run_case(ctx);
    ++ran;
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "stopped at the first failing case: ATTN_FUZZ_SEED=" << ctx.seed()
                    << " ATTN_FUZZ_FAMILY=" << f.name << " ATTN_FUZZ_ITERATIONS=1";
      break;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  results().push_back({f.name, ran, seconds});
}

/// Prints the per-family summary after all tests (the lines the README quotes).
class summary : public ::testing::Environment {
 public:
  void TearDown() override {
    long total = 0;
    for (const family_result& r : results()) {
      std::printf("property: %s %ld cases (%.1f s)\n", r.name.c_str(), r.cases, r.seconds);
      total += r.cases;
    }
    if (!results().empty()) std::printf("property: total %ld cases\n", total);
    std::fflush(stdout);
  }
};

inline bool add_summary() {
  static const bool added = (::testing::AddGlobalTestEnvironment(new summary), true);
  return added;
}

// ---- drawing -----------------------------------------------------------------------------------

/// The random source of one case, seeded from the case's seed alone.
class draw {
 public:
  explicit draw(std::uint64_t seed) : rng_(static_cast<std::mt19937::result_type>(seed)) {}
  std::mt19937& rng() { return rng_; }
  /// Uniform integer in [lo, hi].
  idx uniform(idx lo, idx hi) { return std::uniform_int_distribution<idx>(lo, hi)(rng_); }
  double real(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }
  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  template <class T>
  T pick(std::initializer_list<T> options) {
    return options.begin()[uniform(0, static_cast<idx>(options.size()) - 1)];
  }

  /// A sequence length: mostly tiny (1, primes, a few composites), sometimes up to `medium`
  /// (crossing the 64-query tile and the 16-query decode limit).
  idx length(idx medium = 130) {
    if (chance(0.85)) return pick<idx>({1, 1, 2, 3, 4, 5, 7, 8, 11, 13, 16, 17, 19, 23, 29, 31});
    return std::min<idx>(medium, pick<idx>({37, 47, 61, 64, 65, 67, 97, 113, 127, 130, 131}));
  }
  /// A head dim in 8..256, multiple of 8 (odd multiples included); mostly small.
  idx head_dim() {
    if (chance(0.7)) return pick<idx>({8, 16, 24, 32, 40, 56});
    return 8 * uniform(1, 32);
  }
  /// Query and KV heads: plain multi-head or a GQA ratio.
  std::pair<idx, idx> heads() {
    const idx kv = pick<idx>({1, 1, 2, 3});
    return {kv * pick<idx>({1, 1, 2, 3, 4}), kv};
  }
  int threads() { return static_cast<int>(uniform(1, 4)); }

 private:
  std::mt19937 rng_;
};

/// A tensor's data in a TensorMap over a buffer at an odd float offset: the kernels must read
/// misaligned views in place.
struct misaligned {
  std::vector<float> buffer;
  idx offset = 0;
  misaligned(const tensor& t, idx off) : buffer(static_cast<std::size_t>(t.size() + off + 1)) {
    offset = off;
    std::copy(t.data(), t.data() + t.size(), buffer.begin() + off);
  }
  const_tensor4_map<float> map(const tensor& like) const {
    return const_tensor4_map<float>(buffer.data() + offset, like.dimensions());
  }
};

inline std::string shape_text(const tensor& q, const tensor& k, const tensor& v) {
  std::ostringstream s;
  s << "B=" << q.dimension(0) << " Nq=" << q.dimension(1) << " Nk=" << k.dimension(1)
    << " Hq=" << q.dimension(2) << " Hkv=" << k.dimension(2) << " D=" << q.dimension(3)
    << " Dv=" << v.dimension(3);
  return s.str();
}

/// Count of elements where |got − want| > tol·scale (NaN counts), and the worst one.
struct comparison {
  idx bad = 0, worst_at = -1;
  double worst = 0.0;
};

template <class Got, class Want>
comparison compare(const Got& got, const Want& want, double tol, double scale = 1.0) {
  comparison c;
  for (idx n = 0; n < static_cast<idx>(want.size()); ++n) {
    const double g = static_cast<double>(got.data()[n]), w = static_cast<double>(want.data()[n]);
    if (g == w) continue;
    const double d = std::abs(g - w);
    if (!(d <= tol * scale)) ++c.bad;
    if (!(d <= c.worst)) {
      c.worst = d;
      c.worst_at = n;
    }
  }
  return c;
}

#define ATTN_EXPECT_CLOSE(got, want, tol)                                                       \
  do {                                                                                          \
    const auto attn_cmp_ = ::attn::property::compare((got), (want), (tol));                     \
    EXPECT_EQ(attn_cmp_.bad, 0) << #got " vs " #want ": worst |diff| " << attn_cmp_.worst       \
                                << " at flat index " << attn_cmp_.worst_at << " (tol " << (tol) \
                                << ")";                                                         \
  } while (0)

}  // namespace attn::property

/// Registers a family and defines its test, Property.<name>.
#define ATTN_PROPERTY_FAMILY(name, run_case, cases, sanitized_cases)                      \
  static const ::attn::property::family& attn_property_family_##name =                    \
      ::attn::property::register_family({#name, (run_case), (cases), (sanitized_cases)}); \
  TEST(Property, name) { ::attn::property::run_family(attn_property_family_##name); }     \
  [[maybe_unused]] static const bool attn_property_summary_##name = ::attn::property::add_summary()
