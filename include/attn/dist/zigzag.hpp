// The zigzag layout of a sequence over P ranks — how attn::dist::ring_attention maps the global
// sequence to each rank's local rows. No MPI here: the mapping is plain arithmetic, so it can be
// used (and tested) anywhere.
//
// Causal attention over a contiguous split is unbalanced: rank r's queries see r + 1 of the P
// key blocks, so the last rank does P times the work of the first. Cutting the sequence into 2P
// chunks and giving rank r chunks r and 2P − 1 − r (one early, one late) makes every rank's
// share of the causal triangle equal (the "zigzag" of context parallelism, Megatron-LM /
// ring-flash-attention; Brandon et al. 2023, "Striped Attention", balance the same triangle with
// a finer round-robin stripe).
//
// The layout, precisely. Rank r holds n_r local rows (any n_r >= 0; ranks may differ):
//   - its FRONT chunk: the first f_r = ceil(n_r / 2) local rows,
//   - its BACK chunk:  the last  b_r = floor(n_r / 2) local rows.
// The global sequence is the fronts in rank order followed by the backs in reverse rank order:
//   global = front_0 | front_1 | … | front_{P−1} | back_{P−1} | … | back_1 | back_0
// so local row i of rank r is global row
//   front_start(r) + i            for i < f_r,  front_start(r) = Σ_{s<r} f_s
//   back_start(r) + (i − f_r)     for i ≥ f_r,  back_start(r)  = Σ_s f_s + Σ_{s>r} b_s.
// even(N, P) cuts N into 2P chunks whose sizes differ by at most one (the first N mod 2P chunks
// one longer); then chunk r (a front) is never shorter than chunk 2P − 1 − r (a back), as the
// ceil/floor rule requires. Any other lengths (uneven splits, empty ranks) are equally valid.
#pragma once

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <utility>
#include <vector>

#include "attn/error.hpp"
#include "attn/pattern/tile.hpp"
#include "attn/tensor.hpp"

namespace attn::dist {

/// Per-rank local lengths and the zigzag mapping they define (see the file comment).
class zigzag_layout {
 public:
  zigzag_layout() = default;

  /// Rank r holds lengths[r] rows.
  static zigzag_layout from_lengths(std::vector<idx> lengths) {
    for (std::size_t r = 0; r < lengths.size(); ++r)
      if (lengths[r] < 0)
        attn::detail::fail("zigzag_layout: lengths[", r, "]=", lengths[r], " < 0");
    zigzag_layout z;
    z.lengths_ = std::move(lengths);
    return z;
  }

  /// `global` rows over `ranks` ranks in 2·ranks chunks as equal as possible.
  static zigzag_layout even(idx global, int ranks) {
    if (global < 0) attn::detail::fail("zigzag_layout::even: global length ", global, " < 0");
    if (ranks < 1) attn::detail::fail("zigzag_layout::even: ranks=", ranks, " must be >= 1");
    const idx chunks = 2 * static_cast<idx>(ranks), base = global / chunks, rem = global % chunks;
    std::vector<idx> n(static_cast<std::size_t>(ranks));
    for (idx r = 0; r < ranks; ++r)
      n[static_cast<std::size_t>(r)] = 2 * base + (r < rem) + (chunks - 1 - r < rem);
    return from_lengths(std::move(n));
  }

  int ranks() const { return static_cast<int>(lengths_.size()); }
  const std::vector<idx>& lengths() const { return lengths_; }
  idx local_length(int r) const { return lengths_[static_cast<std::size_t>(r)]; }
  idx front_length(int r) const { return (local_length(r) + 1) / 2; }
  idx back_length(int r) const { return local_length(r) / 2; }
  idx global_length() const { return std::accumulate(lengths_.begin(), lengths_.end(), idx{0}); }

  idx front_start(int r) const {
    idx s = 0;
    for (int t = 0; t < r; ++t) s += front_length(t);
    return s;
  }
  idx back_start(int r) const {
    idx s = 0;
    for (int t = 0; t < ranks(); ++t) s += front_length(t);
    for (int t = ranks() - 1; t > r; --t) s += back_length(t);
    return s;
  }

  /// The global row of local row i of rank r.
  idx global_row(int r, idx i) const {
    const idx f = front_length(r);
    return i < f ? front_start(r) + i : back_start(r) + (i - f);
  }

 private:
  std::vector<idx> lengths_;
};

/// Rank r's local rows of a global [B, N, H, D] tensor (N = layout.global_length()).
template <class X>
tensor4<float> split(const X& global, const zigzag_layout& layout, int rank) {
  const auto g = attn::detail::view_of(global);
  if (g.seq() != layout.global_length())
    attn::detail::fail("split: global.dim(1)=", g.seq(), " does not match the layout's ",
                       layout.global_length(), " rows (sequence)");
  const idx n = layout.local_length(rank);
  tensor4<float> local(g.batch(), n, g.heads(), g.head_dim());
  const auto l = attn::detail::view_of(local);
  const idx row = g.heads() * g.head_dim();  // one sequence position, contiguous
  for (idx b = 0; b < g.batch(); ++b)
    for (idx i = 0; i < n; ++i) {
      const float* src = g.row(b, layout.global_row(rank, i), 0);
      std::copy(src, src + row, l.row(b, i, 0));
    }
  return local;
}

/// Rank r's local columns of a global [B, H, N] log-sum-exp (the layout of options::lse).
inline lse_tensor split_lse(const lse_tensor& global, const zigzag_layout& layout, int rank) {
  if (global.dimension(2) != layout.global_length())
    attn::detail::fail("split_lse: lse.dim(2)=", global.dimension(2),
                       " does not match the layout's ", layout.global_length(), " rows (seq_q)");
  const idx n = layout.local_length(rank);
  lse_tensor local(global.dimension(0), global.dimension(1), n);
  for (idx b = 0; b < global.dimension(0); ++b)
    for (idx h = 0; h < global.dimension(1); ++h)
      for (idx i = 0; i < n; ++i) local(b, h, i) = global(b, h, layout.global_row(rank, i));
  return local;
}

/// The inverse of split: writes rank r's local rows into their places in `global`.
template <class X>
void place(const X& local, const zigzag_layout& layout, int rank, tensor4<float>& global) {
  const auto l = attn::detail::view_of(local);
  const auto g = attn::detail::view_of(global);
  if (l.seq() != layout.local_length(rank))
    attn::detail::fail("place: local.dim(1)=", l.seq(), " does not match the layout's ",
                       layout.local_length(rank), " rows of rank ", rank, " (sequence)");
  for (int d : {0, 2, 3}) attn::detail::require_equal_dim("local", l, d, "global", g, d);
  const idx row = l.heads() * l.head_dim();
  for (idx b = 0; b < l.batch(); ++b)
    for (idx i = 0; i < l.seq(); ++i) {
      const float* src = l.row(b, i, 0);
      std::copy(src, src + row, g.row(b, layout.global_row(rank, i), 0));
    }
}

}  // namespace attn::dist
