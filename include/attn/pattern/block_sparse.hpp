// Block-sparse attention: a layout says which (query block, key block) pairs of b × b positions
// are computed at all, and, inside a stored block, optionally which pairs are visible.
//
//   attn::block_layout   block-CSR per head (or one layout shared by every head), b ∈ {16, 32,
//                        64, 128} chosen at run time, lengths that are not a multiple of b.
//                        Query i sees key j iff block (i / b, j / b) of its head is stored and,
//                        when that block carries an element mask, the mask's bit (i mod b,
//                        j mod b) is set. Stored blocks without a mask are wholly visible.
//   generators           dense_layout, causal_layout, window_layout, strided_layout and
//                        fixed_layout (Sparse Transformer), longformer_layout, bigbird_layout,
//                        block_layout::from_block_mask / from_rule / the block-CSR constructor.
//
// Granularity. A generator's layout is exact at the element level: its to_mask() is the
// element-level definition of the paper (restated at each generator), not a block
// approximation. Blocks are the unit the kernel skips: every block holding at least one visible
// pair is stored, blocks whose pairs are all visible are stored without a mask (the kernel runs
// them with no mask code), the others with the element mask of their visible pairs. So the cost
// of a layout is its number of stored blocks, its result the element rule.
//
// Tiles. The kernel asks about tiles of M queries × 64 keys (M = 64 on AVX-512); classify()
// looks at the O(blocks in the tile) stored blocks the tile covers: none when there is none,
// full when all are stored and unmasked, partial otherwise. A partial tile is masked from
// visible_rows(), one bit word per key (one binary search per covered query block), not pair by
// pair with visible() (a binary search each). keys(q0, q1) bounds the key range by the first
// and last stored block of those rows.
//
// A layout is immutable once built and shares its arrays between copies (attention() copies its
// pattern once per call). It composes like any pattern: `layout & attn::causal{}`.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include <unsupported/Eigen/CXX11/Tensor>

#include "attn/error.hpp"
#include "attn/pattern/tile.hpp"
#include "attn/tensor.hpp"

namespace attn {

/// The block sizes a layout may use: query and key blocks are b × b with b one of these.
inline constexpr std::array<idx, 4> layout_block_sizes = {16, 32, 64, 128};

/// A bool tensor [1|H, Nq, Nk] or [1|H, query blocks, key blocks], row-major (rank 3).
using bool_tensor3 = Eigen::Tensor<bool, 3, Eigen::RowMajor>;
/// A bool tensor [1, 1|H, Nq, Nk], the shape attn::mask takes.
using bool_tensor4 = Eigen::Tensor<bool, 4, Eigen::RowMajor>;

class block_layout;

namespace detail {

/// The arrays of a layout. Row r = h · query_blocks + bi (h = 0 for a shared layout) holds the
/// stored key blocks columns[offsets[r] .. offsets[r+1]), strictly increasing; masks[e] is −1
/// for a wholly visible block, else the index of its element mask in `bits`: for each key
/// column y of the block, `words` 64-bit words whose bit x says whether query row x sees it.
struct layout_data {
  idx block = 0, shift = 0, seq_q = 0, seq_k = 0, heads = 0, query_blocks = 0, key_blocks = 0;
  idx words = 1;
  std::vector<idx> offsets;
  std::vector<std::int32_t> columns;
  std::vector<std::int32_t> masks;
  std::vector<std::uint64_t> bits;
  double pairs = 0;  ///< visible (query, key) pairs, summed over the layout's heads

  idx row(idx head, idx bi) const { return (heads == 1 ? 0 : head) * query_blocks + bi; }
  /// Up to 64 bits of column y of element mask `mask`, from query row x0 on (bit 0 = row x0).
  std::uint64_t column_bits(std::int32_t mask, idx y, idx x0) const {
    const std::uint64_t* column = bits.data() + (static_cast<idx>(mask) * block + y) * words;
    const idx w = x0 >> 6, offset = x0 & 63;
    std::uint64_t out = column[w] >> offset;
    if (offset != 0 && w + 1 < words) out |= column[w + 1] << (64 - offset);
    return out;
  }
  bool mask_bit(std::int32_t mask, idx x, idx y) const {
    const std::uint64_t w =
        bits[static_cast<std::size_t>((static_cast<idx>(mask) * block + y) * words + (x >> 6))];
    return ((w >> (x & 63)) & 1u) != 0;
  }
};

inline idx blocks_of(idx n, idx block) { return (n + block - 1) / block; }

inline idx checked_block_shift(const char* who, idx block) {
  for (idx b : layout_block_sizes)
    if (b == block) return std::countr_zero(static_cast<std::uint64_t>(b));
  fail(who, ": block=", block, " must be one of 16, 32, 64, 128");
}

/// Builds layout_data row by row (rows in order h-major, key blocks increasing), interning
/// identical element masks.
class layout_builder {
 public:
  layout_builder(const char* who, idx block, idx seq_q, idx seq_k, idx heads) {
    d_ = std::make_shared<layout_data>();
    d_->shift = checked_block_shift(who, block);
    if (seq_q < 0) fail(who, ": seq_q=", seq_q, " must be >= 0");
    if (seq_k < 0) fail(who, ": seq_k=", seq_k, " must be >= 0");
    if (heads < 1) fail(who, ": heads=", heads, " must be >= 1 (1 = shared by every head)");
    if (seq_k > std::numeric_limits<std::int32_t>::max())
      fail(who, ": seq_k=", seq_k, " is too long for 32-bit block indices");
    d_->block = block;
    d_->seq_q = seq_q;
    d_->seq_k = seq_k;
    d_->heads = heads;
    d_->query_blocks = blocks_of(seq_q, block);
    d_->key_blocks = blocks_of(seq_k, block);
    d_->words = (block + 63) / 64;
    d_->offsets.reserve(static_cast<std::size_t>(heads * d_->query_blocks + 1));
    d_->offsets.push_back(0);
  }

