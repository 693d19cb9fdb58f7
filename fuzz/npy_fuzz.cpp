// libFuzzer target for examples/common/npy.hpp: any byte string must either parse into an
// array whose invariants hold, or be rejected with std::runtime_error. Anything else — an
// out-of-bounds read (ASan), undefined behaviour (UBSan), another exception type (e.g.
// std::bad_alloc from a size that was not checked against the input), a broken invariant —
// aborts and is a finding. Build and run: scripts/fuzz.sh [seconds].
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <stdexcept>

#include "npy.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const npy::header h = npy::parse_header(bytes);
    const npy::array a = npy::parse(bytes);
    // The data fits the input exactly and the element count is the product of the shape.
    std::size_t count = 1;
    for (std::size_t d : a.shape) count = d == 0 || count == 0 ? 0 : count * d;
    const std::size_t item = a.stored == npy::stored_type::f16   ? 2
                             : a.stored == npy::stored_type::f32 ? 4
                                                                 : 8;
    require(a.values.size() == count && h.count == count);
    require(h.data_offset <= size && size - h.data_offset == count * item);
    require(a.shape.size() <= npy::max_dims);
  } catch (const std::runtime_error&) {
    // Rejected with a message: the expected outcome for malformed input.
  }
  return 0;
}
