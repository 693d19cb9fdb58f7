// What every double-precision reference of attn shares (reference/softmax.hpp,
// reference/sigmoid.hpp): the result type, the tensor contract and per-batch lengths restated,
// the logits of a row, and the rules of the patterns.
//
// The patterns attn knows are restated here from their definitions, independently of their own
// visible()/logit_bias() members (those are what the references check); a pattern type unknown
// to this file falls back to its own visible()/logit_bias().
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include <unsupported/Eigen/CXX11/Tensor>

#include "attn/error.hpp"
#include "attn/options.hpp"
#include "attn/pattern/alibi.hpp"
#include "attn/pattern/band.hpp"
#include "attn/pattern/block_sparse.hpp"
#include "attn/pattern/combine.hpp"
#include "attn/pattern/dense.hpp"
#include "attn/pattern/tensor_mask.hpp"
#include "attn/pattern/tile.hpp"

namespace attn::reference {

using tensor4d = Eigen::Tensor<double, 4, Eigen::RowMajor>;
using lse3d = Eigen::Tensor<double, 3, Eigen::RowMajor>;

/// What attention() returns: the output [B, Nq, Hq, Dv] and the log-sum-exp [B, Hq, Nq] (left
/// empty, 0 elements, by score functions that define none, such as sigmoid).
struct result {
  tensor4d out;
  lse3d lse;
};

namespace detail {

inline constexpr double neg_inf = -std::numeric_limits<double>::infinity();

/// The row a (query, key) pair belongs to: its batch, query head, and the effective lengths of
/// its batch.
struct pair_ctx {
  idx batch = 0;
  idx head = 0;
  idx kv_head = 0;
  idx heads = 0;  ///< Hq
  idx seq_q = 0;  ///< Lq
  idx seq_k = 0;  ///< Lk
};

/// The key position p(i) of query i.
///   bottom_right: p(i) = i + Lk − Lq — the last query sits on the last key, as in
///                 FlashAttention-2 (Dao 2023, v2.1 onwards) and a KV cache during decoding;
///   top_left:     p(i) = i — PyTorch's is_causal.
inline idx position(const pair_ctx& c, idx i, align a) {
  return a == align::bottom_right ? i + c.seq_k - c.seq_q : i;
}

/// Element [b, h, i, j] of a [B|1, H|1, Nq, Nk] row-major tensor, a size-1 batch or head
/// dimension standing for every batch or head.
template <class T>
double broadcast_at(const T* data, const std::array<idx, 4>& dims, idx b, idx h, idx i, idx j) {
  const idx bb = dims[0] == 1 ? 0 : b;
  const idx hh = dims[1] == 1 ? 0 : h;
  return static_cast<double>(data[((bb * dims[1] + hh) * dims[2] + i) * dims[3] + j]);
}

/// The standard ALiBi slope of head h out of n (Press et al. 2022, "Train Short, Test Long",
/// §3 and the authors' get_slopes): for n a power of two, 2^(−8(h+1)/n); otherwise, with P the
/// largest power of two below n, the P slopes for P heads followed by the slopes at even
/// positions (0, 2, 4, ...) of the list for 2P heads, i.e. 2^(−8(2(h−P)+1)/(2P)).
inline double alibi_standard_slope(idx h, idx n) {
  idx p = 1;
  while (p * 2 <= n) p *= 2;
  if (h < p) return std::exp2(-8.0 * static_cast<double>(h + 1) / static_cast<double>(p));
  const idx k = 2 * (h - p);  // position in the list for 2P heads
  return std::exp2(-8.0 * static_cast<double>(k + 1) / static_cast<double>(2 * p));
}

// logit_term(pattern, row, i, j): what the pattern adds to s_ij — −inf if j is not visible
// from i, else its additive bias (0 for pure visibility patterns).

/// dense: every key.
inline double logit_term(const dense&, const pair_ctx&, idx, idx) { return 0.0; }

/// window{left, right, alignment, sink_keys}: j is visible iff
///   j ≤ p(i) + right  and  (j ≥ p(i) − left  or  j < sink_keys)
/// — the band of FlashAttention's window_size=(left, right), its left + right + 1 keys include
/// the query's own position; sink_keys are StreamingLLM's attention sinks (Xiao et al. 2023,
/// "Efficient Streaming Language Models with Attention Sinks", §3.2): the first keys stay
/// visible to every query, unless they are in its future.
inline double logit_term(const window& w, const pair_ctx& c, idx i, idx j) {
  const idx p = position(c, i, w.alignment);
  const bool not_future = j <= p + w.right;
  const bool in_band = j >= p - w.left;
  const bool sink = j < w.sink_keys;
  return not_future && (in_band || sink) ? 0.0 : neg_inf;
}

/// causal = window{unbounded, 0}: j ≤ p(i).
inline double logit_term(const causal& w, const pair_ctx& c, idx i, idx j) {
  return logit_term(static_cast<const window&>(w), c, i, j);
}

/// alibi: every key, with the bias −slope_h · |p(i) − j| (Press et al. 2022, §3; under a
/// causal pattern this is the paper's −slope · (i − j)).
inline double logit_term(const alibi& a, const pair_ctx& c, idx i, idx j) {
  const double slope = a.slopes.empty()
                           ? alibi_standard_slope(c.head, c.heads)
                           : static_cast<double>(a.slopes[static_cast<std::size_t>(c.head)]);
  const idx distance = position(c, i, a.alignment) - j;
  return -slope * static_cast<double>(distance < 0 ? -distance : distance);
}

/// bias{t}: t[b, h, i, j] is added to the logit; −inf hides the pair.
inline double logit_term(const attn::bias& t, const pair_ctx& c, idx i, idx j) {
  return broadcast_at(t.values.data, t.values.dims, c.batch, c.head, i, j);
}

/// mask{m}: j is visible iff m[b, h, i, j] is true.
inline double logit_term(const mask& m, const pair_ctx& c, idx i, idx j) {
  return broadcast_at(m.values.data, m.values.dims, c.batch, c.head, i, j) != 0.0 ? 0.0 : neg_inf;
}

/// block_layout: j is visible from i iff head h's block row ⌊i/b⌋ stores key block ⌊j/b⌋ and,
/// when that block carries an element mask, the mask lets row i mod b see column j mod b. Read
/// by a linear walk through the stored blocks, independently of the layout's own
/// classify()/visible() (binary searches), which the kernels use.
inline double logit_term(const block_layout& l, const pair_ctx& c, idx i, idx j) {
  const idx b = l.block_size(), bi = i / b, bj = j / b;
  const auto row = l.row_blocks(c.head, bi);
  for (std::size_t n = 0; n < row.size(); ++n)
    if (row[n] == bj)
      return l.block_sees(c.head, bi, static_cast<idx>(n), i % b, j % b) ? 0.0 : neg_inf;
  return neg_inf;
}

/// A pattern this file does not know: its own visible() and logit_bias() (on a prepared copy).
template <class P>
double logit_term(const P& p, const pair_ctx& c, idx i, idx j) {
  head_ctx h;
  h.batch = c.batch;
  h.head = c.head;
  h.kv_head = c.kv_head;
  h.heads = c.heads;
  h.seq_q = c.seq_q;
  h.seq_k = c.seq_k;
  if (!p.visible(h, i, j)) return neg_inf;
  if constexpr (P::has_bias) return static_cast<double>(p.logit_bias(h, i, j));
  return 0.0;
}

/// A & B: visible iff both see the pair; their biases add.
template <class A, class B>
double logit_term(const both<A, B>& p, const pair_ctx& c, idx i, idx j) {
  const double a = logit_term(p.first, c, i, j);
  if (a == neg_inf) return neg_inf;
  const double b = logit_term(p.second, c, i, j);
  if (b == neg_inf) return neg_inf;
  return a + b;
}

// check_pattern(pattern, shape): rejects parameters that would make the formula meaningless
// or read out of bounds, with an attn::error.

/// The shape of a [B|1, H|1, Nq, Nk] tensor pattern.
inline void check_broadcast(const char* name, const std::array<idx, 4>& dims,
                            const attn::detail::problem_shape& s) {
  const idx want[4] = {s.batch, s.heads_q, s.seq_q, s.seq_k};
  for (int d = 0; d < 4; ++d) {
    const idx have = dims[static_cast<std::size_t>(d)];
    if (have != want[d] && !(d < 2 && have == 1))
      attn::detail::fail("reference: ", name, ".dim(", d, ")=", have, " does not match ", want[d]);
  }
}

inline void check_pattern(const dense&, const attn::detail::problem_shape&) {}
inline void check_pattern(const window& w, const attn::detail::problem_shape&) {
  if (w.left < 0 || w.right < 0 || w.sink_keys < 0)
    attn::detail::fail("reference: window{left=", w.left, ", right=", w.right,
                       ", sink_keys=", w.sink_keys, "} must be >= 0");
}
inline void check_pattern(const causal& w, const attn::detail::problem_shape& s) {
  check_pattern(static_cast<const window&>(w), s);
}
inline void check_pattern(const alibi& a, const attn::detail::problem_shape& s) {
  if (!a.slopes.empty() && static_cast<idx>(a.slopes.size()) != s.heads_q)
    attn::detail::fail("reference: alibi.slopes.size()=", a.slopes.size(), " != heads ", s.heads_q);
}
inline void check_pattern(const attn::bias& t, const attn::detail::problem_shape& s) {
  check_broadcast("bias", t.values.dims, s);
}
inline void check_pattern(const mask& m, const attn::detail::problem_shape& s) {
  check_broadcast("mask", m.values.dims, s);
}
inline void check_pattern(const block_layout& l, const attn::detail::problem_shape& s) {
  if (l.empty()) attn::detail::fail("reference: block_layout is empty");
  if (l.seq_q() != s.seq_q || l.seq_k() != s.seq_k)
    attn::detail::fail("reference: block_layout is ", l.seq_q(), " x ", l.seq_k(),
                       " but the problem is ", s.seq_q, " x ", s.seq_k);
  if (l.heads() != 1 && l.heads() != s.heads_q)
    attn::detail::fail("reference: block_layout has ", l.heads(), " heads, the problem ",
                       s.heads_q);
}
template <class P>
void check_pattern(const P& p, const attn::detail::problem_shape& s) {
  p.check(s);
}
template <class A, class B>
void check_pattern(const both<A, B>& p, const attn::detail::problem_shape& s) {
  check_pattern(p.first, s);
  check_pattern(p.second, s);
}

/// Effective length of batch b: lengths[b], or n when no lengths are given.
inline idx effective_length(std::span<const std::int32_t> lengths, idx b, idx n) {
  return lengths.empty() ? n : static_cast<idx>(lengths[static_cast<std::size_t>(b)]);
}

inline void check_lengths(const char* name, std::span<const std::int32_t> lengths, idx batch,
                          idx n) {
  if (lengths.empty()) return;
  if (static_cast<idx>(lengths.size()) != batch)
    attn::detail::fail("reference: options.", name, ".size()=", lengths.size(),
                       " does not match the batch ", batch);
  for (std::size_t b = 0; b < lengths.size(); ++b)
    if (lengths[b] < 0 || lengths[b] > n)
      attn::detail::fail("reference: options.", name, "[", b, "]=", lengths[b], " is outside [0, ",
                         n, "]");
}

/// A checked problem: its shape and its logit scale.
struct problem {
  attn::detail::problem_shape shape;
  double scale = 1.0;
};

/// Restates the tensor contract (docs/ARCHITECTURE.md) and checks the options and the pattern
/// against it; throws attn::error. The scale is options::scale, else 1/√D (Vaswani et al. 2017).
template <class Q, class K, class V, class Pattern>
problem check_problem(const Q& q, const K& k, const V& v, const Pattern& pattern,
                      const attn::options& opt) {
  problem p;
  attn::detail::problem_shape& s = p.shape;
  s.batch = static_cast<idx>(q.dimension(0));
  s.seq_q = static_cast<idx>(q.dimension(1));
  s.heads_q = static_cast<idx>(q.dimension(2));
  s.head_dim = static_cast<idx>(q.dimension(3));
  s.seq_k = static_cast<idx>(k.dimension(1));
  s.heads_kv = static_cast<idx>(k.dimension(2));
  s.head_dim_v = static_cast<idx>(v.dimension(3));
  if (k.dimension(0) != q.dimension(0) || v.dimension(0) != q.dimension(0) ||
      v.dimension(1) != k.dimension(1) || v.dimension(2) != k.dimension(2) ||
      k.dimension(3) != q.dimension(3))
    attn::detail::fail("reference: inconsistent shapes q=[", q.dimension(0), ",", q.dimension(1),
                       ",", q.dimension(2), ",", q.dimension(3), "] k=[", k.dimension(0), ",",
                       k.dimension(1), ",", k.dimension(2), ",", k.dimension(3), "] v=[",
                       v.dimension(0), ",", v.dimension(1), ",", v.dimension(2), ",",
                       v.dimension(3), "]");
  if (s.heads_kv == 0 ? s.heads_q != 0 : s.heads_q % s.heads_kv != 0)
    attn::detail::fail("reference: k heads ", s.heads_kv, " do not divide q heads ", s.heads_q);
  if (opt.scale && !std::isfinite(*opt.scale))
    attn::detail::fail("reference: options.scale=", *opt.scale, " must be finite");
  check_lengths("key_lengths", opt.key_lengths, s.batch, s.seq_k);
  check_lengths("query_lengths", opt.query_lengths, s.batch, s.seq_q);
  check_pattern(pattern, s);
  p.scale = opt.scale ? static_cast<double>(*opt.scale)
                      : 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  return p;
}

/// Calls f(c) for every (batch, query head) of the problem, c carrying the head, its K/V head
/// g = h / (Hq / Hkv) (grouped-query attention, Ainslie et al. 2023) and the effective lengths.
template <class F>
void for_each_head(const attn::detail::problem_shape& s, const attn::options& opt, F&& f) {
  if (s.heads_q == 0) return;
  for (idx b = 0; b < s.batch; ++b) {
    pair_ctx c;
    c.batch = b;
    c.heads = s.heads_q;
    c.seq_q = effective_length(opt.query_lengths, b, s.seq_q);
    c.seq_k = effective_length(opt.key_lengths, b, s.seq_k);
    for (idx h = 0; h < s.heads_q; ++h) {
      c.head = h;
      c.kv_head = h / (s.heads_q / s.heads_kv);
      f(static_cast<const pair_ctx&>(c));
    }
  }
}

/// The logits of query row i over the keys j < Lk, into logit[j]: −inf where the pattern hides
/// the pair, else
///   s_ij = scale · Σ_d q[b,i,h,d] · k[b,j,g,d]
///   s_ij ← cap · tanh(s_ij / cap)       if cap > 0: logit soft-capping (Gemma 2 report, Gemma
///                                        Team 2024, §2), before any bias as in FlashAttention
///   s_ij ← s_ij + the pattern's bias    ALiBi, bias tensors
/// Returns max_j s_ij (−inf when the row sees no key).
template <class Q, class K, class Pattern>
double row_logits(const Q& q, const K& k, const Pattern& pattern, const pair_ctx& c, idx i,
                  idx head_dim, double scale, double cap, std::vector<double>& logit) {
  double m = neg_inf;
  logit.assign(static_cast<std::size_t>(c.seq_k), neg_inf);
  for (idx j = 0; j < c.seq_k; ++j) {
    const double term = logit_term(pattern, c, i, j);
    if (term == neg_inf) continue;
    double dot = 0.0;
    for (idx d = 0; d < head_dim; ++d)
      dot += static_cast<double>(q(c.batch, i, c.head, d)) *
             static_cast<double>(k(c.batch, j, c.kv_head, d));
    double x = scale * dot;
    if (cap > 0.0) x = cap * std::tanh(x / cap);
    x += term;
    logit[static_cast<std::size_t>(j)] = x;
    m = std::max(m, x);
  }
  return m;
}

}  // namespace detail
}  // namespace attn::reference
