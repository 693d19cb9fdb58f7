// The consumer program of the packaging tests: includes attn the way a user does, runs dense
// softmax attention on a small problem and checks that the output is finite and, being a convex
// combination of the rows of V, within their range.
#include <attn/attn.hpp>

#include <cmath>
#include <cstdio>

#ifndef ATTN_CONSUMER
#define ATTN_CONSUMER "consumer"
#endif

int main() {
  attn::tensor4<float> q(2, 5, 4, 16), k(2, 7, 2, 16), v(2, 7, 2, 16), out(2, 5, 4, 16);
  const auto fill = [](attn::tensor4<float>& t, float phase) {
    for (Eigen::Index i = 0; i < t.size(); ++i)
      t.data()[i] = std::sin(0.37f * static_cast<float>(i) + phase);
  };
  fill(q, 0.0f);
  fill(k, 1.0f);
  fill(v, 2.0f);
  out.setConstant(std::nanf(""));

  attn::attention(q, k, v, out);

  for (Eigen::Index i = 0; i < out.size(); ++i) {
    const float x = out.data()[i];
    if (!std::isfinite(x) || std::abs(x) > 1.0f) {
      std::printf("attn %s (%s): out[%ld] = %g is wrong\n", attn::version, ATTN_CONSUMER,
                  static_cast<long>(i), static_cast<double>(x));
      return 1;
    }
  }
  std::printf("attn %s (%s): ok, out[0,0,0,0] = %g\n", attn::version, ATTN_CONSUMER,
              static_cast<double>(out(0, 0, 0, 0)));
  return 0;
}
