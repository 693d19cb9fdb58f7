// Intersecting patterns: `attn::causal{} & attn::alibi{}` sees a pair only if both do, and adds
// both biases. Composition happens in the type, so the kernel still sees one pattern.
#pragma once

#include <type_traits>
#include <utility>

#include "attn/pattern/tile.hpp"

namespace attn {

template <class A, class B>
struct both {
  A first;
  B second;

  void check(const detail::problem_shape& s) const {
    first.check(s);
    second.check(s);
  }
  void prepare(const detail::problem_shape& s) {
    detail::prepare(first, s);
    detail::prepare(second, s);
  }
  key_span keys(const head_ctx& c, idx q0, idx q1) const {
    return intersect(first.keys(c, q0, q1), second.keys(c, q0, q1));
  }
  tile_kind classify(const head_ctx& c, idx q0, idx q1, idx k0, idx k1) const {
    const tile_kind a = first.classify(c, q0, q1, k0, k1);
    if (a == tile_kind::none) return a;
    return meet(a, second.classify(c, q0, q1, k0, k1));
  }
  key_span query_span(const head_ctx& c, idx j, idx q0, idx q1) const requires
      requires(const A& a, const B& b) {
    a.query_span(c, j, q0, q1);
    b.query_span(c, j, q0, q1);
  }
  { return intersect(first.query_span(c, j, q0, q1), second.query_span(c, j, q0, q1)); }
  bool visible(const head_ctx& c, idx i, idx j) const {
    return first.visible(c, i, j) && second.visible(c, i, j);
  }
  static constexpr bool has_bias = A::has_bias || B::has_bias;
  float logit_bias(const head_ctx& c, idx i, idx j) const {
    return first.logit_bias(c, i, j) + second.logit_bias(c, i, j);
  }
};

namespace detail {
template <class P>
concept pattern_like = requires(const P& p, const head_ctx& c) {
  { p.classify(c, idx{}, idx{}, idx{}, idx{}) } -> std::same_as<tile_kind>;
  { p.visible(c, idx{}, idx{}) } -> std::convertible_to<bool>;
  { P::has_bias } -> std::convertible_to<bool>;
};
}  // namespace detail

template <detail::pattern_like A, detail::pattern_like B>
both<A, B> operator&(A a, B b) {
  return {std::move(a), std::move(b)};
}

}  // namespace attn
