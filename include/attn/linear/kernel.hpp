// The three forms of linear attention, fused and vectorised. For one (batch, query head h)
// reading K/V head g, with φ the feature map, the scale folded into φ(q), γ the head's decay (1
// without one) and every product a register-blocked simd::broadcast_gemm over lane-padded,
// packed operands:
//
//   non-causal   S = φ(K)ᵀV, z = Σ_j φ(k_j)                     [D × Dv] GEMM over the keys
//                O = (φ(Q) / (φ(Q)·z + ε))·S                    [N × D]·[D × Dv]
//                S is shared by the query heads of a K/V head. Work items are (batch, group of
//                K/V heads); with fewer K/V heads than workers, key and query ranges are split
//                over workers instead (partial states, summed in a second phase).
//   causal       chunk by chunk (C rows; fla's chunkwise form, Lightning Attention-2's
//   chunked      intra/inter split), with S, z the state before the chunk:
//                  intra  P  = (φ(Q_c)·φ(K_c)ᵀ) ⊙ [j ≤ i]·γ^{i−j}   den = Σ_j P_ij
//                  inter  den += γ^{i+1}·φ(q_i)·z; row i of P and of φ(Q_c) ×= 1/(den + ε)
//                  out    O = diag(γ^{i+1})·φ(Q_c)·S + P·V_c   (P·V_c: lower triangle only)
//                  state  S = γ^C·S + Σ_j γ^{C−1−j}·φ(k_j)ᵀv_j,  z likewise
//                Work items are (batch, group of query heads): chunk by chunk, every head of
//                the group, each with its own S, z (see head_group()).
//   recurrent    per token: S = γS + φ(k)vᵀ, z = γz + φ(k), o = φ(q)ᵀS / (φ(q)·z + ε), one
//                pass over S reading and writing it (memory-bound decoding).
//
// Memory: rows of one head lie heads·head_dim floats apart, often a page or more, where the
// hardware prefetchers stop; every product fetches the next chunk's rows a few at a time
// (gemm_prefetching), and output rows are written with non-temporal stores — except that the
// non-causal φ(Q)·S stores whole-vector rows straight into the output (3–9 % faster than a
// buffer and a streaming pass). The non-causal form also packs a block of tokens for every head
// of its group token by token (block_tokens()), so that its reads walk memory in address order:
// at N 8192, H 8, D 64 that made it 5–20 % faster than packing one head's strided rows at a time.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "attn/kernel/workspace.hpp"
#include "attn/linear/common.hpp"
#include "attn/linear/feature_maps.hpp"
#include "attn/simd/microkernel.hpp"
#include "attn/simd/transpose.hpp"