  const layout_data& data() const { return *d_; }
  idx rows_of(idx bi) const { return std::min(d_->block, d_->seq_q - bi * d_->block); }
  idx cols_of(idx bj) const { return std::min(d_->block, d_->seq_k - bj * d_->block); }

  void add(idx bj, std::int32_t mask, double pairs) {
    d_->columns.push_back(static_cast<std::int32_t>(bj));
    d_->masks.push_back(mask);
    d_->pairs += pairs;
  }
  void add_full(idx bi, idx bj) { add(bj, -1, static_cast<double>(rows_of(bi) * cols_of(bj))); }
  void end_row() { d_->offsets.push_back(static_cast<idx>(d_->columns.size())); }

  /// Evaluates visible(h, i, j) on the pairs of block (bi, bj) and stores the block unmasked
  /// (all visible), masked (some) or not at all (none).
  template <class Rule>
  void add_evaluated(idx h, idx bi, idx bj, Rule& visible) {
    const idx b = d_->block, rows = rows_of(bi), cols = cols_of(bj);
    scratch_.assign(static_cast<std::size_t>(b * d_->words), 0);
    idx count = 0;
    for (idx y = 0; y < cols; ++y)
      for (idx x = 0; x < rows; ++x)
        if (visible(h, bi * b + x, bj * b + y)) {
          scratch_[static_cast<std::size_t>(y * d_->words + (x >> 6))] |= std::uint64_t{1}
                                                                          << (x & 63);
          ++count;
        }
    if (count == 0) return;
    if (count == rows * cols) return add(bj, -1, static_cast<double>(count));
    add(bj, intern(), static_cast<double>(count));
  }

  std::shared_ptr<const layout_data> finish() {
    return std::shared_ptr<const layout_data>(std::move(d_));
  }

 private:
  std::int32_t intern() {
    const auto [it, added] =
        interned_.try_emplace(scratch_, static_cast<std::int32_t>(interned_.size()));
    if (added) d_->bits.insert(d_->bits.end(), scratch_.begin(), scratch_.end());
    return it->second;
  }

  std::shared_ptr<layout_data> d_;
  std::vector<std::uint64_t> scratch_;
  std::map<std::vector<std::uint64_t>, std::int32_t> interned_;
};

struct layout_factory;

}  // namespace detail

/// A block-sparse pattern; see the top of this file. Build one with a generator below, from a
/// boolean block mask, from an element rule, or from block-CSR.
class block_layout {
 public:
  /// An empty layout: attention() rejects it. Assign a built one.
  block_layout() = default;

