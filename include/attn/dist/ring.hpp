// attn::dist::ring_attention — exact softmax attention over a sequence split across the ranks
// of an MPI communicator (sequence parallelism). Not part of attn/attn.hpp: it needs MPI (CMake
// target attn::mpi). See docs/distributed.md.
//
// Ring Attention (Liu, Zaharia, Abbeel 2023, "Ring Attention with Blockwise Transformers for
// Near-Infinite Context"): each rank keeps its query rows and passes its K/V block around a
// ring. At step s = 0 … P−1 rank r holds the K/V block of rank (r − s) mod P, computes the
// partial attention of its queries over it with the fused kernel (attn::attention with
// options::lse), and merges the partial into its running result exactly by log-sum-exp
// (attn::merge, merge.hpp). Meanwhile the block is already travelling on to rank r + 1 and the
// next one arriving from rank r − 1 (MPI_Isend / MPI_Irecv into the other of two buffers), so
// the transfer hides behind the compute when a block's compute takes longer than its transfer.
//
//   ring_attention(comm, q, k, v, out, attn::softmax{}, attn::dense{} [, opt [, &stats]])
//   ring_attention(comm, q, k, v, out, attn::softmax{}, attn::causal{} [, opt [, &stats]])
//
// Tensors are each rank's local rows, [B, n_r, H, D] as for attn::attention (GQA: k and v may
// have fewer heads). Dense: any split of the rows works (local lengths may differ, may be 0; K/V
// may even have other lengths than Q: cross-attention). Causal: q, k, v of a rank hold the same
// positions, in the zigzag layout of dist/zigzag.hpp (front chunk = first ceil(n_r/2) rows, back
// chunk = the rest; split()/gather() convert), so every rank does the same share of the triangle.
// A pair (query chunk, key chunk) is dense when the keys are wholly in the queries' past, causal
// on the diagonal (the same chunk), and skipped when in the future.
//
// opt.lse, if set, receives the local rows' LSE [B, Hq, n_r]. opt.scale, threads, executor, path
// and kv_splits pass to each block; key_lengths / query_lengths are not supported (pad with an
// empty slice instead). A softmax sink counts once per row: only in the first block of a chunk.
// Errors are agreed before any transfer (dist/agree.hpp): every rank throws the same attn::error.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "attn/attention.hpp"
#include "attn/dist/agree.hpp"
#include "attn/dist/zigzag.hpp"
#include "attn/merge.hpp"
#include "attn/pattern/band.hpp"
#include "attn/pattern/dense.hpp"

