#!/usr/bin/python3
"""Writes examples/data/block/*.npy: the weights of one Llama-style decoder block, an input and
the block's output on it, computed here in float64 by an independent NumPy implementation.
attn_example_weights (examples/llm/load_weights.cpp) loads these files, runs the C++ block
(examples/llm/llm_block.hpp: Eigen GEMMs + attn's GQA attention) and compares.

Dev-only tool, not a build dependency: the .npy files are committed; run this only to change
them. Needs NumPy (Debian: apt-get install -y python3-numpy).

    /usr/bin/python3 examples/data/make_block.py [output_dir]

The block (Touvron et al. 2023, LLaMA, sec. 2.2), with x one token per row:
    h = x + Attn(RoPE(RMSNorm(x) Wq), RoPE(RMSNorm(x) Wk), RMSNorm(x) Wv) Wo
    y = h + (SiLU(RMSNorm(h) Wg) * (RMSNorm(h) Wu)) Wd
RMSNorm: Zhang & Sennrich 2019; RoPE: Su et al. 2021, "rotate half" pairing (i, i + D/2) as
in Hugging Face's Llama; SwiGLU: Shazeer 2020. Attention: causal softmax, scale 1/sqrt(D),
grouped-query (query head h reads KV head h // (H / G)).

The files use several of the formats the reader must handle: attn_norm.npy is '<f2',
mlp_norm.npy big-endian '>f4', input.npy and rope_inv_freq.npy '<f8', the rest '<f4'. The
reference uses exactly the stored values (rounded to the stored type, then widened).
"""
import os
import sys

import numpy as np

D_MODEL, HEADS, KV_HEADS, HEAD_DIM, D_FF, TOKENS = 64, 4, 2, 16, 96, 16
THETA, EPS = 10000.0, 1e-5
SEED = 20261203


def rms_norm(x, gain):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * gain


def rope(x, inv_freq):
    """x: [tokens, heads, head_dim] at positions 0..tokens-1; rotate-half pairing."""
    angles = np.arange(x.shape[0])[:, None] * inv_freq[None, :]  # [tokens, head_dim/2]
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def causal_gqa_softmax(q, k, v):
    """q: [n, H, D], k, v: [n, G, D] -> [n, H, D]."""
    n, heads, dim = q.shape
    group = heads // k.shape[1]
    out = np.empty_like(q)
    future = np.triu(np.ones((n, n), dtype=bool), k=1)
    for h in range(heads):
        s = q[:, h, :] @ k[:, h // group, :].T / np.sqrt(dim)
        s[future] = -np.inf
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        out[:, h, :] = p @ v[:, h // group, :]
    return out


def block(x, w, inv_freq):
    n = x.shape[0]
    a = rms_norm(x, w["attn_norm"])
    q = rope((a @ w["wq"]).reshape(n, HEADS, HEAD_DIM), inv_freq)
    k = rope((a @ w["wk"]).reshape(n, KV_HEADS, HEAD_DIM), inv_freq)
    v = (a @ w["wv"]).reshape(n, KV_HEADS, HEAD_DIM)
    h = x + causal_gqa_softmax(q, k, v).reshape(n, HEADS * HEAD_DIM) @ w["wo"]
    m = rms_norm(h, w["mlp_norm"])
    gate, up = m @ w["w_gate"], m @ w["w_up"]
    return h + (gate / (1.0 + np.exp(-gate)) * up) @ w["w_down"]


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "block")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(SEED)
    q_width, kv_width = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM

    def normal(shape, std, dtype="<f4"):
        return (rng.standard_normal(shape) * std).astype(dtype)

    # Stored arrays, each in the dtype its file will have. Projections N(0, 1/fan_in); the two
    # residual-writing ones also / sqrt(2) (one layer: 2 residual additions).
    stored = {
        "attn_norm": (1.0 + 0.1 * rng.standard_normal(D_MODEL)).astype("<f2"),
        "mlp_norm": (1.0 + 0.1 * rng.standard_normal(D_MODEL)).astype(">f4"),
        "wq": normal((D_MODEL, q_width), D_MODEL ** -0.5),
        "wk": normal((D_MODEL, kv_width), D_MODEL ** -0.5),
        "wv": normal((D_MODEL, kv_width), D_MODEL ** -0.5),
        "wo": normal((q_width, D_MODEL), (q_width * 2) ** -0.5),
        "w_gate": normal((D_MODEL, D_FF), D_MODEL ** -0.5),
        "w_up": normal((D_MODEL, D_FF), D_MODEL ** -0.5),
        "w_down": normal((D_FF, D_MODEL), (D_FF * 2) ** -0.5),
        # float64 in the file, but exactly representable in float32 (the C++ side is float).
        "input": rng.standard_normal((TOKENS, D_MODEL)).astype("<f4").astype("<f8"),
        "rope_inv_freq": THETA ** (-np.arange(0, HEAD_DIM, 2, dtype=np.float64) / HEAD_DIM),
    }
    w = {name: a.astype(np.float64) for name, a in stored.items()}
    expected = block(w["input"], w, w["rope_inv_freq"]).astype("<f4")
    stored["expected"] = expected
    for name, a in stored.items():
        np.save(os.path.join(out_dir, name + ".npy"), a, allow_pickle=False)
    total = sum(os.path.getsize(os.path.join(out_dir, n + ".npy")) for n in stored)
    print(f"wrote {len(stored)} files, {total} bytes, to {out_dir}; "
          f"output RMS {np.sqrt(np.mean(expected.astype(np.float64) ** 2)):.3f}")


if __name__ == "__main__":
    main()
