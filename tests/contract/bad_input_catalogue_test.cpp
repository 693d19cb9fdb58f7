// The catalogue of bad input: one table, one row per kind of mistake a caller can make, across
// every family. Each row calls the public API on an otherwise valid problem; the test asserts
// an attn::error whose message names the tensor or parameter and the dimension or value at
// fault, and that no byte of any caller buffer (q, k, v, out, lse) changed — outputs are
// sentinel-filled first and compared with memcmp after. The per-family contract tests go
// deeper into each message; this table is the census ("how many kinds are rejected").
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attn/attn.hpp>

#include "support/bad_input.hpp"

namespace bad_input_catalogue_test {

using attn::idx;
using attn::test::bad_input::B;
using attn::test::bad_input::D;
using attn::test::bad_input::DV;
using attn::test::bad_input::expect_error;
using attn::test::bad_input::filled;
using attn::test::bad_input::HKV;
using attn::test::bad_input::HQ;
using attn::test::bad_input::NK;
using attn::test::bad_input::NQ;
using attn::test::bad_input::tensor;

/// The buffers of one call: the valid problem of support/bad_input.hpp (B = 2, Nq = 5, Nk = 7,
/// Hq = 4, Hkv = 2, D = 8, Dv = 6), out and lse filled with a byte pattern.
struct buffers {
  tensor q = filled(B, NQ, HQ, D, 0.5f);
  tensor k = filled(B, NK, HKV, D, 0.25f);
  tensor v = filled(B, NK, HKV, DV, 1.0f);
  tensor out = filled(B, NQ, HQ, DV, 0.0f);
  attn::lse_tensor lse = attn::lse_tensor(B, HQ, NQ);
  buffers() {
    std::memset(out.data(), 0xA5, static_cast<std::size_t>(out.size()) * sizeof(float));
    std::memset(lse.data(), 0x5A, static_cast<std::size_t>(lse.size()) * sizeof(float));
  }
  attn::options with_lse() {
    attn::options o;
    o.lse = attn::lse_map(lse.data(), lse.dimensions());
    return o;
  }
  std::vector<char> bytes() const {
    std::vector<char> all;
    for (const tensor* t : {&q, &k, &v, &out})
      all.insert(all.end(), reinterpret_cast<const char*>(t->data()),
                 reinterpret_cast<const char*>(t->data() + t->size()));
    all.insert(all.end(), reinterpret_cast<const char*>(lse.data()),
               reinterpret_cast<const char*>(lse.data() + lse.size()));
    return all;
  }
};

struct kind {
  const char* name;
  std::vector<std::string> tokens;  ///< what the message must name
  std::function<void(buffers&)> call;
};

tensor sized(idx b, idx s, idx h, idx d) { return filled(b, s, h, d, 0.5f); }

/// Grid tensors [B, X, Y, heads, dim] for the rank-5 neighborhood entry.
using grid5 = Eigen::Tensor<float, 5, Eigen::RowMajor>;
grid5 grid(idx b, idx x, idx y, idx h, idx d) {
  grid5 g(b, x, y, h, d);
  g.setConstant(0.5f);
  return g;
}

const std::vector<kind>& catalogue() {
  using attn::attention;
  static const std::vector<kind> kinds = {
      // ---- the tensor contract: each dimension of each tensor --------------------------------
      {"k batch",
       {"k.dim(0)=3", "q.dim(0)=2", "batch"},
       [](buffers& x) { attention(x.q, sized(3, NK, HKV, D), x.v, x.out); }},
      {"v batch",
       {"v.dim(0)=1", "batch"},
       [](buffers& x) { attention(x.q, x.k, sized(1, NK, HKV, DV), x.out); }},
      {"v sequence",
       {"v.dim(1)=6", "k.dim(1)=7", "sequence"},
       [](buffers& x) { attention(x.q, x.k, sized(B, 6, HKV, DV), x.out); }},
      {"v heads",
       {"v.dim(2)=1", "k.dim(2)=2", "heads"},
       [](buffers& x) { attention(x.q, x.k, sized(B, NK, 1, DV), x.out); }},
      {"k head_dim",
       {"k.dim(3)=9", "q.dim(3)=8", "head_dim"},
       [](buffers& x) { attention(x.q, sized(B, NK, HKV, 9), sized(B, NK, HKV, DV), x.out); }},
      {"heads not dividing",
       {"k.dim(2)=3", "q.dim(2)=4", "heads"},
       [](buffers& x) { attention(x.q, sized(B, NK, 3, D), sized(B, NK, 3, DV), x.out); }},
      {"zero kv heads",
       {"k.dim(2)=0", "q.dim(2)=4", "heads"},
       [](buffers& x) { attention(x.q, sized(B, NK, 0, D), sized(B, NK, 0, DV), x.out); }},
      {"zero head_dim",
       {"q.dim(3)=0", "head_dim"},
       [](buffers& x) { attention(sized(B, NQ, HQ, 0), sized(B, NK, HKV, 0), x.v, x.out); }},
      {"out batch",
       {"out.dim(0)=1", "q.dim(0)=2", "batch"},
       [](buffers& x) {
         tensor o = sized(1, NQ, HQ, DV);
         attention(x.q, x.k, x.v, o);
       }},
      {"out sequence",
       {"out.dim(1)=4", "q.dim(1)=5", "sequence"},
       [](buffers& x) {
         tensor o = sized(B, 4, HQ, DV);
         attention(x.q, x.k, x.v, o);
       }},
      {"out heads",
       {"out.dim(2)=2", "q.dim(2)=4", "heads"},
       [](buffers& x) {
         tensor o = sized(B, NQ, 2, DV);
         attention(x.q, x.k, x.v, o);
       }},
      {"out head_dim",
       {"out.dim(3)=8", "v.dim(3)=6", "head_dim"},
       [](buffers& x) {
         tensor o = sized(B, NQ, HQ, D);
         attention(x.q, x.k, x.v, o);
       }},
      // ---- out aliasing an input -------------------------------------------------------------
      {"out aliases q",
       {"out", "q", "overlaps"},
       [](buffers& x) {
         // q as [B, Nq, Hq, D] with D = Dv: the output written over q's own memory.
         attention(x.q, x.k, sized(B, NK, HKV, D),
                   attn::tensor4_map<float>(x.q.data(), B, NQ, HQ, D));
       }},
      {"out overlaps k partly",
       {"out", "k", "overlaps"},
       [](buffers& x) {
         // k holds B·Nk·Hkv·D = 224 floats, out needs 240: out starts inside k's last rows.
         std::vector<float> shared(static_cast<std::size_t>(x.k.size() + x.out.size()), 0.25f);
         const attn::const_tensor4_map<float> k(shared.data(), B, NK, HKV, D);
         attention(x.q, k, x.v, attn::tensor4_map<float>(shared.data() + 100, B, NQ, HQ, DV));
       }},
      {"out aliases v",
       {"out", "v", "overlaps"},
       [](buffers& x) {
         tensor v = sized(B, NQ * 2, HKV * 2, DV);  // 240 floats: exactly out's size
         attention(x.q, sized(B, NQ * 2, HKV, D),
                   attn::const_tensor4_map<float>(v.data(), B, NQ * 2, HKV, DV),
                   attn::tensor4_map<float>(v.data(), B, NQ, HQ, DV));
       }},
      {"linear out aliases q",
       {"out", "q", "overlaps"},
       [](buffers& x) {
         tensor q = sized(B, NK, HQ, DV);
         attn::linear_attention(attn::const_tensor4_map<float>(q.data(), B, NK, HQ, DV),
                                sized(B, NK, HKV, DV), sized(B, NK, HKV, DV),
                                attn::tensor4_map<float>(q.data(), B, NK, HQ, DV));
         (void)x;
       }},
      // ---- options -------------------------------------------------------------------------
      {"negative threads",
       {"options.threads=-1"},
       [](buffers& x) {
         attn::options o;
         o.threads = -1;
         attention(x.q, x.k, x.v, x.out, attn::softmax{}, attn::dense{}, o);
       }},
      {"bad kv_splits",
       {"options.kv_splits=-2"},
       [](buffers& x) {
         attn::options o;
         o.kv_splits = -2;
         attention(x.q, x.k, x.v, x.out, attn::softmax{}, attn::dense{}, o);
       }},
      {"scale not finite",
       {"options.scale"},
       [](buffers& x) {
         attn::options o;
         o.scale = std::numeric_limits<float>::infinity();
         attention(x.q, x.k, x.v, x.out, attn::softmax{}, attn::dense{}, o);
       }},
      {"key_lengths size",
       {"options.key_lengths.size()=1", "q.dim(0)=2", "batch"},
       [](buffers& x) {
         static const std::int32_t lengths[] = {3};
         attn::options o;
         o.key_lengths = lengths;
         attention(x.q, x.k, x.v, x.out, attn::softmax{}, attn::dense{}, o);
       }},
      {"key_lengths out of range",
       {"options.key_lengths[1]=8", "k.dim(1)", "7"},
       [](buffers& x) {
         static const std::int32_t lengths[] = {3, 8};
         attn::options o;
         o.key_lengths = lengths;
         attention(x.q, x.k, x.v, x.out, attn::softmax{}, attn::dense{}, o);
       }},
      {"query_lengths negative",
       {"options.query_lengths[0]=-1", "q.dim(1)"},
       [](buffers& x) {
         static const std::int32_t lengths[] = {-1, 2};
         attn::options o;
         o.query_lengths = lengths;
         attention(x.q, x.k, x.v, x.out, attn::softmax{}, attn::dense{}, o);
       }},
      {"lse shape",
       {"lse.dim(2)=4", "seq_q"},
       [](buffers& x) {
         attn::lse_tensor lse(B, HQ, NQ - 1);
         attn::options o;
         o.lse = attn::lse_map(lse.data(), lse.dimensions());
         attention(x.q, x.k, x.v, x.out, attn::softmax{}, attn::dense{}, o);
       }},
      {"lse with sigmoid",
       {"options.lse"},
       [](buffers& x) {
         attention(x.q, x.k, x.v, x.out, attn::sigmoid{}, attn::dense{}, x.with_lse());
       }},
      // ---- score parameters ----------------------------------------------------------------
      {"softcap negative",
       {"softmax.softcap=-1"},
       [](buffers& x) { attention(x.q, x.k, x.v, x.out, attn::softmax{.softcap = -1.0f}); }},
      {"sinks size",
       {"softmax.sinks.size()=3", "q.dim(2)=4", "heads"},
       [](buffers& x) {
         static const float sinks[] = {0.0f, 1.0f, 2.0f};
         attention(x.q, x.k, x.v, x.out, attn::softmax{.sinks = sinks});
       }},
      {"sigmoid bias and head_bias",
       {"sigmoid.bias=", "sigmoid.head_bias"},
       [](buffers& x) {
         static const float beta[] = {0.0f, 0.0f, 0.0f, 0.0f};
         attention(x.q, x.k, x.v, x.out, attn::sigmoid{.bias = 1.0f, .head_bias = beta});
       }},
      // ---- patterns ------------------------------------------------------------------------
      {"mask of the wrong shape",
       {"mask.dim(3)=6", "seq_k"},
       [](buffers& x) {
         attn::bool_tensor4 m(1, 1, NQ, NK - 1);
         m.setConstant(true);
         attention(x.q, x.k, x.v, x.out, attn::softmax{}, attn::mask{m});
       }},
      {"bias of the wrong shape",
       {"bias.dim(1)=3", "heads"},
       [](buffers& x) {
         tensor b = sized(1, 3, NQ, NK);
         attention(x.q, x.k, x.v, x.out, attn::softmax{}, attn::bias{b});
       }},
      {"alibi slopes size",
       {"alibi.slopes.size()=2", "q.dim(2)=4", "heads"},
       [](buffers& x) {
         static const float slopes[] = {0.5f, 0.25f};
         attention(x.q, x.k, x.v, x.out, attn::softmax{}, [] {
           attn::alibi a;
           a.slopes = slopes;
           return a;
         }());
       }},
      {"layout for another length",
       {"block_layout", "seq_q=32", "q.dim(1)=5"},
       [](buffers& x) {
         attention(x.q, x.k, x.v, x.out, attn::softmax{}, attn::dense_layout(32, NK, 16));
       }},
      {"layout block size", {"block=20"}, [](buffers&) { (void)attn::causal_layout(64, 20); }},
      {"layout column out of range",
       {"columns[0]=5"},
       [](buffers&) {
         (void)attn::block_layout(16, 32, 32, 1, std::vector<idx>{0, 1, 1}, std::vector<idx>{5});
       }},
      {"window_layout negative",
       {"window_layout", "left=-1"},
       [](buffers&) { (void)attn::window_layout(64, 16, -1, 0); }},
      {"longformer global out of range",
       {"global_tokens[0]=64"},
       [](buffers&) {
         static const idx globals[] = {64};
         (void)attn::longformer_layout(64, 16, {.window = 2, .global_tokens = globals});
       }},
      {"fixed_layout summary",
       {"fixed_layout", "summary=0"},
       [](buffers&) { (void)attn::fixed_layout(64, 16, {.chunk = 16, .summary = 0}); }},
      // ---- neighborhood ------------------------------------------------------------------------
      {"neighborhood kernel 1",
       {"neighborhood.kernel[1]=1"},
       [](buffers&) {
         const grid5 q = grid(1, 6, 6, 2, 8);
         grid5 o = grid(1, 6, 6, 2, 8);
         attention(q, q, q, o, attn::softmax{}, attn::neighborhood<2>{.kernel = {3, 1}});
       }},
      {"neighborhood kernel times dilation",
       {"neighborhood.kernel[0]=4", "dilation"},
       [](buffers&) {
         const grid5 q = grid(1, 6, 6, 2, 8);
         grid5 o = grid(1, 6, 6, 2, 8);
         attention(q, q, q, o, attn::softmax{},
                   attn::neighborhood<2>{.kernel = {4, 3}, .dilation = {2, 1}});
       }},
      {"neighborhood stride",
       {"neighborhood.stride[0]=4", "kernel"},
       [](buffers&) {
         const grid5 q = grid(1, 6, 6, 2, 8);
         grid5 o = grid(1, 6, 6, 2, 8);
         attention(q, q, q, o, attn::softmax{},
                   attn::neighborhood<2>{.kernel = {3, 3}, .stride = {4, 1}});
       }},
      {"neighborhood grid extents",
       {"k.dim(2)=5", "q.dim(2)=6"},
       [](buffers&) {
         const grid5 q = grid(1, 6, 6, 2, 8), k = grid(1, 6, 5, 2, 8);
         grid5 o = grid(1, 6, 6, 2, 8);
         attention(q, k, k, o, attn::softmax{}, attn::neighborhood<2>{.kernel = {3, 3}});
       }},
      {"neighborhood rank",
       {"extent[0]=0", "rank-5"},
       [](buffers& x) {
         // A 2-d pattern through the rank-4 entry: no grid to take its extents from.
         tensor q = sized(1, 36, 2, 8), o = sized(1, 36, 2, 8);
         attention(q, q, q, o, attn::softmax{}, attn::neighborhood<2>{.kernel = {3, 3}});
         (void)x;
       }},
      // ---- linear attention ------------------------------------------------------------------
      {"linear chunk",
       {"linear::options.chunk=0"},
       [](buffers& x) {
         tensor o = sized(B, NK, HQ, DV);
         attn::linear_attention(sized(B, NK, HQ, D), x.k, x.v, o, attn::linear::elu1{},
                                attn::causal{}, {.chunk = 0});
       }},
      {"linear decay out of range",
       {"linear::options.decay[1]=1.5"},
       [](buffers& x) {
         static const float decay[] = {0.9f, 1.5f, 0.9f, 0.9f};
         tensor o = sized(B, NK, HQ, DV);
         attn::linear_attention(sized(B, NK, HQ, D), x.k, x.v, o, attn::linear::elu1{},
                                attn::causal{}, {.decay = decay});
       }},
      {"linear decay size",
       {"linear::options.decay.size()=2", "q.dim(2)=4"},
       [](buffers& x) {
         static const float decay[] = {0.9f, 0.9f};
         tensor o = sized(B, NK, HQ, DV);
         attn::linear_attention(sized(B, NK, HQ, D), x.k, x.v, o, attn::linear::elu1{},
                                attn::causal{}, {.decay = decay});
       }},
      {"linear causal lengths",
       {"k.dim(1)=7", "q.dim(1)=5", "sequence"},
       [](buffers& x) {
         attn::linear_attention(x.q, x.k, x.v, x.out, attn::linear::elu1{}, attn::causal{});
       }},
      {"linear state shape",
       {"state.kv.dim(2)=9", "q.dim(3)=8", "head_dim"},
       [](buffers& x) {
         attn::linear::state st(B, HQ, 9, DV);
         tensor o = sized(B, NK, HQ, DV);
         attn::linear_attention_step(sized(B, NK, HQ, D), x.k, x.v, o, attn::linear::elu1{}, st);
       }},
      // ---- routing ----------------------------------------------------------------------------
      {"moba block",
       {"moba", "block=0"},
       [](buffers& x) { (void)attn::moba{.block = 0, .top_k = 1}.route(x.q, x.k); }},
      {"moba top_k",
       {"moba", "top_k=9"},
       [](buffers& x) { (void)attn::moba{.block = 2, .top_k = 9}.route(x.q, x.k); }},
      {"sparge tau",
       {"sparge", "tau=0"},
       [](buffers& x) { (void)attn::sparge{.tau = 0.0f}.route(x.q, x.k); }},
      {"selection for another problem",
       {"block_selection", "seq_q=3", "q.dim(1)=5"},
       [](buffers& x) {
         const auto sel = attn::moba{.block = 2, .top_k = 1}.route(sized(B, 3, HQ, D), x.k);
         attn::selection_attention(x.q, x.k, x.v, x.out, attn::softmax{}, sel);
       }},
      // ---- the KV cache ------------------------------------------------------------------------
      {"cache capacity",
       {"kv_cache_config.capacity=0"},
       [](buffers&) {
         (void)attn::kv_cache<float>({.batch = 1, .capacity = 0, .heads = 1, .head_dim = 8});
       }},
      {"cache ring sinks",
       {"kv_cache_config.sink_tokens=4"},
       [](buffers&) {
         (void)attn::kv_cache<float>({.batch = 1,
                                      .capacity = 4,
                                      .heads = 1,
                                      .head_dim = 8,
                                      .layout = attn::cache_layout::ring,
                                      .sink_tokens = 4});
       }},
      {"cache overflow",
       {"append", "capacity", "9"},
       [](buffers& x) {
         attn::kv_cache<float> c(
             {.batch = B, .capacity = 9, .heads = HKV, .head_dim = D, .head_dim_v = DV});
         c.append(x.k, x.v);
         c.append(x.k, x.v);  // 14 tokens into 9
       }},
      {"cache append heads",
       {"k.dim(2)=4", "heads=2"},
       [](buffers& x) {
         attn::kv_cache<float> c(
             {.batch = B, .capacity = 9, .heads = HKV, .head_dim = D, .head_dim_v = DV});
         c.append(sized(B, 1, 4, D), sized(B, 1, 4, DV));
         (void)x;
       }},
      {"cache with key_lengths",
       {"options.key_lengths"},
       [](buffers& x) {
         attn::kv_cache<Eigen::half> c(
             {.batch = B, .capacity = 9, .heads = HKV, .head_dim = D, .head_dim_v = DV});
         c.append(x.k, x.v);
         static const std::int32_t lengths[] = {1, 1};
         attn::options o;
         o.key_lengths = lengths;
         attention(x.q, c, x.out, attn::softmax{}, attn::dense{}, o);
       }},
      {"cache head_dim vs q",
       {"q.dim(3)=8", "head_dim"},
       [](buffers& x) {
         attn::kv_cache<attn::q8_0> c(
             {.batch = B, .capacity = 9, .heads = HKV, .head_dim = 32, .head_dim_v = DV});
         attention(x.q, c, x.out);
       }},
  };
  return kinds;
}

TEST(BadInputCatalogue, EveryKindIsRejectedBeforeAnythingIsWritten) {
  const std::vector<kind>& kinds = catalogue();
  for (const kind& c : kinds) {
    SCOPED_TRACE(c.name);
    buffers x;
    const std::vector<char> before = x.bytes();
    expect_error([&] { c.call(x); }, c.tokens);
    const std::vector<char> after = x.bytes();
    ASSERT_EQ(before.size(), after.size());
    EXPECT_EQ(std::memcmp(before.data(), after.data(), before.size()), 0)
        << "a caller buffer changed before the error";
  }
  std::printf("bad input catalogue: %zu kinds\n", kinds.size());
  EXPECT_GE(kinds.size(), 30u);
}

}  // namespace bad_input_catalogue_test
