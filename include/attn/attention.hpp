// attn::attention — the entry point. It reads as a sentence:
//
//   attn::attention(q, k, v, out);                                   dense softmax attention
//   attn::attention(q, k, v, out, attn::softmax{}, attn::causal{});  causal
//   attn::attention(q, k, v, out, attn::softmax{.softcap = 50}, attn::window{.left = 4095}, opt);
//
// The score and pattern objects' types choose the code at compile time; their fields and the
// options carry the run-time parameters. Up to 16 queries per head run the split-KV decoding
// loop (kernel/decode.hpp), more the prefill loop (kernel/prefill.hpp); options::path forces
// one. A KV cache is read in place by the overload in cache/attention.hpp. Everything is validated
// before anything is written: on bad input attn::error is thrown and `out` (and opt.lse) are
// untouched.
#pragma once

#include <cmath>
#include <utility>

#include "attn/kernel/decode.hpp"
#include "attn/kernel/grid_prefill.hpp"
#include "attn/kernel/neighborhood_lanes.hpp"
#include "attn/kernel/prefill.hpp"
#include "attn/options.hpp"
#include "attn/pattern/dense.hpp"
#include "attn/score/sigmoid.hpp"
#include "attn/score/softmax.hpp"
#include "attn/simd/arch.hpp"
#include "attn/tensor.hpp"

