// attn_bench_ring — ring attention (attn/dist/ring.hpp) timed per rank: total, compute, and the
// communication that compute did not hide; plus the same ring of K/V blocks passed around with
// no compute at all (the bare transfer time). A plain MPI program, not Google Benchmark: every
// rank must run the same collective sequence, which Google Benchmark's adaptive repetition
// does not guarantee.
//
//   mpirun -n P attn_bench_ring [--n 32768] [--heads 8] [--dim 128] [--runs 3]
//                               [--pattern causal|dense] [--threads 1]
//
// Prints, per rank, the median over --runs of each figure (the machines are shared and noisy:
// medians, and compare within one run). docs/distributed.md has the model and the figures.
//
// attn_bench (bench/CMakeLists.txt) compiles every bench/*.cpp; this file is a separate
// program (attn_bench_ring, needs MPI), so its body exists only when ATTN_BENCH_RING_MAIN is
// defined and attn_bench sees an empty file.
#ifdef ATTN_BENCH_RING_MAIN

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <attn/dist/ring.hpp>

namespace {

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const std::size_t m = x.size() / 2;
  return x.size() % 2 ? x[m] : 0.5 * (x[m - 1] + x[m]);
}

/// The ring's transfers alone: P − 1 steps of send-right / receive-left of `floats` floats,
/// double-buffered as in ring_attention. Returns seconds.
double bare_ring(std::vector<float>& a, std::vector<float>& b, int rank, int size) {
  const int right = (rank + 1) % size, left = (rank + size - 1) % size;
  const int n = static_cast<int>(a.size());
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s + 1 < size; ++s) {
    MPI_Request req[2];
    MPI_Irecv(b.data(), n, MPI_FLOAT, left, s, MPI_COMM_WORLD, &req[0]);
    MPI_Isend(a.data(), n, MPI_FLOAT, right, s, MPI_COMM_WORLD, &req[1]);
    MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
    a.swap(b);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  long n = 32768, heads = 8, dim = 128;
  int runs = 3, threads = 1;
  std::string pattern = "causal";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i];
    if (f == "--n") n = std::atol(argv[i + 1]);
    if (f == "--heads") heads = std::atol(argv[i + 1]);
    if (f == "--dim") dim = std::atol(argv[i + 1]);
    if (f == "--runs") runs = std::max(1, std::atoi(argv[i + 1]));
    if (f == "--threads") threads = std::atoi(argv[i + 1]);
    if (f == "--pattern") pattern = argv[i + 1];
  }

  const auto layout = attn::dist::zigzag_layout::even(n, size);
  const attn::idx local = layout.local_length(rank);
  std::mt19937 rng(static_cast<unsigned>(rank + 1));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  attn::tensor4<float> q(1, local, heads, dim), k(1, local, heads, dim), v(1, local, heads, dim),
      out(1, local, heads, dim);
  for (auto* t : {&q, &k, &v})
    for (attn::idx i = 0; i < t->size(); ++i) t->data()[i] = u(rng);
  attn::options opt;
  opt.threads = threads;

  std::vector<double> total, compute, wait, bare;
  std::vector<float> a(static_cast<std::size_t>(2 * local * heads * dim)), b(a.size());
  for (int r = 0; r < runs; ++r) {
    attn::dist::ring_stats st;
    MPI_Barrier(MPI_COMM_WORLD);
    if (pattern == "dense")
      attn::dist::ring_attention(MPI_COMM_WORLD, q, k, v, out, attn::softmax{}, attn::dense{}, opt,
                                 &st);
    else
      attn::dist::ring_attention(MPI_COMM_WORLD, q, k, v, out, attn::softmax{}, attn::causal{}, opt,
                                 &st);
    total.push_back(st.total);
    compute.push_back(st.compute);
    wait.push_back(st.wait);
    bare.push_back(bare_ring(a, b, rank, size));
  }
  const double mine[4] = {median(total), median(compute), median(wait), median(bare)};
  std::vector<double> all(4 * static_cast<std::size_t>(size));
  MPI_Gather(mine, 4, MPI_DOUBLE, all.data(), 4, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    // Useful FLOPs: 4·N²·D per head, halved for causal (docs/ARCHITECTURE.md's convention).
    const double flops = 4.0 * static_cast<double>(n) * static_cast<double>(n) *
                         static_cast<double>(dim) * static_cast<double>(heads) *
                         (pattern == "dense" ? 1.0 : 0.5);
    std::printf(
        "ring/%s/N:%ld/H:%ld/D:%ld/ranks:%d/threads:%d  (median of %d runs; K/V block "
        "%.1f MB per rank)\n",
        pattern.c_str(), n, heads, dim, size, threads, runs,
        2.0 * static_cast<double>(local * heads * dim) * 4 / 1e6);
    std::printf("  rank  total s  compute s  exposed comm s  bare ring s\n");
    double slowest = 0;
    for (int r = 0; r < size; ++r) {
      const double* t = &all[4 * static_cast<std::size_t>(r)];
      slowest = std::max(slowest, t[0]);
      std::printf("  %4d %8.3f %10.3f %15.3f %12.3f\n", r, t[0], t[1], t[2], t[3]);
    }
    std::printf("  wall (slowest rank) %.3f s = %.1f useful GFLOP/s in total\n", slowest,
                flops / slowest / 1e9);
  }
  MPI_Finalize();
  return 0;
}

#endif  // ATTN_BENCH_RING_MAIN
