// Agreement before a collective computation: every rank validates its own arguments, then all
// ranks exchange a fixed-size shape header (one MPI_Allgather) and either all go on or all throw
// the same attn::error.
//
// Why: ring attention is a sequence of matched sends and receives. If one rank threw on its own
// (bad shape, bad option) while the others entered the ring, they would wait forever for its
// blocks. So nothing is computed or sent until every rank knows every rank's header, and the
// decision to throw is a deterministic function of data every rank holds:
//   1. a rank-local error (the checks attn::attention itself makes, run on the local shapes)
//      is found on the lowest such rank, whose message is broadcast: all throw "rank r: …";
//   2. otherwise the headers are compared with rank 0's (dtype, batch, heads, head dims,
//      pattern, scale, score parameters), in a fixed order: all throw the first mismatch.
#pragma once

#include <mpi.h>

#include <bit>
#include <climits>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "attn/error.hpp"
#include "attn/pattern/tile.hpp"
#include "attn/tensor.hpp"

namespace attn::dist {

namespace detail {

using attn::detail::fail;

/// A small code per element type, so that ranks built with different types disagree loudly.
template <class T>
constexpr std::int64_t dtype_code() {
  if constexpr (std::is_same_v<T, float>) return 1;
  if constexpr (std::is_same_v<T, double>) return 2;
  return 3;
}
inline const char* dtype_name(std::int64_t code) {
  return code == 1 ? "float32" : code == 2 ? "float64" : "another type";
}

/// The fixed-size header each rank contributes; all fields are int64 for one MPI datatype.
struct header {
  enum field : int {
    dtype,
    local_error,  // 1 when this rank's own checks failed (message sent separately)
    pattern,      // 0 dense, 1 causal
    q0,
    q1,
    q2,
    q3,  // q dims [B, Nq, Hq, D]
    k0,
    k1,
    k2,
    k3,
    v0,
    v1,
    v2,
    v3,
    has_scale,
    scale_bits,
    softcap_bits,
    sinks,
    count
  };
  std::int64_t f[count] = {};

  std::int64_t operator[](field i) const { return f[i]; }
  std::int64_t q(int d) const { return f[q0 + d]; }
  std::int64_t k(int d) const { return f[k0 + d]; }
  std::int64_t v(int d) const { return f[v0 + d]; }
};

inline std::int64_t float_bits(float x) {
  return static_cast<std::int64_t>(std::bit_cast<std::uint32_t>(x));
}

/// Gathers every rank's header; returns them indexed by rank.
inline std::vector<header> allgather(MPI_Comm comm, const header& mine) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  std::vector<header> all(static_cast<std::size_t>(size));
  MPI_Allgather(mine.f, header::count, MPI_INT64_T, all.data(), header::count, MPI_INT64_T, comm);
  return all;
}

/// Broadcasts `text` from `root` (every rank gets root's string).
inline std::string broadcast(MPI_Comm comm, int root, const std::string& text) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  int n = rank == root ? static_cast<int>(text.size()) : 0;
  MPI_Bcast(&n, 1, MPI_INT, root, comm);
  std::string out = rank == root ? text : std::string(static_cast<std::size_t>(n), ' ');
  MPI_Bcast(out.data(), n, MPI_CHAR, root, comm);
  return out;
}

/// Strips the "attn: " prefix that attn::error adds, to re-wrap a message.
inline std::string bare(const attn::error& e) {
  std::string m = e.what();
  const std::string prefix = "attn: ";
  return m.rfind(prefix, 0) == 0 ? m.substr(prefix.size()) : m;
}

/// Compares field `i` of rank r's header with rank 0's.
inline void require_same(const std::vector<header>& all, std::size_t r, header::field i,
                         const char* name, const char* what) {
  if (all[r][i] != all[0][i])
    fail("rank ", r, ": ", name, "=", all[r][i], " does not match rank 0's ", name, "=", all[0][i],
         " (", what, ")");
}

/// The collective decision. `local` is this rank's header (local_error set when its own checks
/// failed, with the message in `local_message`). Returns every header, or throws the same
/// attn::error on every rank.
inline std::vector<header> agree(MPI_Comm comm, const header& local,
                                 const std::string& local_message) {
  const std::vector<header> all = allgather(comm, local);
  // Element types first: with different types the shapes below may not even mean the same.
  for (std::size_t r = 1; r < all.size(); ++r)
    if (all[r][header::dtype] != all[0][header::dtype])
      fail("rank ", r, ": element type ", dtype_name(all[r][header::dtype]),
           " does not match rank 0's ", dtype_name(all[0][header::dtype]), " (dtype)");
  for (std::size_t r = 0; r < all.size(); ++r)
    if (all[r][header::local_error] != 0)
      fail("rank ", r, ": ", broadcast(comm, static_cast<int>(r), local_message));
  for (std::size_t r = 1; r < all.size(); ++r) {
    require_same(all, r, header::q0, "q.dim(0)", "batch");
    require_same(all, r, header::q2, "q.dim(2)", "heads");
    require_same(all, r, header::q3, "q.dim(3)", "head_dim");
    require_same(all, r, header::k2, "k.dim(2)", "heads");
    require_same(all, r, header::v3, "v.dim(3)", "head_dim");
    require_same(all, r, header::pattern, "pattern", "0 = dense, 1 = causal");
    require_same(all, r, header::has_scale, "options.scale set", "scale");
    require_same(all, r, header::scale_bits, "options.scale bits", "scale");
    require_same(all, r, header::softcap_bits, "softmax.softcap bits", "softcap");
    require_same(all, r, header::sinks, "softmax.sinks.size()", "sinks");
  }
  return all;
}

/// Whether `n` floats fit MPI's int count (a block is one message).
inline void require_int_count(std::size_t rank, std::int64_t n) {
  if (n > INT_MAX)
    fail("rank ", rank, ": its K/V block holds ", n, " floats, more than one MPI message (",
         INT_MAX, ")");
}

}  // namespace detail
}  // namespace attn::dist
