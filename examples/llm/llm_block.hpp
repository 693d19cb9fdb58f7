// A decoder-only transformer in the style of Llama (Touvron et al. 2023, "LLaMA: Open and
// Efficient Foundation Language Models", §2.2), written with Eigen matrices for the dense
// layers and attn for the attention. One layer is
//
//   a = RMSNorm(x),  h = x + attention(RoPE(a W_q), RoPE(a W_k), a W_v) W_o
//   m = RMSNorm(h),  y = h + (SiLU(m W_gate) ⊙ (m W_up)) W_down
//
// with pre-normalisation by RMSNorm (Zhang & Sennrich 2019, "Root Mean Square Layer
// Normalization", eq. 4), rotary position embeddings on queries and keys (Su et al. 2021,
// "RoFormer", §3.4.2), grouped-query attention (fewer K/V heads than query heads) and the SwiGLU
// feed-forward block (Shazeer 2020, "GLU Variants Improve Transformer", eq. 6).
//
// Layout: a sequence of n tokens is an n × d row-major Eigen matrix (one token per row), and a
// weight W is stored [in, out] so a projection is the GEMM X · W. The row-major n × (heads ·
// head_dim) result of X · W_q is, byte for byte, attn's [1, n, heads, head_dim] tensor: attn
// reads it through an Eigen::TensorMap, without copies.
//
// The attention is a template parameter of the model: a small policy struct that owns what a
// layer keeps between calls (a KV cache, or the recurrent state of linear attention) and
// answers prefill (the prompt, from an empty state) and decode (one more token). Five policies
// are below: softmax_attention, sigmoid_attention, window_attention (sliding window + attention
// sinks on a ring cache), moba_attention and linear_attention. Batch is 1 throughout.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <attn/attn.hpp>

namespace llm {

using idx = std::ptrdiff_t;
using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using row_vector = Eigen::RowVectorXf;

/// Sizes of the model and how it runs.
struct config {
  idx vocab = 1000;
  idx d_model = 256;
  idx heads = 8;     ///< query heads
  idx kv_heads = 2;  ///< key/value heads (grouped-query attention: heads % kv_heads == 0)
  idx head_dim = 32;
  idx d_ff = 688;  ///< SwiGLU hidden width (Llama: about 8/3 · d_model)
  idx layers = 4;
  idx max_seq = 256;  ///< KV cache capacity: prompt + generated tokens
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;
  int threads = 1;  ///< attn's worker threads (0 = all)

  void check() const {
    const std::pair<const char*, idx> positive[] = {
        {"vocab", vocab},       {"d_model", d_model}, {"heads", heads},   {"kv_heads", kv_heads},
        {"head_dim", head_dim}, {"d_ff", d_ff},       {"layers", layers}, {"max_seq", max_seq}};
    for (const auto& [name, value] : positive)
      if (value < 1) throw std::invalid_argument(std::string("config.") + name + " must be >= 1");
    if (heads % kv_heads != 0)
      throw std::invalid_argument("config.heads must be a multiple of config.kv_heads");
    if (head_dim % 2 != 0)
      throw std::invalid_argument("config.head_dim must be even (RoPE rotates pairs)");
  }
};

/// One layer's parameters. Projections are [in, out]; norms are per-channel gains.
struct layer_weights {
  row_vector attn_norm, mlp_norm;  // [d_model]
  matrix wq;                       // [d_model, heads · head_dim]
  matrix wk, wv;                   // [d_model, kv_heads · head_dim]
  matrix wo;                       // [heads · head_dim, d_model]
  matrix w_gate, w_up;             // [d_model, d_ff]
  matrix w_down;                   // [d_ff, d_model]

