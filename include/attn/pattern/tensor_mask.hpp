// Explicit per-pair patterns read from a tensor [B|1, H|1, Nq, Nk] (1 = broadcast):
//   attn::bias{t}  adds t[b, h, i, j] to the logit (−inf hides the pair);
//   attn::mask{m}  a bool tensor, true = visible (PyTorch's boolean attn_mask convention).
// Their tiles are never "full": the kernel reads the tensor for every visited pair. Tiles whose
// mask is all false are still skipped.
#pragma once

#include <cmath>

#include "attn/pattern/tile.hpp"

namespace attn {

namespace detail {

/// A rank-4 tensor indexed [b, h, i, j] with size-1 dimensions broadcast.
template <class T>
struct broadcast4 {
  const T* data = nullptr;
  std::array<idx, 4> dims{};
  std::array<idx, 4> strides{};  // 0 on broadcast dimensions

  template <class X>
  explicit broadcast4(const X& x) : data(x.data()) {
    idx stride = 1;
    for (int d = 3; d >= 0; --d) {
      const auto u = static_cast<std::size_t>(d);
      dims[u] = static_cast<idx>(x.dimensions()[u]);
      strides[u] = dims[u] == 1 ? 0 : stride;
      stride *= dims[u];
    }
  }

  const T& at(idx b, idx h, idx i, idx j) const {
    return data[b * strides[0] + h * strides[1] + i * strides[2] + j * strides[3]];
  }

  void check(const char* name, const problem_shape& s) const {
    const idx want[4] = {s.batch, s.heads_q, s.seq_q, s.seq_k};
    const char* what[4] = {"batch", "heads", "seq_q", "seq_k"};
    for (int d = 0; d < 4; ++d) {
      const idx have = dims[static_cast<std::size_t>(d)];
      const bool broadcastable = d < 2 && have == 1;
      if (have != want[d] && !broadcastable)
        fail(name, ".dim(", d, ")=", have, " does not match ", want[d], " (", what[d],
             d < 2 ? ", or 1 to broadcast)" : ")");
    }
  }
};

}  // namespace detail

/// Additive logit bias tensor [B|1, H|1, Nq, Nk] of float.
struct bias {
  detail::broadcast4<float> values;

  template <class X>
  requires detail::row_major_tensor<X, 4>
  explicit bias(const X& t) : values(t) {}

  void check(const detail::problem_shape& s) const { values.check("bias", s); }
  key_span keys(const head_ctx& c, idx, idx) const { return {0, c.seq_k}; }
  tile_kind classify(const head_ctx&, idx, idx, idx, idx) const { return tile_kind::partial; }
  bool visible(const head_ctx& c, idx i, idx j) const {
    return values.at(c.batch, c.head, i, j) != -std::numeric_limits<float>::infinity();
  }
  static constexpr bool has_bias = true;
  float logit_bias(const head_ctx& c, idx i, idx j) const {
    return values.at(c.batch, c.head, i, j);
  }
};

/// Boolean mask tensor [B|1, H|1, Nq, Nk]: true = the query sees the key.
struct mask {
  detail::broadcast4<bool> values;

  template <class X>
  requires detail::row_major_tensor<X, 4>
  explicit mask(const X& t) : values(t) {}

  void check(const detail::problem_shape& s) const { values.check("mask", s); }
  key_span keys(const head_ctx& c, idx, idx) const { return {0, c.seq_k}; }
  tile_kind classify(const head_ctx& c, idx q0, idx q1, idx k0, idx k1) const {
    bool any = false, all = true;
    for (idx i = q0; i < q1; ++i)
      for (idx j = k0; j < k1; ++j) {
        const bool v = values.at(c.batch, c.head, i, j);
        any |= v;
        all &= v;
      }
    return all ? tile_kind::full : any ? tile_kind::partial : tile_kind::none;
  }
  bool visible(const head_ctx& c, idx i, idx j) const { return values.at(c.batch, c.head, i, j); }
  static constexpr bool has_bias = false;
  float logit_bias(const head_ctx&, idx, idx) const { return 0.0f; }
};

}  // namespace attn