  /// From block-CSR. Rows r = h · query_blocks + bi for h < heads (heads = 1: one layout shared
  /// by every query head), query_blocks = ⌈seq_q / block⌉; row r stores the key blocks
  /// columns[row_offsets[r] .. row_offsets[r+1]), strictly increasing, each < ⌈seq_k / block⌉.
  /// causal_diagonal: inside blocks with bi = bj, query i sees key j only if j ≤ i (the
  /// "callback" of the Sparse Transformer's block-sparse kernels on diagonal blocks).
  /// Throws attn::error naming the offending value.
  block_layout(idx block, idx seq_q, idx seq_k, idx heads, std::span<const idx> row_offsets,
               std::span<const idx> columns, bool causal_diagonal = false) {
    constexpr const char* who = "block_layout";
    detail::layout_builder builder(who, block, seq_q, seq_k, heads);
    const detail::layout_data& d = builder.data();
    const idx rows = heads * d.query_blocks;
    if (static_cast<idx>(row_offsets.size()) != rows + 1)
      detail::fail(who, ": row_offsets.size()=", row_offsets.size(),
                   " must be heads * query_blocks + 1 = ", rows + 1, " (heads=", heads,
                   ", query_blocks=", d.query_blocks, " for seq_q=", seq_q, " at block ", block,
                   ")");
    if (row_offsets[0] != 0) detail::fail(who, ": row_offsets[0]=", row_offsets[0], " must be 0");
    for (idx r = 0; r < rows; ++r) {
      const auto u = static_cast<std::size_t>(r);
      if (row_offsets[u + 1] < row_offsets[u])
        detail::fail(who, ": row_offsets[", r + 1, "]=", row_offsets[u + 1], " < row_offsets[", r,
                     "]=", row_offsets[u], " (offsets must not decrease)");
    }
    if (row_offsets[static_cast<std::size_t>(rows)] != static_cast<idx>(columns.size()))
      detail::fail(who, ": row_offsets[", rows, "]=", row_offsets[static_cast<std::size_t>(rows)],
                   " must equal columns.size()=", columns.size());
    auto diagonal = [](idx, idx i, idx j) { return j <= i; };
    for (idx r = 0; r < rows; ++r) {
      const idx h = r / std::max<idx>(d.query_blocks, 1), bi = r - h * d.query_blocks;
      for (idx e = row_offsets[static_cast<std::size_t>(r)];
           e < row_offsets[static_cast<std::size_t>(r + 1)]; ++e) {
        const idx bj = columns[static_cast<std::size_t>(e)];
        if (bj < 0 || bj >= d.key_blocks)
          detail::fail(who, ": columns[", e, "]=", bj, " is outside [0, ", d.key_blocks,
                       ") (key blocks of seq_k=", seq_k, " at block ", block, "), in row ", r,
                       " (head ", h, ", query block ", bi, ")");
        if (e > row_offsets[static_cast<std::size_t>(r)]) {
          const idx before = columns[static_cast<std::size_t>(e - 1)];
          if (bj <= before)
            detail::fail(who, ": columns[", e, "]=", bj,
                         (bj == before ? " duplicates" : " is below"), " columns[", e - 1,
                         "]=", before, " in row ", r, " (head ", h, ", query block ", bi,
                         "); a row's key blocks must be sorted, no duplicates");
        }
        if (causal_diagonal && bj == bi)
          builder.add_evaluated(h, bi, bj, diagonal);
        else
          builder.add_full(bi, bj);
      }
      builder.end_row();
    }
    data_ = builder.finish();
  }

  /// From a boolean block mask [1|H, ⌈seq_q/block⌉, ⌈seq_k/block⌉] (true = block stored);
  /// a leading 1 gives a layout shared by every head. causal_diagonal as for block-CSR.
  static block_layout from_block_mask(const bool_tensor3& blocks, idx block, idx seq_q, idx seq_k,
                                      bool causal_diagonal = false) {
    constexpr const char* who = "block_layout::from_block_mask";
    detail::checked_block_shift(who, block);
    const idx nbq = detail::blocks_of(std::max<idx>(seq_q, 0), block);
    const idx nbk = detail::blocks_of(std::max<idx>(seq_k, 0), block);
    if (blocks.dimension(1) != nbq)
      detail::fail(who, ": block_mask.dim(1)=", blocks.dimension(1), " does not match ", nbq,
                   " query blocks (seq_q=", seq_q, " at block ", block, ")");
    if (blocks.dimension(2) != nbk)
      detail::fail(who, ": block_mask.dim(2)=", blocks.dimension(2), " does not match ", nbk,
                   " key blocks (seq_k=", seq_k, " at block ", block, ")");
    const idx heads = blocks.dimension(0);
    std::vector<idx> offsets{0}, columns;
    for (idx h = 0; h < heads; ++h)
      for (idx bi = 0; bi < nbq; ++bi) {
        for (idx bj = 0; bj < nbk; ++bj)
          if (blocks(h, bi, bj)) columns.push_back(bj);
        offsets.push_back(static_cast<idx>(columns.size()));
      }
    return block_layout(block, seq_q, seq_k, heads, offsets, columns, causal_diagonal);
  }

  /// The layout of an element rule: rule(h, i, j) → bool for head h < heads, query i, key j.
  /// Stores every block with a visible pair, with an element mask unless all its pairs are
  /// visible. Evaluates the rule on every pair: O(heads · seq_q · seq_k).
  template <class Rule>
  static block_layout from_rule(idx block, idx seq_q, idx seq_k, idx heads, Rule rule) {
    return from_rule(block, seq_q, seq_k, heads, rule, [](idx, idx, std::vector<idx>&) {});
  }

  /// As from_rule, evaluating the rule only on candidate blocks:
  /// candidates(h, bi, out) appends the key blocks that may hold a visible pair of query block
  /// bi (any order, duplicates and out-of-range indices are dropped). A candidates function that
  /// appends nothing means "every key block".
  template <class Rule, class Candidates>
  static block_layout from_rule(idx block, idx seq_q, idx seq_k, idx heads, Rule rule,
                                Candidates candidates,
                                const char* who = "block_layout::from_rule") {
    detail::layout_builder builder(who, block, seq_q, seq_k, heads);
    const idx nbq = builder.data().query_blocks, nbk = builder.data().key_blocks;
    std::vector<idx> list;
    for (idx h = 0; h < heads; ++h)
      for (idx bi = 0; bi < nbq; ++bi) {
        list.clear();
        candidates(h, bi, list);
        if (list.empty()) {
          for (idx bj = 0; bj < nbk; ++bj) builder.add_evaluated(h, bi, bj, rule);
        } else {
          std::sort(list.begin(), list.end());
          list.erase(std::unique(list.begin(), list.end()), list.end());
          for (idx bj : list)
            if (bj >= 0 && bj < nbk) builder.add_evaluated(h, bi, bj, rule);
        }
        builder.end_row();
      }
    return block_layout(builder.finish());
  }

