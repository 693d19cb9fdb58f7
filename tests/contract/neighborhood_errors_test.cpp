// Bad grid-pattern calls (attn/neighborhood.hpp): an attn::error naming the parameter or
// tensor, the dimension and both values, thrown before anything is written — out and lse keep
// their sentinels. The double-precision reference rejects the same patterns.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/neighborhood.hpp>
#include <attn/reference/neighborhood.hpp>

#include "support/bad_input.hpp"

namespace neighborhood_errors_test {

using attn::idx;
using attn::test::bad_input::has_token;
using attn::test::bad_input::lse_sentinel;
using attn::test::bad_input::out_sentinel;
using tensor5 = Eigen::Tensor<float, 5, Eigen::RowMajor>;

/// The valid call: batch 2, a 4 × 5 grid, Hq = 4 over Hkv = 2, D = 8, Dv = 6.
struct grid_call {
  tensor5 q{2, 4, 5, 4, 8}, k{2, 4, 5, 2, 8}, v{2, 4, 5, 2, 6}, out{2, 4, 5, 4, 6};
  attn::lse_tensor lse{2, 4, 20};
  attn::options opt;
  grid_call() {
    q.setConstant(0.5f);
    k.setConstant(0.25f);
    v.setConstant(1.0f);
    out.setConstant(out_sentinel);
    lse.setConstant(lse_sentinel);
    opt.lse = attn::lse_map(lse.data(), lse.dimensions());
  }
};

/// f(call) throws attn::error naming every token and writes nothing.
template <class F>
void expect_rejects(const std::vector<std::string>& tokens, F&& f, grid_call c = {}) {
  try {
    f(c);
    ADD_FAILURE() << "no attn::error thrown";
  } catch (const attn::error& e) {
    const std::string message = e.what();
    for (const std::string& token : tokens)
      EXPECT_TRUE(has_token(message, token)) << "message \"" << message << "\" lacks " << token;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something else than attn::error: " << e.what();
  }
  idx changed = 0;
  for (idx n = 0; n < c.out.size(); ++n) changed += c.out.data()[n] != out_sentinel;
  for (idx n = 0; n < c.lse.size(); ++n) changed += c.lse.data()[n] != lse_sentinel;
  EXPECT_EQ(changed, 0) << "elements of out or lse written before the error";
}

template <class P>
void expect_pattern_rejected(const P& pattern, const std::vector<std::string>& tokens) {
  expect_rejects(tokens, [&](grid_call& c) {
    attn::attention(c.q, c.k, c.v, c.out, attn::softmax{}, pattern, c.opt);
  });
  grid_call c;
  EXPECT_THROW((void)attn::reference::grid_attention(c.q, c.k, c.v, attn::softmax{}, pattern),
               attn::error);
}

TEST(NeighborhoodErrors, TheValidCallRuns) {
  grid_call c;
  attn::attention(c.q, c.k, c.v, c.out, attn::softmax{},
                  attn::neighborhood<2>{.kernel = {2, 5}, .stride = {2, 1}}, c.opt);
  EXPECT_FLOAT_EQ(c.out(1, 3, 4, 3, 5), 1.0f);
}

TEST(NeighborhoodErrors, BadParameters) {
  using nb = attn::neighborhood<2>;
  expect_pattern_rejected(nb{.kernel = {5, 3}}, {"neighborhood.kernel[0]=5", "extent[0]=4"});
  expect_pattern_rejected(nb{.kernel = {2, 3}, .dilation = {1, 2}},
                          {"kernel[1]=3", "dilation[1]=2", "extent[1]=5"});
  expect_pattern_rejected(nb{.kernel = {2, 3}, .stride = {3, 1}},
                          {"neighborhood.stride[0]=3", "kernel[0]=2"});
  expect_pattern_rejected(nb{.kernel = {2, 3}, .stride = {1, 0}}, {"stride[1]=0"});
  expect_pattern_rejected(nb{.kernel = {1, 3}}, {"neighborhood.kernel[0]=1", "2"});
  expect_pattern_rejected(nb{.kernel = {3, 3}, .dilation = {0, 1}}, {"dilation[0]=0"});
  expect_pattern_rejected(attn::blocked_local<2>{.block = {0, 2}}, {"blocked_local.block[0]=0"});
  expect_pattern_rejected(attn::blocked_local<2>{.block = {2, 2}, .halo = {1, -1}},
                          {"blocked_local.halo[1]=-1"});
}

TEST(NeighborhoodErrors, ExtentsOfTheTensors) {
  const attn::neighborhood<2> nb{.kernel = {3, 3}};
  auto run = [&](const tensor5& q, const tensor5& k, const tensor5& v, tensor5& out) {
    attn::attention(q, k, v, out, attn::softmax{}, nb);
  };
  expect_rejects({"k.dim(2)=6", "q.dim(2)=5", "X2"}, [&](grid_call& c) {
    tensor5 k(2, 4, 6, 2, 8);
    run(c.q, k, c.v, c.out);
  });
  expect_rejects({"v.dim(1)=3", "q.dim(1)=4", "X1"}, [&](grid_call& c) {
    tensor5 v(2, 3, 5, 2, 6);
    run(c.q, c.k, v, c.out);
  });
  expect_rejects({"out.dim(2)=4", "q.dim(2)=5", "X2"}, [&](grid_call& c) {
    tensor5 out(2, 4, 4, 4, 6);
    out.setConstant(out_sentinel);
    run(c.q, c.k, c.v, out);
    for (idx n = 0; n < out.size(); ++n) ASSERT_EQ(out.data()[n], out_sentinel);
  });
  expect_rejects({"k.dim(3)=3", "q.dim(3)=4", "heads"}, [&](grid_call& c) {
    tensor5 k(2, 4, 5, 3, 8), v(2, 4, 5, 3, 6);
    run(c.q, k, v, c.out);
  });
  expect_rejects({"k.dim(4)=7", "q.dim(4)=8", "head_dim"}, [&](grid_call& c) {
    tensor5 k(2, 4, 5, 2, 7);
    run(c.q, k, c.v, c.out);
  });
}

TEST(NeighborhoodErrors, RankFourNeedsKnownExtents) {
  using namespace attn::test::bad_input;
  // A 2-D pattern on rank-4 tensors without extents, or extents of another size.
  call<attn::softmax> c;
  c.k = filled(B, NQ, HKV, D, 0.25f);
  c.v = filled(B, NQ, HKV, DV, 1.0f);
  expect_kernel_rejects(c, {"neighborhood.extent[0]=0"}, attn::neighborhood<2>{.kernel = {2, 2}});
  expect_kernel_rejects(c, {"6", "q.dim(1)=5"},
                        attn::neighborhood<2>{.kernel = {2, 2}, .extent = {2, 3}});
  // 1-D on the default call, Nk = 7 ≠ Nq = 5: neighborhood attention is self-attention.
  expect_kernel_rejects(call<attn::softmax>{}, {"k.dim(1)=7", "q.dim(1)=5"},
                        attn::neighborhood<1>{.kernel = {2}});
}

/// Whether attention() accepts rank-5 tensors with pattern P (a template: checked by SFINAE).
template <class P>
constexpr bool accepts_rank5 = requires(const tensor5& t, tensor5& o) {
  attn::attention(t, t, t, o, attn::softmax{}, P{});
};

TEST(NeighborhoodErrors, GridRankMustMatchThePattern) {
  // Rank-5 tensors take a 2-D pattern only: the others do not compile.
  EXPECT_FALSE(accepts_rank5<attn::neighborhood<3>>);
  EXPECT_FALSE(accepts_rank5<attn::neighborhood<1>>);
  EXPECT_TRUE(accepts_rank5<attn::neighborhood<2>>);
  EXPECT_TRUE(accepts_rank5<attn::blocked_local<2>>);
}

TEST(NeighborhoodErrors, AdditionalKeys) {
  const attn::neighborhood<2> nb{.kernel = {3, 3}};
  auto run = [&](grid_call& c, const attn::tensor4<float>& ka, const attn::tensor4<float>& va) {
    attn::attention(c.q, c.k, c.v, c.out, attn::softmax{}, nb, c.opt, attn::additional_kv{ka, va});
  };
  const attn::tensor4<float> ka(2, 3, 2, 8), va(2, 3, 2, 6);
  expect_rejects({"additional_kv.k.dim(2)=1", "k.dim(3)=2", "heads"},
                 [&](grid_call& c) { run(c, attn::tensor4<float>(2, 3, 1, 8), va); });
  expect_rejects({"additional_kv.k.dim(3)=4", "q.dim(4)=8", "head_dim"},
                 [&](grid_call& c) { run(c, attn::tensor4<float>(2, 3, 2, 4), va); });
  expect_rejects({"additional_kv.v.dim(1)=2", "additional_kv.k.dim(1)=3"},
                 [&](grid_call& c) { run(c, ka, attn::tensor4<float>(2, 2, 2, 6)); });
  expect_rejects({"additional_kv.v.dim(0)=1", "q.dim(0)=2", "batch"},
                 [&](grid_call& c) { run(c, ka, attn::tensor4<float>(1, 3, 2, 6)); });
  // The pattern is still checked first-thing, before the window part writes.
  expect_rejects({"kernel[0]=9"}, [&](grid_call& c) {
    attn::attention(c.q, c.k, c.v, c.out, attn::softmax{}, attn::neighborhood<2>{.kernel = {9, 3}},
                    c.opt, attn::additional_kv{ka, va});
  });
}

}  // namespace neighborhood_errors_test
