// The tensor contract of attn/tensor.hpp: which Q, K, V, O shapes are accepted, the attn::error
// each violated rule gives (naming the tensor, the dimension and both values), and views over
// the caller's memory.
#include <array>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "attn/attention.hpp"
#include "attn/pattern/band.hpp"
#include "attn/tensor.hpp"

namespace tensor_test {

using attn::tensor4;
using dims4 = std::array<Eigen::Index, 4>;

tensor4<float> make(const dims4& d) { return tensor4<float>(d[0], d[1], d[2], d[3]); }

struct qkvo {
  dims4 q, k, v, o;
};

/// A valid grouped-query problem: 8 query heads over 2 KV heads, head_dim_v != head_dim.
constexpr qkvo valid{{2, 5, 8, 16}, {2, 7, 2, 16}, {2, 7, 2, 24}, {2, 5, 8, 24}};

attn::detail::problem_shape check(const qkvo& s) {
  const tensor4<float> q = make(s.q), k = make(s.k), v = make(s.v);
  tensor4<float> o = make(s.o);
  return attn::detail::check_qkvo(attn::detail::view_of(q), attn::detail::view_of(k),
                                  attn::detail::view_of(v), attn::detail::view_of(o));
}

/// The message of the attn::error that check() throws for s; fails the test when none is thrown.
std::string error_of(const qkvo& s) {
  try {
    check(s);
  } catch (const attn::error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no attn::error thrown";
  return {};
}

/// Expects the error for `s` to mention every one of `parts`.
void expect_error(const qkvo& s, std::initializer_list<const char*> parts) {
  const std::string message = error_of(s);
  EXPECT_EQ(message.rfind("attn: ", 0), 0u) << message;
  for (const char* part : parts)
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
}

TEST(TensorContract, AcceptsGroupedQueryShapes) {
  const attn::detail::problem_shape s = check(valid);
  EXPECT_EQ(s.batch, 2);
  EXPECT_EQ(s.seq_q, 5);
  EXPECT_EQ(s.seq_k, 7);
  EXPECT_EQ(s.heads_q, 8);
  EXPECT_EQ(s.heads_kv, 2);
  EXPECT_EQ(s.head_dim, 16);
  EXPECT_EQ(s.head_dim_v, 24);
  EXPECT_EQ(s.group(), 4);
}

TEST(TensorContract, AcceptsMultiQueryAndEmptyShapes) {
  EXPECT_EQ(check({{1, 3, 6, 8}, {1, 4, 1, 8}, {1, 4, 1, 8}, {1, 3, 6, 8}}).group(), 6);
  // No keys at all is a valid problem (every row then outputs zeros).
  EXPECT_EQ(check({{1, 3, 2, 8}, {1, 0, 2, 8}, {1, 0, 2, 8}, {1, 3, 2, 8}}).seq_k, 0);
  EXPECT_EQ(check({{0, 3, 2, 8}, {0, 4, 2, 8}, {0, 4, 2, 8}, {0, 3, 2, 8}}).batch, 0);
  EXPECT_EQ(check({{1, 0, 2, 8}, {1, 4, 2, 8}, {1, 4, 2, 8}, {1, 0, 2, 8}}).seq_q, 0);
}

TEST(TensorContract, KeyBatchMustMatchQuery) {
  qkvo s = valid;
  s.k[0] = 3;
  expect_error(s, {"k.dim(0)=3", "q.dim(0)=2", "batch"});
}

TEST(TensorContract, ValueBatchMustMatchQuery) {
  qkvo s = valid;
  s.v[0] = 1;
  expect_error(s, {"v.dim(0)=1", "q.dim(0)=2", "batch"});
}

TEST(TensorContract, ValueSequenceMustMatchKey) {
  qkvo s = valid;
  s.v[1] = 6;
  expect_error(s, {"v.dim(1)=6", "k.dim(1)=7", "sequence"});
}

TEST(TensorContract, ValueHeadsMustMatchKey) {
  qkvo s = valid;
  s.v[2] = 4;
  expect_error(s, {"v.dim(2)=4", "k.dim(2)=2", "heads"});
}

TEST(TensorContract, KeyHeadDimMustMatchQuery) {
  qkvo s = valid;
  s.k[3] = 12;
  expect_error(s, {"k.dim(3)=12", "q.dim(3)=16", "head_dim"});
}

TEST(TensorContract, KeyHeadsMustNotBeZeroWhenQueryHasHeads) {
  qkvo s = valid;
  s.k[2] = 0;
  s.v[2] = 0;
  expect_error(s, {"k.dim(2)=0", "q.dim(2)=8", "heads"});
}

TEST(TensorContract, KeyHeadsMustDivideQueryHeads) {
  qkvo s = valid;
  s.k[2] = 3;
  s.v[2] = 3;
  expect_error(s, {"k.dim(2)=3", "does not divide", "q.dim(2)=8", "heads"});
}

TEST(TensorContract, OutputMustHaveTheQueryBatchSequenceAndHeads) {
  const char* names[] = {"batch", "sequence", "heads"};
  for (std::size_t d = 0; d < 3; ++d) {
    SCOPED_TRACE(names[d]);
    qkvo s = valid;
    s.o[d] += 1;
    const std::string out = "out.dim(" + std::to_string(d) + ")=" + std::to_string(s.o[d]);
    const std::string q = "q.dim(" + std::to_string(d) + ")=" + std::to_string(s.q[d]);
    expect_error(s, {out.c_str(), q.c_str(), names[d]});
  }
}

TEST(TensorContract, OutputHeadDimMustMatchValue) {
  qkvo s = valid;
  s.o[3] = 16;  // the head_dim of q and k, not of v
  expect_error(s, {"out.dim(3)=16", "v.dim(3)=24", "head_dim"});
}

TEST(TensorContract, ZeroHeadDimIsRejected) {
  expect_error({{1, 3, 2, 0}, {1, 4, 2, 0}, {1, 4, 2, 8}, {1, 3, 2, 8}},
               {"q.dim(3)=0", "head_dim"});
}

TEST(TensorContract, ErrorIsAnInvalidArgument) {
  static_assert(std::is_base_of_v<std::invalid_argument, attn::error>);
  qkvo s = valid;
  s.k[3] = 15;
  EXPECT_THROW(check(s), std::invalid_argument);
}

TEST(TensorContract, RowMajorRank4TensorsAndMapsAreAccepted) {
  using attn::detail::row_major_tensor;
  static_assert(row_major_tensor<tensor4<float>, 4>);
  static_assert(row_major_tensor<const tensor4<float>&, 4>);
  static_assert(row_major_tensor<attn::tensor4_map<float>, 4>);
  static_assert(row_major_tensor<attn::const_tensor4_map<float>, 4>);
  static_assert(row_major_tensor<attn::lse_tensor, 3>);
  static_assert(!row_major_tensor<Eigen::Tensor<float, 4>, 4>, "column-major is not accepted");
  static_assert(!row_major_tensor<Eigen::Tensor<float, 3, Eigen::RowMajor>, 4>);
  SUCCEED();
}

TEST(TensorViews, MapOverUserMemoryIsReadInPlace) {
  std::vector<float> memory(2 * 3 * 4 * 5);
  for (std::size_t i = 0; i < memory.size(); ++i) memory[i] = static_cast<float>(i);

  attn::tensor4_map<float> map(memory.data(), 2, 3, 4, 5);
  const auto view = attn::detail::view_of(map);
  static_assert(std::is_same_v<decltype(view), const attn::detail::view4<float>>);
  EXPECT_EQ(view.data, memory.data());
  EXPECT_EQ(view.dims, (std::array<std::ptrdiff_t, 4>{2, 3, 4, 5}));
  EXPECT_EQ(view.strides, (std::array<std::ptrdiff_t, 4>{60, 20, 5, 1}));
  EXPECT_EQ(view.size(), 120);
  EXPECT_EQ(view.row(1, 2, 3), memory.data() + 1 * 60 + 2 * 20 + 3 * 5);
  EXPECT_EQ(*view.row(1, 2, 3), map(1, 2, 3, 0));

  view.row(0, 1, 2)[4] = -1.0f;  // writes land in the caller's memory
  EXPECT_EQ(memory[static_cast<std::size_t>(0 * 60 + 1 * 20 + 2 * 5 + 4)], -1.0f);
}

TEST(TensorViews, ConstMapsGiveReadOnlyViews) {
  const std::vector<float> memory(1 * 2 * 3 * 4, 0.5f);
  attn::const_tensor4_map<float> map(memory.data(), 1, 2, 3, 4);
  const auto view = attn::detail::view_of(map);
  static_assert(std::is_same_v<decltype(view.data), const float*>);
  EXPECT_EQ(view.data, memory.data());
  EXPECT_EQ(view.head_dim(), 4);
  EXPECT_EQ(view.heads(), 3);
  EXPECT_EQ(view.seq(), 2);
  EXPECT_EQ(view.batch(), 1);
}

TEST(TensorViews, ShapeChecksWorkOnMapsOfUserMemory) {
  std::vector<float> q(2 * 5 * 8 * 16), k(2 * 7 * 2 * 16), v(2 * 7 * 2 * 24), o(2 * 5 * 8 * 24);
  attn::const_tensor4_map<float> qm(q.data(), 2, 5, 8, 16), km(k.data(), 2, 7, 2, 16),
      vm(v.data(), 2, 7, 2, 24);
  attn::tensor4_map<float> om(o.data(), 2, 5, 8, 24);
  const auto s = attn::detail::check_qkvo(attn::detail::view_of(qm), attn::detail::view_of(km),
                                          attn::detail::view_of(vm), attn::detail::view_of(om));
  EXPECT_EQ(s.group(), 4);
  EXPECT_EQ(s.head_dim_v, 24);

  attn::tensor4_map<float> bad(o.data(), 2, 5, 8, 16);
  EXPECT_THROW(attn::detail::check_qkvo(attn::detail::view_of(qm), attn::detail::view_of(km),
                                        attn::detail::view_of(vm), attn::detail::view_of(bad)),
               attn::error);
}

TEST(TensorViews, MutableMapsWorkAsInputs) {
  // Maps of mutable user memory are what most callers hold; they must be accepted as q, k, v.
  std::vector<float> q(1 * 9 * 4 * 8, 0.5f), k(1 * 9 * 2 * 8, 0.25f), v(1 * 9 * 2 * 8, 1.0f),
      o(1 * 9 * 4 * 8, 0.0f);
  attn::tensor4_map<float> qm(q.data(), 1, 9, 4, 8), km(k.data(), 1, 9, 2, 8),
      vm(v.data(), 1, 9, 2, 8), om(o.data(), 1, 9, 4, 8);
  attn::attention(qm, km, vm, om, attn::softmax{}, attn::causal{});
  for (float x : o) EXPECT_FLOAT_EQ(x, 1.0f);  // every value is 1: so is every average
}

}  // namespace tensor_test
