// The non-attention parts of a transformer block, written plainly over Eigen, for the examples
// that compose attn's kernels into real blocks (examples/vision, examples/long_context).
//
// Activations are row-major [tokens, channels] float buffers: a map [B, H, W, C] or [B, N, C]
// is the same memory seen as B·H·W (or B·N) rows of C floats, so every token-wise layer
// (LayerNorm, Linear, GELU, the MLP) is one Eigen matrix expression over all tokens, and
// attn's rank-4/5 tensors are TensorMaps over the very same buffers (no copies).
//
//   linear       y = x·W + b (W stored [in, out], so the product is one row-major GEMM)
//   layer_norm   per token (x − mean)/√(var + ε)·γ + β (Ba et al. 2016), ε = 1e-5 (PyTorch)
//   gelu         x·Φ(x) with erf (Hendrycks & Gimpel 2016; nn.GELU's default, not tanh)
//   mlp          fc2(gelu(fc1(x))), hidden = ratio·C (Vaswani et al. 2017, §3.3)
//   block<A>     the pre-norm transformer block (Xiong et al. 2020, "On Layer Normalization in
//                the Transformer Architecture"; ViT, NAT, DiNAT, BiFormer and most encoders):
//                  x ← x + proj(A(q, k, v)),  q, k, v = LN₁(x)·W_q, ·W_k, ·W_v
//                  x ← x + MLP(LN₂(x))
//                with the attention A a policy type that owns its geometry and parameters
//   stage_timer  time per stage of a forward; median_seconds: median of repeated runs
//
// Weights are random (the examples measure speed and check the attention against attn's
// reference; they load no checkpoint): PyTorch's default nn.Linear initialisation,
// U(−1/√in, 1/√in), so activations keep a sane scale through a few layers.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>

namespace examples {

using index = Eigen::Index;
using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using row_vector = Eigen::Matrix<float, 1, Eigen::Dynamic>;
using matrix_map = Eigen::Map<matrix>;
using const_matrix_map = Eigen::Map<const matrix>;

/// Uniform values in [−bound, bound].
inline void fill_uniform(std::mt19937& rng, float* data, index n, float bound) {
  std::uniform_real_distribution<float> dist(-bound, bound);
  for (index i = 0; i < n; ++i) data[i] = dist(rng);
}

/// A fully connected layer: y[t, :] = x[t, :]·W + b, W [in, out].
struct linear {
  matrix weight;    // [in, out]
  row_vector bias;  // [out]

  linear() = default;
  linear(std::mt19937& rng, index in, index out) : weight(in, out), bias(out) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(in));
    fill_uniform(rng, weight.data(), weight.size(), bound);
    fill_uniform(rng, bias.data(), bias.size(), bound);
  }
  index in() const { return weight.rows(); }
  index out() const { return weight.cols(); }

  /// y = x·W + b over `rows` tokens; x [rows, in], y [rows, out] (distinct buffers).
  void forward(const float* x, index rows, float* y) const {
    const const_matrix_map xm(x, rows, in());
    matrix_map ym(y, rows, out());
    ym.noalias() = xm * weight;
    ym.rowwise() += bias;
  }
};

/// LayerNorm over the last dimension with learnable γ, β (initialised 1 and 0, as PyTorch).
struct layer_norm {
  row_vector gamma, beta;
  float eps = 1e-5f;

  layer_norm() = default;
  explicit layer_norm(index channels, float epsilon = 1e-5f)
      : gamma(row_vector::Ones(channels)), beta(row_vector::Zero(channels)), eps(epsilon) {}

  /// y = LN(x) over `rows` tokens of gamma.size() channels; y may alias x.
  void forward(const float* x, index rows, float* y) const {
    const index c = gamma.size();
    const const_matrix_map xm(x, rows, c);
    matrix_map ym(y, rows, c);
    for (index t = 0; t < rows; ++t) {
      const float mean = xm.row(t).mean();
      const float var = (xm.row(t).array() - mean).square().mean();  // biased, as PyTorch
      const float inv = 1.0f / std::sqrt(var + eps);
      ym.row(t) = ((xm.row(t).array() - mean) * inv * gamma.array() + beta.array()).matrix();
    }
  }
};

/// GELU with the Gaussian CDF through erf, in place. Eigen's array erf (SpecialFunctions) is
/// a vectorised rational approximation accurate to a few ulp; std::erf per element would make
/// the activation cost as much as the MLP's two GEMMs.
inline void gelu(float* x, index n) {
  constexpr float inv_sqrt2 = 0.70710678118654752f;
  Eigen::Map<Eigen::ArrayXf> a(x, n);
  a = 0.5f * a * (1.0f + (a * inv_sqrt2).erf());
}

/// The position-wise feed-forward network: fc2(GELU(fc1(x))).
struct mlp {
  linear fc1, fc2;

  mlp() = default;
  mlp(std::mt19937& rng, index channels, index hidden)
      : fc1(rng, channels, hidden), fc2(rng, hidden, channels) {}