  // ---- what the layout is ---------------------------------------------------------------------

  bool empty() const { return data_ == nullptr; }
  idx block_size() const { return data_ ? data_->block : 0; }
  idx seq_q() const { return data_ ? data_->seq_q : 0; }
  idx seq_k() const { return data_ ? data_->seq_k : 0; }
  /// 1 for a layout shared by every head, else the number of query heads it is built for.
  idx heads() const { return data_ ? data_->heads : 0; }
  idx query_blocks() const { return data_ ? data_->query_blocks : 0; }
  idx key_blocks() const { return data_ ? data_->key_blocks : 0; }
  /// Stored blocks, over every head of the layout.
  idx stored_blocks() const { return data_ ? static_cast<idx>(data_->columns.size()) : 0; }
  /// Visible (query, key) pairs, summed over the layout's heads.
  double visible_pairs() const { return data_ ? data_->pairs : 0.0; }
  /// The fraction of visible pairs: visible_pairs() / (heads · seq_q · seq_k).
  double density() const {
    if (!data_ || data_->seq_q == 0 || data_->seq_k == 0) return 0.0;
    return data_->pairs / (static_cast<double>(data_->heads) * static_cast<double>(data_->seq_q) *
                           static_cast<double>(data_->seq_k));
  }

  /// The key blocks stored in query block bi of head h (h is ignored by a shared layout).
  std::span<const std::int32_t> row_blocks(idx h, idx bi) const {
    const idx r = data_->row(h, bi);
    const auto first = static_cast<std::size_t>(data_->offsets[static_cast<std::size_t>(r)]);
    const auto last = static_cast<std::size_t>(data_->offsets[static_cast<std::size_t>(r + 1)]);
    return std::span<const std::int32_t>(data_->columns).subspan(first, last - first);
  }
  /// Whether the n-th stored block of row (h, bi) lets its query row x see its key column y
  /// (0 ≤ x, y < block; true for every pair of a block without an element mask).
  bool block_sees(idx h, idx bi, idx n, idx x, idx y) const {
    const idx e = data_->offsets[static_cast<std::size_t>(data_->row(h, bi))] + n;
    const std::int32_t m = data_->masks[static_cast<std::size_t>(e)];
    return m < 0 || data_->mask_bit(m, x, y);
  }
  /// Whether stored block n of row (h, bi) has an element mask.
  bool block_masked(idx h, idx bi, idx n) const {
    const idx e = data_->offsets[static_cast<std::size_t>(data_->row(h, bi))] + n;
    return data_->masks[static_cast<std::size_t>(e)] >= 0;
  }

  /// The element mask [1, heads(), seq_q, seq_k] (true = visible), the form attn::mask takes.
  bool_tensor4 to_mask() const {
    const idx nh = heads(), nq = seq_q(), nk = seq_k(), b = block_size();
    bool_tensor4 m(1, nh, nq, nk);
    m.setConstant(false);
    for (idx h = 0; h < nh; ++h)
      for (idx bi = 0; bi < query_blocks(); ++bi) {
        const auto row = row_blocks(h, bi);
        for (std::size_t n = 0; n < row.size(); ++n) {
          const idx bj = row[n];
          for (idx i = bi * b; i < std::min(nq, bi * b + b); ++i)
            for (idx j = bj * b; j < std::min(nk, bj * b + b); ++j)
              m(0, h, i, j) = block_sees(h, bi, static_cast<idx>(n), i - bi * b, j - bj * b);
        }
      }
    return m;
  }

  // ---- the pattern interface (pattern/tile.hpp) -------------------------------------------------

  void check(const detail::problem_shape& s) const {
    if (!data_)
      detail::fail(
          "block_layout is empty (default-constructed): build it with a generator, "
          "from a block mask or from block-CSR");
    if (data_->seq_q != s.seq_q)
      detail::fail("block_layout was built for seq_q=", data_->seq_q, " but q.dim(1)=", s.seq_q,
                   " (queries)");
    if (data_->seq_k != s.seq_k)
      detail::fail("block_layout was built for seq_k=", data_->seq_k, " but k.dim(1)=", s.seq_k,
                   " (keys)");
    if (data_->heads != 1 && data_->heads != s.heads_q)
      detail::fail("block_layout has ", data_->heads, " heads but q.dim(2)=", s.heads_q,
                   " (heads; a layout of 1 head is shared by every head)");
  }

  /// From the first to the last stored key block of the query blocks of rows [q0, q1).
  key_span keys(const head_ctx& c, idx q0, idx q1) const {
    const detail::layout_data& d = *data_;
    if (q1 <= q0) return {};
    idx lo = d.key_blocks, hi = -1;
    for (idx bi = q0 >> d.shift, last = (q1 - 1) >> d.shift; bi <= last; ++bi) {
      const idx r = d.row(c.head, bi);
      const idx first = d.offsets[static_cast<std::size_t>(r)];
      const idx end = d.offsets[static_cast<std::size_t>(r + 1)];
      if (first == end) continue;
      lo = std::min<idx>(lo, d.columns[static_cast<std::size_t>(first)]);
      hi = std::max<idx>(hi, d.columns[static_cast<std::size_t>(end - 1)]);
    }
    if (hi < 0) return {};
    return {lo << d.shift, std::min((hi + 1) << d.shift, d.seq_k)};
  }

