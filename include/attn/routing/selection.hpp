// attn::block_selection — what block routers (MoBA, SpargeAttn, BiFormer) produce: for each
// (batch, head, query group) the set of key blocks its queries attend to. A pattern, so it runs
// in the fused loop with any score function:
//
//   query i of batch b, head h sees key j  iff  block ⌊j / key_block⌋ is selected by group
//   ⌊i / query_group⌋ of (b, h), and key j is valid (not padding), and, when causal,
//   j ≤ i + seq_k − seq_q (bottom-right, as attn::causal).
//
// query_group = 1 is a per-query selection (MoBA's gate); query_group = key_block a block
// layout (SpargeAttn, BiFormer's regions). Unlike block_layout, blocks may be of any size and
// differ between query and key side, and the selection may differ per batch, since routers
// decide from the data.
//
// Tiles. classify() looks at the selection bits of the O(groups in the tile) rows over the
// tile's key blocks: none if no row selects any, full if every row selects every block and no
// causal cut or padding falls in the tile. visible_rows() gives the kernel one bit mask per key
// (per key block: the OR of its selecting groups' rows, cut by causality and padding), so a
// partial tile costs O(groups · blocks + keys), not a search per pair.
//
// The lengths and the causal alignment are those of the routed call: options::key_lengths
// further hide keys, they do not move the causal diagonal of a selection.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "attn/error.hpp"
#include "attn/pattern/block_sparse.hpp"
#include "attn/pattern/tile.hpp"
#include "attn/routing/common.hpp"
#include "attn/tensor.hpp"

namespace attn {

namespace detail {

/// Bits [a, e) of a word, 0 ≤ a ≤ e ≤ a + 64.
inline std::uint64_t bit_span(idx a, idx e) {
  if (e <= a) return 0;
  const std::uint64_t ones = e - a >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << (e - a)) - 1;
  return ones << a;
}

inline bool test_bit(const std::uint64_t* words, idx n) {
  return ((words[n >> 6] >> (n & 63)) & 1u) != 0;
}

/// Whether any / every bit of [c0, c1] (inclusive) is set.
inline std::pair<bool, bool> range_bits(const std::uint64_t* words, idx c0, idx c1) {
  bool any = false, all = true;
  for (idx w = c0 >> 6; w <= c1 >> 6; ++w) {
    const std::uint64_t m =
        bit_span(std::max(c0, w * 64) - w * 64, std::min(c1, w * 64 + 63) - w * 64 + 1);
    const std::uint64_t x = words[w] & m;
    any |= x != 0;
    all &= x == m;
  }
  return {any, all};
}

struct selection_data {
  idx batch = 0, heads = 1, seq_q = 0, seq_k = 0, group = 1, block = 1;
  idx groups = 0, key_blocks = 0, words = 1;
  bool causal = false;
  idx offset = 0;                    ///< key position of query i: i + offset (bottom-right)
  std::vector<std::uint64_t> bits;   ///< [batch][heads][groups][words]
  std::vector<idx> valid_prefix;     ///< empty: every key valid; else valid keys in [0, j)
  std::vector<std::uint64_t> valid;  ///< bit j: key j valid (when valid_prefix is set)
  double pairs = 0;

  const std::uint64_t* row(idx b, idx h, idx g) const {
    return bits.data() + ((b * heads + (heads == 1 ? 0 : h)) * groups + g) * words;
  }
  idx valid_in(idx k0, idx k1) const {  // valid keys of [k0, k1)
    if (k1 <= k0) return 0;
    return valid_prefix.empty() ? k1 - k0
                                : valid_prefix[static_cast<std::size_t>(k1)] -
                                      valid_prefix[static_cast<std::size_t>(k0)];
  }
  bool key_valid(idx j) const { return valid_prefix.empty() || test_bit(valid.data(), j); }
};

struct selection_factory;

/// Builds a selection: routers set bits of disjoint rows (in parallel), then finish() counts
/// the visible pairs.
class selection_builder {
 public:
  selection_builder(const char* who, idx batch, idx heads, idx seq_q, idx seq_k, idx group,
                    idx block, bool causal) {
    if (group < 1) fail(who, ": query group=", group, " must be >= 1");
    if (block < 1) fail(who, ": block=", block, " must be >= 1");
    d_ = std::make_shared<selection_data>();
    d_->batch = batch;
    d_->heads = heads;
    d_->seq_q = seq_q;
    d_->seq_k = seq_k;
    d_->group = group;
    d_->block = block;
    d_->groups = blocks_of(seq_q, group);
    d_->key_blocks = blocks_of(seq_k, block);
    d_->words = std::max<idx>(1, (d_->key_blocks + 63) / 64);
    d_->causal = causal;
    d_->offset = seq_k - seq_q;
    d_->bits.assign(static_cast<std::size_t>(batch * heads * d_->groups * d_->words), 0);
  }

