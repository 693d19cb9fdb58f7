// BiFormer's bi-level routing attention (Zhu et al. 2023, "BiFormer: Vision Transformer with
// Bi-Level Routing Attention", §3.2, Eq. 2–6; rayleizhu/BiFormer, ops/bra_legacy.py
// BiLevelRoutingAttention).
//
// A 2D map q [B, H, W, heads, D] (k, v with Hkv heads dividing heads, v of head_dim Dv) is split
// into S × S regions of ⌈H/S⌉ × ⌈W/S⌉ tokens. For each batch:
//   Qʳ[r] = mean of q over region r's tokens and over nothing else — every head's channels are
//           kept side by side (heads·D channels), as the official code routes on the full
//           embedding, so one routing decision serves every head;  Kʳ likewise from k;
//   Aʳ    = Qʳ · Kʳᵀ (grouped-query: query head h's channels meet K/V head h / (heads/Hkv)'s);
//   Iʳ[r] = the top_k regions of row r of Aʳ (its own region is not forced; no causality;
//           ties by lower index);
// and every token of region r attends, per head, to every token of the regions Iʳ[r]. Logits
// are scaled by options::scale, by default (heads·D)^−½ — the official qk_scale default
// (qk_dim^−½ with qk_dim the full embedding), not head_dim^−½.
//
// Padding. The official code requires S to divide H and W unless auto_pad, which pads the map
// with zeros to multiples of S: the padded tokens enter the region means as zeros (we do the
// same: a region's mean is its sum over ⌈H/S⌉·⌈W/S⌉) and, unmasked there, as keys of logit 0
// and value 0. We mask padded keys: they are never visible, so outputs are those of the real
// tokens alone.
//
// Execution. Region tokens are not contiguous in the map's row-major order, so
// biformer_attention() gathers q, k, v into region-major order (region r's tokens contiguous,
// O(B·H·W·heads·D) copies, as the official code's region reshapes do), runs the fused loop with
// the selection's block pattern (query groups = key blocks = regions) and scatters the output
// back. Sigmoid's default bias is −ln(H·W), that of the map without padding.
//
//   auto sel = attn::biformer{.regions = 7, .top_k = 4}.route(q, k);
//   attn::biformer_attention(q, k, v, out, attn::softmax{}, sel);
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "attn/attention.hpp"
#include "attn/routing/common.hpp"
#include "attn/routing/selection.hpp"
#include "attn/routing/topk.hpp"

namespace attn {

/// An owning map [batch, H, W, heads, head_dim] (any row-major rank-5 float tensor or map works).
using biformer_map = Eigen::Tensor<float, 5, Eigen::RowMajor>;

namespace detail {

/// The shape of a map [B, H, W, heads, D] with its sizes read once.
struct map_shape {
  idx batch = 0, height = 0, width = 0, heads = 0, dim = 0;
  idx tokens() const { return height * width; }
};

template <class X>
map_shape map_shape_of(const X& x) {
  static_assert(plain_t<X>::NumIndices == 5, "BiFormer maps are [B, H, W, heads, head_dim]");
  return {static_cast<idx>(x.dimension(0)), static_cast<idx>(x.dimension(1)),
          static_cast<idx>(x.dimension(2)), static_cast<idx>(x.dimension(3)),
          static_cast<idx>(x.dimension(4))};
}

inline void require_same(const char* who, const char* a, idx av, int dim, const char* b, idx bv,
                         const char* what) {
  if (av != bv)
    fail(who, ": ", a, ".dim(", dim, ")=", av, " does not match ", b, ".dim(", dim, ")=", bv, " (",
         what, ")");
}

/// q and k of a map: same batch, H, W and head_dim; k's heads divide q's.
inline void check_maps_qk(const char* who, const map_shape& q, const map_shape& k) {
  require_same(who, "k", k.batch, 0, "q", q.batch, "batch");
  require_same(who, "k", k.height, 1, "q", q.height, "height");
  require_same(who, "k", k.width, 2, "q", q.width, "width");
  require_same(who, "k", k.dim, 4, "q", q.dim, "head_dim");
  if (k.heads == 0 || q.heads % k.heads != 0)
    fail(who, ": k.dim(3)=", k.heads, " does not divide q.dim(3)=", q.heads, " (heads)");
}

}  // namespace detail

/// The regions a biformer router picked; see the top of biformer.hpp.
class region_selection {
 public:
  region_selection() = default;

