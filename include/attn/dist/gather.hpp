// Collective helpers for the zigzag layout (dist/zigzag.hpp): learn every rank's local length,
// and gather local [B, n_r, H, D] tensors into the global [B, N, H, D] one on a root rank.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <vector>

#include "attn/dist/agree.hpp"
#include "attn/dist/zigzag.hpp"

namespace attn::dist {

/// Every rank passes its own local length; every rank gets the whole layout.
inline zigzag_layout exchange_layout(MPI_Comm comm, idx local_length) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  std::vector<std::int64_t> n(static_cast<std::size_t>(size));
  const std::int64_t mine = local_length;
  MPI_Allgather(&mine, 1, MPI_INT64_T, n.data(), 1, MPI_INT64_T, comm);
  return zigzag_layout::from_lengths(std::vector<idx>(n.begin(), n.end()));
}

/// Gathers each rank's local rows (laid out as `layout` says) into the global tensor on `root`;
/// other ranks get an empty tensor. Batch, heads and head_dim must agree (the caller's job: a
/// tensor that went through ring_attention already did).
template <class X>
tensor4<float> gather(MPI_Comm comm, const X& local, const zigzag_layout& layout, int root = 0) {
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (layout.ranks() != size)
    attn::detail::fail("gather: the layout has ", layout.ranks(), " ranks, the communicator ",
                       size);
  const auto l = attn::detail::view_of(local);
  const idx row = l.heads() * l.head_dim() * l.batch();  // floats per local sequence row
  // Counts on every rank (plain arithmetic on the shared layout), so that a size MPI cannot
  // express throws everywhere rather than on the root alone.
  std::vector<int> counts, offsets;
  idx offset = 0;
  for (int r = 0; r < size; ++r) {
    const idx n = layout.local_length(r) * row;
    detail::require_int_count(static_cast<std::size_t>(r), n);
    counts.push_back(static_cast<int>(n));
    offsets.push_back(static_cast<int>(offset));
    offset += n;
  }
  detail::require_int_count(static_cast<std::size_t>(root), offset);
  std::vector<float> all(rank == root ? static_cast<std::size_t>(offset) : 0);
  MPI_Gatherv(l.data, static_cast<int>(l.size()), MPI_FLOAT, all.data(), counts.data(),
              offsets.data(), MPI_FLOAT, root, comm);
  if (rank != root) return {};
  tensor4<float> global(l.batch(), layout.global_length(), l.heads(), l.head_dim());
  for (int r = 0; r < size; ++r) {
    const idx n = layout.local_length(r);
    const_tensor4_map<float> part(all.data() + offsets[static_cast<std::size_t>(r)], l.batch(), n,
                                  l.heads(), l.head_dim());
    place(part, layout, r, global);
  }
  return global;
}

}  // namespace attn::dist