namespace attn::linear::detail {

/// Everything a form reads, validated.
struct args {
  in_view q, k, v;
  out_view out;
  attn::detail::problem_shape shape;
  bool normalise = true;
  float scale = 1.0f;
  float epsilon = 1e-6f;
  idx chunk = 32;
  std::span<const float> decay{};  ///< per query head, or empty
  float* state_kv = nullptr;       ///< [B, Hq, D, Dv] in and out, or null
  float* state_z = nullptr;        ///< [B, Hq, D]
  int workers = 1;
  exec::executor executor{};
};

// ---- small vector helpers --------------------------------------------------------------------

/// Σ_d x[d]·y[d].
template <class A>
inline float dot(const float* x, const float* y, idx n) {
  constexpr idx L = simd::lanes<A>;
  simd::vec<A> acc = simd::splat<A>(0.0f);
  idx d = 0;
  for (; d + L <= n; d += L) acc = simd::fma(simd::load<A>(x + d), simd::load<A>(y + d), acc);
  float sum = simd::reduce_add(acc);
  for (; d < n; ++d) sum += x[d] * y[d];
  return sum;
}

/// y[0..n) = f·y + x (x may be null: y = f·y).
template <class A>
inline void scale_add(float* y, float f, const float* x, idx n) {
  store_row<A>(y, n, [&]<class V>(V, idx d) {
    using VA = simd::arch_of_t<V>;
    const V s = load_as<V, VA>(y + d) * simd::splat<VA>(f);
    return x ? s + load_as<V, VA>(x + d) : s;
  });
}

/// y[0..n) *= x[0..n).
template <class A>
inline void multiply(float* y, const float* x, idx n) {
  store_row<A>(y, n, [&]<class V>(V, idx d) {
    using VA = simd::arch_of_t<V>;
    return load_as<V, VA>(y + d) * load_as<V, VA>(x + d);
  });
}

/// dst[0..n) = src[0..n), inline (rows are short: a library call costs more than the copy).
template <class A>
inline void copy_row(float* dst, const float* src, idx n) {
  store_row<A>(dst, n, [&]<class V>(V, idx d) { return load_as<V, simd::arch_of_t<V>>(src + d); });
}

/// y[0..n) += Σ_{j < rows} x[j·ld + 0..n): column sums, each column's sum kept in a register.
template <class A>
inline void add_column_sums(float* y, const float* x, idx rows, idx ld, idx n) {
  constexpr idx L = simd::lanes<A>;
  idx d = 0;
  for (; d + L <= n; d += L) {
    simd::vec<A> acc = simd::load<A>(y + d);
    for (idx j = 0; j < rows; ++j) acc = acc + simd::load<A>(x + j * ld + d);
    simd::store<A>(y + d, acc);
  }
  for (; d < n; ++d)
    for (idx j = 0; j < rows; ++j) y[d] += x[j * ld + d];
}

/// Σ_d y[d].
template <class A>
inline float sum(const float* y, idx n) {
  constexpr idx L = simd::lanes<A>;
  simd::vec<A> acc = simd::splat<A>(0.0f);
  idx d = 0;
  for (; d + L <= n; d += L) acc = acc + simd::load<A>(y + d);
  float s = simd::reduce_add(acc);
  for (; d < n; ++d) s += y[d];
  return s;
}

/// γ^t for t = 0 .. n (n + 1 values), each rounded once from double.
inline void decay_powers(float gamma, idx n, float* out) {
  for (idx t = 0; t <= n; ++t)
    out[t] = static_cast<float>(std::pow(static_cast<double>(gamma), static_cast<double>(t)));
}

/// Reduction steps per prefetch slot of gemm_prefetching. Each segment reloads and stores its
/// block of C, so short segments cost: 128 (a D 64 product in one piece) measured 3–6 % faster
/// than 32 on every form at N 8192, with the prefetches no less timely.
inline constexpr idx slot_depth = 128;

/// simd::broadcast_gemm in row bands of tile_shape<A>::rows and reduction segments of about
/// slot_depth, with `part` resolved per band, calling pf.issue(per_slot) after each piece: the
/// next chunk's rows are fetched a few at a time while the products run (a burst of hundreds of
/// prefetches overflows the miss queues).
template <class A>
inline void gemm_prefetching(idx rows, idx cols, idx depth, const float* a, idx a_row, idx a_col,
                             const float* b, idx ldb, float* c, idx ldc, bool accumulate,
                             simd::triangle part, prefetch_plan& pf, idx per_slot) {
  constexpr idx R = simd::tile_shape<A>::rows, L = simd::lanes<A>;
  for (idx i = 0; i < rows; i += R) {
    const idx r = std::min(R, rows - i);
    const idx band_cols =
        part == simd::triangle::columns ? std::min(cols, round_up(i + r, L)) : cols;
    const idx band_depth = part == simd::triangle::depth ? std::min(depth, i + r) : depth;
    idx p0 = 0;
    do {
      const idx seg = band_depth - p0 < 2 * slot_depth ? band_depth - p0 : slot_depth;
      simd::broadcast_gemm<A>(r, band_cols, seg, a + i * a_row + p0 * a_col, a_row, a_col,
                              b + p0 * ldb, ldb, c + i * ldc, ldc, accumulate || p0 > 0);
      pf.issue(per_slot);
      p0 += seg;
    } while (p0 < band_depth);
  }
}

/// The prefetch slots of gemm_prefetching(rows, …, depth, …, part).
template <class A>
inline idx gemm_slots(idx rows, idx depth, simd::triangle part) {
  constexpr idx R = simd::tile_shape<A>::rows;
  idx slots = 0;
  for (idx i = 0; i < rows; i += R) {
    const idx d =
        part == simd::triangle::depth ? std::min(depth, i + std::min(R, rows - i)) : depth;
    slots += std::max<idx>(1, d / slot_depth);
  }
  return slots;
}

/// Runs body(worker) on up to `workers` workers; the body pulls its items itself. Each worker
/// ends with simd::stream_fence(): its streamed output is visible when the call returns.
template <class Body>
void run_workers(const exec::executor& ex, int workers, Body& body) {
  auto fenced = [&](int worker) {
    body(worker);
    simd::stream_fence();
  };
  ex.parallel(workers, fenced);
}

/// A zeroed per-worker buffer of n floats (aligned, padded).
inline attn::detail::aligned_floats zeroed(idx n) {
  attn::detail::aligned_floats buf(static_cast<std::size_t>(n));
  std::fill(buf.get(), buf.get() + n, 0.0f);
  return buf;
}

// ---- causal: chunked ---------------------------------------------------------------------------

/// Heads per work item: the most (a divisor of `heads`) whose states (`state_floats` each) stay
/// within half the L2 while the batch still gives every worker an item. A token's rows of
/// consecutive heads are contiguous, so walking the heads of a group chunk by chunk touches each
/// page once per chunk instead of once per head and chunk (TLB misses, prefetch streams).
inline idx head_group(idx heads, idx batch, int workers, idx state_floats) {
  idx best = 1;
  for (idx g = 2; g <= heads; ++g) {
    if (heads % g != 0) continue;
    if (g * state_floats > (idx{1} << 17)) break;
    if (batch * (heads / g) < std::min<idx>(workers, batch * heads)) break;
    best = g;
  }
  return best;
}

template <class A, class Feature>
void causal_chunked(const args& a, const Feature& phi) {
  constexpr idx L = simd::lanes<A>;
  const attn::detail::problem_shape& s = a.shape;
  const idx N = s.seq_q, D = s.head_dim, E = s.head_dim_v;
  const idx C = std::max<idx>(1, std::min(a.chunk, N));
  const idx Ep = round_up(E, L), Cp = round_up(C, L), Dp = round_up(D, L);
  if (s.batch * s.heads_q == 0 || N == 0) return;

  // Per-worker workspace: O(C·(D + Dv) + C²) scratch, and per head of a group its state S, z
  // (O(D·Dv)) and its decay tables.
  const idx n_qf = C * D, n_kf = C * D, n_kt = D * Cp, n_vc = C * Ep, n_p = C * Cp, n_o = C * Ep,
            n_s = D * Ep, n_z = Dp, n_pw = round_up(C + 1, 16);
  const bool any_decay = !a.decay.empty();
  const idx n_head = n_s + n_z + 2 * n_pw;
  const idx Hg = head_group(s.heads_q, s.batch, a.workers, n_head);
  const idx groups = s.heads_q / Hg, items = s.batch * groups;
  const int workers = static_cast<int>(std::min<idx>(a.workers, items));
  std::atomic<idx> next{0};
  auto body = [&](int) {
    attn::detail::aligned_floats buffer =
        zeroed(n_qf + (any_decay ? 2 : 1) * n_kf + n_kt + n_vc + n_p + n_o + Hg * n_head);
    float* qf = buffer.get();  // scale·φ(Q_c) [C × D]
    float* kf = qf + n_qf;     // φ(K_c) [C × D]
    float* kt = kf + n_kf;     // φ(K_c)ᵀ [D × Cp]
    float* vc = kt + n_kt;     // V_c [C × Ep]
    float* pm = vc + n_vc;     // P [C × Cp]
    float* o = pm + n_p;       // O_c [C × Ep]
    float* heads = o + n_o;  // per head: S [D × Ep], z [Dp], γ^t (t ≤ C), γ^(C−1−t) (t < C)
    float* kd = heads + Hg * n_head;  // γ^(n−1−j)·φ(k_j) [C × D], with a decay
    std::vector<char> has_state(static_cast<std::size_t>(Hg));

    for (idx item; (item = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      const idx b = item / groups, h0 = (item % groups) * Hg;
      // The state before the first chunk: the given one, else zeros.
      for (idx u = 0; u < Hg; ++u) {
        const idx h = h0 + u;
        float* sm = heads + u * n_head;
        float* z = sm + n_s;
        float* pw = z + n_z;
        float* rp = pw + n_pw;
        const float gamma = a.decay.empty() ? 1.0f : a.decay[static_cast<std::size_t>(h)];
        if (gamma != 1.0f) {
          decay_powers(gamma, C, pw);
          for (idx t = 0; t < C; ++t) rp[t] = pw[C - 1 - t];
        }
        const float* st_kv = a.state_kv ? a.state_kv + (b * s.heads_q + h) * D * E : nullptr;
        const float* st_z = a.state_z ? a.state_z + (b * s.heads_q + h) * D : nullptr;
        for (idx d = 0; d < D; ++d) {
          if (st_kv)
            std::copy(st_kv + d * E, st_kv + (d + 1) * E, sm + d * Ep);
          else
            std::fill(sm + d * Ep, sm + d * Ep + E, 0.0f);
        }
        if (st_z)
          std::copy(st_z, st_z + D, z);
        else
          std::fill(z, z + D, 0.0f);
        has_state[static_cast<std::size_t>(u)] = st_kv != nullptr;
      }

      for (idx c0 = 0; c0 < N; c0 += C) {
        const idx n = std::min(C, N - c0), np = round_up(n, L);
        const bool last = c0 + n == N;
        idx packed = -1;  // the K/V head whose chunk is in kf, kt, vc
        for (idx u = 0; u < Hg; ++u) {
          const idx h = h0 + u, g = h / s.group();
          float* sm = heads + u * n_head;
          float* z = sm + n_s;
          const float* pw = z + n_z;
          const float* rp = pw + n_pw;
          const bool decayed = !a.decay.empty() && a.decay[static_cast<std::size_t>(h)] != 1.0f;
          char& has = has_state[static_cast<std::size_t>(u)];

          phi.rows(role::query, b, h, c0, n, qf, D, a.scale);
          if (g != packed) {  // query heads of one K/V head share its packed chunk
            phi.rows(role::key, b, g, c0, n, kf, D, 1.0f);
            simd::transpose<A>(kf, D, n, D, kt, Cp);
            for (idx j = 0; j < n; ++j) copy_row<A>(vc + j * Ep, a.v.row(b, c0 + j, g), E);
            packed = g;
          }
          // This head's rows of the next chunk, fetched while the products run (the output
          // rows are streamed: simd::stream_copy).
          prefetch_plan pf;
          const idx next_n = std::min(C, N - c0 - n);
          pf.add(a.q, b, h, c0 + n, next_n);
          pf.add(a.k, b, g, c0 + n, next_n);
          pf.add(a.v, b, g, c0 + n, next_n);
          const idx slots = 2 * gemm_slots<A>(n, D, simd::triangle::none) +
                            gemm_slots<A>(n, n, simd::triangle::depth) +
                            gemm_slots<A>(D, n, simd::triangle::none);
          const idx per_slot = (pf.rows() + slots - 1) / slots;

          // Intra-chunk scores first: the normaliser needs their row sums.
          gemm_prefetching<A>(n, np, D, qf, D, 1, kt, Cp, pm, Cp, false, simd::triangle::columns,
                              pf, per_slot);
          for (idx i = 0; i < n; ++i) {
            float* row = pm + i * Cp;
            std::fill(row + i + 1, row + n, 0.0f);
            if (decayed) multiply<A>(row, rp + (C - 1 - i), i + 1);
            // o_i = (γ^{i+1}·φ(q_i)ᵀS + Σ_j P_ij·v_j) / den_i: the factors go into row i of
            // φ(Q_c) and of P, so that the two products below give the final output.
            float inter = decayed ? pw[i + 1] : 1.0f;
            if (a.normalise) {
              float den = sum<A>(row, i + 1);
              if (has) den += inter * dot<A>(qf + i * D, z, D);
              const float f = 1.0f / (den + a.epsilon);
              scale_add<A>(row, f, nullptr, i + 1);
              inter *= f;
            }
            if (has && inter != 1.0f) scale_add<A>(qf + i * D, inter, nullptr, D);
          }
          // O_c in a contiguous buffer: out rows lie heads·head_dim_v apart, where the second
          // product's reloads of them would evict each other from L1.
          if (has)  // inter-chunk: what the state (every earlier token) contributes
            gemm_prefetching<A>(n, Ep, D, qf, D, 1, sm, Ep, o, Ep, false, simd::triangle::none, pf,
                                per_slot);
          gemm_prefetching<A>(n, Ep, n, pm, Cp, 1, vc, Ep, o, Ep, has, simd::triangle::depth, pf,
                              per_slot);
          for (idx i = 0; i < n; ++i) simd::stream_copy<A>(a.out.row(b, c0 + i, h), o + i * Ep, E);

          // The state after the chunk (not needed after the last one unless it is returned).
          if (!last || a.state_kv) {
            const float* kn = kf;  // φ(k_j), decayed by γ^(n−1−j) into kd if need be
            if (decayed) {
              for (idx d = 0; d < D; ++d) scale_add<A>(sm + d * Ep, pw[n], nullptr, E);
              scale_add<A>(z, pw[n], nullptr, D);
              for (idx j = 0; j < n; ++j)
                store_row<A>(kd + j * D, D, [&]<class V>(V, idx d) {
                  using VA = simd::arch_of_t<V>;
                  return load_as<V, VA>(kf + j * D + d) * simd::splat<VA>(pw[n - 1 - j]);
                });
              kn = kd;
            }
            gemm_prefetching<A>(D, Ep, n, kn, 1, D, vc, Ep, sm, Ep, true, simd::triangle::none, pf,
                                per_slot);
            add_column_sums<A>(z, kn, n, D, D);
            has = true;
          }
          pf.issue(pf.rows());
        }
      }

      for (idx u = 0; u < Hg; ++u) {
        const idx h = h0 + u;
        const float* sm = heads + u * n_head;
        const float* z = sm + n_s;
        if (a.state_kv) {
          float* st_kv = a.state_kv + (b * s.heads_q + h) * D * E;
          for (idx d = 0; d < D; ++d) std::copy(sm + d * Ep, sm + d * Ep + E, st_kv + d * E);
        }
        if (a.state_z) std::copy(z, z + D, a.state_z + (b * s.heads_q + h) * D);
      }
    }
  };
  run_workers(a.executor, workers, body);
}

// ---- non-causal: S = φ(K)ᵀV once, then O = φ(Q)·S ---------------------------------------------

/// Token rows (one head's row each) per packed block of the non-causal form: a block of T tokens
/// of a group of heads is read token by token, in address order (consecutive heads of a token
/// are contiguous), so the hardware streams it; T·heads rows of φ and V stay within L2.
inline constexpr idx block_rows = 256;
/// Fewest keys (queries) per range when ranges are split over workers.
inline constexpr idx min_range = 512;

/// Tokens per block for `heads` heads: block_rows / heads, at least 16, at most 128.
inline idx block_tokens(idx heads) { return std::clamp<idx>(block_rows / heads, 16, 128); }

template <class A, class Feature>
void noncausal(const args& a, const Feature& phi) {
  constexpr idx L = simd::lanes<A>;
  const attn::detail::problem_shape& s = a.shape;
  const idx Nq = s.seq_q, Nk = s.seq_k, D = s.head_dim, E = s.head_dim_v;
  const idx Ep = round_up(E, L), Dp = round_up(D, L), G = s.group();
  const idx kv_heads = s.batch * s.heads_kv;
  if (kv_heads == 0 || Nq == 0) return;
  const idx n_state = D * Ep + Dp;  // S [D × Ep] then z [Dp]
  const bool direct = Ep == E;      // output rows are whole vectors
  // Per head of a block: φ rows [T × D] then V (or O) rows [T × Ep].
  auto block_floats = [&](idx heads) { return heads * block_tokens(heads) * (D + Ep); };

  // Adds φ(K)ᵀV and Σ φ(k) over keys [k0, k1) of K/V heads g0 … g0+hg−1 of batch b into their
  // states (n_state floats apart from `states`).
  auto accumulate_keys = [&](idx b, idx g0, idx hg, idx k0, idx k1, float* work, float* states) {
    const idx T = block_tokens(hg), per_head = T * (D + Ep);
    for (idx j0 = k0; j0 < k1; j0 += T) {
      const idx n = std::min(T, k1 - j0);
      for (idx j = 0; j < n; ++j)
        for (idx u = 0; u < hg; ++u) {
          float* kf = work + u * per_head;
          phi.rows(role::key, b, g0 + u, j0 + j, 1, kf + j * D, D, 1.0f);
          copy_row<A>(kf + T * D + j * Ep, a.v.row(b, j0 + j, g0 + u), E);
        }
      prefetch_plan pf;
      const idx next_n = std::min(T, k1 - j0 - n);
      pf.add(a.k, b, g0, j0 + n, next_n, hg);
      pf.add(a.v, b, g0, j0 + n, next_n, hg);
      const idx slots = hg * gemm_slots<A>(D, n, simd::triangle::none);
      const idx per_slot = (pf.rows() + slots - 1) / slots;
      for (idx u = 0; u < hg; ++u) {
        const float* kf = work + u * per_head;
        float* st = states + u * n_state;
        gemm_prefetching<A>(D, Ep, n, kf, 1, D, kf + T * D, Ep, st, Ep, true, simd::triangle::none,
                            pf, per_slot);
        if (a.normalise) add_column_sums<A>(st + D * Ep, kf, n, D, D);
      }
    }
  };
  // Writes the outputs of queries [q0, q1) of query heads h0 … h0+hq−1 of batch b, head h0+u
  // reading the state at states + (u / G)·n_state.
  auto write_queries = [&](idx b, idx h0, idx hq, idx q0, idx q1, float* work,
                           const float* states) {
    const idx T = block_tokens(hq), per_head = T * (D + Ep);
    for (idx i0 = q0; i0 < q1; i0 += T) {
      const idx n = std::min(T, q1 - i0);
      for (idx i = 0; i < n; ++i)
        for (idx u = 0; u < hq; ++u)
          phi.rows(role::query, b, h0 + u, i0 + i, 1, work + u * per_head + i * D, D, a.scale);
      prefetch_plan pf;
      pf.add(a.q, b, h0, i0 + n, std::min(T, q1 - i0 - n), hq);
      const idx slots = hq * gemm_slots<A>(n, D, simd::triangle::none);
      const idx per_slot = (pf.rows() + slots - 1) / slots;
      for (idx u = 0; u < hq; ++u) {
        float* qf = work + u * per_head;
        const float* st = states + (u / G) * n_state;
        const float* z = st + D * Ep;
        // Normalised: o_i = (φ(q_i) / (φ(q_i)·z + ε))·S — the row factor goes into φ(q_i).
        if (a.normalise)
          for (idx i = 0; i < n; ++i)
            scale_add<A>(qf + i * D, 1.0f / (dot<A>(qf + i * D, z, D) + a.epsilon), nullptr, D);
        // Whole vectors per row: the product stores its rows straight into the output (each
        // written once, a band at a time), saving a pass that copies them out of `work`.
        float* o = direct ? a.out.row(b, i0, h0 + u) : qf + T * D;
        gemm_prefetching<A>(n, Ep, D, qf, D, 1, st, Ep, o, direct ? a.out.strides[1] : Ep, false,
                            simd::triangle::none, pf, per_slot);
      }
      // Otherwise O is streamed token by token (written once, never read), in address order.
      for (idx i = 0; i < n && !direct; ++i)
        for (idx u = 0; u < hq; ++u)
          simd::stream_copy<A>(a.out.row(b, i0 + i, h0 + u), work + u * per_head + T * D + i * Ep,
                               E);
    }
  };

  if (a.workers <= 1 || kv_heads >= a.workers) {
    // One work item per (batch, group of K/V heads): the group's states over all keys, then the
    // outputs of all the group's query heads (see head_group()).
    const idx Hg = head_group(s.heads_kv, s.batch, a.workers, n_state);
    const idx groups = s.heads_kv / Hg, items = s.batch * groups;
    const int workers = static_cast<int>(std::min<idx>(a.workers, items));
    std::atomic<idx> next{0};
    auto body = [&](int) {
      attn::detail::aligned_floats buffer =
          zeroed(Hg * n_state + std::max(block_floats(Hg), block_floats(Hg * G)));
      float* states = buffer.get();
      float* work = states + Hg * n_state;
      for (idx item; (item = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
        const idx b = item / groups, g0 = (item % groups) * Hg;
        std::fill(states, states + Hg * n_state, 0.0f);
        accumulate_keys(b, g0, Hg, 0, Nk, work, states);
        write_queries(b, g0 * G, Hg * G, 0, Nq, work, states);
      }
    };
    run_workers(a.executor, workers, body);
    return;
  }

  // Few heads: split the keys into ranges (partial states), then the queries.
  const idx key_ranges =
      std::clamp<idx>((a.workers + kv_heads - 1) / kv_heads, 1, std::max<idx>(1, Nk / min_range));
  const idx q_heads = s.batch * s.heads_q;
  const idx query_ranges =
      std::clamp<idx>((a.workers + q_heads - 1) / q_heads, 1, std::max<idx>(1, Nq / min_range));
  attn::detail::aligned_floats partial(static_cast<std::size_t>(kv_heads * key_ranges * n_state));
  {
    const idx units = kv_heads * key_ranges;
    const int workers = static_cast<int>(std::min<idx>(a.workers, units));
    std::atomic<idx> next{0};
    auto body = [&](int) {
      attn::detail::aligned_floats buffer = zeroed(block_floats(1));
      for (idx unit; (unit = next.fetch_add(1, std::memory_order_relaxed)) < units;) {
        const idx head = unit / key_ranges, r = unit % key_ranges;
        const idx b = head / s.heads_kv, g = head % s.heads_kv;
        float* st = partial.get() + unit * n_state;
        std::fill(st, st + n_state, 0.0f);
        accumulate_keys(b, g, 1, Nk * r / key_ranges, Nk * (r + 1) / key_ranges, buffer.get(), st);
      }
    };
    run_workers(a.executor, workers, body);
  }
  {
    const idx units = q_heads * query_ranges;
    const int workers = static_cast<int>(std::min<idx>(a.workers, units));
    std::atomic<idx> next{0};
    auto body = [&](int) {
      attn::detail::aligned_floats buffer = zeroed(n_state + block_floats(1));
      float* st = buffer.get();
      for (idx unit; (unit = next.fetch_add(1, std::memory_order_relaxed)) < units;) {
        const idx head = unit / query_ranges, r = unit % query_ranges;
        const idx b = head / s.heads_q, h = head % s.heads_q, g = h / G;
        const float* first = partial.get() + (b * s.heads_kv + g) * key_ranges * n_state;
        std::copy(first, first + n_state, st);
        for (idx kr = 1; kr < key_ranges; ++kr)
          scale_add<A>(st, 1.0f, first + kr * n_state, n_state);
        // One head: its state is the only one (u / G = 0 for u = 0).
        write_queries(b, h, 1, Nq * r / query_ranges, Nq * (r + 1) / query_ranges, st + n_state,
                      st);
      }
    };
    run_workers(a.executor, workers, body);
  }
}

// ---- recurrent: token by token -----------------------------------------------------------------

template <class A, class Feature>
void recurrent(const args& a, const Feature& phi) {
  constexpr idx L = simd::lanes<A>, NV = simd::tile_shape<A>::query_vectors;
  const attn::detail::problem_shape& s = a.shape;
  const idx T = s.seq_q, D = s.head_dim, E = s.head_dim_v;
  const idx items = s.batch * s.heads_q;
  if (items == 0 || T == 0) return;
  // Decoding one token is a pass over S: worth more threads only when the states are large.
  const idx work = items * T * D * E;
  const int workers = static_cast<int>(
      std::clamp<idx>(std::min<idx>(work / (idx{1} << 17), items), 1, std::max(a.workers, 1)));
  const idx Dp = round_up(D, L);
  std::atomic<idx> next{0};
  auto body = [&](int) {
    attn::detail::aligned_floats buffer = zeroed(2 * Dp);
    float* qf = buffer.get();
    float* kf = qf + Dp;
    for (idx item; (item = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      const idx b = item / s.heads_q, h = item % s.heads_q, g = h / s.group();
      const float gamma = a.decay.empty() ? 1.0f : a.decay[static_cast<std::size_t>(h)];
      float* sm = a.state_kv + item * D * E;
      float* z = a.state_z + item * D;
      for (idx t = 0; t < T; ++t) {
        phi.rows(role::query, b, h, t, 1, qf, D, a.scale);
        phi.rows(role::key, b, g, t, 1, kf, D, 1.0f);
        const float* vrow = a.v.row(b, t, g);
        float* orow = a.out.row(b, t, h);
        float den = 0.0f;
        for (idx d = 0; d < D; ++d) {
          z[d] = gamma * z[d] + kf[d];
          den += qf[d] * z[d];
        }
        const float f = a.normalise ? 1.0f / (den + a.epsilon) : 1.0f;
        const simd::vec<A> gv = simd::splat<A>(gamma);
        idx e0 = 0;
        // NV vectors of columns at a time: S rows updated and read in one pass.
        for (; e0 + NV * L <= E; e0 += NV * L) {
          simd::vec<A> vv[NV], acc[NV];
          for (idx u = 0; u < NV; ++u) {
            vv[u] = simd::load<A>(vrow + e0 + u * L);
            acc[u] = simd::splat<A>(0.0f);
          }
          for (idx d = 0; d < D; ++d) {
            float* row = sm + d * E + e0;
            const simd::vec<A> kb = simd::splat<A>(kf[d]), qb = simd::splat<A>(qf[d]);
            for (idx u = 0; u < NV; ++u) {
              const simd::vec<A> x = simd::fma(kb, vv[u], simd::load<A>(row + u * L) * gv);
              simd::store<A>(row + u * L, x);
              acc[u] = simd::fma(qb, x, acc[u]);
            }
          }
          for (idx u = 0; u < NV; ++u)
            simd::store<A>(orow + e0 + u * L, acc[u] * simd::splat<A>(f));
        }
        for (; e0 + L <= E; e0 += L) {
          const simd::vec<A> vv = simd::load<A>(vrow + e0);
          simd::vec<A> acc = simd::splat<A>(0.0f);
          for (idx d = 0; d < D; ++d) {
            float* row = sm + d * E + e0;
            const simd::vec<A> x = simd::fma(simd::splat<A>(kf[d]), vv, simd::load<A>(row) * gv);
            simd::store<A>(row, x);
            acc = simd::fma(simd::splat<A>(qf[d]), x, acc);
          }
          simd::store<A>(orow + e0, acc * simd::splat<A>(f));
        }
        for (; e0 < E; ++e0) {
          float acc = 0.0f;
          for (idx d = 0; d < D; ++d) {
            float& x = sm[d * E + e0];
            x = std::fma(kf[d], vrow[e0], x * gamma);
            acc = std::fma(qf[d], x, acc);
          }
          orow[e0] = acc * f;
        }
      }
    }
  };
  run_workers(a.executor, workers, body);
}

}  // namespace attn::linear::detail
