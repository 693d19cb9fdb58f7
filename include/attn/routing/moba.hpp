// MoBA: Mixture of Block Attention (Lu et al. 2025, "MoBA: Mixture of Block Attention for
// Long-Context LLMs", §2.2–2.3; MoonshotAI/MoBA, moba_naive.py / moba_efficient.py).
//
// Keys are cut into blocks of `block` positions (the last one may be shorter). Query i scores
// each block b by the parameter-free gate
//   s_i(b) = q_i · mean_{j ∈ b} k_j          (unscaled, the raw head vectors; Eq. 5–6)
// and attends to the keys of its top_k blocks. Causal (the paper's autoregressive setting):
//   - its own block (the one holding its position) is always selected — the official code sets
//     its gate to +inf — and counts toward top_k, with the causal mask inside it;
//   - the other top_k − 1 are the best earlier blocks (all of them when there are fewer);
//   - later blocks never (gate −inf).
// So top_k ≥ number of blocks is dense causal attention and top_k = 1 block-local causal.
// Non-causal (causal = false): the plain top_k of all blocks.
//
// Each query picks its own blocks: the result is a block_selection with query_group = 1, one
// row of block bits per (batch, head, query). Ties are broken by the lower block index (see
// routing/topk.hpp). Grouped-query attention: query head h gates with the block means of its
// K/V head.
//
//   auto sel = attn::moba{.block = 512, .top_k = 3}.route(q, k);
//   attn::attention(q, k, v, out, attn::softmax{}, sel);
//
// Cost of routing: O(Nk·D) for the means and O(Nq·blocks·D) for the gate per head — about
// blocks / Nk of dense attention's Q·Kᵀ.
#pragma once

#include <algorithm>
#include <vector>

#include "attn/routing/common.hpp"
#include "attn/routing/selection.hpp"
#include "attn/routing/topk.hpp"
#include "attn/simd/ops.hpp"

namespace attn {

namespace detail {

/// Columns of a transposed block-means matrix: the blocks rounded up to whole chunks of
/// gate_chunk, the padding columns zero.
inline constexpr idx gate_chunk = 16;
inline idx gate_stride(idx blocks) { return (blocks + gate_chunk - 1) / gate_chunk * gate_chunk; }

/// Means of the key blocks of (b, kv head g), transposed: means[d · gate_stride + c].
template <class K>
void key_block_means(const view4<K>& k, idx b, idx g, idx block, std::vector<float>& means) {
  const idx n = k.seq(), d_count = k.head_dim(), blocks = blocks_of(n, block);
  const idx stride = gate_stride(blocks);
  means.assign(static_cast<std::size_t>(d_count * stride), 0.0f);
  std::vector<double> sum(static_cast<std::size_t>(d_count));
  for (idx c = 0; c < blocks; ++c) {
    std::fill(sum.begin(), sum.end(), 0.0);
    const idx j0 = c * block, j1 = std::min(n, j0 + block);
    for (idx j = j0; j < j1; ++j) {
      const auto* row = k.row(b, j, g);
      for (idx d = 0; d < d_count; ++d) sum[static_cast<std::size_t>(d)] += row[d];
    }
    for (idx d = 0; d < d_count; ++d)
      means[static_cast<std::size_t>(d * stride + c)] =
          static_cast<float>(sum[static_cast<std::size_t>(d)] / static_cast<double>(j1 - j0));
  }
}

/// gate[c] = Σ_d x[d] · means[d · stride + c] for c < count: chunks of gate_chunk columns whose
/// accumulators stay in registers for the whole d loop (written with simd/ops: the compilers we
/// use assemble this loop from scalar multiplies otherwise).
template <class A = simd::default_arch>
void gate_scores(const float* x, idx d_count, const std::vector<float>& means, idx stride,
                 idx count, std::vector<float>& gate) {
  constexpr idx L = simd::lanes<A>, V = gate_chunk / L;
  static_assert(gate_chunk % L == 0, "a gate chunk holds whole vectors");
  gate.resize(static_cast<std::size_t>(stride));
  constexpr idx P = 4;  // independent partial sums over d (d mod P): FMA latency, not a chain
  for (idx c0 = 0; c0 < count; c0 += gate_chunk) {
    simd::vec<A> acc[P][V];
    for (idx p = 0; p < P; ++p)
      for (idx v = 0; v < V; ++v) acc[p][v] = simd::splat<A>(0.0f);
    idx d = 0;
    for (; d + P <= d_count; d += P)
      for (idx p = 0; p < P; ++p) {
        const simd::vec<A> xd = simd::splat<A>(x[d + p]);
        const float* m = means.data() + (d + p) * stride + c0;
        for (idx v = 0; v < V; ++v) acc[p][v] = simd::fma(xd, simd::load<A>(m + v * L), acc[p][v]);
      }
    for (; d < d_count; ++d) {
      const simd::vec<A> xd = simd::splat<A>(x[d]);
      const float* m = means.data() + d * stride + c0;
      for (idx v = 0; v < V; ++v) acc[0][v] = simd::fma(xd, simd::load<A>(m + v * L), acc[0][v]);
    }
    for (idx v = 0; v < V; ++v)
      simd::store<A>(gate.data() + c0 + v * L, (acc[0][v] + acc[1][v]) + (acc[2][v] + acc[3][v]));
  }
}

}  // namespace detail

struct moba {
  idx block = 512;     ///< keys per block (the paper's B; 512 and 4096 in its experiments)
  idx top_k = 3;       ///< blocks per query, its own block included when causal
  bool causal = true;  ///< the paper's autoregressive gate and mask

