// Extreme values: logits of ±1e4, all-zero inputs, denormals, and ±inf / NaN planted in one
// query row, one key or one value row. What attn guarantees (and these tests pin down):
//   - large logits stay finite: the online softmax subtracts the running maximum (a ±1e4 logit
//     gives a one-hot row, equal to the reference); sigmoid saturates to 0 / 1;
//   - zeros and denormals give the reference's result (uniform weights; tiny outputs), no NaN;
//   - a non-finite value affects only the rows that saw it: a query row only itself, a key or a
//     value row only the (batch, query heads of its KV group, rows that see that key) — never
//     other rows, heads or batches, in the prefill loop, the split-KV loop (whose chunks are
//     merged by LSE) or linear attention's chunked form;
//   - what those rows get (measured, not promised): a NaN / inf value row makes them NaN / inf
//     in that column; a NaN or +inf in a query row makes that row 0 with LSE −inf (its logits
//     are all NaN and the vectorised running max drops NaN, so it looks like a row that sees no
//     key); a NaN key is dropped from the rows that see it (finite output); a +inf key element
//     gives ±inf logits, and the rows that see it come out 0 with LSE −inf. Linear attention's
//     elu1 maps NaN to 1 (finite). Before the fix in kernel/workspace.hpp (nonfinite_values) a
//     non-finite V row also reached the rows of its tile that do not see its key (0·NaN = NaN
//     in the accumulate micro-kernels);
//   - rows that see no key output 0 with LSE = −inf; empty problems (batch 0, no queries, no
//     keys) are valid calls that write nothing (or zeros for rows that exist but see no key).
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>
#include <attn/reference/reference.hpp>

#include "support/kernel_check.hpp"

