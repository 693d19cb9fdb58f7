// Blocked local attention with halos (HaloNet: Vaswani et al. 2021, "Scaling Local
// Self-Attention for Parameter Efficient Visual Backbones", §2.2): the grid is cut into query
// blocks of b_1 × … × b_K; every query of a block sees the keys of its block extended by a halo
// of h_i on each side of each dimension. Keys the halo would take from outside the grid are
// masked (HaloNet pads there; a masked key contributes nothing, a zero-padded one would). Per
// dimension of extent L, query coordinate x:
//   keys y ∈ [max(⌊x/b⌋·b − h, 0), min(⌊x/b⌋·b + b − 1 + h, L − 1)]
// and a key is visible iff it is in every dimension. Runs like pattern/neighborhood.hpp: the same
// per-dimension tables, the same tile questions.
//   attn::blocked_local<2>{.block = {8, 8}, .halo = {3, 3}}
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

#include "attn/error.hpp"
#include "attn/pattern/neighborhood.hpp"
#include "attn/pattern/tile.hpp"

namespace attn {

template <int K>
struct blocked_local {
  static_assert(K >= 1 && K <= 3, "blocked_local<K>: K must be 1, 2 or 3");
  static constexpr int rank = K;

  std::array<idx, K> block{};        ///< query block b per dimension, ≥ 1
  std::array<idx, K> halo{};         ///< h per dimension, ≥ 0
  std::array<idx, K> extent{};       ///< grid X1..XK (set by the entry; 1-D: 0 = sequence)
  detail::grid_windows<K> tables{};  ///< filled by prepare(), not a parameter

  void check(const detail::problem_shape& s) const {
    (void)detail::grid_extents<K>("blocked_local", extent, s);
    for (std::size_t i = 0; i < K; ++i) {
      if (block[i] < 1) detail::fail("blocked_local.block[", i, "]=", block[i], " must be >= 1");
      if (halo[i] < 0) detail::fail("blocked_local.halo[", i, "]=", halo[i], " must be >= 0");
    }
  }

  void prepare(const detail::problem_shape& s) {
    extent = detail::grid_extents<K>("blocked_local", extent, s);
    tables.tabulate(extent, detail::filled<K>(1), [&](std::size_t i, idx x) {
      const idx start = x / block[i] * block[i];
      return std::array<idx, 2>{std::max<idx>(start - halo[i], 0),
                                std::min(start + block[i] - 1 + halo[i], extent[i] - 1)};
    });
  }

  key_span keys(const head_ctx&, idx q0, idx q1) const { return tables.keys(q0, q1); }
  tile_kind classify(const head_ctx&, idx q0, idx q1, idx k0, idx k1) const {
    return tables.classify(q0, q1, k0, k1);
  }
  bool visible(const head_ctx&, idx i, idx j) const { return tables.visible(i, j); }
  void visible_rows(const head_ctx&, idx q0, idx q1, idx k0, idx k1, std::uint64_t* rows) const {
    tables.visible_rows(q0, q1, k0, k1, rows);
  }
  static constexpr bool has_bias = false;
  float logit_bias(const head_ctx&, idx, idx) const { return 0.0f; }
};

}  // namespace attn