  const selection_data& data() const { return *d_; }
  std::uint64_t* row(idx b, idx h, idx g) {
    return d_->bits.data() + ((b * d_->heads + h) * d_->groups + g) * d_->words;
  }
  void select(idx b, idx h, idx g, idx c) { row(b, h, g)[c >> 6] |= std::uint64_t{1} << (c & 63); }
  /// Marks which keys are real (the others, padding, are never visible).
  void set_valid(const std::vector<bool>& valid) {
    d_->valid.assign(static_cast<std::size_t>((d_->seq_k + 63) / 64 + 1), 0);
    d_->valid_prefix.assign(static_cast<std::size_t>(d_->seq_k + 1), 0);
    for (idx j = 0; j < d_->seq_k; ++j) {
      const bool v = valid[static_cast<std::size_t>(j)];
      if (v) d_->valid[static_cast<std::size_t>(j >> 6)] |= std::uint64_t{1} << (j & 63);
      d_->valid_prefix[static_cast<std::size_t>(j + 1)] =
          d_->valid_prefix[static_cast<std::size_t>(j)] + (v ? 1 : 0);
    }
  }
  /// Visible pairs of row (b, h, g): its queries × their selected, valid, causal keys.
  double row_pairs(idx b, idx h, idx g) const {
    const selection_data& d = *d_;
    const std::uint64_t* bits = d.row(b, h, g);
    double pairs = 0;
    for (idx i = g * d.group; i < std::min(d.seq_q, (g + 1) * d.group); ++i) {
      const idx limit = d.causal ? i + d.offset + 1 : d.seq_k;  // keys [0, limit) allowed
      for (idx w = 0; w < d.words; ++w)
        for (std::uint64_t x = bits[w]; x != 0; x &= x - 1) {
          const idx c = w * 64 + std::countr_zero(x);
          pairs += static_cast<double>(
              d.valid_in(c * d.block, std::min({(c + 1) * d.block, d.seq_k, limit})));
        }
    }
    return pairs;
  }
  void set_pairs(double pairs) { d_->pairs = pairs; }
  std::shared_ptr<const selection_data> finish() {
    return std::shared_ptr<const selection_data>(std::move(d_));
  }

 private:
  std::shared_ptr<selection_data> d_;
};

}  // namespace detail

/// A routed block selection; see the top of this file. Built by routers (moba, sparge,
/// biformer); immutable, copies share the arrays, reusable across calls.
class block_selection {
 public:
  block_selection() = default;

  bool empty() const { return d_ == nullptr; }
  idx batch() const { return d_ ? d_->batch : 0; }
  /// 1 when one selection serves every head (BiFormer), else the query heads.
  idx heads() const { return d_ ? d_->heads : 0; }
  idx seq_q() const { return d_ ? d_->seq_q : 0; }
  idx seq_k() const { return d_ ? d_->seq_k : 0; }
  idx query_group() const { return d_ ? d_->group : 0; }
  idx key_block() const { return d_ ? d_->block : 0; }
  idx query_groups() const { return d_ ? d_->groups : 0; }
  idx key_blocks() const { return d_ ? d_->key_blocks : 0; }
  bool causal() const { return d_ && d_->causal; }
  /// The arrays (for the library's own executors, e.g. selection_attention).
  const detail::selection_data& data() const { return *d_; }
  /// Whether key j is a real key (false only for padding a router added).
  bool key_valid(idx j) const { return d_->key_valid(j); }