  /// none: no covered block stored; full: every covered block stored without an element mask;
  /// partial otherwise. One binary search per covered query block.
  tile_kind classify(const head_ctx& c, idx q0, idx q1, idx k0, idx k1) const {
    const detail::layout_data& d = *data_;
    if (q1 <= q0 || k1 <= k0) return tile_kind::none;
    const idx j0 = k0 >> d.shift, j1 = (k1 - 1) >> d.shift;
    const auto first_col = static_cast<std::int32_t>(j0), last_col = static_cast<std::int32_t>(j1);
    bool any = false, all = true;
    for (idx bi = q0 >> d.shift, last = (q1 - 1) >> d.shift; bi <= last; ++bi) {
      const idx r = d.row(c.head, bi);
      const std::int32_t* begin = d.columns.data() + d.offsets[static_cast<std::size_t>(r)];
      const std::int32_t* end = d.columns.data() + d.offsets[static_cast<std::size_t>(r + 1)];
      const std::int32_t* at = std::lower_bound(begin, end, first_col);
      idx stored = 0;
      for (; at != end && *at <= last_col; ++at, ++stored)
        if (d.masks[static_cast<std::size_t>(at - d.columns.data())] >= 0) all = false;
      any |= stored > 0;
      if (stored != j1 - j0 + 1) all = false;
    }
    return all ? tile_kind::full : any ? tile_kind::partial : tile_kind::none;
  }

  bool visible(const head_ctx& c, idx i, idx j) const {
    const detail::layout_data& d = *data_;
    const idx r = d.row(c.head, i >> d.shift);
    const std::int32_t* begin = d.columns.data() + d.offsets[static_cast<std::size_t>(r)];
    const std::int32_t* end = d.columns.data() + d.offsets[static_cast<std::size_t>(r + 1)];
    const auto bj = static_cast<std::int32_t>(j >> d.shift);
    const std::int32_t* at = std::lower_bound(begin, end, bj);
    if (at == end || *at != bj) return false;
    const std::int32_t m = d.masks[static_cast<std::size_t>(at - d.columns.data())];
    return m < 0 || d.mask_bit(m, i & (d.block - 1), j & (d.block - 1));
  }

  /// For each key j of [k0, k1): rows[j − k0] has bit i − q0 set iff query i of [q0, q1) sees
  /// j (q1 − q0 ≤ 64, k1 − k0 ≤ 64). The kernel masks partial tiles with it: one binary search
  /// per covered query block and one word per (query block, key) instead of one search per pair.
  void visible_rows(const head_ctx& c, idx q0, idx q1, idx k0, idx k1, std::uint64_t* rows) const {
    const detail::layout_data& d = *data_;
    std::fill(rows, rows + std::max<idx>(k1 - k0, 0), std::uint64_t{0});
    if (q1 <= q0 || k1 <= k0) return;
    const auto first_col = static_cast<std::int32_t>(k0 >> d.shift);
    const auto last_col = static_cast<std::int32_t>((k1 - 1) >> d.shift);
    for (idx bi = q0 >> d.shift, last = (q1 - 1) >> d.shift; bi <= last; ++bi) {
      const idx base = bi * d.block;
      const idx x0 = std::max(q0, base) - base, count = std::min(q1, base + d.block) - base - x0;
      const idx shift = base + x0 - q0;  // where the block's row x0 lands in the tile's bits
      const std::uint64_t all = count >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << count) - 1;
      const idx r = d.row(c.head, bi);
      const std::int32_t* begin = d.columns.data() + d.offsets[static_cast<std::size_t>(r)];
      const std::int32_t* end = d.columns.data() + d.offsets[static_cast<std::size_t>(r + 1)];
      for (const std::int32_t* at = std::lower_bound(begin, end, first_col);
           at != end && *at <= last_col; ++at) {
        const idx key_base = static_cast<idx>(*at) * d.block;
        const std::int32_t m = d.masks[static_cast<std::size_t>(at - d.columns.data())];
        for (idx j = std::max(k0, key_base), j_end = std::min(k1, key_base + d.block); j < j_end;
             ++j) {
          const std::uint64_t bits = m < 0 ? all : d.column_bits(m, j - key_base, x0) & all;
          rows[j - k0] |= bits << shift;
        }
      }
    }
  }

  static constexpr bool has_bias = false;
  float logit_bias(const head_ctx&, idx, idx) const { return 0.0f; }

 private:
  friend struct detail::layout_factory;
  explicit block_layout(std::shared_ptr<const detail::layout_data> data) : data_(std::move(data)) {}

  std::shared_ptr<const detail::layout_data> data_;
};

