// attn::options — the run-time settings of one call that are not a policy: scale, threads,
// per-batch sequence lengths, the optional log-sum-exp output.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "attn/exec/executor.hpp"
#include "attn/tensor.hpp"

namespace attn {

/// Which loop runs a call (kernel/prefill.hpp or kernel/decode.hpp).
enum class kernel_path {
  automatic,  ///< split-KV when q has at most decode_max_queries queries per head, else prefill
  prefill,    ///< the tiled loop with 64-query tiles (compute-bound shapes)
  split_kv    ///< key chunks spread over workers, merged exactly (memory-bound decoding)
};

/// The largest number of queries per head the automatic choice sends to split-KV decoding.
inline constexpr int decode_max_queries = 16;

struct options {
  /// Multiplies q·k before the score function. Default: 1/sqrt(head_dim).
  std::optional<float> scale;

  /// Worker threads. 0 = all hardware threads. Ignored when `executor` is set.
  int threads = 0;

  /// Where the work runs. Empty: OpenMP when attn was built with it, else std::thread.
  /// See attn/exec/executor.hpp for serial, OpenMP and Eigen thread-pool executors.
  exec::executor executor{};

  /// Per-batch key lengths (padding / variable length): batch b sees keys [0, key_lengths[b]).
  /// Empty = every batch uses all keys. Every pattern aligns to these effective lengths (for
  /// example bottom-right causal uses i + key_len - query_len).
  std::span<const std::int32_t> key_lengths{};

  /// Per-batch query lengths: rows at or past query_lengths[b] are written as zeros (LSE −inf).
  std::span<const std::int32_t> query_lengths{};

  /// Optional output: natural-log sum of exp of the (scaled, modified) logits of each row,
  /// shape [batch, heads_q, seq_q]. Rows that see no key get −inf. Only score functions that
  /// normalise (softmax) define it.
  std::optional<lse_map> lse{};

  /// Which loop runs the call; see kernel_path. Results agree to rounding either way.
  kernel_path path = kernel_path::automatic;

  /// Split-KV only: key chunks per (batch, KV head). 0 = chosen from the shape and the threads
  /// so that every worker has work; more chunks cost one exact merge of partial results.
  int kv_splits = 0;
};

}  // namespace attn
