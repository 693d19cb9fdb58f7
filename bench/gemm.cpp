// Eigen's own GEMM at the shapes of an attention tile, single-threaded: what a plain Eigen
// composition can reach per product, next to the FMA peak.
//   gemm/eigen/M:64/K:D/N:128     a query tile's scores, [64 × D]·[D × 128]
//   gemm/eigen_nt/M:64/K:D/N:128  the same with the right operand stored transposed
//                                 (Q·Kᵀ with K row-major, as attention reads it)
//   gemm/eigen/M:64/K:128/N:D     its output update, [64 × 128]·[128 × D]
//   gemm/eigen/M:2048/K:64/N:2048 one large product
// Eigen's kernels use the arch the bench is compiled for (-march=native with ATTN_NATIVE);
// its threading is off (EIGEN_DONT_PARALLELIZE, bench/CMakeLists.txt).
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <cstdlib>
#include <string>

#include "common.hpp"

namespace {

using attn_bench::row_matrix;

void gemm(benchmark::State& state, Eigen::Index m, Eigen::Index k, Eigen::Index n,
          bool transposed_rhs) {
  Eigen::setNbThreads(1);
  std::srand(7);
  const row_matrix a = row_matrix::Random(m, k);
  const row_matrix b =
      transposed_rhs ? row_matrix(row_matrix::Random(n, k)) : row_matrix(row_matrix::Random(k, n));
  row_matrix c(m, n);
  for (auto _ : state) {
    if (transposed_rhs)
      c.noalias() = a * b.transpose();
    else
      c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  attn_bench::set_gflops(
      state, 2.0 * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n));
}

void add(const char* kind, Eigen::Index m, Eigen::Index k, Eigen::Index n, bool transposed_rhs) {
  const std::string name = std::string("gemm/") + kind + "/M:" + std::to_string(m) +
                           "/K:" + std::to_string(k) + "/N:" + std::to_string(n);
  benchmark::RegisterBenchmark(name.c_str(), gemm, m, k, n, transposed_rhs)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
}

[[maybe_unused]] const bool registered = [] {
  for (Eigen::Index d : {64, 128}) {
    add("eigen", 64, d, 128, false);
    add("eigen_nt", 64, d, 128, true);
    if (d != 128) add("eigen", 64, 128, d, false);  // at d = 128 it is the scores shape
  }
  add("eigen", 2048, 64, 2048, false);
  return true;
}();

}  // namespace