namespace detail {

struct layout_factory {
  static block_layout make(std::shared_ptr<const layout_data> d) {
    return block_layout(std::move(d));
  }
};

/// Appends the key blocks [first, last] (clipped by the caller's builder).
inline void append_range(std::vector<idx>& out, idx first, idx last) {
  for (idx bj = first; bj <= last; ++bj) out.push_back(bj);
}

/// Whether some position p of [p0, p1) has p mod period in [lo, hi) (0 ≤ lo ≤ hi ≤ period).
inline bool hits_residues(idx p0, idx p1, idx period, idx lo, idx hi) {
  if (lo >= hi || p1 <= p0) return false;
  if (p1 - p0 >= period) return true;
  const idx a = p0 % period, e = a + (p1 - p0);  // [a, e) with e < 2·period
  return (a < hi && e > lo) || (a - period < hi && e - period > lo);
}

/// An unbiased draw from [0, n) with a 64-bit engine: the same sequence on every platform
/// (std::uniform_int_distribution is implementation-defined).
inline idx draw_below(std::mt19937_64& rng, idx n) {
  const auto range = static_cast<std::uint64_t>(n);
  const std::uint64_t limit =
      std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % range;
  std::uint64_t x;
  do x = rng();
  while (x >= limit);
  return static_cast<idx>(x % range);
}

}  // namespace detail

// ---- generators -------------------------------------------------------------------------------

/// Every block: equals attn::dense.
inline block_layout dense_layout(idx seq_q, idx seq_k, idx block) {
  return block_layout::from_rule(
      block, seq_q, seq_k, 1, [](idx, idx, idx) { return true; },
      [](idx, idx, std::vector<idx>&) {}, "dense_layout");
}

/// window_layout(n, block, left, right): query i sees key j iff i − left ≤ j ≤ i + right
/// (self-attention of length n; attn::window{left, right} with either alignment), left + right
/// + 1 keys. Blocks on the band's edges carry element masks.
inline block_layout window_layout(idx n, idx block, idx left, idx right) {
  if (left < 0) detail::fail("window_layout: left=", left, " must be >= 0");
  if (right < 0) detail::fail("window_layout: right=", right, " must be >= 0");
  const idx l = std::min(left, n), r = std::min(right, n);
  return block_layout::from_rule(
      block, n, n, 1, [=](idx, idx i, idx j) { return j >= i - l && j <= i + r; },
      [=](idx, idx bi, std::vector<idx>& out) {
        const idx first = std::max<idx>((bi * block - l) / block, 0);
        const idx last = (bi * block + block - 1 + r) / block;
        detail::append_range(out, first, last);
      },
      "window_layout");
}

/// causal_layout(n, block): query i sees key j iff j ≤ i: every block below the diagonal, and
/// the diagonal blocks with the causal element mask — equals attn::causal{} for Nq = Nk = n.
inline block_layout causal_layout(idx n, idx block) {
  return window_layout(n, block, unbounded, 0);
}

/// Which half of the Sparse Transformer's strided pattern strided_layout builds.
enum class strided_part {
  local,    ///< A(1): 0 ≤ i − j < l
  strided,  ///< A(2): j ≤ i and (i − j) mod l = 0
  both      ///< A(1) ∪ A(2): the "merged" head that attends to both
};

struct strided_options {
  idx stride = 128;  ///< l, the paper's stride (≈ √n)
  strided_part part = strided_part::both;
};

/// The strided pattern of the Sparse Transformer (Child et al. 2019, "Generating Long Sequences
/// with Sparse Transformers", §4.2; openai/sparse_attention, attention.py get_attn_mask modes
/// 'local' and 'strided'), causal, element-exact:
///   local:   0 ≤ i − j < l;   strided: j ≤ i and (i − j) mod l = 0;   both: their union.
/// Granularity: the official block-sparse kernels store, for 'local', the key blocks
/// [bi − l/b, bi] and mask them to the band by a callback — exactly what this layout stores
/// (for l a multiple of b). Their 'strided' mode first permutes the sequence (strided_transpose)
/// so that each residue class mod l is contiguous and the pattern becomes block-dense; without
/// that permutation the strided part hits, for l ≥ b, the key blocks bj ≡ bi (mod l/b) with a
/// one-diagonal element mask each (b² scores computed per b visible pairs). Permute Q, K, V
/// yourself and use causal_layout per residue class when that matters.
inline block_layout strided_layout(idx n, idx block, const strided_options& o) {
  const idx l = o.stride;
  if (l < 1) detail::fail("strided_layout: stride=", l, " must be >= 1");
  const bool local = o.part != strided_part::strided, strided = o.part != strided_part::local;
  auto rule = [=](idx, idx i, idx j) {
    if (j > i) return false;
    return (local && i - j < l) || (strided && (i - j) % l == 0);
  };
  auto candidates = [=](idx, idx bi, std::vector<idx>& out) {
    const idx b = block;
    if (local) detail::append_range(out, std::max<idx>((bi * b - (l - 1)) / b, 0), bi);
    if (strided) {
      // Block (bi, bj) holds i − j ∈ [(bi − bj)·b − b + 1, (bi − bj)·b + b − 1]: keep it if
      // that range reaches a multiple of l at or above 0.
      for (idx bj = 0; bj <= bi; ++bj) {
        const idx hi = (bi - bj) * b + b - 1, lo = std::max<idx>((bi - bj) * b - b + 1, 0);
        if (hi / l * l >= lo) out.push_back(bj);
      }
    }
    if (out.empty()) out.push_back(bi);  // never "every block": the diagonal always qualifies
  };
  return block_layout::from_rule(block, n, n, 1, rule, candidates, "strided_layout");
}

