// attn::linear::options — the run-time settings of one linear-attention call — and the
// published per-head decays.
//
// With decay γ_h (per query head, 0 < γ ≤ 1) the state of the causal and recurrent forms is
//   S_t = γ·S_{t−1} + φ(k_t)·v_tᵀ,   z_t = γ·z_{t−1} + φ(k_t)      (decay before the new term)
//   o_t = scale·φ(q_t)ᵀS_t / (scale·φ(q_t)·z_t + ε)   or, unnormalised, scale·φ(q_t)ᵀS_t
// i.e. o_i = Σ_{j≤i} γ^{i−j}·scale·(φ(q_i)·φ(k_j))·v_j / (Σ_{j≤i} γ^{i−j}·scale·φ(q_i)·φ(k_j) + ε):
// RetNet's retention (Sun et al. 2023, eq. 5–6), Lightning Attention-2's λ (Qin et al. 2024) and
// fla's simple GLA with a constant gate; γ = 1 is plain causal linear attention. The decay is
// defined by that causal recurrence: the non-causal form (attn::dense) rejects it.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "attn/exec/executor.hpp"
#include "attn/pattern/alibi.hpp"

namespace attn::linear {

struct options {
  /// Divide by the normaliser scale·φ(q)·z + ε (Katharopoulos et al. 2020, eq. 6), or not
  /// (RetNet, fla's linear attention: a normalisation layer after the attention instead).
  bool normalise = true;

  /// Per-query-head decay γ_h ∈ (0, 1]; empty = no decay (γ = 1). Causal forms only.
  /// See retnet_decay() and lightning_decay().
  std::span<const float> decay{};

  /// Multiplies φ(q) (so both the output and the normaliser). Default 1; fla uses head_dim^−½.
  float scale = 1.0f;

  /// ε of the normaliser: o = num / (den + ε).
  float epsilon = 1e-6f;

  /// Chunk length C of the causal chunked form: O(N·C·D) intra-chunk work, N/C state updates.
  /// 32 measured fastest on AVX-512 (Zen 4) for head_dim 64 and 128 — 10–15 % ahead of fla's
  /// GPU default of 64, whose larger masked intra-chunk products cost more than they save.
  std::ptrdiff_t chunk = 32;

  /// Worker threads. 0 = all hardware threads. Ignored when `executor` is set.
  int threads = 0;

  /// Where the work runs; as attn::options::executor.
  exec::executor executor{};
};

/// RetNet's decays (Sun et al. 2023, "Retentive Network", §2.2 / §3.1): γ_h = 1 − 2^(−5−h) for
/// h = 0 .. heads−1.
inline std::vector<float> retnet_decay(std::ptrdiff_t heads) {
  std::vector<float> g;
  for (std::ptrdiff_t h = 0; h < heads; ++h)
    g.push_back(static_cast<float>(1.0 - std::exp2(-5.0 - static_cast<double>(h))));
  return g;
}

/// Lightning Attention's decays (Qin et al. 2024, "Lightning Attention-2"; TransNormerLLM):
/// γ_h = exp(−slope_h) with the ALiBi slopes of `heads` heads (attn::alibi_slopes). With
/// `layers` > 1, the slope of layer `layer` (0-based) is scaled by 1 − layer/(layers−1) + 1e-5,
/// as TransNormerLLM and MiniMax-01 do (later layers decay less).
inline std::vector<float> lightning_decay(std::ptrdiff_t heads, std::ptrdiff_t layer = 0,
                                          std::ptrdiff_t layers = 1) {
  const double layer_factor =
      layers > 1 ? 1.0 - static_cast<double>(layer) / static_cast<double>(layers - 1) + 1e-5 : 1.0;
  std::vector<float> g;
  for (const float slope : alibi_slopes(heads))
    g.push_back(static_cast<float>(std::exp(-static_cast<double>(slope) * layer_factor)));
  return g;
}

}  // namespace attn::linear
