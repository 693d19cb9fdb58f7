// Where the work of one call runs: a type-erased "run fn(worker) on N workers" that the kernel
// calls once per call (never per tile), so the choice costs nothing in the hot loop.
//
//   attn::exec::serial()            the calling thread only
//   attn::exec::openmp()            an OpenMP parallel region (when compiled with OpenMP)
//   attn::exec::std_threads()       std::thread workers started for the call
//   attn::exec::eigen_pool(device)  an Eigen::ThreadPoolDevice (attn/exec/eigen_pool.hpp)
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace attn::exec {

/// Calls `body(worker)` for worker = 0 .. workers-1, each on its own thread, and returns when
/// all have returned. The body distributes the actual work items itself (an atomic counter).
/// One worker (or fewer) is body(0) on the calling thread, without the executor: nothing to
/// hand out, and no thread to start or wake.
struct executor {
  using body_fn = void (*)(void* body, int worker);
  using run_fn = void (*)(void* context, int workers, void* body, body_fn call);

  void* context = nullptr;
  run_fn run = nullptr;
  int max_workers = 0;  ///< 0 = no limit of its own

  explicit operator bool() const { return run != nullptr; }

  template <class Body>
  void parallel(int workers, Body& body) const {
    if (workers <= 1) return body(0);
    run(context, workers, &body, [](void* b, int worker) { (*static_cast<Body*>(b))(worker); });
  }
};

/// Runs f(item) for item = 0 .. count−1 on up to `workers` workers of `ex`, the items handed
/// out one at a time by an atomic counter (items of unequal cost even out); returns when all
/// are done.
template <class F>
void for_each_item(const executor& ex, int workers, std::ptrdiff_t count, F&& f) {
  if (count <= 0) return;
  std::atomic<std::ptrdiff_t> next{0};
  auto body = [&](int) {
    for (std::ptrdiff_t item; (item = next.fetch_add(1, std::memory_order_relaxed)) < count;)
      f(item);
  };
  ex.parallel(static_cast<int>(std::min<std::ptrdiff_t>(workers, count)), body);
}

inline executor serial() {
  return {nullptr,
          [](void*, int workers, void* body, executor::body_fn call) {
            for (int w = 0; w < workers; ++w) call(body, w);
          },
          1};
}

inline executor std_threads() {
  return {nullptr, [](void*, int workers, void* body, executor::body_fn call) {
            std::vector<std::thread> pool;
            pool.reserve(static_cast<std::size_t>(std::max(workers - 1, 0)));
            for (int w = 1; w < workers; ++w) pool.emplace_back(call, body, w);
            call(body, 0);
            for (auto& t : pool) t.join();
          }};
}

#if defined(_OPENMP)
inline executor openmp() {
  return {nullptr, [](void*, int workers, void* body, executor::body_fn call) {
#pragma omp parallel num_threads(workers)
            call(body, omp_get_thread_num());
          }};
}
#endif

/// The executor used when options::executor is empty.
inline executor default_executor() {
#if defined(_OPENMP)
  return openmp();
#else
  return std_threads();
#endif
}

/// Hardware threads, at least 1.
inline int hardware_threads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace attn::exec