  bool empty() const { return pattern_.empty(); }
  idx batch() const { return pattern_.batch(); }
  idx height() const { return height_; }
  idx width() const { return width_; }
  idx regions() const { return regions_; }  ///< S: the map has S × S regions
  idx region_height() const { return region_h_; }
  idx region_width() const { return region_w_; }
  idx top_k() const { return top_k_; }
  /// Region of token (y, x): (y / region_height) · S + x / region_width.
  idx region_of(idx y, idx x) const { return (y / region_h_) * regions_ + x / region_w_; }
  /// Position of token (y, x) in region-major order (region r's tokens at r · T + t).
  idx region_major(idx y, idx x) const {
    return region_of(y, x) * region_h_ * region_w_ + (y % region_h_) * region_w_ + x % region_w_;
  }
  /// The regions region r of batch b attends to, increasing.
  std::vector<idx> selected(idx b, idx r) const { return pattern_.blocks(b, 0, r); }
  /// The block pattern over region-major tokens (padding included, padded keys invisible).
  const block_selection& pattern() const { return pattern_; }
  /// Visible pairs of real tokens / (batch · (H·W)²).
  double density() const { return density_; }
  /// The element mask [batch, 1, H·W, H·W] over the map's row-major token order.
  bool_tensor4 to_mask() const {
    const idx n = height_ * width_;
    bool_tensor4 m(batch(), 1, n, n);
    for (idx b = 0; b < batch(); ++b)
      for (idx i = 0; i < n; ++i)
        for (idx j = 0; j < n; ++j)
          m(b, 0, i, j) = pattern_.selected(b, 0, region_of(i / width_, i % width_),
                                            region_of(j / width_, j % width_));
    return m;
  }

 private:
  friend struct biformer;
  block_selection pattern_;
  idx height_ = 0, width_ = 0, regions_ = 0, region_h_ = 0, region_w_ = 0, top_k_ = 0;
  double density_ = 0;
};

struct biformer {
  idx regions = 7;        ///< S (official n_win): the map is split into S × S regions
  idx top_k = 4;          ///< regions each region attends to (official topk)
  bool auto_pad = false;  ///< allow H, W that S does not divide (padded keys are masked)

