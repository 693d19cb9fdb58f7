// Property family "decode": split-KV decoding (≤ 16 queries per head, any kv_splits) equals the
// prefill loop on the same call and the reference; and attn::attention over a kv_cache (float,
// bfloat16, half, q8_0; contiguous, ring with sink tokens, paged; appended in random chunks)
// equals the reference over the rows the cache holds, decoded to float.
#include <attn/cache/attention.hpp>
#include <attn/reference/reference.hpp>

#include "property/problem.hpp"
#include "support/cache_rows.hpp"

namespace attn::property {
namespace decode_property {

constexpr double tolerance = 3e-5;

tensor slice_seq(const tensor& x, idx t0, idx n) {
  const Eigen::array<idx, 4> off{0, t0, 0, 0};
  const Eigen::array<idx, 4> ext{x.dimension(0), n, x.dimension(2), x.dimension(3)};
  return x.slice(off, ext);
}

template <class Score, class Pattern>
void split_equals_prefill(draw& d, const case_context& ctx, const std::string& text,
                          const tensor& q, const tensor& k, const tensor& v, const Score& score,
                          const Pattern& pattern, options opt) {
  opt.kv_splits = static_cast<int>(d.uniform(0, 17));
  ATTN_PROPERTY_TRACE(ctx, text + " kv_splits=" + std::to_string(opt.kv_splits));
  tensor split(q.dimension(0), q.dimension(1), q.dimension(2), v.dimension(3));
  tensor prefill_out = split;
  split.setConstant(std::numeric_limits<float>::quiet_NaN());
  prefill_out.setConstant(std::numeric_limits<float>::quiet_NaN());
  opt.path = kernel_path::split_kv;
  attention<arch>(q, k, v, split, score, pattern, opt);
  opt.path = kernel_path::prefill;
  attention<arch>(q, k, v, prefill_out, score, pattern, opt);
  ATTN_EXPECT_CLOSE(split, prefill_out, 1e-5);
  ATTN_EXPECT_CLOSE(split, reference::attention(q, k, v, score, pattern, opt).out, tolerance);
}

template <class T>
void cache_matches_reference(draw& d, const case_context& ctx, const tensor& q, const tensor& k,
                             const tensor& v, const options& opt, const char* type) {
  const idx B = k.dimension(0), N = k.dimension(1);
  kv_cache_config cfg{.batch = B,
                      .capacity = N,
                      .heads = k.dimension(2),
                      .head_dim = k.dimension(3),
                      .head_dim_v = v.dimension(3)};
  const int layout = static_cast<int>(d.uniform(0, 2));
  std::ostringstream t;
  if (layout == 1) {
    cfg.layout = cache_layout::ring;
    cfg.capacity = d.uniform(1, std::max<idx>(N, 1));
    cfg.sink_tokens = d.uniform(0, cfg.capacity - 1);
    t << " ring(capacity=" << cfg.capacity << ", sinks=" << cfg.sink_tokens << ")";
  } else if (layout == 2) {
    cfg.layout = cache_layout::paged;
    cfg.page_size = d.pick<idx>({1, 3, 4, 16});
    cfg.capacity = std::max<idx>(N + d.uniform(0, 9), 1);
    t << " paged(page=" << cfg.page_size << ", capacity=" << cfg.capacity << ")";
  } else {
    cfg.capacity = std::max<idx>(N + d.uniform(0, 9), 1);
    t << " contiguous(capacity=" << cfg.capacity << ")";
  }
  kv_cache<T> cache(cfg);
  t << " chunks=";
  for (idx t0 = 0; t0 < N;) {
    const idx n = std::min(N - t0, d.pick<idx>({1, 2, 5, 16, 64}));
    cache.append(slice_seq(k, t0, n), slice_seq(v, t0, n));
    t << n << ",";
    t0 += n;
  }
  ATTN_PROPERTY_TRACE(ctx, std::string("kv_cache<") + type + "> " + shape_text(q, k, v) + t.str() +
                               " threads=" + std::to_string(opt.threads));
  const bool causal_pattern = d.chance(0.5);
  tensor out(q.dimension(0), q.dimension(1), q.dimension(2), v.dimension(3));
  out.setConstant(std::numeric_limits<float>::quiet_NaN());
  const auto [hk, hv] = test::held_rows(cache);
  options ref_opt = opt;
  ref_opt.key_lengths = cache.lengths();
  if (causal_pattern) {
    attention<arch>(q, cache, out, softmax{}, causal{}, opt);
    ATTN_EXPECT_CLOSE(out, reference::attention(q, hk, hv, softmax{}, causal{}, ref_opt).out,
                      tolerance);
  } else {
    attention<arch>(q, cache, out, softmax{}, dense{}, opt);
    ATTN_EXPECT_CLOSE(out, reference::attention(q, hk, hv, softmax{}, dense{}, ref_opt).out,
                      tolerance);
  }
}

void run_case(const case_context& ctx) {
  draw d(ctx.seed());
  const idx B = d.pick<idx>({1, 1, 2, 3});
  const idx nq = d.uniform(1, 16), nk = d.length(200);
  const auto [hq, hkv] = d.heads();
  const idx D = d.head_dim(), Dv = d.chance(0.7) ? D : d.head_dim();
  const tensor q = test::random_tensor(d.rng(), B, nq, hq, D);
  const tensor k = test::random_tensor(d.rng(), B, nk, hkv, D);
  const tensor v = test::random_tensor(d.rng(), B, nk, hkv, Dv);
  options opt;
  opt.threads = d.threads();
  const std::string text =
      shape_text(q, k, v) + " threads=" + std::to_string(opt.threads) + " split_kv vs prefill";

  std::vector<float> sinks;
  const int kind = static_cast<int>(d.uniform(0, 5));
  if (kind == 0) {
    split_equals_prefill(d, ctx, text + " softmax dense", q, k, v, softmax{}, dense{}, opt);
  } else if (kind == 1) {
    softmax s{.softcap = static_cast<float>(d.real(2.0, 30.0))};
    for (idx h = 0; h < hq; ++h) sinks.push_back(static_cast<float>(d.real(-2.0, 2.0)));
    s.sinks = sinks;
    split_equals_prefill(d, ctx, text + " softmax softcap+sinks causal", q, k, v, s, causal{}, opt);
  } else if (kind == 2) {
    const window w{.left = d.uniform(0, 50), .right = 0, .sink_keys = d.uniform(0, 4)};
    split_equals_prefill(d, ctx, text + " softmax window", q, k, v, softmax{}, w, opt);
  } else if (kind == 3) {
    split_equals_prefill(d, ctx, text + " sigmoid causal", q, k, v, sigmoid{}, causal{}, opt);
  } else {
    switch (d.uniform(0, 3)) {
      case 0:
        cache_matches_reference<float>(d, ctx, q, k, v, opt, "float");
        break;
      case 1:
        cache_matches_reference<Eigen::bfloat16>(d, ctx, q, k, v, opt, "bfloat16");
        break;
      case 2:
        cache_matches_reference<Eigen::half>(d, ctx, q, k, v, opt, "half");
        break;
      default:
        cache_matches_reference<q8_0>(d, ctx, q, k, v, opt, "q8_0");
        break;
    }
  }
}

}  // namespace decode_property
}  // namespace attn::property

ATTN_PROPERTY_FAMILY(decode, attn::property::decode_property::run_case, 3000, 300);