namespace attn::dist {

/// Where one rank's time went in a ring_attention call (seconds), for the example and bench.
struct ring_stats {
  double total = 0;    ///< the whole call
  double setup = 0;    ///< agreement (one allgather) and packing local Q/K/V into chunks
  double compute = 0;  ///< the fused kernel on every block, and the LSE merges
  double wait = 0;     ///< blocked in MPI_Wait*/Test*: communication not hidden behind compute
  std::int64_t bytes_sent = 0;
  int steps = 0;
};

namespace detail {

using clock = std::chrono::steady_clock;
inline double seconds_since(clock::time_point t0) {
  return std::chrono::duration<double>(clock::now() - t0).count();
}

/// A contiguous run of a rank's local rows: the unit the kernel runs on. `chunk` orders chunks
/// globally (zigzag: front of rank r = r, back = 2P − 1 − r; dense: all 0 and all visible).
struct segment {
  idx start = 0, length = 0, chunk = 0;
};

/// The chunks of a rank holding n rows (see zigzag.hpp for the causal order).
inline std::array<segment, 2> segments_of(bool causal, int rank, int ranks, idx n) {
  if (!causal) return {segment{0, n, 0}, segment{n, 0, 0}};
  const idx front = (n + 1) / 2;
  return {segment{0, front, rank}, segment{front, n - front, 2 * idx{ranks} - 1 - rank}};
}

/// Copies rows [s.start, s.start + s.length) of every batch of x to dst (contiguous).
template <class T>
float* pack_rows(const attn::detail::view4<T>& x, const segment& s, float* dst) {
  const idx row = x.heads() * x.head_dim();
  for (idx b = 0; b < x.batch(); ++b)
    for (idx i = 0; i < s.length; ++i)
      dst = std::copy(x.row(b, s.start + i, 0), x.row(b, s.start + i, 0) + row, dst);
  return dst;
}

/// A block of one rank on the wire: [K chunk 0 | K chunk 1 | V chunk 0 | V chunk 1], each chunk
/// [B, len, Hkv, D] contiguous, so that the kernel maps a chunk in place.
struct block_shape {
  idx batch = 0, heads = 0, head_dim = 0, head_dim_v = 0;
  std::array<segment, 2> seg{};
  idx k_floats(int c) const { return batch * seg[c].length * heads * head_dim; }
  idx v_floats(int c) const { return batch * seg[c].length * heads * head_dim_v; }
  idx floats() const { return k_floats(0) + k_floats(1) + v_floats(0) + v_floats(1); }
  const float* k(const float* p, int c) const { return p + (c == 0 ? 0 : k_floats(0)); }
  const float* v(const float* p, int c) const {
    return p + k_floats(0) + k_floats(1) + (c == 0 ? 0 : v_floats(0));
  }
};

/// A read-only view of any rank-4 tensor (a non-const TensorMap's data() is not const).
template <class X>
attn::detail::view4<const attn::detail::scalar_of<X>> const_view(const X& x) {
  const auto m = attn::detail::view_of(x);
  attn::detail::view4<const attn::detail::scalar_of<X>> c;
  c.data = m.data;
  c.dims = m.dims;
  c.strides = m.strides;
  return c;
}

template <class Pattern>
constexpr bool is_causal() {
  return std::is_same_v<Pattern, causal>;
}

/// This rank's own checks: the ones attn::attention makes, run on the local shapes (so that a
/// bad argument is found before the ring starts), plus ring_attention's own restrictions.
template <class S, class Score, class Pattern>
void check_local(const attn::detail::view4<const S>& q, const attn::detail::view4<const S>& k,
                 const attn::detail::view4<const S>& v, const attn::detail::view4<S>& o,
                 const Score& score, const Pattern& pattern, const options& opt) {
  if constexpr (!std::is_same_v<S, float>) {
    fail("the element type is ", dtype_name(dtype_code<S>()), "; ring_attention computes float32");
  } else {
    const auto shape = attn::detail::check_qkvo(q, k, v, o);
    score.check(shape);
    pattern.check(shape);
    attn::detail::check_options(opt, shape);
    if (!opt.key_lengths.empty() || !opt.query_lengths.empty())
      fail("options.key_lengths / query_lengths are not supported by ring_attention");
    if (is_causal<Pattern>() && k.seq() != q.seq())
      fail("k.dim(1)=", k.seq(), " does not match q.dim(1)=", q.seq(),
           " (sequence; causal ring attention needs Q and K/V rows at the same positions)");
  }
}

/// The header of one rank (agree.hpp).
template <class S, class Pattern>
header make_header(const attn::detail::view4<const S>& q, const attn::detail::view4<const S>& k,
                   const attn::detail::view4<const S>& v, const softmax& score, const options& opt,
                   bool local_error) {
  header h;
  h.f[header::dtype] = dtype_code<S>();
  h.f[header::local_error] = local_error;
  h.f[header::pattern] = is_causal<Pattern>();
  for (int d = 0; d < 4; ++d) {
    h.f[header::q0 + d] = q.dims[static_cast<std::size_t>(d)];
    h.f[header::k0 + d] = k.dims[static_cast<std::size_t>(d)];
    h.f[header::v0 + d] = v.dims[static_cast<std::size_t>(d)];
  }
  h.f[header::has_scale] = opt.scale.has_value();
  h.f[header::scale_bits] = opt.scale ? float_bits(*opt.scale) : 0;
  h.f[header::softcap_bits] = float_bits(score.softcap);
  h.f[header::sinks] = static_cast<std::int64_t>(score.sinks.size());
  return h;
}

/// The partial result of one query chunk: running output and LSE, merged block by block.
struct partial {
  segment seg;
  tensor4<float> q, out, part;
  lse_tensor lse, part_lse;
  bool started = false;  // a block has been computed (the softmax sink is already counted)
};

/// Runs the ring once all ranks agreed. Float only.
template <class Arch, class O, class Score, class Pattern>
void run_ring(MPI_Comm comm, const std::vector<header>& all,
              const attn::detail::view4<const float>& q, const attn::detail::view4<const float>& k,
              const attn::detail::view4<const float>& v, O& out, const Score& score,
              const options& opt, ring_stats& st, clock::time_point t0) {
  constexpr bool causal_ring = is_causal<Pattern>();
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const auto urank = static_cast<std::size_t>(rank);

  // The wire shape of every rank's block, known everywhere from the headers.
  std::vector<block_shape> blocks(all.size());
  idx capacity = 0;
  for (std::size_t r = 0; r < all.size(); ++r) {
    block_shape& b = blocks[r];
    b.batch = all[r].k(0);
    b.heads = all[r].k(2);
    b.head_dim = all[r].k(3);
    b.head_dim_v = all[r].v(3);
    b.seg = segments_of(causal_ring, static_cast<int>(r), size, all[r].k(1));
    capacity = std::max(capacity, b.floats());
  }

  // Local K/V into wire order (buffer 0), and local Q chunks into contiguous tensors.
  std::array<std::vector<float>, 2> buffer;
  buffer[0].resize(static_cast<std::size_t>(capacity));
  buffer[1].resize(size > 1 ? static_cast<std::size_t>(capacity) : 0);
  {
    const block_shape& mine = blocks[urank];
    float* p = buffer[0].data();
    for (int c = 0; c < 2; ++c) p = pack_rows(k, mine.seg[static_cast<std::size_t>(c)], p);
    for (int c = 0; c < 2; ++c) p = pack_rows(v, mine.seg[static_cast<std::size_t>(c)], p);
  }
  const auto o = attn::detail::view_of(out);
  const idx batch = q.batch(), heads = q.heads(), dv = o.head_dim();
  std::array<partial, 2> parts;
  const auto qseg = segments_of(causal_ring, rank, size, q.seq());
  for (std::size_t c = 0; c < 2; ++c) {
    partial& p = parts[c];
    p.seg = qseg[c];
    p.q.resize(batch, p.seg.length, heads, q.head_dim());
    pack_rows(q, p.seg, p.q.data());
    p.out.resize(batch, p.seg.length, heads, dv);
    p.out.setZero();
    p.lse.resize(batch, heads, p.seg.length);
    p.lse.setConstant(-std::numeric_limits<float>::infinity());
    p.part.resize(batch, p.seg.length, heads, dv);
    p.part_lse.resize(batch, heads, p.seg.length);
  }
  st.setup = seconds_since(t0);

  Score later = score;  // the score of every block after a chunk's first: no sink
  later.sinks = {};
  const int right = (rank + 1) % size, left = (rank + size - 1) % size;
  for (int s = 0; s < size; ++s) {
    const int src = (rank - s + size) % size;  // whose block we hold this step
    const float* cur = buffer[static_cast<std::size_t>(s % 2)].data();
    // Post the next step's transfer before computing on this block: double buffering.
    std::array<MPI_Request, 2> req{MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    if (s + 1 < size) {
      const int next = (rank - s - 1 + 2 * size) % size;  // the block rank `left` holds now
      float* into = buffer[static_cast<std::size_t>((s + 1) % 2)].data();
      MPI_Irecv(into, static_cast<int>(blocks[static_cast<std::size_t>(next)].floats()), MPI_FLOAT,
                left, s, comm, &req[0]);
      const idx n = blocks[static_cast<std::size_t>(src)].floats();
      MPI_Isend(cur, static_cast<int>(n), MPI_FLOAT, right, s, comm, &req[1]);
      st.bytes_sent += n * static_cast<idx>(sizeof(float));
    }
    const block_shape& blk = blocks[static_cast<std::size_t>(src)];
    for (partial& p : parts)
      for (int c = 0; c < 2; ++c) {
        const segment& ks = blk.seg[static_cast<std::size_t>(c)];
        if (p.seg.length == 0 || ks.length == 0 || ks.chunk > p.seg.chunk) continue;
        const auto t = clock::now();
        const_tensor4_map<float> kc(blk.k(cur, c), batch, ks.length, blk.heads, blk.head_dim);
        const_tensor4_map<float> vc(blk.v(cur, c), batch, ks.length, blk.heads, blk.head_dim_v);
        options o_part = opt;
        // emplace, not `=`: assigning to an engaged optional<TensorMap> would copy the data
        // into the caller's LSE map instead of re-pointing the map.
        o_part.lse.emplace(p.part_lse.data(), batch, heads, p.seg.length);
        const Score& sc = p.started ? later : score;
        if (causal_ring && ks.chunk == p.seg.chunk)  // the diagonal: same positions, square
          attention<Arch>(p.q, kc, vc, p.part, sc, causal{}, o_part);
        else
          attention<Arch>(p.q, kc, vc, p.part, sc, dense{}, o_part);
        p.started = true;
        merge(p.out, p.lse, p.part, p.part_lse);
        st.compute += seconds_since(t);
        // Nudge the transfer along: without a progress thread MPI moves data inside MPI calls.
        const auto w = clock::now();
        int done = 0;
        MPI_Testall(2, req.data(), &done, MPI_STATUSES_IGNORE);
        st.wait += seconds_since(w);
      }
    const auto w = clock::now();
    MPI_Waitall(2, req.data(), MPI_STATUSES_IGNORE);
    st.wait += seconds_since(w);
    ++st.steps;
  }

  // Chunks back into the caller's rows.
  for (const partial& p : parts)
    for (idx b = 0; b < batch; ++b)
      for (idx i = 0; i < p.seg.length; ++i) {
        const float* src = &p.out(b, i, 0, 0);
        std::copy(src, src + heads * dv, o.row(b, p.seg.start + i, 0));
        if (opt.lse)
          for (idx h = 0; h < heads; ++h) (*opt.lse)(b, h, p.seg.start + i) = p.lse(b, h, i);
      }
}

}  // namespace detail

/// Exact softmax attention of this rank's query rows over every rank's keys; see the file
/// comment. Pattern: attn::dense or attn::causal (bottom-right and top-left agree: the global
/// problem is square). Collective: every rank of comm must call it.
template <class Arch = simd::default_arch, class Q, class K, class V, class O,
          class Pattern = dense>
requires(attn::detail::row_major_tensor<Q, 4>&& attn::detail::row_major_tensor<K, 4>&&
             attn::detail::row_major_tensor<V, 4>&& attn::detail::row_major_tensor<
                 O, 4>) void ring_attention(MPI_Comm comm, const Q& q, const K& k, const V& v,
                                            O& out, const softmax& score = {},
                                            const Pattern& pattern = {}, const options& opt = {},
                                            ring_stats* stats = nullptr) {
  static_assert(std::is_same_v<Pattern, dense> || std::is_same_v<Pattern, causal>,
                "ring_attention supports attn::dense and attn::causal");
  using S = attn::detail::scalar_of<Q>;
  static_assert(std::is_same_v<S, attn::detail::scalar_of<K>> &&
                    std::is_same_v<S, attn::detail::scalar_of<V>> &&
                    std::is_same_v<S, attn::detail::scalar_of<O>>,
                "q, k, v and out hold the same element type");
  const auto t0 = detail::clock::now();
  const auto qv = detail::const_view(q), kv = detail::const_view(k), vv = detail::const_view(v);
  const auto ov = attn::detail::view_of(out);

  std::string message;
  bool local_error = false;
  try {
    detail::check_local<S>(qv, kv, vv, ov, score, pattern, opt);
  } catch (const attn::error& e) {
    local_error = true;
    message = detail::bare(e);
  }
  const auto all = detail::agree(
      comm, detail::make_header<S, Pattern>(qv, kv, vv, score, opt, local_error), message);
  for (std::size_t r = 0; r < all.size(); ++r) {
    const auto& h = all[r];
    detail::require_int_count(r, h.k(0) * h.k(1) * h.k(2) * (h.k(3) + h.v(3)));
  }

  ring_stats st;
  if constexpr (std::is_same_v<S, float>)
    detail::run_ring<Arch, O, softmax, Pattern>(comm, all, qv, kv, vv, out, score, opt, st, t0);
  st.total = detail::seconds_since(t0);
  if (stats) *stats = st;
}

}  // namespace attn::dist
