// attn::linear_attention and attn::linear_attention_step — the entry points of linear
// attention (Katharopoulos et al. 2020, "Transformers are RNNs"):
//
//   attn::linear_attention(q, k, v, out);                                 dense, elu(x)+1
//   attn::linear_attention(q, k, v, out, attn::linear::elu1{}, attn::causal{}, lin_opts);
//   attn::linear_attention(q, k, v, out, map, attn::causal{}, st, lin_opts);   prefill a state
//   attn::linear::state st(B, H, Dk, Dv);
//   attn::linear_attention_step(q_t, k_t, v_t, out_t, map, st, lin_opts);     decode
//
// Tensors follow attn's contract ([batch, sequence, heads, head_dim], row-major float; K/V heads
// divide the Q heads; V's head_dim may differ). For batch b, query head h reading K/V head g,
// with φ the feature map (attn/linear/feature_maps.hpp) and the options of
// attn/linear/options.hpp (scale, decay γ_h, ε, normalise):
//
//   attn::dense    o_i = Σ_j scale·(φ(q_i)·φ(k_j))·v_j / (Σ_j scale·φ(q_i)·φ(k_j) + ε)
//   attn::causal   o_i = Σ_{j≤i} γ^{i−j}·scale·(φ(q_i)·φ(k_j))·v_j
//                        / (Σ_{j≤i} γ^{i−j}·scale·φ(q_i)·φ(k_j) + ε)        (q, k equally long)
//   step           the same recurrence, continued from the state, token by token
// and without the denominator when options::normalise is false. The dense form computes
// φ(Q)·(φ(K)ᵀV), the causal form works in chunks (attn/linear/kernel.hpp); neither forms an
// N × N matrix. Everything is validated before anything is written: on bad input attn::error is
// thrown and out (and the state) are untouched.
#pragma once

#include <cmath>
#include <concepts>
#include <type_traits>

#include "attn/attention.hpp"
#include "attn/linear/common.hpp"
#include "attn/linear/feature_maps.hpp"
#include "attn/linear/kernel.hpp"
#include "attn/linear/options.hpp"
#include "attn/linear/state.hpp"
#include "attn/pattern/band.hpp"
#include "attn/pattern/dense.hpp"
#include "attn/simd/arch.hpp"
#include "attn/tensor.hpp"

