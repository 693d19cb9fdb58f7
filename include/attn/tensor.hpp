// The tensor contract: what attn accepts as Q, K, V and O, and the shape rules every family
// shares.
//
// Q, K, V, O are Eigen::Tensor<float, 4, Eigen::RowMajor> or an Eigen::TensorMap of one (const
// for inputs) with dimensions [batch, sequence, heads, head_dim] — PyTorch's "bshd" layout, the
// one FlashAttention uses. Views over the caller's memory are read in place, never copied.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <unsupported/Eigen/CXX11/Tensor>

#include "attn/error.hpp"

namespace attn {

/// Sizes, indices and strides: signed, like Eigen::Index.
using idx = std::ptrdiff_t;

/// The owning tensor type attn works on: [batch, sequence, heads, head_dim], row-major.
template <class T = float>
using tensor4 = Eigen::Tensor<T, 4, Eigen::RowMajor>;
/// A view of someone else's memory with the same layout.
template <class T = float>
using tensor4_map = Eigen::TensorMap<tensor4<T>>;
template <class T = float>
using const_tensor4_map = Eigen::TensorMap<const tensor4<T>>;

/// Per-(batch, head, query) log-sum-exp output: [batch, heads_q, seq_q].
using lse_tensor = Eigen::Tensor<float, 3, Eigen::RowMajor>;
using lse_map = Eigen::TensorMap<lse_tensor>;

namespace detail {

template <class X>
using plain_t = std::remove_cvref_t<X>;

/// Anything with Eigen's tensor interface, of rank R, row-major: Tensor, TensorMap, const or not.
template <class X, int R>
concept row_major_tensor = requires(const X& x) {
  {x.data()};
  {x.dimension(0)};
}
&&(plain_t<X>::NumIndices == R) && (static_cast<int>(plain_t<X>::Layout) == Eigen::RowMajor);

template <class X>
using scalar_of = std::remove_cv_t<typename plain_t<X>::Scalar>;

/// A strided 4-d view: the form the kernels read. Strides are in elements.
template <class T>
struct view4 {
  T* data = nullptr;
  std::array<std::ptrdiff_t, 4> dims{};
  std::array<std::ptrdiff_t, 4> strides{};