  /// Whether group g of (b, h) selected key block c.
  bool selected(idx b, idx h, idx g, idx c) const { return detail::test_bit(d_->row(b, h, g), c); }
  /// The key blocks group g of (b, h) selected, increasing.
  std::vector<idx> blocks(idx b, idx h, idx g) const {
    std::vector<idx> out;
    for (idx c = 0; c < d_->key_blocks; ++c)
      if (selected(b, h, g, c)) out.push_back(c);
    return out;
  }
  /// Visible (query, key) pairs, summed over batches and the selection's heads.
  double visible_pairs() const { return d_ ? d_->pairs : 0.0; }
  /// visible_pairs() / (batch · heads() · seq_q · seq_k).
  double density() const {
    if (!d_ || d_->batch * d_->heads * d_->seq_q * d_->seq_k == 0) return 0.0;
    return d_->pairs / (static_cast<double>(d_->batch * d_->heads) *
                        static_cast<double>(d_->seq_q) * static_cast<double>(d_->seq_k));
  }
  /// The element mask [batch, heads(), seq_q, seq_k] (true = visible), the form attn::mask takes.
  bool_tensor4 to_mask() const {
    bool_tensor4 m(batch(), heads(), seq_q(), seq_k());
    for (idx b = 0; b < batch(); ++b)
      for (idx h = 0; h < heads(); ++h) {
        head_ctx c;
        c.batch = b;
        c.head = h;
        for (idx i = 0; i < seq_q(); ++i)
          for (idx j = 0; j < seq_k(); ++j) m(b, h, i, j) = visible(c, i, j);
      }
    return m;
  }

  // ---- the pattern interface (pattern/tile.hpp) -----------------------------------------------

  void check(const detail::problem_shape& s) const {
    if (!d_) detail::fail("block_selection is empty (default-constructed): route first");
    if (d_->batch != s.batch)
      detail::fail("block_selection was routed for batch=", d_->batch, " but q.dim(0)=", s.batch,
                   " (batch)");
    if (d_->seq_q != s.seq_q)
      detail::fail("block_selection was routed for seq_q=", d_->seq_q, " but q.dim(1)=", s.seq_q,
                   " (queries)");
    if (d_->seq_k != s.seq_k)
      detail::fail("block_selection was routed for seq_k=", d_->seq_k, " but k.dim(1)=", s.seq_k,
                   " (keys)");
    if (d_->heads != 1 && d_->heads != s.heads_q)
      detail::fail("block_selection has ", d_->heads, " heads but q.dim(2)=", s.heads_q,
                   " (heads)");
  }

  /// From the first to the last key block any group of rows [q0, q1) selected (cut at the
  /// causal diagonal of the last row).
  key_span keys(const head_ctx& c, idx q0, idx q1) const {
    const detail::selection_data& d = *d_;
    if (q1 <= q0) return {};
    idx lo = -1, hi = -1;
    for (idx w = 0; w < d.words; ++w) {
      std::uint64_t any = 0;
      for (idx g = q0 / d.group; g <= (q1 - 1) / d.group; ++g) any |= d.row(c.batch, c.head, g)[w];
      if (any == 0) continue;
      if (lo < 0) lo = w * 64 + std::countr_zero(any);
      hi = w * 64 + 63 - std::countl_zero(any);
    }
    if (hi < 0) return {};
    key_span span{lo * d.block, std::min((hi + 1) * d.block, d.seq_k)};
    if (d.causal) span.end = std::min(span.end, q1 - 1 + d.offset + 1);
    return span;
  }

