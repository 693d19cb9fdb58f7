// attn_example_llm — a small Llama-style language model (examples/llm/llm_block.hpp) with
// seeded random weights: prefill a random prompt, then greedy decoding token by token through
// each layer's KV cache (or linear-attention state), for one or all attention variants.
//
// Then the check that makes the caches trustworthy: the hidden state of every decoded token
// must equal the one a fresh prefill of the whole sequence computes at that position: for the
// last token that is literally "decode token t == prefill of t + 1 tokens", for the earlier
// ones the same statement by causality (row t of a prefill never depends on later tokens).
// Exit code 1 when max |diff| > 1e-4.
//
//   attn_example_llm [--variant softmax|sigmoid|window|moba|linear|all] [--layers 4]
//                    [--d-model 256] [--heads 8] [--kv-heads 2] [--head-dim 32] [--d-ff 688]
//                    [--vocab 1000] [--prompt 128] [--generate 32] [--window 64] [--sinks 4]
//                    [--block 32] [--top-k 3] [--threads 1] [--seed 1]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "llm_block.hpp"

namespace {

struct settings {
  llm::config model;
  std::string variant = "all";
  llm::idx prompt = 128, generate = 32, window = 64, sinks = 4, block = 32, top_k = 3;
  unsigned seed = 1;
};

constexpr float tolerance = 1e-4f;

/// Runs one variant; returns whether its decode-vs-prefill check passed.
template <class Attention>
bool run(const settings& s, Attention attention) {
  const llm::generation g =
      llm::generate_and_check(s.model, s.seed, attention, s.prompt, s.generate);
  const std::vector<int>& tokens = g.tokens;
  const double prefill_s = g.prefill_seconds, decode_s = g.decode_seconds;
  const float diff = g.max_diff, rms = g.max_rms;
  const bool ok = diff <= tolerance;
  std::printf("%-8s prefill %4td tokens %8.2f ms | decode %4td tokens %8.1f tok/s | last tokens",
              Attention::name, s.prompt, prefill_s * 1e3, s.generate,
              s.generate > 0 ? static_cast<double>(s.generate) / decode_s : 0.0);
  for (std::size_t i = tokens.size() - static_cast<std::size_t>(std::min<llm::idx>(s.generate, 4));
       i < tokens.size(); ++i)
    std::printf(" %d", tokens[i]);
  std::printf(
      "\n         decode vs prefill: max |diff| = %.3g (hidden RMS <= %.3g, tolerance %g) %s\n",
      static_cast<double>(diff), static_cast<double>(rms), static_cast<double>(tolerance),
      ok ? "ok" : "MISMATCH");
  return ok;
}

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "attn_example_llm: %s\nflags: --variant softmax|sigmoid|window|moba|linear|all "
               "--layers --d-model --heads --kv-heads --head-dim --d-ff --vocab --prompt "
               "--generate --window --sinks --block --top-k --threads --seed\n",
               msg);
  std::exit(2);
}

settings parse(int argc, char** argv) {
  settings s;
  llm::idx head_dim = 0, threads = s.model.threads, seed = s.seed;  // 0: d_model / heads
  const std::pair<const char*, llm::idx*> integer_flags[] = {{"--layers", &s.model.layers},
                                                             {"--d-model", &s.model.d_model},
                                                             {"--heads", &s.model.heads},
                                                             {"--kv-heads", &s.model.kv_heads},
                                                             {"--head-dim", &head_dim},
                                                             {"--d-ff", &s.model.d_ff},
                                                             {"--vocab", &s.model.vocab},
                                                             {"--prompt", &s.prompt},
                                                             {"--generate", &s.generate},
                                                             {"--window", &s.window},
                                                             {"--sinks", &s.sinks},
                                                             {"--block", &s.block},
                                                             {"--top-k", &s.top_k},
                                                             {"--threads", &threads},
                                                             {"--seed", &seed}};
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") usage("usage");
    if (i + 1 >= argc) usage(("missing value after " + flag).c_str());
    const std::string value = argv[++i];
    if (flag == "--variant") {
      s.variant = value;
      continue;
    }
    llm::idx* target = nullptr;
    for (const auto& [name, where] : integer_flags)
      if (flag == name) target = where;
    if (target == nullptr) usage(("unknown flag " + flag).c_str());
    char* end = nullptr;
    const long long n = std::strtoll(value.c_str(), &end, 10);
    if (end == value.c_str() || *end != '\0' || n < 0)
      usage(("not a non-negative integer: " + flag + " " + value).c_str());
    *target = static_cast<llm::idx>(n);
  }
  s.model.threads = static_cast<int>(threads);
  s.seed = static_cast<unsigned>(seed);
  s.model.head_dim =
      head_dim > 0 ? head_dim : s.model.d_model / std::max<llm::idx>(s.model.heads, 1);
  if (s.prompt < 1) usage("--prompt must be >= 1");
  const std::string variants[] = {"all", "softmax", "sigmoid", "window", "moba", "linear"};
  if (std::find(std::begin(variants), std::end(variants), s.variant) == std::end(variants))
    usage(("unknown variant " + s.variant).c_str());
  s.model.max_seq = s.prompt + s.generate;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const settings s = parse(argc, argv);
  const auto& m = s.model;
  std::printf(
      "Llama-style decoder: %td layers, d_model %td, %td query heads / %td KV heads of %td, "
      "SwiGLU %td, vocab %td, %d thread(s)\n",
      m.layers, m.d_model, m.heads, m.kv_heads, m.head_dim, m.d_ff, m.vocab, m.threads);
  const bool all = s.variant == "all";
  bool ok = true;
  // Runs the variant `name` if it was asked for (or all were).
  auto variant = [&](const char* name, auto attention) {
    if (all || s.variant == name) ok &= run(s, attention);
  };
  try {
    variant("softmax", llm::softmax_attention{});
    variant("sigmoid", llm::sigmoid_attention{});
    if (all || s.variant == "window")
      std::printf("window: %td keys + %td sinks (ring cache of %td slots)\n", s.window, s.sinks,
                  s.window + s.sinks);
    variant("window", llm::window_attention{.window = s.window, .sinks = s.sinks});
    if (all || s.variant == "moba")
      std::printf("moba: blocks of %td keys, top-%td\n", s.block, s.top_k);
    variant("moba", llm::moba_attention{.block = s.block, .top_k = s.top_k});
    variant("linear", llm::linear_attention{});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attn_example_llm: %s\n", e.what());
    return 1;
  }
  return ok ? 0 : 1;
}