struct fixed_options {
  idx chunk = 128;      ///< l, the length of the chunks the sequence is cut into
  idx summary = 32;     ///< c, the summary positions at the end of each chunk
  idx head_groups = 1;  ///< the official num_verts: head h reads summary group h mod head_groups
  idx heads = 1;        ///< the layout's heads when head_groups > 1 (one per query head)
};

/// The fixed pattern of the Sparse Transformer (Child et al. 2019, §4.2, A(1) and A(2) of the
/// "fixed" attention; openai/sparse_attention, attention.py get_blocksparse_obj mode 'fixed'),
/// causal, element-exact: query i of head h sees key j ≤ i iff
///   ⌊j / l⌋ = ⌊i / l⌋                            (the same chunk), or
///   j mod l ∈ [l − (g + 1)·c, l − g·c)            (a summary position), g = h mod head_groups.
/// g = 0 is the chunk's last c positions, the paper's t = l − c; head groups read distinct
/// sub-blocks of length c ("we found choosing multiple heads to attend to distinct sub-blocks of
/// length c within the block of size l to be preferable"), counted from the chunk's end as the
/// official layout does. The official code works in blocks: c = vertsize·b, l a multiple of b,
/// and a causal callback on the diagonal blocks; with l and c multiples of b this layout stores
/// exactly those blocks (no element mask but the causal diagonal), other l and c are exact too.
/// head_groups = 1 gives a layout shared by every head; otherwise one per head of `heads`.
inline block_layout fixed_layout(idx n, idx block, const fixed_options& o) {
  const idx l = o.chunk, c = o.summary, groups = o.head_groups;
  if (l < 1) detail::fail("fixed_layout: chunk=", l, " must be >= 1");
  if (c < 1) detail::fail("fixed_layout: summary=", c, " must be >= 1");
  if (groups < 1) detail::fail("fixed_layout: head_groups=", groups, " must be >= 1");
  if (groups * c > l)
    detail::fail("fixed_layout: head_groups * summary = ", groups, " * ", c, " = ", groups * c,
                 " exceeds chunk=", l);
  if (o.heads < 1) detail::fail("fixed_layout: heads=", o.heads, " must be >= 1");
  const idx heads = groups == 1 ? 1 : o.heads;
  auto summary = [=](idx h) {
    const idx g = h % groups;
    return std::pair<idx, idx>{l - (g + 1) * c, l - g * c};
  };
  auto rule = [=](idx h, idx i, idx j) {
    if (j > i) return false;
    if (j / l == i / l) return true;
    const auto [lo, hi] = summary(h);
    const idx r = j % l;
    return r >= lo && r < hi;
  };
  auto candidates = [=](idx h, idx bi, std::vector<idx>& out) {
    const idx b = block;
    const auto [lo, hi] = summary(h);
    // Key blocks of the chunks the rows of block bi lie in, and those holding summary positions.
    const idx chunk_start = bi * b / l * l;
    detail::append_range(out, chunk_start / b, bi);
    for (idx bj = 0; bj < bi; ++bj)
      if (detail::hits_residues(bj * b, std::min(bj * b + b, n), l, lo, hi)) out.push_back(bj);
  };
  return block_layout::from_rule(block, n, n, heads, rule, candidates, "fixed_layout");
}

struct longformer_options {
  idx window = 256;                      ///< w: keys on each side, 2w + 1 visible with dilation 1
  idx dilation = 1;                      ///< d: the window's keys are i + k·d for k ∈ [−w, w]
  std::span<const idx> global_tokens{};  ///< positions that see all and that all see
};