  /// Routes the maps q [B, H, W, heads, D] and k [B, H, W, Hkv, D]. Throws attn::error for
  /// regions < 1, top_k outside [1, S²], or S not dividing H or W without auto_pad.
  template <class Q, class K>
  region_selection route(const Q& q, const K& k, const options& opt = {}) const {
    constexpr const char* who = "biformer";
    const detail::map_shape qs = detail::map_shape_of(q);
    const detail::map_shape ks = detail::map_shape_of(k);
    detail::check_maps_qk(who, qs, ks);
    if (regions < 1) detail::fail("biformer: regions=", regions, " must be >= 1");
    if (!auto_pad && (qs.height % regions != 0 || qs.width % regions != 0))
      detail::fail("biformer: regions=", regions, " does not divide the map's height=", qs.height,
                   " and width=", qs.width, " (set auto_pad to pad it)");
    const idx R = regions * regions;
    if (top_k < 1 || top_k > R)
      detail::fail("biformer: top_k=", top_k, " must be in [1, ", R, "] (regions=", regions, ": ",
                   R, " regions)");
    region_selection sel;
    sel.height_ = qs.height;
    sel.width_ = qs.width;
    sel.regions_ = regions;
    sel.region_h_ = std::max<idx>(1, detail::blocks_of(qs.height, regions));
    sel.region_w_ = std::max<idx>(1, detail::blocks_of(qs.width, regions));
    sel.top_k_ = top_k;
    const idx T = sel.region_h_ * sel.region_w_, n = R * T;
    detail::selection_builder builder(who, qs.batch, 1, n, n, T, T, false);
    std::vector<bool> valid(static_cast<std::size_t>(n), false);
    std::vector<idx> real(static_cast<std::size_t>(R), 0);  // real tokens per region
    for (idx y = 0; y < qs.height; ++y)
      for (idx x = 0; x < qs.width; ++x) {
        valid[static_cast<std::size_t>(sel.region_major(y, x))] = true;
        ++real[static_cast<std::size_t>(sel.region_of(y, x))];
      }
    builder.set_valid(valid);

    // Region means with every head's channels side by side (C = heads·D), query heads folded
    // onto their K/V head so that Aʳ is one product over Hkv·D channels.
    const idx group = qs.heads / ks.heads, C = ks.heads * ks.dim;
    const auto* qdata = q.data();
    const auto* kdata = k.data();
    std::vector<double> qr(static_cast<std::size_t>(qs.batch * R * C), 0.0), kr(qr.size(), 0.0);
    detail::parallel_items(opt, qs.batch, [&](idx b) {
      for (idx y = 0; y < qs.height; ++y)
        for (idx x = 0; x < qs.width; ++x) {
          const idx r = sel.region_of(y, x), token = (b * qs.height + y) * qs.width + x;
          double* qm = qr.data() + (b * R + r) * C;
          double* km = kr.data() + (b * R + r) * C;
          const auto* qt = qdata + token * qs.heads * qs.dim;
          const auto* kt = kdata + token * C;
          for (idx h = 0; h < qs.heads; ++h)
            for (idx d = 0; d < qs.dim; ++d) qm[(h / group) * qs.dim + d] += qt[h * qs.dim + d];
          for (idx c = 0; c < C; ++c) km[c] += kt[c];
        }
    });
    // Divided by the padded region size (zeros padded in, as the official auto_pad), then
    // each region keeps its top_k.
    const double inv_t = 1.0 / static_cast<double>(T);
    detail::parallel_items(opt, qs.batch * R, [&](idx item) {
      const idx b = item / R, r = item % R;
      std::vector<double> a(static_cast<std::size_t>(R));
      std::vector<idx> best;
      const double* qm = qr.data() + item * C;
      for (idx r2 = 0; r2 < R; ++r2) {
        const double* km = kr.data() + (b * R + r2) * C;
        double dot = 0;
        for (idx c = 0; c < C; ++c) dot += qm[c] * km[c];
        a[static_cast<std::size_t>(r2)] = dot * inv_t * inv_t;
      }
      detail::top_k(a.data(), R, top_k, best);
      for (idx r2 : best) builder.select(b, 0, r, r2);
    });
    double pairs = 0;
    for (idx b = 0; b < qs.batch; ++b)
      for (idx r = 0; r < R; ++r)
        for (idx r2 = 0; r2 < R; ++r2)
          if (detail::test_bit(builder.data().row(b, 0, r), r2))
            pairs += static_cast<double>(real[static_cast<std::size_t>(r)] *
                                         real[static_cast<std::size_t>(r2)]);
    const double all = static_cast<double>(qs.batch) * static_cast<double>(qs.tokens()) *
                       static_cast<double>(qs.tokens());
    sel.density_ = all > 0 ? pairs / all : 0.0;
    sel.pattern_ = detail::finish_selection(builder, opt);
    return sel;
  }
};

namespace detail {

/// Calls f(map token, region-major token) for every real token (b, y, x) of the map, as flat
/// token indices (b · H + y) · W + x and b · S²T + region_major(y, x); parallel over rows.
template <class F>
void for_each_map_token(const region_selection& sel, idx batch, const options& opt, F&& f) {
  const idx H = sel.height(), W = sel.width();
  const idx n = sel.regions() * sel.regions() * sel.region_height() * sel.region_width();
  parallel_items(opt, batch * H, [&](idx item) {
    const idx b = item / H, y = item % H;
    for (idx x = 0; x < W; ++x) f((b * H + y) * W + x, b * n + sel.region_major(y, x));
  });
}

/// Copies the tokens of a map [B, H, W, C] into region-major [B, S²·T, C] (padding untouched).
inline void gather_regions(const region_selection& sel, const float* map, float* regions, idx batch,
                           idx row, const options& opt) {
  for_each_map_token(sel, batch, opt, [&](idx t, idx r) {
    std::copy(map + t * row, map + (t + 1) * row, regions + r * row);
  });
}

}  // namespace detail

/// Bi-level routing attention of the maps q [B, H, W, heads, D], k, v [B, H, W, Hkv, D|Dv] into
/// out [B, H, W, heads, Dv] with the regions `sel` picked; see the top of this file. Default
/// scale (heads·D)^−½. options::lse, key_lengths and query_lengths are not supported. Throws
/// attn::error before writing anything.
template <class Arch = simd::default_arch, class Q, class K, class V, class O,
          class Score = softmax>
void biformer_attention(const Q& q, const K& k, const V& v, O& out, const Score& score,
                        const region_selection& sel, const options& opt = {}) {
  constexpr const char* who = "biformer_attention";
  const detail::map_shape qs = detail::map_shape_of(q);
  const detail::map_shape ks = detail::map_shape_of(k);
  const detail::map_shape vs = detail::map_shape_of(v);
  const detail::map_shape os = detail::map_shape_of(out);
  detail::check_maps_qk(who, qs, ks);
  detail::require_same(who, "v", vs.batch, 0, "k", ks.batch, "batch");
  detail::require_same(who, "v", vs.height, 1, "k", ks.height, "height");
  detail::require_same(who, "v", vs.width, 2, "k", ks.width, "width");
  detail::require_same(who, "v", vs.heads, 3, "k", ks.heads, "heads");
  detail::require_same(who, "out", os.batch, 0, "q", qs.batch, "batch");
  detail::require_same(who, "out", os.height, 1, "q", qs.height, "height");
  detail::require_same(who, "out", os.width, 2, "q", qs.width, "width");
  detail::require_same(who, "out", os.heads, 3, "q", qs.heads, "heads");
  detail::require_same(who, "out", os.dim, 4, "v", vs.dim, "head_dim");
  // Dense maps: a tensor's memory is [data, data + size). See detail::check_out_disjoint.
  const auto bytes = [](const auto& x) {
    return static_cast<std::size_t>(x.size()) * sizeof(float);
  };
  detail::require_disjoint("out", out.data(), bytes(out), "q", q.data(), bytes(q));
  detail::require_disjoint("out", out.data(), bytes(out), "k", k.data(), bytes(k));
  detail::require_disjoint("out", out.data(), bytes(out), "v", v.data(), bytes(v));
  if (sel.empty()) detail::fail(who, ": the region_selection is empty: route first");
  if (sel.batch() != qs.batch || sel.height() != qs.height || sel.width() != qs.width)
    detail::fail(who, ": the region_selection was routed for batch=", sel.batch(),
                 ", height=", sel.height(), ", width=", sel.width(), " but q is [", qs.batch, ", ",
                 qs.height, ", ", qs.width, ", ...]");
  detail::reject_gathered_options(who, opt);

  const idx n = sel.pattern().seq_q();
  tensor4<float> qg(qs.batch, n, qs.heads, qs.dim), kg(qs.batch, n, ks.heads, ks.dim),
      vg(qs.batch, n, vs.heads, vs.dim), og(qs.batch, n, qs.heads, vs.dim);
  qg.setZero();
  kg.setZero();
  vg.setZero();
  detail::gather_regions(sel, q.data(), qg.data(), qs.batch, qs.heads * qs.dim, opt);
  detail::gather_regions(sel, k.data(), kg.data(), qs.batch, ks.heads * ks.dim, opt);
  detail::gather_regions(sel, v.data(), vg.data(), qs.batch, vs.heads * vs.dim, opt);
  options inner = opt;
  if (!inner.scale && qs.heads * qs.dim > 0)
    inner.scale = 1.0f / std::sqrt(static_cast<float>(qs.heads * qs.dim));
  attention<Arch>(qg, kg, vg, og, detail::with_key_length_bias(score, qs.tokens()), sel.pattern(),
                  inner);
  const idx row = qs.heads * vs.dim;
  float* o = out.data();
  detail::for_each_map_token(sel, qs.batch, opt, [&](idx t, idx r) {
    std::copy(og.data() + r * row, og.data() + (r + 1) * row, o + t * row);
  });
}

}  // namespace attn
