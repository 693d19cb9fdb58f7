// The double-precision references of attn: plain formulas, the oracles of the tests.
#pragma once

#include "attn/reference/linear.hpp"
#include "attn/reference/neighborhood.hpp"
#include "attn/reference/routing.hpp"
#include "attn/reference/sigmoid.hpp"
#include "attn/reference/softmax.hpp"
