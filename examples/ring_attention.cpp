// attn_example_ring — sequence-parallel (ring) attention over MPI ranks, checked against the
// single-process kernel.
//
//   mpirun -n 4 attn_example_ring [--n 16384] [--heads 8] [--kv-heads 8] [--dim 128]
//                                 [--pattern causal|dense|both] [--threads 1] [--no-check]
//
// Each rank builds only its own rows of Q, K, V (zigzag layout, attn/dist/zigzag.hpp): values
// are a hash of (batch, global row, head, channel), so no rank ever holds the whole sequence.
// attn::dist::ring_attention computes every rank's rows; they are gathered on rank 0, which
// then computes the whole sequence with attn::attention in one process and prints the largest
// difference, and every rank's compute and communication time (docs/distributed.md explains
// the numbers). Exit status 1 when the error exceeds 2e-5.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <attn/attention.hpp>
#include <attn/dist/gather.hpp>
#include <attn/dist/ring.hpp>

namespace {

struct args {
  long n = 16384, heads = 8, kv_heads = 8, dim = 128;
  std::string pattern = "both";
  int threads = 1;
  bool check = true;
};

bool parse(int argc, char** argv, args& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    const bool has_value = i + 1 < argc;
    if (f == "--no-check") {
      a.check = false;
    } else if (has_value && f == "--n") {
      a.n = std::atol(argv[++i]);
    } else if (has_value && f == "--heads") {
      a.heads = std::atol(argv[++i]);
    } else if (has_value && f == "--kv-heads") {
      a.kv_heads = std::atol(argv[++i]);
    } else if (has_value && f == "--dim") {
      a.dim = std::atol(argv[++i]);
    } else if (has_value && f == "--threads") {
      a.threads = std::atoi(argv[++i]);
    } else if (has_value && f == "--pattern") {
      a.pattern = argv[++i];
    } else {
      return false;
    }
  }
  return a.n >= 0 && a.heads > 0 && a.kv_heads > 0 && a.dim > 0 && a.threads >= 0 &&
         (a.pattern == "causal" || a.pattern == "dense" || a.pattern == "both");
}

/// A value in [-1, 1) determined by its global coordinates (splitmix64 of a counter), so that
/// any rank can build any rows, and rank 0 the whole tensor, without communication.
float value(std::uint64_t tensor, std::uint64_t global_index) {
  std::uint64_t z = tensor * 0x9E3779B97F4A7C15ull + global_index + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(static_cast<double>(z >> 40) / static_cast<double>(1ull << 23) - 1.0);
}

/// Rows `rows` (global indices) of tensor number `id`, [1, rows.size(), heads, dim].
attn::tensor4<float> make(int id, const std::vector<attn::idx>& rows, long heads, long dim) {
  attn::tensor4<float> t(1, static_cast<attn::idx>(rows.size()), heads, dim);
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (long h = 0; h < heads; ++h)
      for (long d = 0; d < dim; ++d) {
        const auto g = static_cast<std::uint64_t>((rows[i] * heads + h) * dim + d);
        t(0, static_cast<attn::idx>(i), h, d) = value(static_cast<std::uint64_t>(id), g);
      }
  return t;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Runs one pattern; returns false when rank 0's check fails.
template <class Pattern>
bool run(const args& a, const char* name, int rank, int size) {
  const auto layout = attn::dist::zigzag_layout::even(a.n, size);
  std::vector<attn::idx> mine(static_cast<std::size_t>(layout.local_length(rank)));
  for (std::size_t i = 0; i < mine.size(); ++i)
    mine[i] = layout.global_row(rank, static_cast<attn::idx>(i));
  const auto q = make(0, mine, a.heads, a.dim);
  const auto k = make(1, mine, a.kv_heads, a.dim);
  const auto v = make(2, mine, a.kv_heads, a.dim);
  attn::tensor4<float> out(1, q.dimension(1), a.heads, a.dim);
  attn::options opt;
  opt.threads = a.threads;
  attn::dist::ring_stats st;
  MPI_Barrier(MPI_COMM_WORLD);
  attn::dist::ring_attention(MPI_COMM_WORLD, q, k, v, out, attn::softmax{}, Pattern{}, opt, &st);

  // Every rank's times to rank 0.
  const double mine_t[4] = {st.total, st.compute, st.wait, static_cast<double>(st.bytes_sent)};
  std::vector<double> all(4 * static_cast<std::size_t>(size));
  MPI_Gather(mine_t, 4, MPI_DOUBLE, all.data(), 4, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  const auto full = attn::dist::gather(MPI_COMM_WORLD, out, layout, 0);
  if (rank != 0) return true;

  std::printf("%s: N=%ld H=%ld Hkv=%ld D=%ld over %d ranks (%d thread(s) each)\n", name, a.n,
              a.heads, a.kv_heads, a.dim, size, a.threads);
  std::printf("  rank  rows   total s  compute s  comm wait s  sent MB\n");
  for (int r = 0; r < size; ++r) {
    const double* t = &all[4 * static_cast<std::size_t>(r)];
    std::printf("  %4d %6ld %9.3f %10.3f %12.3f %8.1f\n", r,
                static_cast<long>(layout.local_length(r)), t[0], t[1], t[2], t[3] / 1e6);
  }
  if (!a.check) return true;
  std::vector<attn::idx> every(static_cast<std::size_t>(a.n));
  for (std::size_t i = 0; i < every.size(); ++i) every[i] = static_cast<attn::idx>(i);
  const auto gq = make(0, every, a.heads, a.dim);
  const auto gk = make(1, every, a.kv_heads, a.dim);
  const auto gv = make(2, every, a.kv_heads, a.dim);
  attn::tensor4<float> ref(1, a.n, a.heads, a.dim);
  attn::options one;
  one.threads = a.threads;
  const auto t0 = std::chrono::steady_clock::now();
  attn::attention(gq, gk, gv, ref, attn::softmax{}, Pattern{}, one);
  const double single = seconds_since(t0);
  double worst = 0;
  for (attn::idx i = 0; i < ref.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(full.data()[i]) - ref.data()[i]));
  const bool ok = worst <= 2e-5;
  std::printf("  single process: %.3f s; max |ring - single| = %.3g %s\n", single, worst,
              ok ? "(ok)" : "(FAIL: > 2e-5)");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  args a;
  if (!parse(argc, argv, a)) {
    if (rank == 0)
      std::fprintf(stderr,
                   "usage: mpirun -n P attn_example_ring [--n N] [--heads H] [--kv-heads H] "
                   "[--dim D] [--pattern causal|dense|both] [--threads T] [--no-check]\n");
    MPI_Finalize();
    return 2;
  }
  int ok = 1;
  try {
    if (a.pattern != "dense") ok &= run<attn::causal>(a, "causal", rank, size);
    if (a.pattern != "causal") ok &= run<attn::dense>(a, "dense", rank, size);
  } catch (const attn::error& e) {
    // Every rank throws the same error (dist/agree.hpp): rank 0 reports it.
    if (rank == 0) std::fprintf(stderr, "%s\n", e.what());
    ok = 0;
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Finalize();
  return ok ? 0 : 1;
}
