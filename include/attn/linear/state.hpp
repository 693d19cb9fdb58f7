// attn::linear::state — the recurrent state of causal linear attention, for decoding:
//   kv [batch, heads, head_dim, head_dim_v]   S = Σ_j γ^{t−j}·φ(k_j)·v_jᵀ
//   z  [batch, heads, head_dim]               z = Σ_j γ^{t−j}·φ(k_j)
// with `heads` the QUERY heads (under grouped-query attention each query head keeps its own
// state, so that every head may have its own decay). A fresh state is all zeros (no token
// seen). linear_attention_step() advances it by the tokens it is given; linear_attention()
// with attn::causal and a state starts from it and leaves the state after the last token, so
// a prompt can be processed in the chunked form and the continuation decoded step by step.
#pragma once

#include <cstddef>

#include <unsupported/Eigen/CXX11/Tensor>

namespace attn::linear {

struct state {
  Eigen::Tensor<float, 4, Eigen::RowMajor> kv;
  Eigen::Tensor<float, 3, Eigen::RowMajor> z;

  state() = default;
  state(std::ptrdiff_t batch, std::ptrdiff_t heads, std::ptrdiff_t head_dim,
        std::ptrdiff_t head_dim_v)
      : kv(batch, heads, head_dim, head_dim_v), z(batch, heads, head_dim) {
    reset();
  }

  /// Back to "no token seen".
  void reset() {
    kv.setZero();
    z.setZero();
  }

  std::ptrdiff_t batch() const { return kv.dimension(0); }
  std::ptrdiff_t heads() const { return kv.dimension(1); }
  std::ptrdiff_t head_dim() const { return kv.dimension(2); }
  std::ptrdiff_t head_dim_v() const { return kv.dimension(3); }
};

}  // namespace attn::linear