  tile_kind classify(const head_ctx& c, idx q0, idx q1, idx k0, idx k1) const {
    const detail::selection_data& d = *d_;
    if (q1 <= q0 || k1 <= k0) return tile_kind::none;
    if (d.causal && k0 > q1 - 1 + d.offset) return tile_kind::none;
    const idx valid = d.valid_in(k0, k1);
    if (valid == 0) return tile_kind::none;
    const idx c0 = k0 / d.block, c1 = (k1 - 1) / d.block;
    bool any = false, all = valid == k1 - k0;
    for (idx g = q0 / d.group; g <= (q1 - 1) / d.group; ++g) {
      idx last_block = c1;
      if (d.causal) {  // the blocks the group's last row of the tile can reach
        const idx last = std::min(q1, (g + 1) * d.group) - 1 + d.offset;
        if (last < k0) {
          all = false;
          continue;
        }
        last_block = std::min(c1, last / d.block);
      }
      const auto [some, every] = detail::range_bits(d.row(c.batch, c.head, g), c0, last_block);
      any |= some;
      all &= every && last_block == c1;
    }
    if (!any) return tile_kind::none;
    if (d.causal && k1 - 1 > q0 + d.offset) all = false;
    return all ? tile_kind::full : tile_kind::partial;
  }

  bool visible(const head_ctx& c, idx i, idx j) const {
    const detail::selection_data& d = *d_;
    if (d.causal && j > i + d.offset) return false;
    if (!d.key_valid(j)) return false;
    return detail::test_bit(d.row(c.batch, c.head, i / d.group), j / d.block);
  }

  /// For each key j of [k0, k1): rows[j − k0] has bit i − q0 set iff query i of [q0, q1) sees
  /// j (q1 − q0 ≤ 64, k1 − k0 ≤ 64).
  void visible_rows(const head_ctx& c, idx q0, idx q1, idx k0, idx k1, std::uint64_t* rows) const {
    const detail::selection_data& d = *d_;
    std::fill(rows, rows + std::max<idx>(k1 - k0, 0), std::uint64_t{0});
    if (q1 <= q0 || k1 <= k0) return;
    const idx g0 = q0 / d.group, g1 = (q1 - 1) / d.group;
    for (idx cb = k0 / d.block; cb <= (k1 - 1) / d.block; ++cb) {
      std::uint64_t seen = 0;  // rows whose group selected block cb
      for (idx g = g0; g <= g1; ++g)
        if (detail::test_bit(d.row(c.batch, c.head, g), cb))
          seen |= detail::bit_span(std::max(q0, g * d.group) - q0,
                                   std::min(q1, (g + 1) * d.group) - q0);
      if (seen == 0) continue;
      for (idx j = std::max(k0, cb * d.block), end = std::min(k1, (cb + 1) * d.block); j < end;
           ++j) {
        if (!d.key_valid(j)) continue;
        std::uint64_t bits = seen;
        if (d.causal) {  // rows i ≥ j − offset see j
          const idx first = j - d.offset - q0;
          if (first >= 64)
            bits = 0;
          else if (first > 0)
            bits &= ~std::uint64_t{0} << first;
        }
        rows[j - k0] = bits;
      }
    }
  }

  static constexpr bool has_bias = false;
  float logit_bias(const head_ctx&, idx, idx) const { return 0.0f; }

 private:
  friend struct detail::selection_factory;
  explicit block_selection(std::shared_ptr<const detail::selection_data> d) : d_(std::move(d)) {}
  std::shared_ptr<const detail::selection_data> d_;
};

namespace detail {
struct selection_factory {
  static block_selection make(std::shared_ptr<const selection_data> d) {
    return block_selection(std::move(d));
  }
};

/// Counts the pairs of every row (in parallel over (batch, head), summed in a fixed order) and
/// returns the selection.
inline block_selection finish_selection(selection_builder& builder, const options& opt) {
  const selection_data& d = builder.data();
  std::vector<double> per_head(static_cast<std::size_t>(d.batch * d.heads), 0.0);
  parallel_items(opt, d.batch * d.heads, [&](idx item) {
    double pairs = 0;
    for (idx g = 0; g < d.groups; ++g)
      pairs += builder.row_pairs(item / d.heads, item % d.heads, g);
    per_head[static_cast<std::size_t>(item)] = pairs;
  });
  double pairs = 0;
  for (double p : per_head) pairs += p;
  builder.set_pairs(pairs);
  return selection_factory::make(builder.finish());
}
}  // namespace detail

}  // namespace attn
