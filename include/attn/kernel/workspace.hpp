// Per-thread scratch memory of the fused loop: allocated once per worker per call, 64-byte
// aligned, O(tile · head_dim) — never per tile, never N × N.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

namespace attn::detail {

class aligned_floats {
 public:
  explicit aligned_floats(std::size_t count)
      : data_(static_cast<float*>(
            ::operator new[](round_up(count) * sizeof(float), std::align_val_t{64}))) {}
  float* get() const { return data_.get(); }

 private:
  static std::size_t round_up(std::size_t n) { return (n + 15) / 16 * 16; }
  struct release {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::unique_ptr<float[], release> data_;
};

}  // namespace attn::detail
