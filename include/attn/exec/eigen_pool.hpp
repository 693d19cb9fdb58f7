// Runs attn's work on an Eigen::ThreadPoolDevice the application already owns.
// Include this header after defining EIGEN_USE_THREADS (Eigen's own requirement for the
// thread-pool device).
#pragma once

#ifndef EIGEN_USE_THREADS
#error "attn/exec/eigen_pool.hpp needs EIGEN_USE_THREADS defined before any Eigen header"
#endif

#include <unsupported/Eigen/CXX11/Tensor>

#include "attn/exec/executor.hpp"

namespace attn::exec {

inline executor eigen_pool(const Eigen::ThreadPoolDevice& device) {
  return {const_cast<Eigen::ThreadPoolDevice*>(&device),
          [](void* context, int workers, void* body, executor::body_fn call) {
            auto* dev = static_cast<Eigen::ThreadPoolDevice*>(context);
            Eigen::Barrier done(static_cast<unsigned>(workers - 1));
            for (int w = 1; w < workers; ++w)
              dev->enqueueNoNotification([&done, body, call, w] {
                call(body, w);
                done.Notify();
              });
            call(body, 0);
            done.Wait();
          },
          device.numThreads() + 1};
}

}  // namespace attn::exec
