// Deterministic ranking for routers: a higher score ranks first, equal scores by the lower
// index, NaN last — a strict total order, so top-k sets and orders never depend on the sort
// algorithm, the thread count or the platform's tie handling (torch.topk leaves ties
// unspecified; we fix them).
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "attn/pattern/tile.hpp"

namespace attn::detail {

/// Whether candidate a (score sa) ranks before candidate b (score sb).
template <class T>
bool ranks_before(T sa, idx a, T sb, idx b) {
  const bool nan_a = std::isnan(sa), nan_b = std::isnan(sb);
  if (nan_a != nan_b) return nan_b;
  if (!nan_a && sa != sb) return sa > sb;
  return a < b;
}

/// The k best of score[0, n) (0 ≤ k ≤ n) into out, in increasing index order. O(n) (O(n·k)
/// by insertion for the small k of block gates).
template <class T>
void top_k(const T* score, idx n, idx k, std::vector<idx>& out) {
  if (k <= 8) {
    out.clear();
    for (idx i = 0; i < n && k > 0; ++i) {
      // out holds the best so far, best first; i enters if it beats the last of a full list.
      const idx size = static_cast<idx>(out.size());
      if (size == k && !ranks_before(score[i], i, score[out.back()], out.back())) continue;
      idx at = std::min(size, k - 1);
      if (size < k) out.push_back(i);
      while (at > 0 && ranks_before(score[i], i, score[out[static_cast<std::size_t>(at - 1)]],
                                    out[static_cast<std::size_t>(at - 1)])) {
        out[static_cast<std::size_t>(at)] = out[static_cast<std::size_t>(at - 1)];
        --at;
      }
      out[static_cast<std::size_t>(at)] = i;
    }
    std::sort(out.begin(), out.end());
    return;
  }
  out.resize(static_cast<std::size_t>(n));
  std::iota(out.begin(), out.end(), idx{0});
  auto before = [score](idx a, idx b) { return ranks_before(score[a], a, score[b], b); };
  if (k < n) std::nth_element(out.begin(), out.begin() + k, out.end(), before);
  out.resize(static_cast<std::size_t>(std::max<idx>(k, 0)));
  std::sort(out.begin(), out.end());
}

/// Every index of score[0, n), best first. O(n log n).
template <class T>
void rank_all(const T* score, idx n, std::vector<idx>& out) {
  out.resize(static_cast<std::size_t>(n));
  std::iota(out.begin(), out.end(), idx{0});
  std::sort(out.begin(), out.end(),
            [score](idx a, idx b) { return ranks_before(score[a], a, score[b], b); });
}

}  // namespace attn::detail
