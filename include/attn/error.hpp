// attn::error — the one exception type of the library.
//
// Every check on user input throws attn::error before any output is written, with a message
// that names the tensor, the dimension and both values, e.g.
//   attn: k.dim(2)=3 does not divide q.dim(2)=8 (heads)
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace attn {

/// Thrown for invalid input (shapes, parameters). Derives from std::invalid_argument so that
/// callers who already catch standard argument errors catch it too.
class error : public std::invalid_argument {
 public:
  explicit error(const std::string& what) : std::invalid_argument("attn: " + what) {}
};

namespace detail {

/// Builds an error message from streamable parts: fail("q.dim(", 0, ")=", 3, ...).
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  throw error(message.str());
}

}  // namespace detail
}  // namespace attn