  /// Routes q [B, Nq, Hq, D] over k [B, Nk, Hkv, D]; causal alignment bottom-right (query i at
  /// key position i + Nk − Nq). Throws attn::error for block < 1, top_k < 1 or top_k > the
  /// number of key blocks.
  template <class Q, class K>
  requires detail::row_major_tensor<Q, 4> && detail::row_major_tensor<K, 4> block_selection
  route(const Q& q, const K& k, const options& opt = {})
  const {
    const detail::router_inputs in = detail::router_views(q, k);
    const detail::view4<const float>&qv = in.q, &kv = in.k;
    const detail::problem_shape& s = in.shape;
    detail::require_positive("moba", "block", block);
    detail::require_positive("moba", "top_k", top_k);
    const idx blocks = detail::blocks_of(s.seq_k, block);
    if (top_k > blocks)
      detail::fail("moba: top_k=", top_k, " exceeds the ", blocks,
                   " key blocks (k.dim(1)=", s.seq_k, " keys at block=", block, ")");
    detail::selection_builder builder("moba", s.batch, s.heads_q, s.seq_q, s.seq_k, 1, block,
                                      causal);
    const idx offset = s.seq_k - s.seq_q, group = s.heads_q / s.heads_kv;
    detail::parallel_items(opt, s.batch * s.heads_q, [&](idx item) {
      const idx b = item / s.heads_q, h = item % s.heads_q;
      std::vector<float> means, gate;
      std::vector<idx> best;
      detail::key_block_means(kv, b, h / group, block, means);
      for (idx i = 0; i < s.seq_q; ++i) {
        idx candidates = blocks, own = -1;
        if (causal) {
          const idx pos = i + offset;
          if (pos < 0) continue;  // a query before the first key sees nothing
          own = pos / block;
          candidates = own;  // the earlier blocks compete for the other top_k − 1
        }
        detail::gate_scores(qv.row(b, i, h), s.head_dim, means, detail::gate_stride(blocks),
                            candidates, gate);
        const idx want = causal ? top_k - 1 : top_k;
        detail::top_k(gate.data(), candidates, std::min(want, candidates), best);
        for (idx c : best) builder.select(b, h, i, c);
        if (own >= 0) builder.select(b, h, i, own);
      }
    });
    return detail::finish_selection(builder, opt);
  }
};

}  // namespace attn
