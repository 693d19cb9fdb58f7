// attn inside a server: many user threads call attention at once on shared read-only inputs
// (tensors, patterns, a KV cache) with outputs of their own. Each call must give exactly what
// the same call gives alone — no shared mutable state anywhere in the library.
#include <array>
#include <functional>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>

#include "support/kernel_check.hpp"

namespace concurrency_test {

using attn::idx;
using attn::test::make_problem;
using attn::test::problem;
using attn::test::tensor;

TEST(Concurrency, EightUserThreadsMatchSerialResults) {
  const problem prefill = make_problem(1, 200, 200, 4, 2, 64, 64, 31);
  const problem decode = make_problem(2, 1, 700, 8, 2, 64, 64, 32);
  const auto layout = attn::bigbird_layout(200, 32, {.random_blocks = 1, .heads = 4});
  attn::kv_cache<Eigen::bfloat16> cache({.batch = 2, .capacity = 700, .heads = 2, .head_dim = 64});
  cache.append(decode.k, decode.v);
  attn::options opt;
  opt.threads = 2;  // the same worker count alone and concurrently: the same split of the work

  // The calls, each writing its own output.
  const std::vector<std::function<void(tensor&)>> calls = {
      [&](tensor& o) {
        attn::attention<attn::test::arch>(prefill.q, prefill.k, prefill.v, o, attn::softmax{},
                                          attn::causal{}, opt);
      },
      [&](tensor& o) {
        attn::attention<attn::test::arch>(prefill.q, prefill.k, prefill.v, o, attn::sigmoid{},
                                          layout, opt);
      },
      [&](tensor& o) {
        attn::attention<attn::test::arch>(decode.q, decode.k, decode.v, o, attn::softmax{},
                                          attn::window{.left = 300}, opt);
      },
      [&](tensor& o) {
        attn::attention<attn::test::arch>(decode.q, cache, o, attn::softmax{}, attn::causal{}, opt);
      },
  };
  auto output_of = [&](std::size_t c) {
    return c < 2 ? tensor(1, 200, 4, 64) : tensor(2, 1, 8, 64);
  };

  std::vector<tensor> alone;
  for (std::size_t c = 0; c < calls.size(); ++c) {
    alone.push_back(output_of(c));
    calls[c](alone.back());
  }

  constexpr int user_threads = 8, rounds = 3;
  std::vector<tensor> together;
  for (int t = 0; t < user_threads; ++t) together.push_back(output_of(t % calls.size()));
  std::vector<std::thread> users;
  for (int t = 0; t < user_threads; ++t)
    users.emplace_back([&, t] {
      for (int r = 0; r < rounds; ++r)
        calls[t % calls.size()](together[static_cast<std::size_t>(t)]);
    });
  for (std::thread& u : users) u.join();

  for (int t = 0; t < user_threads; ++t) {
    const tensor& want = alone[t % calls.size()];
    const tensor& got = together[static_cast<std::size_t>(t)];
    idx different = 0;
    for (idx n = 0; n < want.size(); ++n) different += want.data()[n] != got.data()[n];
    EXPECT_EQ(different, 0) << "user thread " << t << " (call " << t % calls.size() << ")";
  }
}

}  // namespace concurrency_test
