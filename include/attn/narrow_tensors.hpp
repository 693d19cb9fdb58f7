// Q, K, V and out as bfloat16 or half tensors: the same attn::attention call, any mix of
// element types, always accumulating in float.
//
//   Eigen::Tensor<Eigen::bfloat16, 4, Eigen::RowMajor> q(…), k(…), v(…), out(…);
//   attn::attention(q, k, v, out, attn::softmax{}, attn::causal{});
//
// Where the narrow values become float depends on which loop runs (attention.hpp):
//   - split-KV decoding (≤ 16 queries per head) is memory-bound, so K and V stay in their
//     narrow format: blocks of rows are staged as stored and widened to float in registers
//     (the same row-source mechanism as the KV cache, kernel/kv_source.hpp): half the bytes;
//   - prefill is compute-bound (O(N²·D) FLOPs on O(N·D) values). When q, k and v are all
//     bfloat16, the arch is AVX-512 with AVX512-BF16 compiled in and the head dims are even,
//     the loop runs on bf16 operands with vdpbf16ps (kernel/tile_products.hpp, bf16_products):
//     two products per instruction. Otherwise narrow K and V are widened once per call into
//     float scratch (at N = 2048, D = 64 that is 0.1 % of the kernel's time) and the float loop
//     runs unchanged.
// A narrow q is widened once; a narrow out is computed in float scratch and rounded to nearest
// even once at the end. Errors are those of the float call, thrown before anything is written.
#pragma once

#include <Eigen/Core>
#include <type_traits>

#include "attn/attention.hpp"
#include "attn/cache/element.hpp"
#include "attn/kernel/kv_source.hpp"

