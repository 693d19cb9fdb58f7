// Routing attention: routers decide from the data which keys each query attends to, and the
// fused loop runs only over those (docs/ARCHITECTURE.md, "Routing"). Block routers return a
// pattern for attn::attention(); token-subset routers come with their own entry point that
// gathers the subsets and runs the same loop over them.
//
//   pattern-based   attn::moba, attn::sparge            → block_selection (attention(), or
//                                                         selection_attention(): key-block-major,
//                                                         the fast path for MoBA's per-query picks)
//                   attn::biformer                      → region_selection (biformer_attention())
//   token subsets   attn::routing_transformer           → cluster_selection
//                                                         (routing_transformer_attention())
//                   attn::mosa                          → token_selection (mosa_attention())
#pragma once

#include "attn/routing/biformer.hpp"
#include "attn/routing/block_rows.hpp"
#include "attn/routing/common.hpp"
#include "attn/routing/moba.hpp"
#include "attn/routing/mosa.hpp"
#include "attn/routing/routing_transformer.hpp"
#include "attn/routing/selection.hpp"
#include "attn/routing/sparge.hpp"
#include "attn/routing/subsets.hpp"
#include "attn/routing/topk.hpp"
