// attn::dist::ring_attention on every rank of MPI_COMM_WORLD equals the single-process kernel
// (attn::attention on the whole sequence, computed on every rank from the same seed) to 2e-5,
// output and LSE, for dense and causal attention, even, uneven and empty splits and GQA; and
// a bad argument on any rank is an attn::error on every rank, not a hang.
//
// Only EXPECT_* around collective calls: an ASSERT returning early on one rank would leave the
// others waiting in the ring.
#include <mpi.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attn/dist/gather.hpp"
#include "attn/dist/ring.hpp"
#include "support/random.hpp"

namespace {

using attn::idx;
using attn::dist::zigzag_layout;

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int s = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

double max_diff(const float* a, const float* b, idx n) {
  double worst = 0;
  for (idx i = 0; i < n; ++i) {
    if (a[i] == b[i]) continue;  // equal infinities
    const double d = std::abs(static_cast<double>(a[i]) - b[i]);
    if (std::isnan(d)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, d);
  }
  return worst;
}

struct problem {
  idx batch = 1, heads_q = 4, heads_kv = 4, head_dim = 32;
  bool causal = false;
  std::vector<idx> lengths;  // per rank; empty = zigzag_layout::even(n, P)
  idx n = 0;
  attn::softmax score{};
};

// Runs `p` on every rank and compares this rank's rows with the single-process result.
void expect_equal_to_single_process(const problem& p) {
  const int rank = world_rank(), size = world_size();
  const zigzag_layout z =
      p.lengths.empty() ? zigzag_layout::even(p.n, size) : zigzag_layout::from_lengths(p.lengths);
  const idx n = z.global_length();
  std::mt19937 rng(1234);  // the same global tensors on every rank
  const auto q = attn::test::random_tensor(rng, p.batch, n, p.heads_q, p.head_dim);
  const auto k = attn::test::random_tensor(rng, p.batch, n, p.heads_kv, p.head_dim);
  const auto v = attn::test::random_tensor(rng, p.batch, n, p.heads_kv, p.head_dim);

  attn::tensor4<float> ref(p.batch, n, p.heads_q, p.head_dim);
  attn::lse_tensor ref_lse(p.batch, p.heads_q, n);
  // Rank 0 computes the single-process result and sends it to all (ranks share the cores).
  if (rank == 0) {
    attn::options one;
    one.threads = 1;
    one.lse = attn::lse_map(ref_lse.data(), p.batch, p.heads_q, n);
    if (p.causal)
      attn::attention(q, k, v, ref, p.score, attn::causal{}, one);
    else
      attn::attention(q, k, v, ref, p.score, attn::dense{}, one);
  }
  MPI_Bcast(ref.data(), static_cast<int>(ref.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  MPI_Bcast(ref_lse.data(), static_cast<int>(ref_lse.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);

  const auto ql = attn::dist::split(q, z, rank), kl = attn::dist::split(k, z, rank),
             vl = attn::dist::split(v, z, rank);
  const idx nl = z.local_length(rank);
  attn::tensor4<float> out(p.batch, nl, p.heads_q, p.head_dim);
  attn::lse_tensor lse(p.batch, p.heads_q, nl);
  attn::options opt;
  opt.threads = 1;  // ranks already oversubscribe the cores
  opt.lse = attn::lse_map(lse.data(), p.batch, p.heads_q, nl);
  attn::dist::ring_stats st;
  if (p.causal)
    attn::dist::ring_attention(MPI_COMM_WORLD, ql, kl, vl, out, p.score, attn::causal{}, opt, &st);
  else
    attn::dist::ring_attention(MPI_COMM_WORLD, ql, kl, vl, out, p.score, attn::dense{}, opt, &st);

  const auto want = attn::dist::split(ref, z, rank);
  const auto want_lse = attn::dist::split_lse(ref_lse, z, rank);
  EXPECT_LE(max_diff(out.data(), want.data(), out.size()), 2e-5) << "rank " << rank;
  EXPECT_LE(max_diff(lse.data(), want_lse.data(), lse.size()), 2e-5) << "rank " << rank;
  EXPECT_EQ(st.steps, size);
}

TEST(Ring, DenseEqualsSingleProcess) {
  problem p;
  p.n = 201;
  p.batch = 2;
  expect_equal_to_single_process(p);
}

TEST(Ring, CausalEqualsSingleProcess) {
  problem p;
  p.causal = true;
  p.n = 233;  // not a multiple of 2P: chunks differ by one row
  p.batch = 2;
  expect_equal_to_single_process(p);
}

TEST(Ring, CausalLongerThanOneTile) {
  problem p;
  p.causal = true;
  p.n = 700;  // several 64-row tiles per chunk on 2 and 4 ranks
  p.heads_q = p.heads_kv = 1;
  p.head_dim = 64;
  expect_equal_to_single_process(p);
}

// Different local lengths per rank, one of them a single row (odd: front 1, back 0).
std::vector<idx> uneven(int size) {
  std::vector<idx> n(static_cast<std::size_t>(size));
  for (int r = 0; r < size; ++r) n[static_cast<std::size_t>(r)] = r == 1 ? 1 : 30 + 41 * r;
  return n;
}

TEST(Ring, UnevenSplitCausal) {
  problem p;
  p.causal = true;
  p.lengths = uneven(world_size());
  expect_equal_to_single_process(p);
}

TEST(Ring, UnevenSplitDense) {
  problem p;
  p.lengths = uneven(world_size());
  expect_equal_to_single_process(p);
}

TEST(Ring, GroupedQueryHeads) {
  for (bool causal : {false, true}) {
    problem p;
    p.causal = causal;
    p.n = 130;
    p.heads_q = 6;
    p.heads_kv = 2;  // GQA
    p.head_dim = 40;
    expect_equal_to_single_process(p);
    p.heads_kv = 1;  // MQA
    expect_equal_to_single_process(p);
  }
}

TEST(Ring, EmptySliceOnOneRank) {
  for (bool causal : {false, true}) {
    problem p;
    p.causal = causal;
    p.lengths = uneven(world_size());
    p.lengths.back() = 0;  // the last rank holds nothing
    p.heads_q = 4;
    p.heads_kv = 2;
    expect_equal_to_single_process(p);
  }
}

TEST(Ring, FewQueriesPerRankRunSplitKv) {
  problem p;
  p.causal = true;
  p.n = 6 * world_size();  // ≤ 16 queries per rank: the kernel's split-KV loop
  expect_equal_to_single_process(p);
}

TEST(Ring, SoftcapAndSinksCountOnce) {
  const std::vector<float> sinks = {0.5f, -1.0f, 2.0f, 0.0f};
  for (bool causal : {false, true}) {
    problem p;
    p.causal = causal;
    p.n = 110;
    p.score.softcap = 5.0f;
    p.score.sinks = sinks;
    expect_equal_to_single_process(p);
  }
}

TEST(Ring, GatherReassemblesTheGlobalTensor) {
  const int rank = world_rank(), size = world_size();
  std::mt19937 rng(5);
  const auto global = attn::test::random_tensor(rng, 2, 77, 3, 8);
  const auto z = zigzag_layout::even(77, size);
  const auto local = attn::dist::split(global, z, rank);
  EXPECT_EQ(attn::dist::exchange_layout(MPI_COMM_WORLD, local.dimension(1)).lengths(), z.lengths());
  const auto back = attn::dist::gather(MPI_COMM_WORLD, local, z, size - 1);
  if (rank == size - 1) {
    EXPECT_EQ(back.dimensions(), global.dimensions());
    EXPECT_EQ(max_diff(back.data(), global.data(), global.size()), 0.0);
  } else {
    EXPECT_EQ(back.size(), 0);
  }
}

// ---- errors: every rank throws, with the same message --------------------------------------

struct shapes {
  idx batch = 1, n = 8, heads_q = 4, heads_kv = 2, head_dim = 16, head_dim_v = 16, out_heads = 4;
};

// Calls ring_attention with this rank's `s`; returns the message of the attn::error it threw
// ("" if none), after checking that every rank threw and that all messages are equal.
template <class T = float>
std::string expect_error_everywhere(const shapes& s, bool causal = false) {
  using tensor = Eigen::Tensor<T, 4, Eigen::RowMajor>;
  tensor q(s.batch, s.n, s.heads_q, s.head_dim), k(s.batch, s.n, s.heads_kv, s.head_dim),
      v(s.batch, s.n, s.heads_kv, s.head_dim_v), out(s.batch, s.n, s.out_heads, s.head_dim_v);
  q.setConstant(T(0.5));
  k.setConstant(T(0.25));
  v.setConstant(T(1));
  out.setConstant(T(-7));
  std::string message;
  try {
    if (causal)
      attn::dist::ring_attention(MPI_COMM_WORLD, q, k, v, out, attn::softmax{}, attn::causal{});
    else
      attn::dist::ring_attention(MPI_COMM_WORLD, q, k, v, out);
  } catch (const attn::error& e) {
    message = e.what();
  }
  const int rank = world_rank();
  EXPECT_FALSE(message.empty()) << "rank " << rank << " did not throw";
  EXPECT_EQ(out(0, 0, 0, 0), T(-7)) << "rank " << rank << ": output written before the error";
  // Same message everywhere: compare with rank 0's.
  const std::string first = attn::dist::detail::broadcast(MPI_COMM_WORLD, 0, message);
  EXPECT_EQ(message, first) << "rank " << rank;
  int threw = message.empty() ? 0 : 1, all = 0;
  MPI_Allreduce(&threw, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ(all, world_size());
  return message;
}

TEST(RingErrors, MismatchedHeadsOnLastRank) {
  shapes s;
  if (world_rank() == world_size() - 1) s.heads_q = s.out_heads = 8;
  const auto m = expect_error_everywhere(s);
  EXPECT_NE(m.find("q.dim(2)=8 does not match rank 0's q.dim(2)=4 (heads)"), std::string::npos)
      << m;
}

TEST(RingErrors, MismatchedHeadDim) {
  shapes s;
  if (world_rank() == 1) s.head_dim = 32;
  const auto m = expect_error_everywhere(s);
  EXPECT_NE(m.find("rank 1: q.dim(3)=32 does not match rank 0's q.dim(3)=16 (head_dim)"),
            std::string::npos)
      << m;
}

TEST(RingErrors, MismatchedBatch) {
  shapes s;
  if (world_rank() == 1) s.batch = 3;
  const auto m = expect_error_everywhere(s);
  EXPECT_NE(m.find("(batch)"), std::string::npos) << m;
}

TEST(RingErrors, MismatchedKvHeads) {
  shapes s;
  if (world_rank() == 0) s.heads_kv = 4;
  const auto m = expect_error_everywhere(s);
  EXPECT_NE(m.find("k.dim(2)"), std::string::npos) << m;
}

TEST(RingErrors, MismatchedDtype) {
  // Rank 1 passes double tensors, the others float.
  std::string m;
  if (world_rank() == 1)
    m = expect_error_everywhere<double>(shapes{});
  else
    m = expect_error_everywhere<float>(shapes{});
  EXPECT_NE(m.find("rank 1: element type float64 does not match rank 0's float32"),
            std::string::npos)
      << m;
}

TEST(RingErrors, LocalShapeErrorOnOneRankIsSeenByAll) {
  shapes s;
  if (world_rank() == world_size() - 1) s.out_heads = 3;  // out does not match q on that rank
  const auto m = expect_error_everywhere(s);
  const std::string want = "rank " + std::to_string(world_size() - 1) +
                           ": out.dim(2)=3 does not match q.dim(2)=4 (heads)";
  EXPECT_NE(m.find(want), std::string::npos) << m;
}

TEST(RingErrors, CausalNeedsTheSameRowsForQueriesAndKeys) {
  // k/v with other lengths than q is fine for dense (cross-attention), not for causal.
  const int rank = world_rank();
  Eigen::Tensor<float, 4, Eigen::RowMajor> q(1, 4, 2, 8), k(1, 5 + rank, 2, 8),
      v(1, 5 + rank, 2, 8), out(1, 4, 2, 8);
  q.setConstant(0.1f);
  k.setConstant(0.2f);
  v.setConstant(0.3f);
  EXPECT_NO_THROW(attn::dist::ring_attention(MPI_COMM_WORLD, q, k, v, out));
  bool threw = false;
  try {
    attn::dist::ring_attention(MPI_COMM_WORLD, q, k, v, out, attn::softmax{}, attn::causal{});
  } catch (const attn::error& e) {
    threw = std::string(e.what()).find("rank 0: k.dim(1)=5 does not match q.dim(1)=4") !=
            std::string::npos;
  }
  EXPECT_TRUE(threw) << "rank " << rank;
}

}  // namespace