  void check(const config& c) const {
    auto need = [](const char* name, idx rows, idx cols, idx want_rows, idx want_cols) {
      if (rows != want_rows || cols != want_cols)
        throw std::invalid_argument(std::string("layer_weights.") + name + " is " +
                                    std::to_string(rows) + " x " + std::to_string(cols) +
                                    ", expected " + std::to_string(want_rows) + " x " +
                                    std::to_string(want_cols));
    };
    const idx d = c.d_model, q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
    need("attn_norm", 1, attn_norm.size(), 1, d);
    need("mlp_norm", 1, mlp_norm.size(), 1, d);
    need("wq", wq.rows(), wq.cols(), d, q);
    need("wk", wk.rows(), wk.cols(), d, kv);
    need("wv", wv.rows(), wv.cols(), d, kv);
    need("wo", wo.rows(), wo.cols(), q, d);
    need("w_gate", w_gate.rows(), w_gate.cols(), d, c.d_ff);
    need("w_up", w_up.rows(), w_up.cols(), d, c.d_ff);
    need("w_down", w_down.rows(), w_down.cols(), c.d_ff, d);
  }
};

/// A matrix of N(0, std²) entries.
inline matrix random_matrix(std::mt19937& rng, idx rows, idx cols, double std) {
  std::normal_distribution<float> dist(0.0f, static_cast<float>(std));
  matrix m(rows, cols);
  for (idx i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
  return m;
}

/// Seeded random weights, scaled so activations stay O(1) through any number of layers: inputs
/// of every projection have RMS ≈ 1 (after RMSNorm), so N(0, 1/fan_in) keeps the outputs at
/// RMS ≈ 1; the two projections that write into the residual stream (W_o, W_down) are further
/// divided by √(2 · layers), as GPT-2 does (Radford et al. 2019, §2.3), so that 2·layers
/// residual additions grow the stream by O(1), not O(√layers).
inline layer_weights random_layer(const config& c, std::mt19937& rng) {
  const idx d = c.d_model, q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  const double residual = 1.0 / std::sqrt(2.0 * static_cast<double>(c.layers));
  auto fan_in = [](idx n) { return 1.0 / std::sqrt(static_cast<double>(n)); };
  layer_weights w;
  w.attn_norm = row_vector::Ones(d) + 0.1f * random_matrix(rng, 1, d, 1.0);
  w.mlp_norm = row_vector::Ones(d) + 0.1f * random_matrix(rng, 1, d, 1.0);
  w.wq = random_matrix(rng, d, q, fan_in(d));
  w.wk = random_matrix(rng, d, kv, fan_in(d));
  w.wv = random_matrix(rng, d, kv, fan_in(d));
  w.wo = random_matrix(rng, q, d, fan_in(q) * residual);
  w.w_gate = random_matrix(rng, d, c.d_ff, fan_in(d));
  w.w_up = random_matrix(rng, d, c.d_ff, fan_in(d));
  w.w_down = random_matrix(rng, c.d_ff, d, fan_in(c.d_ff) * residual);
  return w;
}

// ---- the pieces of a layer ------------------------------------------------------------------

/// RMSNorm (Zhang & Sennrich 2019, eq. 4): y = x / sqrt(mean(x²) + ε) ⊙ g, per row. Unlike
/// LayerNorm there is no mean subtraction and no bias.
inline matrix rms_norm(const matrix& x, const row_vector& gain, float eps) {
  matrix y(x.rows(), x.cols());
  for (idx t = 0; t < x.rows(); ++t) {
    const float ms = x.row(t).squaredNorm() / static_cast<float>(x.cols());
    y.row(t) = x.row(t).cwiseProduct(gain) / std::sqrt(ms + eps);
  }
  return y;
}

/// RoPE's frequencies θ^(−2i/head_dim), i = 0 .. head_dim/2 − 1 (Su et al. 2021, eq. 15).
inline std::vector<double> rope_inv_freq(idx head_dim, double theta) {
  std::vector<double> f(static_cast<std::size_t>(head_dim / 2));
  for (std::size_t i = 0; i < f.size(); ++i)
    f[i] = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
  return f;
}

/// Rotary position embedding, in place, on x [n, heads · head_dim] whose row t is the token at
/// position first_position + t. Convention: "rotate half" — dimension i is paired with
/// i + head_dim/2 (not with i + 1), as in Hugging Face's Llama and GPT-NeoX:
///   x'_i = x_i cos(p·f_i) − x_{i+D/2} sin(p·f_i),  x'_{i+D/2} = x_{i+D/2} cos(p·f_i) + x_i
///   sin(p·f_i).
/// Meta's original Llama code rotates interleaved pairs (2i, 2i+1) instead; the two differ by a
/// fixed permutation of the W_q / W_k columns, so either computes the same attention once the
/// weights are stored for it. Angles are evaluated in double: p·f for large positions.
inline void rope(matrix& x, idx heads, idx head_dim, idx first_position,
                 const std::vector<double>& inv_freq) {
  const idx half = head_dim / 2;
  for (idx t = 0; t < x.rows(); ++t) {
    const double p = static_cast<double>(first_position + t);
    for (idx i = 0; i < half; ++i) {
      const double angle = p * inv_freq[static_cast<std::size_t>(i)];
      const auto c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
      for (idx h = 0; h < heads; ++h) {
        float* row = x.data() + t * x.cols() + h * head_dim;
        const float a = row[i], b = row[i + half];
        row[i] = a * c - b * s;
        row[i + half] = b * c + a * s;
      }
    }
  }
}

/// SwiGLU feed-forward (Shazeer 2020, eq. 6, with Swish_1 = SiLU): (SiLU(x W_gate) ⊙ x W_up)
/// W_down.
inline matrix swiglu(const matrix& x, const layer_weights& w) {
  const matrix gate = x * w.w_gate;
  const matrix up = x * w.w_up;
  const matrix hidden =
      (gate.array() / (1.0f + (-gate.array()).exp())).cwiseProduct(up.array()).matrix();
  return hidden * w.w_down;
}

// ---- attention policies ---------------------------------------------------------------------
//
// Each policy has a name, a per-layer state type, make_state(config), and
//   prefill(state, q, k, v, out, opt)   the n tokens of a prompt, state empty before;
//   decode(state, q, k, v, out, opt)    one token after everything the state has seen.
// q, out: [1, n, heads, head_dim]; k, v: [1, n, kv_heads, head_dim], RoPE already applied.

using in_map = attn::const_tensor4_map<float>;
using out_map = attn::tensor4_map<float>;

inline attn::kv_cache<float> contiguous_cache(const config& c) {
  return attn::kv_cache<float>(
      {.batch = 1, .capacity = c.max_seq, .heads = c.kv_heads, .head_dim = c.head_dim});
}

/// Dense causal softmax attention over a contiguous KV cache (the Llama baseline). The cache
/// supplies the key lengths, so causal aligns bottom-right: the new queries are the last
/// positions, which makes prefill and decode the same two calls.
struct softmax_attention {
  static constexpr const char* name = "softmax";
  using state = attn::kv_cache<float>;
  state make_state(const config& c) const { return contiguous_cache(c); }
  void prefill(state& cache, const in_map& q, const in_map& k, const in_map& v, out_map& out,
               const attn::options& opt) const {
    cache.append(k, v);
    attn::attention(q, cache, out, attn::softmax{}, attn::causal{}, opt);
  }
  void decode(state& cache, const in_map& q, const in_map& k, const in_map& v, out_map& out,
              const attn::options& opt) const {
    prefill(cache, q, k, v, out, opt);
  }
};

/// Causal sigmoid attention (FlashSigmoid, Ramapuram et al. 2024) over a contiguous cache.
/// The paper's bias is b = −ln n with n the sequence length; attn's default takes n = the keys
/// of the call, which differs between a prefill of t tokens and the decode step after it, and
/// would make earlier tokens' layer outputs depend on how far the sequence went. A fixed
/// b = −ln(max_seq) (the context the model is built for) keeps the model causal.
struct sigmoid_attention {
  static constexpr const char* name = "sigmoid";
  using state = attn::kv_cache<float>;
  float bias = 0.0f;  ///< set by make_state: −ln(max_seq)
  state make_state(const config& c) {
    bias = -std::log(static_cast<float>(c.max_seq));
    return contiguous_cache(c);
  }
  void prefill(state& cache, const in_map& q, const in_map& k, const in_map& v, out_map& out,
               const attn::options& opt) const {
    cache.append(k, v);
    attn::attention(q, cache, out, attn::sigmoid{.bias = bias}, attn::causal{}, opt);
  }
  void decode(state& cache, const in_map& q, const in_map& k, const in_map& v, out_map& out,
              const attn::options& opt) const {
    prefill(cache, q, k, v, out, opt);
  }
};

/// Sliding-window softmax attention with attention sinks (StreamingLLM, Xiao et al. 2024):
/// position p sees the first `sinks` positions and the `window` positions before it, itself
/// included — attn::window{.left = window − 1, .right = 0, .sink_keys = sinks}. Memory is a
/// ring cache of sinks + window slots: after appending position p it holds exactly the keys p
/// sees, so a decode step is plain dense attention over the ring (its slots are not in
/// position order, which dense does not need). The prefill runs the window pattern over the
/// prompt's own K/V tensors (a prompt longer than the ring would overwrite slots that its
/// earlier queries still need), then appends the prompt to the ring, which keeps what the next
/// token will see.
struct window_attention {
  static constexpr const char* name = "window";
  idx window = 8;  ///< keys per query, itself included
  idx sinks = 2;   ///< first positions every query keeps seeing
  using state = attn::kv_cache<float>;
  state make_state(const config& c) const {
    if (window < 1 || sinks < 0) throw std::invalid_argument("window >= 1 and sinks >= 0");
    return attn::kv_cache<float>({.batch = 1,
                                  .capacity = sinks + window,
                                  .heads = c.kv_heads,
                                  .head_dim = c.head_dim,
                                  .layout = attn::cache_layout::ring,
                                  .sink_tokens = sinks});
  }
  void prefill(state& cache, const in_map& q, const in_map& k, const in_map& v, out_map& out,
               const attn::options& opt) const {
    if (cache.position(0) != 0)
      throw std::logic_error("window_attention::prefill runs on an empty cache only");
    attn::attention(q, k, v, out, attn::softmax{},
                    attn::window{.left = window - 1, .right = 0, .sink_keys = sinks}, opt);
    cache.append(k, v);
  }
  void decode(state& cache, const in_map& q, const in_map& k, const in_map& v, out_map& out,
              const attn::options& opt) const {
    cache.append(k, v);
    attn::attention(q, cache, out, attn::softmax{}, attn::dense{}, opt);
  }
};

/// MoBA (Lu et al. 2025): keys in blocks of `block`; each query attends to its own block
/// (causally) and the top_k − 1 earlier blocks whose mean key best matches it. Prefill and
/// decode both route over everything cached: attn::moba routes any number of queries,
/// bottom-right aligned, so decoding one token is a real MoBA step (route 1 query over the
/// cached keys, then attend to the chosen blocks), not a dense fallback. A query's choice
/// depends only on complete earlier blocks (its own block is always taken), so routing over a
/// longer prefill picks the same blocks — decode equals prefill. top_k is capped at the number
/// of blocks present (moba rejects more; with fewer blocks, all of them is what top_k means).
/// The cache is contiguous float storage, read in place as a [1, length, kv_heads, head_dim]
/// tensor map: the router needs the key rows themselves (block means), not just a kernel.
struct moba_attention {
  static constexpr const char* name = "moba";
  idx block = 8;
  idx top_k = 2;
  using state = attn::kv_cache<float>;
  state make_state(const config& c) const { return contiguous_cache(c); }
  void prefill(state& cache, const in_map& q, const in_map& k, const in_map& v, out_map& out,
               const attn::options& opt) const {
    cache.append(k, v);
    const attn::kv_cache<float>& stored = cache;  // the public, read-only row accessors
    const auto& c = stored.config();
    const idx length = stored.lengths()[0];
    const in_map keys(stored.key_row(0, 0), 1, length, c.heads, c.head_dim);
    const in_map values(stored.value_row(0, 0), 1, length, c.heads, c.head_dim_v);
    const idx blocks = (length + block - 1) / block;
    const attn::block_selection sel =
        attn::moba{.block = block, .top_k = std::min(top_k, blocks)}.route(q, keys, opt);
    // Many queries: key-block-major (MoBA's own kernel order); a few: the split-KV loop.
    if (q.dimension(1) > 16)
      attn::selection_attention(q, keys, values, out, attn::softmax{}, sel, opt);
    else
      attn::attention(q, keys, values, out, attn::softmax{}, sel, opt);
  }
  void decode(state& cache, const in_map& q, const in_map& k, const in_map& v, out_map& out,
              const attn::options& opt) const {
    prefill(cache, q, k, v, out, opt);
  }
};

/// Causal linear attention (Katharopoulos et al. 2020) with the elu(x)+1 feature map: no KV
/// cache, a [head_dim × head_dim] state per query head. Prefill runs the chunked causal form
/// and leaves the state after the prompt; decode advances it by one token (the RNN form).
/// RoPE is applied before the feature map, as for the other variants.
struct linear_attention {
  static constexpr const char* name = "linear";
  using state = attn::linear::state;
  state make_state(const config& c) const {
    return attn::linear::state(1, c.heads, c.head_dim, c.head_dim);
  }
  static attn::linear::options linear_options(const attn::options& opt) {
    attn::linear::options lo;
    lo.threads = opt.threads;
    return lo;
  }
  void prefill(state& st, const in_map& q, const in_map& k, const in_map& v, out_map& out,
               const attn::options& opt) const {
    attn::linear_attention(q, k, v, out, attn::linear::elu1{}, attn::causal{}, st,
                           linear_options(opt));
  }
  void decode(state& st, const in_map& q, const in_map& k, const in_map& v, out_map& out,
              const attn::options& opt) const {
    attn::linear_attention_step(q, k, v, out, attn::linear::elu1{}, st, linear_options(opt));
  }
};

// ---- the model ------------------------------------------------------------------------------

/// The stack of decoder layers (no embedding or output head: those are `language_model`).
template <class Attention>
class decoder {
 public:
  struct state {
    std::vector<typename Attention::state> layers;
    idx position = 0;  ///< tokens seen
  };

  decoder(const config& c, std::vector<layer_weights> layers, Attention attention = {})
      : c_(c),
        layers_(std::move(layers)),
        attention_(attention),
        inv_freq_(rope_inv_freq(c.head_dim, c.rope_theta)) {
    c_.check();
    if (static_cast<idx>(layers_.size()) != c_.layers)
      throw std::invalid_argument(
          "decoder: " + std::to_string(layers_.size()) +
          " layer weights for config.layers = " + std::to_string(c_.layers));
    for (const auto& w : layers_) w.check(c_);
  }

  const config& cfg() const { return c_; }
  const char* attention_name() const { return Attention::name; }

  /// A fresh state: nothing seen.
  state new_state() {
    state s;
    for (idx l = 0; l < c_.layers; ++l) s.layers.push_back(attention_.make_state(c_));
    return s;
  }

  /// The prompt x [n, d_model] (embedded tokens) from a fresh state; returns the last layer's
  /// hidden states [n, d_model], one row per token.
  matrix forward_prefill(state& s, const matrix& x) const {
    if (s.position != 0) throw std::logic_error("forward_prefill needs a fresh state");
    return forward(s, x, false);
  }

  /// One more token x [1, d_model]; returns its hidden state [1, d_model].
  matrix forward_decode(state& s, const matrix& x) const {
    if (x.rows() != 1) throw std::invalid_argument("forward_decode takes one token");
    return forward(s, x, true);
  }

 private:
  matrix forward(state& s, const matrix& x, bool decode) const {
    if (x.cols() != c_.d_model) throw std::invalid_argument("input width != config.d_model");
    matrix h = x;
    for (idx l = 0; l < c_.layers; ++l)
      h = layer(layers_[static_cast<std::size_t>(l)], s.layers[static_cast<std::size_t>(l)], h,
                s.position, decode);
    s.position += x.rows();
    return h;
  }

  matrix layer(const layer_weights& w, typename Attention::state& st, const matrix& x, idx position,
               bool decode) const {
    const idx n = x.rows(), H = c_.heads, G = c_.kv_heads, D = c_.head_dim;
    // Attention sub-block: pre-norm, projections, RoPE on q and k, attention, output projection.
    const matrix a = rms_norm(x, w.attn_norm, c_.norm_eps);
    matrix q = a * w.wq, k = a * w.wk;
    const matrix v = a * w.wv;
    rope(q, H, D, position, inv_freq_);
    rope(k, G, D, position, inv_freq_);
    matrix o(n, H * D);
    const in_map qm(q.data(), 1, n, H, D), km(k.data(), 1, n, G, D), vm(v.data(), 1, n, G, D);
    out_map om(o.data(), 1, n, H, D);
    attn::options opt;
    opt.threads = c_.threads;
    if (decode)
      attention_.decode(st, qm, km, vm, om, opt);
    else
      attention_.prefill(st, qm, km, vm, om, opt);
    matrix h = x + o * w.wo;
    // Feed-forward sub-block.
    h += swiglu(rms_norm(h, w.mlp_norm, c_.norm_eps), w);
    return h;
  }

  config c_;
  std::vector<layer_weights> layers_;
  Attention attention_;
  std::vector<double> inv_freq_;
};

/// Token embedding, the decoder, a final RMSNorm and an output projection to the vocabulary.
template <class Attention>
class language_model {
 public:
  language_model(const config& c, unsigned seed, Attention attention = {})
      : language_model(c, make_rng(seed), attention) {}

  decoder<Attention>& layers() { return decoder_; }

  /// Embedding rows of tokens: [n, d_model].
  matrix embed(const std::vector<int>& tokens) const {
    matrix x(static_cast<idx>(tokens.size()), embedding_.cols());
    for (std::size_t t = 0; t < tokens.size(); ++t)
      x.row(static_cast<idx>(t)) = embedding_.row(tokens[t]);
    return x;
  }
  /// Greedy choice: argmax of the logits of the hidden state `h` (one row).
  int next_token(const matrix& h) const {
    const matrix logits = rms_norm(h, final_norm_, decoder_.cfg().norm_eps) * head_;
    idx best = 0;
    logits.row(0).maxCoeff(&best);
    return static_cast<int>(best);
  }

 private:
  static std::mt19937 make_rng(unsigned seed) { return std::mt19937(seed); }
  language_model(const config& c, std::mt19937 rng, Attention attention)
      : embedding_(random_matrix(rng, c.vocab, c.d_model, 1.0)),
        final_norm_(row_vector::Ones(c.d_model)),
        head_(random_matrix(rng, c.d_model, c.vocab,
                            1.0 / std::sqrt(static_cast<double>(c.d_model)))),
        decoder_(c, make_layers(c, rng), attention) {}
  static std::vector<layer_weights> make_layers(const config& c, std::mt19937& rng) {
    std::vector<layer_weights> w;
    for (idx l = 0; l < c.layers; ++l) w.push_back(random_layer(c, rng));
    return w;
  }

  matrix embedding_;  // [vocab, d_model], N(0, 1): embedded tokens have RMS ≈ 1
  row_vector final_norm_;
  matrix head_;  // [d_model, vocab]
  decoder<Attention> decoder_;
};

/// What generating tokens after a prompt measured, and the decode-vs-prefill check: each
/// decoded token's hidden state against the same row of one fresh prefill of the whole
/// sequence (for the last token that is literally "prefill of t + 1 tokens"; for earlier ones
/// it holds because the model is causal).
struct generation {
  std::vector<int> tokens;  ///< prompt, then the greedy choices
  double prefill_seconds = 0, decode_seconds = 0;
  float max_diff = 0, max_rms = 0;  ///< max |decoded − prefilled|, largest hidden-state RMS
};

/// A random `prompt`-token prompt (seeded), prefilled, then `generate` tokens decoded greedily
/// one at a time through the variant's cache or state; then the check.
template <class Attention>
generation generate_and_check(const config& model, unsigned seed, Attention attention, idx prompt,
                              idx generate) {
  language_model<Attention> lm(model, seed, attention);
  auto& dec = lm.layers();
  generation g;
  std::mt19937 rng(seed + 1000);
  std::uniform_int_distribution<int> token(0, static_cast<int>(model.vocab - 1));
  for (idx t = 0; t < prompt; ++t) g.tokens.push_back(token(rng));

  auto state = dec.new_state();
  auto t0 = std::chrono::steady_clock::now();
  const matrix prompt_hidden = dec.forward_prefill(state, lm.embed(g.tokens));
  g.prefill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<matrix> decoded;  // hidden state of each decoded token
  int next = lm.next_token(prompt_hidden.bottomRows(1));
  t0 = std::chrono::steady_clock::now();
  for (idx i = 0; i < generate; ++i) {
    g.tokens.push_back(next);
    decoded.push_back(dec.forward_decode(state, lm.embed({next})));
    next = lm.next_token(decoded.back());
  }
  g.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  auto fresh = dec.new_state();
  const matrix all = dec.forward_prefill(fresh, lm.embed(g.tokens));
  for (idx i = 0; i < generate; ++i) {
    const auto row = all.row(prompt + i);
    g.max_diff =
        std::max(g.max_diff, (row - decoded[static_cast<std::size_t>(i)]).cwiseAbs().maxCoeff());
    g.max_rms = std::max(g.max_rms, row.norm() / std::sqrt(static_cast<float>(row.size())));
  }
  return g;
}

}  // namespace llm
