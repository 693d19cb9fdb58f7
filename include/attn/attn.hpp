// attn — CPU attention kernels over Eigen tensors. The umbrella header.
#pragma once

#include "attn/attention.hpp"
#include "attn/error.hpp"
#include "attn/exec/executor.hpp"
#include "attn/merge.hpp"
#include "attn/options.hpp"
#include "attn/pattern/alibi.hpp"
#include "attn/pattern/band.hpp"
#include "attn/pattern/combine.hpp"
#include "attn/pattern/dense.hpp"
#include "attn/pattern/tensor_mask.hpp"
#include "attn/pattern/tile.hpp"
#include "attn/score/sigmoid.hpp"
#include "attn/score/softmax.hpp"
#include "attn/simd.hpp"
#include "attn/tensor.hpp"
#include "attn/version.hpp"