namespace extreme_values_test {

using attn::idx;
using attn::test::arch;
using attn::test::make_problem;
using attn::test::problem;
using attn::test::tensor;

constexpr float nan = std::numeric_limits<float>::quiet_NaN();
constexpr float inf = std::numeric_limits<float>::infinity();

struct run_result {
  tensor out;
  attn::lse_tensor lse;
};

template <class Score = attn::softmax, class Pattern = attn::dense>
run_result run(const problem& p, attn::kernel_path path, const Score& score = {},
               const Pattern& pattern = {}, attn::options opt = {}) {
  run_result r{tensor(p.batch(), p.seq_q(), p.heads(), p.v.dimension(3)),
               attn::lse_tensor(p.batch(), p.heads(), p.seq_q())};
  r.out.setConstant(-777.0f);  // a value no row can produce here: unwritten elements show
  r.lse.setConstant(-777.0f);
  opt.path = path;
  opt.threads = 3;
  if constexpr (Score::has_lse) opt.lse = attn::lse_map(r.lse.data(), r.lse.dimensions());
  attn::attention<arch>(p.q, p.k, p.v, r.out, score, pattern, opt);
  return r;
}

bool row_equal(const tensor& a, const tensor& b, idx x, idx i, idx h) {
  for (idx e = 0; e < a.dimension(3); ++e)
    if (a(x, i, h, e) != b(x, i, h, e)) return false;
  return true;
}

constexpr attn::kernel_path paths[] = {attn::kernel_path::prefill, attn::kernel_path::split_kv};
const char* path_name(attn::kernel_path p) {
  return p == attn::kernel_path::prefill ? "prefill" : "split_kv";
}

// ---- large logits, zeros, denormals ------------------------------------------------------------

TEST(ExtremeValues, LogitsOfTenThousandAreOneHotAndFinite) {
  // Scale 1, q = ±1 · e_0 and k_j = c_j · e_0 with c_j up to 1e4: logits ±1e4 and their
  // differences of 1e4 (exp underflows to exactly 0 for all but the largest).
  problem p = make_problem(2, 70, 90, 4, 2, 16, 8, 5);
  p.q.setZero();
  p.k.setZero();
  for (idx b = 0; b < 2; ++b)
    for (idx i = 0; i < 70; ++i)
      for (idx h = 0; h < 4; ++h) p.q(b, i, h, 0) = (i + h) % 2 ? 1.0f : -1.0f;
  for (idx b = 0; b < 2; ++b)
    for (idx j = 0; j < 90; ++j)
      for (idx g = 0; g < 2; ++g)
        p.k(b, j, g, 0) = (j % 7 == 3 ? 1e4f : -1e4f) * (1.0f + 0.001f * static_cast<float>(j));
  attn::options opt;
  opt.scale = 1.0f;
  for (const auto path : paths) {
    SCOPED_TRACE(path_name(path));
    for (const bool causal : {false, true}) {
      const run_result r = causal ? run(p, path, attn::softmax{}, attn::causal{}, opt)
                                  : run(p, path, attn::softmax{}, attn::dense{}, opt);
      const auto want = causal ? attn::reference::attention(p.q, p.k, p.v, {}, attn::causal{}, opt)
                               : attn::reference::attention(p.q, p.k, p.v, {}, attn::dense{}, opt);
      EXPECT_LE(attn::test::max_abs_diff(r.out, want.out), 1e-5);
      for (idx n = 0; n < r.lse.size(); ++n) {
        ASSERT_TRUE(std::isfinite(r.lse.data()[n]));
        ASSERT_NEAR(r.lse.data()[n], want.lse.data()[n], 1e-6 * std::abs(want.lse.data()[n]));
      }
    }
    // Sigmoid saturates: σ(±1e4 + β) is 1 or 0 exactly, never NaN.
    const run_result s = run(p, path, attn::sigmoid{}, attn::dense{}, opt);
    EXPECT_LE(attn::test::max_abs_diff(
                  s.out, attn::reference::attention(p.q, p.k, p.v, attn::sigmoid{}, {}, opt).out),
              1e-4);
  }
}

TEST(ExtremeValues, ZerosAndDenormalsMatchTheReference) {
  for (const float value : {0.0f, 1e-40f, -3e-39f}) {
    SCOPED_TRACE("value " + std::to_string(value));
    problem p = make_problem(2, 33, 70, 4, 2, 24, 16, 9);
    p.q.setConstant(value);  // every logit 0 (or denormal²: 0): uniform weights
    for (const auto path : paths) {
      SCOPED_TRACE(path_name(path));
      const run_result r = run(p, path);
      EXPECT_LE(attn::test::max_abs_diff(r.out, attn::reference::attention(p.q, p.k, p.v).out),
                1e-5);
      const run_result c = run(p, path, attn::softmax{}, attn::causal{});
      EXPECT_LE(attn::test::max_abs_diff(
                    c.out, attn::reference::attention(p.q, p.k, p.v, {}, attn::causal{}).out),
                1e-5);
    }
    problem z = p;
    z.v.setConstant(value);  // tiny or zero values: tiny or zero outputs, no NaN
    for (const auto path : paths) {
      const run_result r = run(z, path, attn::sigmoid{});
      for (idx n = 0; n < r.out.size(); ++n) ASSERT_TRUE(std::isfinite(r.out.data()[n]));
      EXPECT_LE(attn::test::max_abs_diff(
                    r.out, attn::reference::attention(z.q, z.k, z.v, attn::sigmoid{}).out),
                1e-30);
    }
  }
}

// ---- non-finite values reach only the rows that saw them -------------------------------------

/// Where the poison goes and which rows may show it.
enum class poison { query, key, value };

/// Plants `value` at (batch 1, row 37 / key 41, head 1 / KV head 0, element 3) and checks that
/// every row that cannot see it equals the clean run exactly (output and LSE), and, for a value
/// row, that every row that sees its key is non-finite in the poisoned column.
template <class Score, class Pattern>
void expect_contained(poison where, float value, const Score& score, const Pattern& pattern) {
  const idx B = 3, NQ = 70, NK = 90, HQ = 4, HKV = 2, row = 37, key = 41;
  problem clean = make_problem(B, NQ, NK, HQ, HKV, 16, 8, 21);
  problem bad = clean;
  if (where == poison::query) bad.q(1, row, 1, 3) = value;
  if (where == poison::key) bad.k(1, key, 0, 3) = value;
  if (where == poison::value) bad.v(1, key, 0, 3) = value;
  attn::head_ctx ctx;
  ctx.seq_q = NQ;
  ctx.seq_k = NK;
  attn::options opt;
  for (const auto path : paths) {
    SCOPED_TRACE(path_name(path));
    const run_result want = run(clean, path, score, pattern, opt);
    const run_result got = run(bad, path, score, pattern, opt);
    idx leaked = 0, missing = 0;
    std::string first;
    for (idx b = 0; b < B; ++b)
      for (idx i = 0; i < NQ; ++i)
        for (idx h = 0; h < HQ; ++h) {
          const bool sees = where == poison::query
                                ? b == 1 && i == row && h == 1
                                : b == 1 && h / (HQ / HKV) == 0 && pattern.visible(ctx, i, key);
          if (!sees && !row_equal(got.out, want.out, b, i, h)) {
            if (leaked++ == 0)
              first =
                  "b=" + std::to_string(b) + " i=" + std::to_string(i) + " h=" + std::to_string(h);
          }
          // Only a value row is guaranteed to reach the rows that see it (see the file comment:
          // a non-finite logit is dropped, not propagated), through its poisoned column.
          if (sees && where == poison::value && std::isfinite(got.out(b, i, h, 3))) ++missing;
          if (!sees && Score::has_lse && got.lse(b, h, i) != want.lse(b, h, i)) ++leaked;
        }
    EXPECT_EQ(leaked, 0) << "rows that cannot see the poisoned element changed, first " << first;
    EXPECT_EQ(missing, 0) << "rows that see the non-finite value row stayed finite";
  }
}

TEST(ExtremeValues, NonFiniteValuesReachOnlyTheRowsThatSeeThem) {
  for (const float value : {nan, inf, -inf}) {
    for (const poison where : {poison::query, poison::key, poison::value}) {
      // −inf in a query or key row is a real −inf logit (or NaN from 0·inf): both poison
      // only that row / that key's viewers; the value check covers the NaN-and-inf cases.
      SCOPED_TRACE("value " + std::to_string(value) + " in " +
                   (where == poison::query ? "q"
                    : where == poison::key ? "k"
                                           : "v"));
      if (value == -inf && where != poison::value) continue;  // see NegativeInfinityLogit
      expect_contained(where, value, attn::softmax{}, attn::dense{});
      expect_contained(where, value, attn::softmax{}, attn::causal{});
      expect_contained(where, value, attn::softmax{}, attn::window{.left = 20, .right = 3});
      expect_contained(where, value, attn::sigmoid{}, attn::causal{});
    }
  }
}

TEST(ExtremeValues, NegativeInfinityLogitIsContainedToo) {
  // k = −inf in one element: q·k is −inf or +inf (sign of q) or NaN (q = 0): each affects only
  // the rows that see that key. Here only containment is asserted: what a −inf logit gives a
  // row that sees it (weight 0, or NaN from inf − inf) depends on the other logits.
  const idx B = 2, NQ = 40, NK = 50, HQ = 2, HKV = 1, key = 17;
  problem clean = make_problem(B, NQ, NK, HQ, HKV, 8, 8, 4);
  problem bad = clean;
  bad.k(0, key, 0, 2) = -inf;
  for (const auto path : paths) {
    const run_result want = run(clean, path, attn::softmax{}, attn::causal{});
    const run_result got = run(bad, path, attn::softmax{}, attn::causal{});
    for (idx b = 0; b < B; ++b)
      for (idx i = 0; i < NQ; ++i)
        for (idx h = 0; h < HQ; ++h) {
          if (b != 0 || i + NK - NQ < key) {
            ASSERT_TRUE(row_equal(got.out, want.out, b, i, h)) << b << " " << i << " " << h;
          }
        }
  }
}

TEST(ExtremeValues, LinearAttentionContainsNonFiniteTokens) {
  // A NaN key at token t may only affect, in the causal chunked form, the rows i ≥ t of its
  // batch and KV group (the state carries it forward, never sideways): earlier tokens, other
  // heads, other batches are exactly the clean run. (elu1 maps NaN to 1 — its min/select
  // drop the NaN — so the rows that see it stay finite: see the file comment.)
  const idx B = 2, N = 70, H = 4, HKV = 2, D = 16, t = 40;
  problem clean = make_problem(B, N, N, H, HKV, D, D, 8);
  problem bad = clean;
  bad.k(1, t, 1, 5) = nan;
  auto causal_run = [&](const problem& p) {
    tensor out(B, N, H, D);
    attn::linear::options opt;
    opt.threads = 3;
    attn::linear_attention<arch>(p.q, p.k, p.v, out, attn::linear::elu1{}, attn::causal{}, opt);
    return out;
  };
  const tensor want = causal_run(clean), got = causal_run(bad);
  for (idx b = 0; b < B; ++b)
    for (idx i = 0; i < N; ++i)
      for (idx h = 0; h < H; ++h) {
        const bool sees = b == 1 && h / 2 == 1 && i >= t;
        if (!sees) {
          EXPECT_TRUE(row_equal(got, want, b, i, h)) << b << " " << i << " " << h;
        }
      }
}

// ---- rows that see nothing, empty problems ----------------------------------------------------

TEST(ExtremeValues, FullyMaskedRowsAreZeroWithNegativeInfinityLse) {
  problem p = make_problem(2, 20, 30, 2, 1, 8, 8, 2);
  attn::bool_tensor4 m(2, 1, 20, 30);
  m.setConstant(true);
  for (idx j = 0; j < 30; ++j) m(1, 0, 7, j) = false;     // batch 1, row 7: sees nothing
  const std::vector<std::int32_t> key_lengths = {0, 30};  // batch 0: no keys at all
  attn::options opt;
  opt.key_lengths = key_lengths;
  for (const auto path : paths) {
    SCOPED_TRACE(path_name(path));
    const run_result r = run(p, path, attn::softmax{}, attn::mask{m}, opt);
    for (idx i = 0; i < 20; ++i)
      for (idx h = 0; h < 2; ++h) {
        for (const idx b : {idx{0}, idx{1}}) {
          if (b == 1 && i != 7) continue;
          EXPECT_EQ(r.lse(b, h, i), -inf);
          for (idx e = 0; e < 8; ++e) EXPECT_EQ(r.out(b, i, h, e), 0.0f);
        }
      }
    const run_result s = run(p, path, attn::sigmoid{}, attn::mask{m}, opt);
    for (idx e = 0; e < 8; ++e) EXPECT_EQ(s.out(1, 7, 0, e), 0.0f);
  }
}

TEST(ExtremeValues, EmptyProblemsAreValidAndWriteNothing) {
  struct shape {
    idx b, nq, nk;
  };
  for (const shape s : {shape{0, 5, 7}, shape{2, 0, 7}, shape{0, 0, 0}, shape{2, 5, 0}}) {
    SCOPED_TRACE("B=" + std::to_string(s.b) + " Nq=" + std::to_string(s.nq) +
                 " Nk=" + std::to_string(s.nk));
    const problem p = make_problem(s.b, s.nq, s.nk, 4, 2, 8, 8, 1);
    for (const auto path : paths) {
      run_result r;
      ASSERT_NO_THROW(r = run(p, path, attn::softmax{}, attn::causal{}));
      // Rows that exist but have no key: zeros, LSE −inf.
      for (idx n = 0; n < r.out.size(); ++n) EXPECT_EQ(r.out.data()[n], 0.0f);
      for (idx n = 0; n < r.lse.size(); ++n) EXPECT_EQ(r.lse.data()[n], -inf);
      ASSERT_NO_THROW(r = run(p, path, attn::sigmoid{}));
      for (idx n = 0; n < r.out.size(); ++n) EXPECT_EQ(r.out.data()[n], 0.0f);
    }
    if (s.nq == s.nk) {
      tensor out(s.b, s.nq, 4, 8);
      ASSERT_NO_THROW(
          attn::linear_attention<arch>(p.q, p.k, p.v, out, attn::linear::elu1{}, attn::causal{}));
    }
  }
}

}  // namespace extreme_values_test