  std::ptrdiff_t batch() const { return dims[0]; }
  std::ptrdiff_t seq() const { return dims[1]; }
  std::ptrdiff_t heads() const { return dims[2]; }
  std::ptrdiff_t head_dim() const { return dims[3]; }
  /// Pointer to element [b, s, h, 0].
  T* row(std::ptrdiff_t b, std::ptrdiff_t s, std::ptrdiff_t h) const {
    return data + b * strides[0] + s * strides[1] + h * strides[2];
  }
  std::ptrdiff_t size() const { return dims[0] * dims[1] * dims[2] * dims[3]; }
  /// A view of mutable data reads as a view of const data (a mutable TensorMap passed as q).
  operator view4<const T>() const requires(!std::is_const_v<T>) { return {data, dims, strides}; }
};

/// Views a dense row-major Eigen tensor (or map) of rank 4.
template <class X>
auto view_of(X&& x) {
  using T = std::remove_pointer_t<decltype(x.data())>;
  view4<T> v;
  v.data = x.data();
  for (int i = 0; i < 4; ++i)
    v.dims[static_cast<std::size_t>(i)] =
        static_cast<std::ptrdiff_t>(x.dimensions()[static_cast<std::size_t>(i)]);
  v.strides[3] = 1;
  for (int i = 2; i >= 0; --i) {
    const auto u = static_cast<std::size_t>(i);
    v.strides[u] = v.strides[u + 1] * v.dims[u + 1];
  }
  return v;
}

inline const char* dim_name(int d) {
  constexpr const char* names[] = {"batch", "sequence", "heads", "head_dim"};
  return names[d];
}

/// The shape of one attention problem, after validation.
struct problem_shape {
  std::ptrdiff_t batch = 0, seq_q = 0, seq_k = 0, heads_q = 0, heads_kv = 0, head_dim = 0,
                 head_dim_v = 0;
  std::ptrdiff_t group() const { return heads_q / heads_kv; }  ///< query heads per KV head
};

template <class A, class B>
void require_equal_dim(const char* a_name, const A& a, int a_dim, const char* b_name, const B& b,
                       int b_dim) {
  const auto x = a.dims[static_cast<std::size_t>(a_dim)];
  const auto y = b.dims[static_cast<std::size_t>(b_dim)];
  if (x != y)
    fail(a_name, ".dim(", a_dim, ")=", x, " does not match ", b_name, ".dim(", b_dim, ")=", y, " (",
         dim_name(a_dim), ")");
}

/// The shape rules shared by every family (see docs/ARCHITECTURE.md, "The tensor contract").
/// Throws attn::error naming the tensor, the dimension and both values; writes nothing.
template <class TQ, class TK, class TV, class TO>
problem_shape check_qkvo(const view4<TQ>& q, const view4<TK>& k, const view4<TV>& v,
                         const view4<TO>& o) {
  require_equal_dim("k", k, 0, "q", q, 0);
  require_equal_dim("v", v, 0, "q", q, 0);
  require_equal_dim("v", v, 1, "k", k, 1);
  require_equal_dim("v", v, 2, "k", k, 2);
  require_equal_dim("k", k, 3, "q", q, 3);
  if (k.heads() == 0 && q.heads() != 0) fail("k.dim(2)=0 but q.dim(2)=", q.heads(), " (heads)");
  if (k.heads() != 0 && q.heads() % k.heads() != 0)
    fail("k.dim(2)=", k.heads(), " does not divide q.dim(2)=", q.heads(), " (heads)");
  require_equal_dim("out", o, 0, "q", q, 0);
  require_equal_dim("out", o, 1, "q", q, 1);
  require_equal_dim("out", o, 2, "q", q, 2);
  require_equal_dim("out", o, 3, "v", v, 3);
  if (q.head_dim() == 0 && q.batch() * q.seq() * q.heads() != 0)
    fail("q.dim(3)=0 (head_dim) must be positive");
  problem_shape s;
  s.batch = q.batch();
  s.seq_q = q.seq();
  s.seq_k = k.seq();
  s.heads_q = q.heads();
  s.heads_kv = k.heads();
  s.head_dim = q.head_dim();
  s.head_dim_v = v.head_dim();
  return s;
}

/// Bytes from a view's first element to one past its last (0 for no element or no data).
template <class T>
std::size_t extent_bytes(const view4<T>& x) {
  if (!x.data || x.size() <= 0) return 0;
  std::ptrdiff_t last = 0;
  for (std::size_t d = 0; d < 4; ++d) last += (x.dims[d] - 1) * x.strides[d];
  return static_cast<std::size_t>(last + 1) * sizeof(T);
}

/// Throws when [out, out + out_bytes) and [in, in + in_bytes) share a byte.
inline void require_disjoint(const char* out_name, const void* out, std::size_t out_bytes,
                             const char* in_name, const void* in, std::size_t in_bytes) {
  if (out_bytes == 0 || in_bytes == 0) return;
  const auto o = reinterpret_cast<std::uintptr_t>(out), i = reinterpret_cast<std::uintptr_t>(in);
  if (o < i + in_bytes && i < o + out_bytes)
    fail(out_name, ".data() overlaps ", in_name, ".data() in memory (", out_bytes, " and ",
         in_bytes, " bytes): the output must not alias an input");
}

/// The output of a call may not share memory with q, k or v: the kernels write rows of out
/// while rows of the inputs that alias them are still to be read (other query tiles, other
/// heads, later key tiles), so an in-place call would silently compute from half-written data.
/// Checked by every entry point that writes out (not by check_qkvo: the routers validate
/// (q, k) through it with q in the output's place).
template <class TQ, class TK, class TV, class TO>
void check_out_disjoint(const view4<TQ>& q, const view4<TK>& k, const view4<TV>& v,
                        const view4<TO>& o) {
  const std::size_t out = extent_bytes(o);
  require_disjoint("out", o.data, out, "q", q.data, extent_bytes(q));
  require_disjoint("out", o.data, out, "k", k.data, extent_bytes(k));
  require_disjoint("out", o.data, out, "v", v.data, extent_bytes(v));
}

}  // namespace detail
}  // namespace attn