namespace attn {

namespace detail {

template <class X>
concept float_input = row_major_tensor<X, 4> && std::is_same_v < scalar_of<X>,
float > ;
template <class X>
concept float_output =
    float_input<X> && !std::is_const_v<std::remove_pointer_t<decltype(std::declval<X&>().data())>>;

inline void check_lengths(std::span<const std::int32_t> lengths, const char* name, idx batch,
                          idx limit, const char* limit_name) {
  if (lengths.empty()) return;
  if (static_cast<idx>(lengths.size()) != batch)
    fail("options.", name, ".size()=", lengths.size(), " does not match q.dim(0)=", batch,
         " (batch)");
  for (std::size_t b = 0; b < lengths.size(); ++b)
    if (lengths[b] < 0 || lengths[b] > limit)
      fail("options.", name, "[", b, "]=", lengths[b], " is outside [0, ", limit, "] (", limit_name,
           ")");
}

/// Validates the options against the shape; returns the logit scale.
inline float check_options(const options& opt, const problem_shape& s) {
  const float scale =
      opt.scale.value_or(s.head_dim > 0 ? 1.0f / std::sqrt(static_cast<float>(s.head_dim)) : 1.0f);
  if (!std::isfinite(scale)) fail("options.scale=", scale, " must be finite");
  if (opt.threads < 0) fail("options.threads=", opt.threads, " must be >= 0 (0 = all)");
  if (opt.kv_splits < 0) fail("options.kv_splits=", opt.kv_splits, " must be >= 0 (0 = auto)");
  check_lengths(opt.key_lengths, "key_lengths", s.batch, s.seq_k, "k.dim(1), keys");
  check_lengths(opt.query_lengths, "query_lengths", s.batch, s.seq_q, "q.dim(1), queries");
  if (opt.lse) {
    const idx want[3] = {s.batch, s.heads_q, s.seq_q};
    const char* what[3] = {"batch", "heads", "seq_q"};
    for (int d = 0; d < 3; ++d)
      if (opt.lse->dimensions()[static_cast<std::size_t>(d)] != want[d])
        fail("lse.dim(", d, ")=", opt.lse->dimensions()[static_cast<std::size_t>(d)],
             " does not match ", want[d], " (", what[d], "; lse is [batch, heads_q, seq_q])");
  }
  return scale;
}

/// The loop a call runs: split-KV for a few queries per head (decoding), else prefill.
inline bool use_split_kv(const options& opt, const problem_shape& s) {
  if (opt.path == kernel_path::automatic) return s.seq_q <= decode_max_queries;
  return opt.path == kernel_path::split_kv;
}

inline int worker_count(const options& opt, const exec::executor& ex) {
  int n = opt.threads == 0 ? exec::hardware_threads() : opt.threads;
  if (ex.max_workers > 0) n = std::min(n, ex.max_workers);
  return std::max(n, 1);
}

}  // namespace detail

namespace detail {

/// Validates score, pattern and options against a checked shape and fills the rest of the
/// kernel's arguments (a.q, a.k, a.v, a.out and a.shape already set).
template <class Score, class Pattern>
void complete_args(prefill_args& a, const Score& score, const Pattern& pattern,
                   const options& opt) {
  score.check(a.shape);
  pattern.check(a.shape);
  a.scale = check_options(opt, a.shape);
  if (opt.lse && !Score::has_lse)
    fail("options.lse is set, but this score function defines no log-sum-exp");
  a.key_lengths = opt.key_lengths;
  a.query_lengths = opt.query_lengths;
  a.lse = opt.lse ? opt.lse->data() : nullptr;
  a.executor = opt.executor ? opt.executor : exec::default_executor();
  a.workers = worker_count(opt, a.executor);
}

/// Runs the loop the options choose. keys / values: the row sources of split-KV decoding
/// (kernel/kv_source.hpp); can_prefill: a.k and a.v are views the prefill loop can read (else
/// split-KV runs whatever the number of queries).
template <class Arch, class Score, class Pattern, class Keys, class Values>
void run(const prefill_args& a, const Score& score, const Pattern& pattern, const options& opt,
         const Keys& keys, const Values& values, bool can_prefill = true) {
  Pattern prepared = pattern;  // the kernel's own copy: prepare() may precompute into it
  prepare(prepared, a.shape);
  if (!can_prefill || use_split_kv(opt, a.shape)) {
    with_score_tile<Arch, decode_rows>(score, [&]<class Tile>(std::type_identity<Tile>) {
      decode<Arch, Tile>(a, score, prepared, keys, values, opt.kv_splits);
    });
    return;
  }
  if constexpr (is_neighborhood<Pattern>)
    if (lane_loop_takes(prepared, a))
      return with_score_tile<Arch, lane_queries>(score, [&]<class Tile>(std::type_identity<Tile>) {
        neighborhood_lanes<Arch, Tile>(a, score, prepared);
      });
  with_score_tile<Arch>(score, [&]<class Tile>(std::type_identity<Tile>) {
    if constexpr (requires {
                    requires Pattern::rank >= 2;
                    grid_prefill<Arch, Tile>(a, score, prepared);
                  })
      if (grid_loop_takes(prepared)) return grid_prefill<Arch, Tile>(a, score, prepared);
    prefill<Arch, Tile>(a, score, prepared);
  });
}

}  // namespace detail

/// Attention of q over (k, v) into out, with a score function and a pattern; see the file
/// comment. Arch selects the SIMD instruction set (default: the best the compiler flags allow).
template <class Arch = simd::default_arch, detail::float_input Q, detail::float_input K,
          detail::float_input V, detail::float_output O, class Score = softmax,
          class Pattern = dense>
void attention(const Q& q, const K& k, const V& v, O& out, const Score& score = {},
               const Pattern& pattern = {}, const options& opt = {}) {
  detail::prefill_args a;
  a.q = detail::view_of(q);
  a.k = detail::view_of(k);
  a.v = detail::view_of(v);
  a.out = detail::view_of(out);
  a.shape = detail::check_qkvo(a.q, a.k, a.v, a.out);
  detail::check_out_disjoint(a.q, a.k, a.v, a.out);
  detail::complete_args(a, score, pattern, opt);
  detail::run<Arch>(a, score, pattern, opt, detail::strided_rows{a.k}, detail::strided_rows{a.v});
}

/// Overload for an rvalue output view (e.g. a TensorMap built in the call).
template <class Arch = simd::default_arch, detail::float_input Q, detail::float_input K,
          detail::float_input V, detail::float_output O, class Score = softmax,
          class Pattern = dense>
requires(!std::is_lvalue_reference_v<O>) void attention(const Q& q, const K& k, const V& v, O&& out,
                                                        const Score& score = {},
                                                        const Pattern& pattern = {},
                                                        const options& opt = {}) {
  attention<Arch>(q, k, v, out, score, pattern, opt);
}

}  // namespace attn
