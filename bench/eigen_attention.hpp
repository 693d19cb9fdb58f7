// The plain Eigen composition of softmax attention that every attn kernel is compared with:
// S = Q·Kᵀ (an Eigen GEMM), a row softmax with Eigen's vectorised exp, O = P·V. Used by the
// "eigen/..." benchmarks and by the demo. No Google Benchmark dependency.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <optional>

#include "attn/tensor.hpp"

namespace attn_bench {

// ---- the plain Eigen composition ------------------------------------------------------------

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
/// One head of a [batch, seq, heads, head_dim] tensor: seq rows, head_dim contiguous columns,
/// heads·head_dim floats between rows. Read and written in place, never copied.
using head_view = Eigen::Map<row_matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
using const_head_view = Eigen::Map<const row_matrix, Eigen::Unaligned, Eigen::OuterStride<>>;

/// Softmax attention written as an Eigen user would: for each (batch, head) and block of
/// `block_rows` queries, S = Q·Kᵀ (an Eigen GEMM), a row softmax with Eigen's vectorised exp
/// over each row's visible keys, O = P·V (an Eigen GEMM), then O divided by the row sums.
/// Q, K, V and O are mapped in place. Blocking the queries keeps S in cache (the score block
/// is block_rows × N floats; 128 rows measured best of 16–256 on Zen 4) instead of materialising an
/// N × N matrix per head, and causal blocks only multiply the keys their last query can see: the
/// fair, reasonably efficient version of the same work, single-threaded unless Eigen was built with
/// its own threading. Supports grouped-query heads (K, V with fewer heads) and head_dim_v ≠
/// head_dim; causal is bottom-right aligned like attn::causal{} (query i sees keys j ≤ i + Nk −
/// Nq). A query that sees no key gets a zero row.
inline void eigen_reference_attention(const attn::tensor4<float>& q, const attn::tensor4<float>& k,
                                      const attn::tensor4<float>& v, attn::tensor4<float>& out,
                                      bool causal, std::optional<float> scale = {},
                                      Eigen::Index block_rows = 128) {
  const Eigen::Index batch = q.dimension(0), nq = q.dimension(1), hq = q.dimension(2),
                     d = q.dimension(3);
  const Eigen::Index nk = k.dimension(1), hk = k.dimension(2), dv = v.dimension(3);
  const Eigen::Index group = hq / hk;
  const float sc = scale.value_or(1.0f / std::sqrt(static_cast<float>(d)));
  const Eigen::Index offset = nk - nq;  // key position of query 0, minus 0

  row_matrix scores(std::min(block_rows, nq), nk);
  Eigen::VectorXf inv_sum(std::min(block_rows, nq));
  for (Eigen::Index b = 0; b < batch; ++b) {
    for (Eigen::Index h = 0; h < hq; ++h) {
      const Eigen::Index g = h / group;
      const_head_view Q(q.data() + (b * nq * hq + h) * d, nq, d, Eigen::OuterStride<>(hq * d));
      const_head_view K(k.data() + (b * nk * hk + g) * d, nk, d, Eigen::OuterStride<>(hk * d));
      const_head_view V(v.data() + (b * nk * hk + g) * dv, nk, dv, Eigen::OuterStride<>(hk * dv));
      head_view O(out.data() + (b * nq * hq + h) * dv, nq, dv, Eigen::OuterStride<>(hq * dv));

      for (Eigen::Index i0 = 0; i0 < nq; i0 += block_rows) {
        const Eigen::Index m = std::min(block_rows, nq - i0);
        // Keys any query of the block sees: all, or up to the last query's position.
        const Eigen::Index kend = causal ? std::clamp<Eigen::Index>(i0 + m + offset, 0, nk) : nk;
        if (kend == 0) {
          O.middleRows(i0, m).setZero();
          continue;
        }
        auto S = scores.topLeftCorner(m, kend);
        S.noalias() = Q.middleRows(i0, m) * K.topRows(kend).transpose();
        for (Eigen::Index r = 0; r < m; ++r) {
          const Eigen::Index len =
              causal ? std::clamp<Eigen::Index>(i0 + r + offset + 1, 0, kend) : kend;
          auto row = S.row(r);
          if (len == 0) {
            row.setZero();
            inv_sum[r] = 0.0f;
            continue;
          }
          const float mx = row.head(len).maxCoeff();
          row.head(len).array() = ((row.head(len).array() - mx) * sc).exp();
          row.tail(kend - len).setZero();
          inv_sum[r] = 1.0f / row.head(len).sum();
        }
        auto Ob = O.middleRows(i0, m);
        Ob.noalias() = S * V.topRows(kend);
        Ob.array().colwise() *= inv_sum.head(m).array();
      }
    }
  }
}

}  // namespace attn_bench
