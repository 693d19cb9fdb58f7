// The SIMD layer: arch choice, vector operations, exponentials, the attention micro-kernels and
// the tile transposes.
#pragma once

#include "attn/simd/arch.hpp"
#include "attn/simd/exp.hpp"
#include "attn/simd/microkernel.hpp"
#include "attn/simd/ops.hpp"
#include "attn/simd/transpose.hpp"
