// Which SIMD instruction set the kernels are compiled for.
//
// The arch is a template parameter of every kernel. Its default is the best one the compiler
// flags allow (xsimd's default_arch: -mavx512bw gives avx512bw, -mavx2 -mfma gives fma3<avx2>,
// plain x86-64 gives sse2); attn::simd::scalar is a portable fallback with one lane, also
// selected for every kernel by defining ATTN_SIMD_FORCE_SCALAR. This header and its siblings in
// simd/ are the only code in attn that names xsimd.
#pragma once

#include <cstddef>
#include <string>

#include <xsimd/xsimd.hpp>

namespace attn::simd {

/// One float per "vector": plain C++ that every machine runs.
struct scalar {
  static constexpr const char* name() { return "scalar"; }
};

#if defined(ATTN_SIMD_FORCE_SCALAR)
using default_arch = scalar;
#else
using default_arch = xsimd::default_arch;
#endif

namespace detail {
template <class A>
struct arch_traits {
  using vec = xsimd::batch<float, A>;
  static constexpr std::size_t lanes = vec::size;
  static std::string name() { return A::name(); }
  static bool supported() { return A::version() <= xsimd::available_architectures().best; }
};
template <>
struct arch_traits<scalar> {
  using vec = float;
  static constexpr std::size_t lanes = 1;
  static std::string name() { return scalar::name(); }
  static bool supported() { return true; }
};
}  // namespace detail

/// The register type of arch A: xsimd::batch<float, A>, or float for scalar.
template <class A>
using vec = typename detail::arch_traits<A>::vec;

/// The arch of a register type: arch_of<vec<A>> is A.
template <class V>
struct arch_of {
  using type = typename V::arch_type;
};
template <>
struct arch_of<float> {
  using type = scalar;
};
template <class V>
using arch_of_t = typename arch_of<V>::type;

/// Floats per register.
template <class A>
inline constexpr int lanes = static_cast<int>(detail::arch_traits<A>::lanes);

/// The arch's name as xsimd spells it ("avx512bw", "fma3<avx2>", "sse2", "scalar").
template <class A>
std::string arch_name() {
  return detail::arch_traits<A>::name();
}

/// Whether the CPU running this program can execute arch A.
template <class A>
bool cpu_supports() {
  return detail::arch_traits<A>::supported();
}

}  // namespace attn::simd
