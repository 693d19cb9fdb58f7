// What the attention-score families (softmax, sigmoid) draw: a problem (shapes, misaligned
// views), options (threads, lengths, scale, kernel path) and a pattern of any kind, handed to a
// generic callable so that each pattern type is one instantiation.
#pragma once

#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "property/harness.hpp"

namespace attn::property {

/// Q, K, V and the output buffer of one case, as views (TensorMaps) over buffers that are
/// misaligned (an odd float offset) in some cases.
struct attention_case {
  tensor q, k, v;
  std::unique_ptr<misaligned> qm, km, vm;
  std::vector<float> out_buffer;
  idx out_offset = 0;
  options opt;
  std::vector<std::int32_t> key_lengths, query_lengths;
  std::string text;

  const_tensor4_map<float> qv() const { return qm->map(q); }
  const_tensor4_map<float> kv() const { return km->map(k); }
  const_tensor4_map<float> vv() const { return vm->map(v); }
  /// A fresh output view, NaN-filled so that an element the kernel did not write shows.
  tensor4_map<float> out() {
    std::fill(out_buffer.begin(), out_buffer.end(), std::numeric_limits<float>::quiet_NaN());
    return tensor4_map<float>(out_buffer.data() + out_offset, q.dimension(0), q.dimension(1),
                              q.dimension(2), v.dimension(3));
  }
  tensor copy_out() {
    tensor t(q.dimension(0), q.dimension(1), q.dimension(2), v.dimension(3));
    std::copy(out_buffer.begin() + out_offset, out_buffer.begin() + out_offset + t.size(),
              t.data());
    return t;
  }
};

/// Draws shapes, inputs, views and options. `max_len` bounds the sequence lengths.
inline attention_case draw_attention_case(draw& d, idx max_len = 130) {
  attention_case c;
  const idx B = d.chance(0.02) ? 0 : d.pick<idx>({1, 1, 1, 2, 3});
  const idx nq = d.length(max_len), nk = d.length(max_len);
  const auto [hq, hkv] = d.heads();
  const idx D = d.head_dim(), Dv = d.chance(0.7) ? D : d.head_dim();
  c.q = test::random_tensor(d.rng(), B, nq, hq, D);
  c.k = test::random_tensor(d.rng(), B, nk, hkv, D);
  c.v = test::random_tensor(d.rng(), B, nk, hkv, Dv);
  const bool odd = d.chance(0.3);
  c.qm = std::make_unique<misaligned>(c.q, odd ? 1 : 0);
  c.km = std::make_unique<misaligned>(c.k, odd ? 3 : 0);
  c.vm = std::make_unique<misaligned>(c.v, odd ? 5 : 0);
  c.out_offset = odd ? 7 : 0;
  c.out_buffer.resize(static_cast<std::size_t>(B * nq * hq * Dv + c.out_offset + 1));

  std::ostringstream t;
  t << shape_text(c.q, c.k, c.v) << (odd ? " misaligned-views" : "");
  c.opt.threads = d.threads();
  t << " threads=" << c.opt.threads;
  const int path = static_cast<int>(d.uniform(0, 2));
  c.opt.path = path == 0   ? kernel_path::automatic
               : path == 1 ? kernel_path::prefill
                           : kernel_path::split_kv;
  t << " path=" << (path == 0 ? "auto" : path == 1 ? "prefill" : "split_kv");
  if (d.chance(0.4)) {
    c.opt.kv_splits = static_cast<int>(d.uniform(0, 17));
    t << " kv_splits=" << c.opt.kv_splits;
  }
  if (d.chance(0.2)) {
    c.opt.scale = static_cast<float>(d.real(0.05, 0.6));
    t << " scale=" << *c.opt.scale;
  }
  if (B > 0 && d.chance(0.25)) {
    t << " key_lengths=";
    for (idx b = 0; b < B; ++b) {
      c.key_lengths.push_back(static_cast<std::int32_t>(d.uniform(0, nk)));
      t << c.key_lengths.back() << (b + 1 < B ? "," : "");
    }
    c.opt.key_lengths = c.key_lengths;
  }
  if (B > 0 && d.chance(0.2)) {
    t << " query_lengths=";
    for (idx b = 0; b < B; ++b) {
      c.query_lengths.push_back(static_cast<std::int32_t>(d.uniform(0, nq)));
      t << c.query_lengths.back() << (b + 1 < B ? "," : "");
    }
    c.opt.query_lengths = c.query_lengths;
  }
  c.text = t.str();
  return c;
}

/// A [B|1, H|1, Nq, Nk] shape for a mask or bias: batch and head broadcast at random.
inline std::array<idx, 4> broadcast_dims(draw& d, const attention_case& c) {
  return {d.chance(0.5) ? 1 : c.q.dimension(0), d.chance(0.5) ? 1 : c.q.dimension(2),
          c.q.dimension(1), c.k.dimension(1)};
}

/// Draws a pattern and calls f(pattern, description) with it; the tensors a pattern points to
/// live for the duration of the call.
template <class F>
void with_random_pattern(draw& d, const attention_case& c, F&& f) {
  const auto align_of = [&] { return d.chance(0.5) ? align::bottom_right : align::top_left; };
  switch (d.uniform(0, 7)) {
    case 0:
      f(dense{}, std::string("dense"));
      return;
    case 1: {
      const align a = align_of();
      f(causal(a),
        std::string(a == align::bottom_right ? "causal(bottom_right)" : "causal(top_left)"));
      return;
    }
    case 2: {
      window w;
      w.left = d.chance(0.2) ? unbounded : d.uniform(0, 40);
      w.right = d.chance(0.3) ? unbounded : d.uniform(0, 40);
      w.alignment = align_of();
      w.sink_keys = d.chance(0.4) ? d.uniform(0, 8) : 0;
      std::ostringstream s;
      s << "window{left=" << (w.left == unbounded ? -1 : w.left)
        << ", right=" << (w.right == unbounded ? -1 : w.right) << ", sink_keys=" << w.sink_keys
        << (w.alignment == align::top_left ? ", top_left" : "") << "}";
      f(w, s.str());
      return;
    }
    case 3: {
      alibi a;
      a.alignment = align_of();
      f(a, std::string(a.alignment == align::top_left ? "alibi(top_left)" : "alibi"));
      return;
    }
    case 4: {
      f(alibi{} & causal{}, std::string("alibi & causal"));
      return;
    }
    case 5: {
      const auto dims = broadcast_dims(d, c);
      // (test::random_mask also blanks row 0, which needs a non-empty tensor.)
      test::bool_tensor4 m(dims[0], dims[1], dims[2], dims[3]);
      const double p = d.pick<double>({0.1, 0.5, 0.9});
      for (idx n = 0; n < m.size(); ++n) m.data()[n] = d.chance(p);
      std::ostringstream s;
      s << "mask[" << dims[0] << "," << dims[1] << "," << dims[2] << "," << dims[3] << "]";
      f(mask{m}, s.str());
      return;
    }
    case 6: {
      const auto dims = broadcast_dims(d, c);
      tensor b = test::random_tensor(d.rng(), dims[0], dims[1], dims[2], dims[3], -2.0f, 2.0f);
      for (idx n = 0; n < b.size(); ++n)
        if (d.chance(0.1)) b.data()[n] = -std::numeric_limits<float>::infinity();
      std::ostringstream s;
      s << "bias[" << dims[0] << "," << dims[1] << "," << dims[2] << "," << dims[3] << "]";
      f(bias{b}, s.str());
      return;
    }
    default: {
      const idx left = d.uniform(0, 20);
      f(causal{} & window{.left = left, .right = 0},
        "causal & window{left=" + std::to_string(left) + "}");
      return;
    }
  }
}

/// |got − want| ≤ tol where want = −inf exactly, else relative to max(1, |want|).
template <class Got, class Want>
idx lse_mismatches(const Got& got, const Want& want, double tol) {
  idx bad = 0;
  for (idx n = 0; n < static_cast<idx>(want.size()); ++n) {
    const double g = static_cast<double>(got.data()[n]), w = want.data()[n];
    bad += !(std::isinf(w) ? g == w : std::abs(g - w) <= tol * std::max(1.0, std::abs(w)));
  }
  return bad;
}

}  // namespace attn::property
