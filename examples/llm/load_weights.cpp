// attn_example_weights — runs one Llama-style decoder block (examples/llm/llm_block.hpp) with
// weights read from .npy files and checks its output against an independent float64 NumPy
// implementation of the same block (examples/data/make_block.py wrote both).
//
//   attn_example_weights [dir]     default: examples/data/block of the source tree
//
// dir holds attn_norm, mlp_norm ([d_model]), wq, wk, wv, wo, w_gate, w_up, w_down ([in, out]),
// rope_inv_freq ([head_dim / 2]: gives head_dim, and checks our RoPE frequencies), input and
// expected ([tokens, d_model]). Sizes come from the shapes. Exit code 1 when the output (or
// the decode-through-the-cache output of the last token) differs by more than the tolerance.
#include <cmath>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

#include "llm_block.hpp"
#include "npy.hpp"

#ifndef ATTN_EXAMPLES_BLOCK_DIR
#define ATTN_EXAMPLES_BLOCK_DIR "examples/data/block"
#endif

namespace {

// fp32 against a float64 reference on O(1) activations: a few ulps of the largest values.
constexpr float tolerance = 1e-4f;

/// Loads dir/name.npy and checks its rank.
npy::array load(const std::string& dir, const char* name, std::size_t rank) {
  npy::array a = npy::load(dir + "/" + name + ".npy");
  if (a.shape.size() != rank)
    throw std::runtime_error(std::string(name) + ".npy has " + std::to_string(a.shape.size()) +
                             " dimensions, expected " + std::to_string(rank));
  return a;
}

llm::idx dim(const npy::array& a, std::size_t d) { return static_cast<llm::idx>(a.shape[d]); }

llm::matrix to_matrix(const npy::array& a) {
  return Eigen::Map<const llm::matrix>(a.values.data(), dim(a, 0), dim(a, 1));
}
llm::row_vector to_row(const npy::array& a) {
  return Eigen::Map<const llm::row_vector>(a.values.data(), dim(a, 0));
}

int run(const std::string& dir) {
  const npy::array wq = load(dir, "wq", 2), wk = load(dir, "wk", 2),
                   w_gate = load(dir, "w_gate", 2);
  const npy::array freq = load(dir, "rope_inv_freq", 1), input = load(dir, "input", 2);

  llm::config c;
  c.layers = 1;
  c.d_model = dim(wq, 0);
  c.head_dim = 2 * dim(freq, 0);
  if (c.head_dim == 0 || dim(wq, 1) % c.head_dim != 0 || dim(wk, 1) % c.head_dim != 0)
    throw std::runtime_error("wq / wk widths are not multiples of head_dim = 2 · " +
                             std::to_string(dim(freq, 0)) + " (rope_inv_freq)");
  c.heads = dim(wq, 1) / c.head_dim;
  c.kv_heads = dim(wk, 1) / c.head_dim;
  c.d_ff = dim(w_gate, 1);
  c.max_seq = dim(input, 0);
  c.vocab = 1;  // unused: the block takes hidden states, not tokens

  llm::layer_weights w;
  w.attn_norm = to_row(load(dir, "attn_norm", 1));
  w.mlp_norm = to_row(load(dir, "mlp_norm", 1));
  w.wq = to_matrix(wq);
  w.wk = to_matrix(wk);
  w.wv = to_matrix(load(dir, "wv", 2));
  w.wo = to_matrix(load(dir, "wo", 2));
  w.w_gate = to_matrix(w_gate);
  w.w_up = to_matrix(load(dir, "w_up", 2));
  w.w_down = to_matrix(load(dir, "w_down", 2));
  const llm::matrix x = to_matrix(input);
  const llm::matrix expected = to_matrix(load(dir, "expected", 2));
  if (expected.rows() != x.rows() || expected.cols() != x.cols())
    throw std::runtime_error("expected.npy and input.npy have different shapes");

  std::printf(
      "block from %s: d_model %td, %td query heads / %td KV heads of %td, SwiGLU %td, "
      "%td tokens\n",
      dir.c_str(), c.d_model, c.heads, c.kv_heads, c.head_dim, c.d_ff, x.rows());

  // Our RoPE frequencies against the file's (written by NumPy in float64).
  const std::vector<double> ours = llm::rope_inv_freq(c.head_dim, c.rope_theta);
  double freq_err = 0;
  for (std::size_t i = 0; i < ours.size(); ++i)
    freq_err =
        std::max(freq_err, std::abs(ours[i] - static_cast<double>(freq.values[i])) / ours[i]);
  std::printf("RoPE frequencies: max relative diff %.3g (file stores float64, read as float)\n",
              freq_err);

  llm::decoder<llm::softmax_attention> block(c, {w});
  auto state = block.new_state();
  const llm::matrix y = block.forward_prefill(state, x);
  const float err = (y - expected).cwiseAbs().maxCoeff();

  // The same block decoding the last token through its KV cache after a prefill of the others.
  auto state2 = block.new_state();
  const llm::idx n = x.rows();
  float decode_err = 0;
  if (n > 1) {
    block.forward_prefill(state2, x.topRows(n - 1));
    const llm::matrix last = block.forward_decode(state2, x.bottomRows(1));
    decode_err = (last - expected.bottomRows(1)).cwiseAbs().maxCoeff();
  }
  const bool ok = err <= tolerance && decode_err <= tolerance && freq_err < 1e-6;
  std::printf(
      "prefill vs NumPy float64: max |diff| = %.3g; decode of the last token: %.3g "
      "(tolerance %g) %s\n",
      static_cast<double>(err), static_cast<double>(decode_err), static_cast<double>(tolerance),
      ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ATTN_EXAMPLES_BLOCK_DIR;
  try {
    return run(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attn_example_weights: %s\n", e.what());
    return 1;
  }
}
