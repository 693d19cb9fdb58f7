// What every router shares: running its per-(batch, head) work on the call's executor, the
// shape checks of its inputs, and the sigmoid bias of routers that run attention on gathered
// token subsets.
//
// Routers parallelise over independent items (usually (batch, head) pairs) and write disjoint
// parts of their result, each item in a fixed order: the selection does not depend on the
// number of threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <type_traits>

#include "attn/attention.hpp"
#include "attn/error.hpp"
#include "attn/exec/executor.hpp"
#include "attn/options.hpp"
#include "attn/score/sigmoid.hpp"
#include "attn/tensor.hpp"

namespace attn::detail {

/// Calls f(item) for item = 0 .. n−1 on the workers options::threads / executor allow. f must
/// not throw: routers check everything before they start.
template <class F>
void parallel_items(const options& opt, idx n, F&& f) {
  const exec::executor ex = opt.executor ? opt.executor : exec::default_executor();
  exec::for_each_item(ex, worker_count(opt, ex), n, f);
}

/// A rank-4 router's q and k, viewed and checked (the shape rules of attention(), without v
/// and out: k stands in for v, q for out).
struct router_inputs {
  view4<const float> q, k;
  problem_shape shape;
};
template <class Q, class K>
router_inputs router_views(const Q& q, const K& k) {
  router_inputs in{view_of(q), view_of(k), {}};
  in.shape = check_qkvo(in.q, in.k, in.k, in.q);
  return in;
}

/// Rejects a count parameter below 1.
inline void require_positive(const char* who, const char* name, idx value) {
  if (value < 1) fail(who, ": ", name, "=", value, " must be >= 1");
}

/// Sigmoid's default bias is −ln(key length) of the problem it sees. Routers that run the
/// kernel on gathered (or padded) key sets pin it to −ln(keys) of the caller's problem, so that
/// every router means the same β as attention() over the whole sequence with a mask would.
template <class Score>
Score with_key_length_bias(const Score& score, idx keys) {
  if constexpr (std::is_same_v<Score, sigmoid>) {
    Score pinned = score;
    if (!pinned.bias && pinned.head_bias.empty() && keys > 0)
      pinned.bias = -std::log(static_cast<float>(keys));
    return pinned;
  } else {
    return score;
  }
}

/// The score of query head h for a call that runs one head as head 0: sigmoid's per-head bias
/// becomes its scalar bias.
template <class Score>
Score score_of_head(const Score& score, idx h) {
  if constexpr (std::is_same_v<Score, sigmoid>) {
    if (score.head_bias.empty()) return score;
    Score one = score;
    one.bias = score.head_bias[static_cast<std::size_t>(h)];
    one.head_bias = {};
    return one;
  } else {
    (void)h;
    return score;
  }
}

/// Rejects per-head score parameters where subsets of every head run as one head.
template <class Score>
void reject_per_head_score(const char* who, const Score& score) {
  if constexpr (requires { score.head_bias; })
    if (!score.head_bias.empty())
      fail(who, ": sigmoid.head_bias (size ", score.head_bias.size(), ") is not supported");
  if constexpr (requires { score.sinks; })
    if (!score.sinks.empty())
      fail(who, ": softmax.sinks (size ", score.sinks.size(), ") is not supported");
}

/// Rejects the options a router that gathers token subsets cannot honour.
inline void reject_gathered_options(const char* who, const options& opt) {
  if (opt.lse) fail(who, ": options.lse is not supported (outputs are combined per token)");
  if (!opt.key_lengths.empty())
    fail(who, ": options.key_lengths is not supported (size ", opt.key_lengths.size(), ")");
  if (!opt.query_lengths.empty())
    fail(who, ": options.query_lengths is not supported (size ", opt.query_lengths.size(), ")");
}

}  // namespace attn::detail