namespace attn {

namespace linear::detail {

/// The patterns linear attention has a form for.
template <class P>
concept linear_pattern = std::same_as<P, attn::dense> || std::same_as<P, attn::causal>;

inline void check_options(const linear::options& opt, const attn::detail::problem_shape& s,
                          bool causal) {
  using attn::detail::fail;
  if (!std::isfinite(opt.scale)) fail("linear::options.scale=", opt.scale, " must be finite");
  if (!(opt.epsilon >= 0.0f) || !std::isfinite(opt.epsilon))
    fail("linear::options.epsilon=", opt.epsilon, " must be finite and >= 0");
  if (opt.chunk < 1) fail("linear::options.chunk=", opt.chunk, " must be >= 1");
  if (opt.threads < 0) fail("linear::options.threads=", opt.threads, " must be >= 0 (0 = all)");
  if (opt.decay.empty()) return;
  if (!causal)
    fail("linear::options.decay is set (size ", opt.decay.size(),
         "), but a decay is defined by the causal recurrence S_t = decay*S_(t-1) + phi(k_t)v_t^T:"
         " use attn::causal or linear_attention_step, not attn::dense");
  if (static_cast<idx>(opt.decay.size()) != s.heads_q)
    fail("linear::options.decay.size()=", opt.decay.size(), " does not match q.dim(2)=", s.heads_q,
         " (heads)");
  for (std::size_t h = 0; h < opt.decay.size(); ++h)
    if (!(opt.decay[h] > 0.0f && opt.decay[h] <= 1.0f))
      fail("linear::options.decay[", h, "]=", opt.decay[h], " is outside (0, 1]");
}

inline void check_state(const linear::state& st, const attn::detail::problem_shape& s) {
  using attn::detail::fail;
  const idx want[4] = {s.batch, s.heads_q, s.head_dim, s.head_dim_v};
  const char* from[4] = {"q.dim(0)", "q.dim(2)", "q.dim(3)", "v.dim(3)"};
  const char* what[4] = {"batch", "heads", "head_dim", "head_dim_v"};
  for (int d = 0; d < 4; ++d) {
    const idx have = st.kv.dimension(d);
    if (have != want[d])
      fail("state.kv.dim(", d, ")=", have, " does not match ", from[d], "=", want[d], " (", what[d],
           "; state.kv is [batch, heads_q, head_dim, head_dim_v])");
  }
  for (int d = 0; d < 3; ++d) {
    const idx have = st.z.dimension(d);
    if (have != want[d])
      fail("state.z.dim(", d, ")=", have, " does not match ", from[d], "=", want[d], " (", what[d],
           "; state.z is [batch, heads_q, head_dim])");
  }
}

template <class Map>
void check_causal_map(const Map&) {
  if constexpr (!feature<simd::scalar, Map>::has_causal_form)
    attn::detail::fail(
        "linear::efficient normalises each key channel over all positions: it has no causal or "
        "recurrent form (use attn::dense)");
}

inline int worker_count(const linear::options& opt, const exec::executor& ex) {
  int n = opt.threads == 0 ? exec::hardware_threads() : opt.threads;
  if (ex.max_workers > 0) n = std::min(n, ex.max_workers);
  return std::max(n, 1);
}

/// The validated arguments of a call, before the state and the form are chosen.
template <class Q, class K, class V, class O, class Map>
args make_args(const Q& q, const K& k, const V& v, O& out, const Map& map,
               const linear::options& opt, bool causal) {
  args a;
  a.q = read_only(attn::detail::view_of(q));
  a.k = read_only(attn::detail::view_of(k));
  a.v = read_only(attn::detail::view_of(v));
  a.out = attn::detail::view_of(out);
  a.shape = attn::detail::check_qkvo(a.q, a.k, a.v, a.out);
  attn::detail::check_out_disjoint(a.q, a.k, a.v, a.out);
  if (causal && a.shape.seq_k != a.shape.seq_q)
    attn::detail::fail("k.dim(1)=", a.shape.seq_k, " does not match q.dim(1)=", a.shape.seq_q,
                       " (sequence): causal linear attention sees the keys up to each query's "
                       "own position");
  check_map(map, a.shape);
  if (causal) check_causal_map(map);
  check_options(opt, a.shape, causal);
  a.normalise = opt.normalise;
  a.scale = opt.scale;
  a.epsilon = opt.epsilon;
  a.chunk = opt.chunk;
  a.decay = opt.decay;
  a.executor = opt.executor ? opt.executor : exec::default_executor();
  a.workers = worker_count(opt, a.executor);
  return a;
}

enum class form { dense, chunked, recurrent };

template <class Arch, class Map>
void run(const args& a, const Map& map, form f) {
  const attn::detail::problem_shape& s = a.shape;
  if (s.batch * s.seq_q * s.heads_q * s.head_dim_v == 0) return;  // nothing to write
  const feature<Arch, Map> phi(map, map_inputs{a.q, a.k, a.executor, a.workers});
  switch (f) {
    case form::dense:
      noncausal<Arch>(a, phi);
      break;
    case form::chunked:
      causal_chunked<Arch>(a, phi);
      break;
    case form::recurrent:
      recurrent<Arch>(a, phi);
      break;
  }
}

}  // namespace linear::detail

/// Linear attention of q over (k, v) into out with feature map `map`, non-causal (attn::dense)
/// or causal (attn::causal); see the file comment. Arch selects the SIMD instruction set.
template <class Arch = simd::default_arch, detail::float_input Q, detail::float_input K,
          detail::float_input V, detail::float_output O, class Map = linear::elu1,
          linear::detail::linear_pattern Pattern = dense>
requires linear::detail::feature_map<Map>
void linear_attention(const Q& q, const K& k, const V& v, O& out, const Map& map = {},
                      const Pattern& = {}, const linear::options& opt = {}) {
  constexpr bool causal = std::is_same_v<Pattern, attn::causal>;
  const linear::detail::args a = linear::detail::make_args(q, k, v, out, map, opt, causal);
  linear::detail::run<Arch>(a, map,
                            causal ? linear::detail::form::chunked : linear::detail::form::dense);
}

/// Causal linear attention continuing from `st` (a fresh state: from the start) and leaving in
/// it the state after the last token, ready for linear_attention_step.
template <class Arch = simd::default_arch, detail::float_input Q, detail::float_input K,
          detail::float_input V, detail::float_output O, class Map>
requires linear::detail::feature_map<Map>
void linear_attention(const Q& q, const K& k, const V& v, O& out, const Map& map, const causal&,
                      linear::state& st, const linear::options& opt = {}) {
  linear::detail::args a = linear::detail::make_args(q, k, v, out, map, opt, true);
  linear::detail::check_state(st, a.shape);
  a.state_kv = st.kv.data();
  a.state_z = st.z.data();
  linear::detail::run<Arch>(a, map, linear::detail::form::chunked);
}

/// Decoding: advances `st` by the T tokens of q, k, v ([batch, T, heads, head_dim], T ≥ 0, the
/// same T for all three) one at a time, writing each token's output to out.
template <class Arch = simd::default_arch, detail::float_input Q, detail::float_input K,
          detail::float_input V, detail::float_output O, class Map>
requires linear::detail::feature_map<Map>
void linear_attention_step(const Q& q, const K& k, const V& v, O& out, const Map& map,
                           linear::state& st, const linear::options& opt = {}) {
  linear::detail::args a = linear::detail::make_args(q, k, v, out, map, opt, true);
  linear::detail::check_state(st, a.shape);
  a.state_kv = st.kv.data();
  a.state_z = st.z.data();
  linear::detail::run<Arch>(a, map, linear::detail::form::recurrent);
}

// Overloads for an rvalue output view (e.g. a TensorMap built in the call).

template <class Arch = simd::default_arch, detail::float_input Q, detail::float_input K,
          detail::float_input V, detail::float_output O, class Map = linear::elu1,
          linear::detail::linear_pattern Pattern = dense>
requires(linear::detail::feature_map<Map> &&
         !std::is_lvalue_reference_v<O>) void linear_attention(const Q& q, const K& k, const V& v,
                                                               O&& out, const Map& map = {},
                                                               const Pattern& pattern = {},
                                                               const linear::options& opt = {}) {
  linear_attention<Arch>(q, k, v, out, map, pattern, opt);
}

template <class Arch = simd::default_arch, detail::float_input Q, detail::float_input K,
          detail::float_input V, detail::float_output O, class Map>
requires(
    linear::detail::feature_map<Map> &&
    !std::is_lvalue_reference_v<O>) void linear_attention_step(const Q& q, const K& k, const V& v,
                                                               O&& out, const Map& map,
                                                               linear::state& st,
                                                               const linear::options& opt = {}) {
  linear_attention_step<Arch>(q, k, v, out, map, st, opt);
}

}  // namespace attn