namespace attn {
namespace detail {

template <class T>
concept narrow_element = std::is_same_v<T, Eigen::bfloat16> || std::is_same_v<T, Eigen::half>;

/// A rank-4 row-major tensor of float, bfloat16 or half.
template <class X>
concept any_input = row_major_tensor<X, 4> &&
    (std::is_same_v<scalar_of<X>, float> || narrow_element<scalar_of<X>>);
template <class X>
concept any_output =
    any_input<X> && !std::is_const_v<std::remove_pointer_t<decltype(std::declval<X&>().data())>>;

/// Whether the bf16 tile products can run for arch A and these element types (see the file
/// comment); the head dims are checked at run time (bf16_products::fits).
template <class A, class TQ, class TK, class TV>
inline constexpr bool bf16_products_compiled =
    simd::bf16::available && !std::is_same_v<A, simd::scalar> &&
    simd::tile_queries<A> == simd::bf16::tile_queries && std::is_same_v<TQ, Eigen::bfloat16> &&
    std::is_same_v<TK, Eigen::bfloat16> && std::is_same_v<TV, Eigen::bfloat16>;

/// A float view of `t`: `t` itself for float, else a widened contiguous copy kept in `scratch`.
template <class T>
view4<const float> as_float(const view4<const T>& t, tensor4<float>& scratch) {
  if constexpr (std::is_same_v<T, float>) {
    return t;
  } else {
    scratch.resize(t.dims[0], t.dims[1], t.dims[2], t.dims[3]);
    float* dst = scratch.data();
    for (idx b = 0; b < t.batch(); ++b)
      for (idx j = 0; j < t.seq(); ++j)
        for (idx h = 0; h < t.heads(); ++h, dst += t.head_dim())
          decode_row<T>(t.row(b, j, h), nullptr, t.head_dim(), dst);
    return view_of(std::as_const(scratch));
  }
}

}  // namespace detail

/// Attention with bfloat16 or half tensors among q, k, v and out; see the file comment.
template <class Arch = simd::default_arch, detail::any_input Q, detail::any_input K,
          detail::any_input V, detail::any_output O, class Score = softmax, class Pattern = dense>
requires(!(detail::float_input<Q> && detail::float_input<K> && detail::float_input<V> &&
           detail::float_output<O>)) void attention(const Q& q, const K& k, const V& v, O& out,
                                                    const Score& score = {},
                                                    const Pattern& pattern = {},
                                                    const options& opt = {}) {
  const auto qv = detail::view_of(q), kv = detail::view_of(k), vv = detail::view_of(v);
  const auto ov = detail::view_of(out);
  detail::prefill_args a;
  a.shape = detail::check_qkvo(qv, kv, vv, ov);
  detail::check_out_disjoint(qv, kv, vv, ov);
  detail::complete_args(a, score, pattern, opt);  // validates everything before any work

  tensor4<float> q_float, k_float, v_float, out_float;
  using TO = detail::scalar_of<O>;
  if constexpr (std::is_same_v<TO, float>) {
    a.out = ov;
  } else {
    out_float.resize(ov.dims[0], ov.dims[1], ov.dims[2], ov.dims[3]);
    a.out = detail::view_of(out_float);
  }

  using TQ = detail::scalar_of<Q>;
  const detail::view4<const TQ> q_const = qv;
  const detail::view4<const detail::scalar_of<K>> k_const = kv;
  const detail::view4<const detail::scalar_of<V>> v_const = vv;
  bool done = false;
  if (detail::use_split_kv(opt, a.shape)) {
    // K and V are read in place; a.k / a.v carry only the shape.
    a.q = detail::as_float(q_const, q_float);
    a.k.dims = kv.dims;
    a.v.dims = vv.dims;
    detail::run<Arch>(a, score, pattern, opt, detail::strided_rows{k_const},
                      detail::strided_rows{v_const}, false);
    done = true;
  }
#if defined(__AVX512BF16__)
  if constexpr (detail::bf16_products_compiled<Arch, TQ, detail::scalar_of<K>,
                                               detail::scalar_of<V>>) {
    if (!done && detail::bf16_products::fits(a.shape)) {
      // Q, K and V are read as stored; a.q / a.k / a.v carry only the shape.
      a.q.dims = qv.dims;
      a.k.dims = kv.dims;
      a.v.dims = vv.dims;
      Pattern prepared = pattern;
      detail::prepare(prepared, a.shape);
      detail::with_score_tile<Arch>(score, [&]<class Tile>(std::type_identity<Tile>) {
        detail::prefill<Arch, Tile>(a, score, prepared,
                                    detail::bf16_products{q_const, k_const, v_const});
      });
      done = true;
    }
  }
#endif
  if (!done) {
    a.q = detail::as_float(q_const, q_float);
    a.k = detail::as_float(k_const, k_float);
    a.v = detail::as_float(v_const, v_float);
    detail::run<Arch>(a, score, pattern, opt, detail::strided_rows{a.k}, detail::strided_rows{a.v});
  }

  if constexpr (!std::is_same_v<TO, float>) {
    const float* src = out_float.data();
    for (idx b = 0; b < ov.batch(); ++b)
      for (idx i = 0; i < ov.seq(); ++i)
        for (idx h = 0; h < ov.heads(); ++h, src += ov.head_dim())
          detail::encode_row<TO>(src, ov.head_dim(), ov.row(b, i, h), nullptr);
  }
}

/// Overload for an rvalue output view (e.g. a TensorMap built in the call).
template <class Arch = simd::default_arch, detail::any_input Q, detail::any_input K,
          detail::any_input V, detail::any_output O, class Score = softmax, class Pattern = dense>
requires(!std::is_lvalue_reference_v<O> &&
         !(detail::float_input<Q> && detail::float_input<K> && detail::float_input<V> &&
           detail::float_output<O>)) void attention(const Q& q, const K& k, const V& v, O&& out,
                                                    const Score& score = {},
                                                    const Pattern& pattern = {},
                                                    const options& opt = {}) {
  attention<Arch>(q, k, v, out, score, pattern, opt);
}

}  // namespace attn