/// Longformer attention (Beltagy et al. 2020, "Longformer: The Long-Document Transformer", §3.1;
/// allenai/longformer): query i sees key j iff
///   |i − j| ≤ w·d and (i − j) mod d = 0     the (dilated) sliding window, 2w + 1 keys, or
///   i is a global token                     global tokens attend to every key, or
///   j is a global token                     every query attends to the global tokens.
/// The official code computes the global keys separately and removes them from the window, so a
/// global key inside a query's window counts once: here visibility is a set, so it always does.
/// Non-causal, as in the paper's encoder; `& attn::causal{}` gives the autoregressive form.
/// Element-exact: the window's edge blocks, dilated blocks and the blocks of global tokens
/// carry element masks.
inline block_layout longformer_layout(idx n, idx block, const longformer_options& o) {
  const idx w = o.window, d = o.dilation;
  if (w < 0) detail::fail("longformer_layout: window=", w, " must be >= 0");
  if (d < 1) detail::fail("longformer_layout: dilation=", d, " must be >= 1");
  detail::checked_block_shift("longformer_layout", block);
  const idx nb = detail::blocks_of(std::max<idx>(n, 0), block);
  std::vector<bool> global(static_cast<std::size_t>(std::max<idx>(n, 0)), false);
  std::vector<bool> global_row(static_cast<std::size_t>(nb), false);
  std::vector<idx> global_blocks;
  for (std::size_t t = 0; t < o.global_tokens.size(); ++t) {
    const idx g = o.global_tokens[t];
    if (g < 0 || g >= n)
      detail::fail("longformer_layout: global_tokens[", t, "]=", g, " is outside [0, ", n, ")");
    global[static_cast<std::size_t>(g)] = true;
    global_row[static_cast<std::size_t>(g / block)] = true;
    global_blocks.push_back(g / block);
  }
  const idx reach = w > n / d ? n : w * d;  // |i − j| ≤ reach (never more than n)
  auto rule = [&global, reach, d](idx, idx i, idx j) {
    if (global[static_cast<std::size_t>(i)] || global[static_cast<std::size_t>(j)]) return true;
    const idx delta = i > j ? i - j : j - i;
    return delta <= reach && delta % d == 0;
  };
  auto candidates = [&global_row, &global_blocks, reach, block, nb](idx, idx bi,
                                                                    std::vector<idx>& out) {
    if (global_row[static_cast<std::size_t>(bi)]) {
      detail::append_range(out, 0, nb - 1);  // a global query sees every key
      return;
    }
    detail::append_range(out, std::max<idx>((bi * block - reach) / block, 0),
                         std::min((bi * block + block - 1 + reach) / block, nb - 1));
    out.insert(out.end(), global_blocks.begin(), global_blocks.end());
  };
  return block_layout::from_rule(block, n, n, 1, rule, candidates, "longformer_layout");
}

struct bigbird_options {
  idx random_blocks = 3;   ///< r: random key blocks per (non-global) query block
  std::uint64_t seed = 0;  ///< seeds the std::mt19937_64 that draws them
  idx heads = 1;           ///< 1: one layout for every head; H: H independent draws
};

/// BigBird's block-sparse attention (Zaheer et al. 2020, "Big Bird: Transformers for Longer
/// Sequences", §2 and appendix D, the ITC construction; google-research/bigbird, core/
/// attention.py), with nb = ⌈n / b⌉ blocks, key block bj visible from query block bi iff
///   bi or bj is the first or last block            global blocks see all and all see them,
///   |bi − bj| ≤ 1                                  the sliding window of 3 blocks,
///   bj is one of r random blocks of row bi         drawn without replacement from the
///                                                  blocks that are neither global nor in
///                                                  the row's window (all of them when fewer
///                                                  than r remain).
/// Rows are drawn in order (head 0 first, query block 1 to nb − 2) with one std::mt19937_64
/// seeded from `seed` and a platform-independent bounded draw, so a seed gives the same layout
/// everywhere. The official code draws per head too; its per-row exclusions near the sequence
/// ends differ in details we do not reproduce (it excludes the second-to-last block from row 1,
/// and, by an acknowledged slip, not the window from rows nb − 3 and nb − 2). Block-level: no
/// element masks; a last block shorter than b is the (global) last block.
inline block_layout bigbird_layout(idx n, idx block, const bigbird_options& o) {
  if (o.random_blocks < 0)
    detail::fail("bigbird_layout: random_blocks=", o.random_blocks, " must be >= 0");
  if (o.heads < 1) detail::fail("bigbird_layout: heads=", o.heads, " must be >= 1");
  detail::layout_builder builder("bigbird_layout", block, n, n, o.heads);
  const idx nb = builder.data().query_blocks;
  std::mt19937_64 rng(o.seed);
  std::vector<idx> pool, row;
  for (idx h = 0; h < o.heads; ++h)
    for (idx bi = 0; bi < nb; ++bi) {
      row.clear();
      if (bi == 0 || bi == nb - 1) {
        detail::append_range(row, 0, nb - 1);
      } else {
        row = {0, bi - 1, bi, bi + 1, nb - 1};
        pool.clear();
        for (idx bj = 1; bj < nb - 1; ++bj)
          if (bj < bi - 1 || bj > bi + 1) pool.push_back(bj);
        const idx take = std::min<idx>(o.random_blocks, static_cast<idx>(pool.size()));
        for (idx t = 0; t < take; ++t) {  // partial Fisher–Yates: pool[0, take) is the sample
          const idx pick = t + detail::draw_below(rng, static_cast<idx>(pool.size()) - t);
          std::swap(pool[static_cast<std::size_t>(t)], pool[static_cast<std::size_t>(pick)]);
          row.push_back(pool[static_cast<std::size_t>(t)]);
        }
        std::sort(row.begin(), row.end());
        row.erase(std::unique(row.begin(), row.end()), row.end());
      }
      for (idx bj : row) builder.add_full(bi, bj);
      builder.end_row();
    }
  return detail::layout_factory::make(builder.finish());
}

}  // namespace attn
