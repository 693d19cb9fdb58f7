// Why dilated neighborhood attention runs as independent undilated problems, and how.
//
// With dilation d, query x only ever sees keys of its own residue class y ≡ x (mod d), and
// within that class its window is the undilated window of the class's sub-grid: NATTEN's
// formulas (pattern/neighborhood.hpp, DiNAT §3.1) are written in group coordinates x′ = ⌊x/d⌋
// over a group of length L_g = ⌈(L − g)/d⌉, with the same kernel, stride and causality. So a
// dilated K-dimensional problem is exactly Π d_i undilated ones, one per residue tuple g, each
// over its own sub-grid of extents L_g.
//
// Run directly on the full grid, dilation wastes most of the tiled loop's work: a 64-token
// query tile is (part of) one grid row, all of one residue in X1, but the key tiles it has to
// visit interleave every residue — about d₁ times the useful pairs, close to dense attention
// when k·d approaches the extent (the DiNAT setting). Gathered by group, every tile holds one
// residue class, and the cost falls to that of undilated attention. The gather and the scatter
// of the output copy O(N·D) values, against O(N·k^K·D) FLOPs of attention.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>

#include "attn/tensor.hpp"

namespace attn::detail {

/// The residue groups of a K-dimensional grid under per-dimension dilations.
template <int K>
struct dilation_groups {
  using coords = std::array<idx, K>;
  coords extent{}, dilation{};

  idx count() const {
    idx n = 1;
    for (idx d : dilation) n *= d;
    return n;
  }

  /// The residue tuple of group `index` (row-major over the dilations).
  std::array<idx, K> residues(idx index) const {
    std::array<idx, K> g{};
    for (int i = K - 1; i >= 0; --i) {
      const auto u = static_cast<std::size_t>(i);
      g[u] = index % dilation[u];
      index /= dilation[u];
    }
    return g;
  }

  /// The extents of group g's sub-grid: ⌈(L − g)/d⌉ per dimension.
  std::array<idx, K> sub_extent(const std::array<idx, K>& g) const {
    std::array<idx, K> x{};
    for (std::size_t i = 0; i < K; ++i) x[i] = (extent[i] - g[i] + dilation[i] - 1) / dilation[i];
    return x;
  }

  /// Calls f(sub_token, grid_token) for every token of group g's sub-grid, in its row-major
  /// order: sub-grid coordinate x′ is grid coordinate x′·d + g.
  template <class F>
  void for_each_token(const std::array<idx, K>& g, F&& f) const {
    const std::array<idx, K> sub = sub_extent(g);
    idx tokens = 1;
    for (idx x : sub) tokens *= x;
    for (idx t = 0; t < tokens; ++t) {
      idx rest = t, grid = 0, grid_stride = 1;
      for (int i = K - 1; i >= 0; --i) {
        const auto u = static_cast<std::size_t>(i);
        const idx x = rest % sub[u];
        rest /= sub[u];
        grid += (x * dilation[u] + g[u]) * grid_stride;
        grid_stride *= extent[u];
      }
      f(t, grid);
    }
  }
};

/// Copies one group's tokens of src [batch, grid tokens, heads, width] into dst, a contiguous
/// [batch, group tokens, heads, width] tensor (resized).
template <class Groups, class T>
void gather_group(const Groups& groups, const typename Groups::coords& g, const view4<const T>& src,
                  tensor4<float>& dst, idx group_tokens) {
  const idx heads = src.heads(), width = src.head_dim();
  dst.resize(src.batch(), group_tokens, heads, width);
  for (idx b = 0; b < src.batch(); ++b)
    groups.for_each_token(g, [&](idx t, idx grid) {
      for (idx h = 0; h < heads; ++h) {
        const T* row = src.row(b, grid, h);
        std::copy(row, row + width, &dst(b, t, h, 0));
      }
    });
}

/// The inverse for the output: group rows of src [batch, group tokens, heads, width] go to
/// their grid tokens in dst.
template <class Groups>
void scatter_group(const Groups& groups, const typename Groups::coords& g,
                   const tensor4<float>& src, const view4<float>& dst) {
  const idx heads = dst.heads(), width = dst.head_dim();
  for (idx b = 0; b < dst.batch(); ++b)
    groups.for_each_token(g, [&](idx t, idx grid) {
      for (idx h = 0; h < heads; ++h) {
        const float* row = &src(b, t, h, 0);
        std::copy(row, row + width, dst.row(b, grid, h));
      }
    });
}

}  // namespace attn::detail
