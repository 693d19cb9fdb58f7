// The gtest main of the distributed tests: every test runs on every rank of MPI_COMM_WORLD
// (mpirun -n 2 / -n 4, see CMakeLists.txt). Rank 0 prints the usual gtest output; the other
// ranks print only their failures, prefixed with their rank. The exit code is the worst of all
// ranks', so a failure on any rank fails the ctest entry on its own.
#include <mpi.h>

#include <cstdio>

#include <gtest/gtest.h>

namespace {

/// Prints failed assertions of a rank other than 0 (rank 0 keeps gtest's own printer).
class rank_failures : public testing::EmptyTestEventListener {
 public:
  explicit rank_failures(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::printf("[rank %d] %s:%d: failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                r.line_number(), r.summary());
    std::fflush(stdout);
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new rank_failures(rank));
  }
  const int mine = RUN_ALL_TESTS();
  int worst = 0;
  MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