  /// y = MLP(x) over `rows` tokens; `hidden` is scratch, resized as needed.
  void forward(const float* x, index rows, float* y, std::vector<float>& hidden) const {
    hidden.resize(static_cast<std::size_t>(rows * fc1.out()));
    fc1.forward(x, rows, hidden.data());
    gelu(hidden.data(), rows * fc1.out());
    fc2.forward(hidden.data(), rows, y);
  }
};

/// x += y over n floats (a residual connection).
inline void add_in_place(float* x, const float* y, index n) {
  Eigen::Map<Eigen::VectorXf>(x, n) += Eigen::Map<const Eigen::VectorXf>(y, n);
}

// ---- timing -------------------------------------------------------------------------------------

using clock_type = std::chrono::steady_clock;

inline double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Median wall time of `runs` calls of f (seconds). The machines are shared: medians, not means.
inline double median_seconds(int runs, const std::function<void()>& f) {
  std::vector<double> t;
  for (int r = 0; r < std::max(runs, 1); ++r) {
    const auto t0 = clock_type::now();
    f();
    t.push_back(seconds_since(t0));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

/// Accumulates the time of labelled stages across calls (per-stage breakdown of a forward).
struct stage_timer {
  std::vector<std::string> names;
  std::vector<double> seconds;

  /// Runs f and adds its wall time to stage `name`.
  template <class F>
  void time(const char* name, F&& f) {
    const auto t0 = clock_type::now();
    f();
    const double s = seconds_since(t0);
    const auto at = std::find(names.begin(), names.end(), name);
    if (at == names.end()) {
      names.emplace_back(name);
      seconds.push_back(s);
    } else {
      seconds[static_cast<std::size_t>(at - names.begin())] += s;
    }
  }
  void clear() {
    names.clear();
    seconds.clear();
  }
  double total() const {
    double s = 0;
    for (double x : seconds) s += x;
    return s;
  }
  /// "name 12.3 ms (45 %), ..." scaled by 1/calls.
  void print(int calls) const {
    const double all = total();
    for (std::size_t i = 0; i < names.size(); ++i)
      std::printf("    %-12s %9.2f ms  (%4.1f %%)\n", names[i].c_str(),
                  1e3 * seconds[i] / std::max(calls, 1), all > 0 ? 100.0 * seconds[i] / all : 0.0);
  }
};

// ---- the pre-norm block -------------------------------------------------------------------------

/// Scratch of one block's forward, [tokens, channels] each; reused across layers and calls.
struct block_workspace {
  std::vector<float> xn, q, k, v, attended, projected, hidden;

  void resize(index tokens, index channels) {
    const auto n = static_cast<std::size_t>(tokens * channels);
    for (std::vector<float>* b : {&xn, &q, &k, &v, &attended, &projected}) b->resize(n);
  }
};

/// What a block needs of its attention: attend(q, k, v, out, timer) over [tokens, channels]
/// buffers whose channels are heads·head_dim, head-major (channel h·D + d, the split every
/// multi-head implementation uses), geometry (map or sequence shape) known to the policy.
template <class A>
concept attention_policy = requires(A& a, const float* in, float* out, stage_timer& t) {
  a.attend(in, in, in, out, t);
};

/// One pre-norm transformer block (see the top of this file) with attention policy A.
template <attention_policy A>
struct block {
  layer_norm norm1, norm2;
  linear wq, wk, wv, proj;  // separate Q, K, V projections: attn reads each as its own tensor
  mlp ffn;
  A attention;

  block(std::mt19937& rng, index channels, index hidden, A a)
      : norm1(channels),
        norm2(channels),
        wq(rng, channels, channels),
        wk(rng, channels, channels),
        wv(rng, channels, channels),
        proj(rng, channels, channels),
        ffn(rng, channels, hidden),
        attention(std::move(a)) {}

  /// ws.q, ws.k, ws.v = LN₁(x)·W_{q,k,v} for the `tokens` rows of x.
  void project_qkv(const float* x, index tokens, block_workspace& ws, stage_timer& t) const {
    t.time("norm", [&] { norm1.forward(x, tokens, ws.xn.data()); });
    t.time("qkv", [&] {
      wq.forward(ws.xn.data(), tokens, ws.q.data());
      wk.forward(ws.xn.data(), tokens, ws.k.data());
      wv.forward(ws.xn.data(), tokens, ws.v.data());
    });
  }

  /// x ← x + proj(A(LN₁(x))); x ← x + MLP(LN₂(x)), in place over `tokens` rows.
  void forward(float* x, index tokens, block_workspace& ws, stage_timer& t) {
    const index c = norm1.gamma.size();
    ws.resize(tokens, c);
    project_qkv(x, tokens, ws, t);
    attention.attend(ws.q.data(), ws.k.data(), ws.v.data(), ws.attended.data(), t);
    t.time("proj", [&] { proj.forward(ws.attended.data(), tokens, ws.projected.data()); });
    add_in_place(x, ws.projected.data(), tokens * c);
    t.time("norm", [&] { norm2.forward(x, tokens, ws.xn.data()); });
    t.time("mlp", [&] { ffn.forward(ws.xn.data(), tokens, ws.projected.data(), ws.hidden); });
    add_in_place(x, ws.projected.data(), tokens * c);
  }
};

/// The useful FLOPs of attention over `pairs` visible (query, key) pairs per head summed over
/// heads, head_dim d: Q·Kᵀ and P·V are 2d each per pair (the convention of attn's benchmarks).
inline double attention_flops(double pairs, index head_dim) {
  return 4.0 * static_cast<double>(head_dim) * pairs;
}

// ---- command line -------------------------------------------------------------------------------

/// `--name value` and `--flag` arguments; anything else is an error naming the argument.
class arguments {
 public:
  arguments(int argc, char** argv) : args_(argv + 1, argv + argc) {}

  bool flag(std::string_view name) {
    for (std::size_t i = 0; i < args_.size(); ++i)
      if (args_[i] == name) {
        used_.push_back(i);
        return true;
      }
    return false;
  }
  long integer(std::string_view name, long fallback) {
    const std::string* v = value(name);
    return v ? std::strtol(v->c_str(), nullptr, 10) : fallback;
  }
  double real(std::string_view name, double fallback) {
    const std::string* v = value(name);
    return v ? std::strtod(v->c_str(), nullptr) : fallback;
  }
  std::string text(std::string_view name, const std::string& fallback) {
    const std::string* v = value(name);
    return v ? *v : fallback;
  }
  /// Prints the first argument no accessor consumed; true if there is none.
  bool all_used() const {
    for (std::size_t i = 0; i < args_.size(); ++i)
      if (std::find(used_.begin(), used_.end(), i) == used_.end()) {
        std::fprintf(stderr, "unknown argument: %s (try --help)\n", args_[i].c_str());
        return false;
      }
    return true;
  }

 private:
  const std::string* value(std::string_view name) {
    for (std::size_t i = 0; i + 1 < args_.size(); ++i)
      if (args_[i] == name) {
        used_.push_back(i);
        used_.push_back(i + 1);
        return &args_[i + 1];
      }
    return nullptr;
  }
  std::vector<std::string> args_;
  std::vector<std::size_t> used_;
};

/// `layers` blocks with attention policy A, built from a Config with channels, mlp_ratio,
/// layers, seed and tokens() (vision::config, long_context::config). A policy is made as
/// A(config, layer, rng) when it draws weights of its own (BiFormer's LCE), else A(config, layer).
template <class Config, attention_policy A>
struct block_stack {
  Config cfg;
  std::vector<block<A>> blocks;
  block_workspace ws;
  stage_timer timer;

  explicit block_stack(const Config& c) : cfg(c) {
    std::mt19937 rng(c.seed);
    for (index l = 0; l < c.layers; ++l)
      blocks.emplace_back(rng, c.channels, c.mlp_ratio * c.channels, make_policy(c, l, rng));
  }

  /// x [tokens, C] ← the stack's output, in place.
  void forward(float* x) {
    for (block<A>& b : blocks) b.forward(x, cfg.tokens(), ws, timer);
  }

  /// Visible pairs of every layer's latest attention, over heads and batch.
  double visible_pairs() const {
    double p = 0;
    for (const block<A>& b : blocks) p += b.attention.visible_pairs();
    return p;
  }

 private:
  static A make_policy(const Config& c, index layer, std::mt19937& rng) {
    if constexpr (std::is_constructible_v<A, const Config&, index, std::mt19937&>)
      return A(c, layer, rng);
    else
      return A(c, layer);
  }
};

/// Largest |attn − reference| of layer `layer`'s attention output for input x (the block's own
/// LN₁ and projections produce q, k, v; both sides see the same ones), and the largest
/// |reference|, so that the error can be read relative to the output's scale.
template <class Config, class A>
std::pair<double, double> check_layer(block_stack<Config, A>& m, const float* x, index layer = 0) {
  block<A>& b = m.blocks[static_cast<std::size_t>(layer)];
  stage_timer unused;
  m.ws.resize(m.cfg.tokens(), m.cfg.channels);
  b.project_qkv(x, m.cfg.tokens(), m.ws, unused);
  b.attention.attend(m.ws.q.data(), m.ws.k.data(), m.ws.v.data(), m.ws.attended.data(), unused);
  const auto r = b.attention.reference(m.ws.q.data(), m.ws.k.data(), m.ws.v.data());
  double err = 0, scale = 0;
  for (index i = 0; i < r.out.size(); ++i) {
    const double want = r.out.data()[i];
    const double got = m.ws.attended[static_cast<std::size_t>(i)];
    err = std::max(err, std::abs(got - want));
    scale = std::max(scale, std::abs(want));
  }
  return {err, scale};
}

}  // namespace examples
