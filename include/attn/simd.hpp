// The SIMD layer: arch choice, vector operations, exponentials and the attention micro-kernels.
#pragma once

#include "attn/simd/arch.hpp"
#include "attn/simd/exp.hpp"
#include "attn/simd/microkernel.hpp"
#include "attn/simd/ops.hpp"
