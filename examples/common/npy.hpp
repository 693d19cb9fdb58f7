// A small, strict reader of NumPy's .npy files (format versions 1.0, 2.0 and 3.0), for the
// examples that load real weights. Standard C++20 only (no Eigen, no attn), so the fuzzer in
// fuzz/ can build it alone.
//
// The format (numpy/lib/format.py, "NEP 1"; written here from that description):
//
//   bytes 0-5    magic "\x93NUMPY"
//   byte  6, 7   major, minor version: 1.0, 2.0 or 3.0
//   then         header length H: uint16 little-endian (v1) or uint32 little-endian (v2, v3)
//   then         H bytes of header: a Python dict literal, e.g.
//                  {'descr': '<f4', 'fortran_order': False, 'shape': (16, 64), }
//                padded with spaces and ended by '\n' (latin-1 in v1/v2, UTF-8 in v3)
//   then         the array's elements, C order, exactly prod(shape) * itemsize bytes.
//
// What is accepted: descr '<f2', '<f4', '<f8' (and the same with '>' or '=' byte order;
// '=' means this machine's order), converted to float on load; fortran_order False only; any
// shape (up to 32 dimensions, as NumPy's NPY_MAXDIMS). Everything else is rejected with a
// std::runtime_error whose message names the file, what was expected and what was found:
// every length and size is checked against the bytes that are actually there before it is
// used, so a malformed or truncated file cannot make the reader read out of bounds or
// allocate more than the file's own size (fuzz/npy_fuzz.cpp checks this under ASan/UBSan).
//
//   npy::array w = npy::load("examples/data/block/wq.npy");   // w.shape, w.values (float)
//   npy::array a = npy::parse(bytes, "in-memory");              // std::span<const std::byte>
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace npy {

/// The element type the file stored (values are always returned as float).
enum class stored_type { f16, f32, f64 };

/// A loaded array: its shape and its values in C (row-major) order, as float.
struct array {
  std::vector<std::size_t> shape;
  std::vector<float> values;
  stored_type stored = stored_type::f32;

  /// Number of elements: the product of the shape (1 for a 0-d array).
  std::size_t size() const { return values.size(); }
};

/// The parsed header of a file: everything but the data.
struct header {
  int major = 0, minor = 0;
  std::size_t data_offset = 0;  ///< where the elements start
  stored_type type = stored_type::f32;
  bool big_endian = false;  ///< the elements' byte order in the file
  std::vector<std::size_t> shape;
  std::size_t count = 0;  ///< elements
};

inline constexpr std::size_t max_dims = 32;

namespace detail {

[[noreturn]] inline void fail(std::string_view name, const std::string& what) {
  throw std::runtime_error("npy: " + std::string(name) + ": " + what);
}

inline std::size_t item_size(stored_type t) {
  return t == stored_type::f16 ? 2 : t == stored_type::f32 ? 4 : 8;
}

/// A printable form of a piece of the header for error messages: at most 40 characters, bytes
/// outside printable ASCII as \xNN.
inline std::string quote(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < 40; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > 40) out += "...";
  return "'" + out + "'";
}

/// A recursive-descent parser for the one dict literal NumPy writes. Every read is bounds-
/// checked against the header text; nothing is evaluated.
class dict_parser {
 public:
  dict_parser(std::string_view text, std::string_view name) : s_(text), name_(name) {}

  void parse(header& h) {
    bool have_descr = false, have_order = false, have_shape = false;
    skip_space();
    expect('{');
    for (;;) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = string_literal("a dict key");
      skip_space();
      expect(':');
      skip_space();
      if (key == "descr") {
        if (have_descr) error("duplicate key 'descr'");
        have_descr = true;
        descr(h);
      } else if (key == "fortran_order") {
        if (have_order) error("duplicate key 'fortran_order'");
        have_order = true;
        if (boolean())
          error(
              "fortran_order is True: only C-ordered arrays are supported (save "
              "np.ascontiguousarray(a))");
      } else if (key == "shape") {
        if (have_shape) error("duplicate key 'shape'");
        have_shape = true;
        shape(h);
      } else {
        error("unknown key " + quote(key) + " (expected 'descr', 'fortran_order', 'shape')");
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') error("expected ',' or '}' after the value of " + quote(key));
    }
    ++pos_;  // the '}'
    skip_space();
    if (pos_ != s_.size())
      error("unexpected " + quote(s_.substr(pos_)) + " after the closing '}' of the header");
    if (!have_descr) error("the header has no 'descr'");
    if (!have_order) error("the header has no 'fortran_order'");
    if (!have_shape) error("the header has no 'shape'");
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail(name_, "header: " + what + " (at offset " + std::to_string(pos_) + " of the header " +
                    quote(s_) + ")");
  }
  /// The next character, or '\0' at the end (never read past the text).
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  void expect(char c) {
    if (pos_ >= s_.size()) error(std::string("expected '") + c + "', found the end");
    if (s_[pos_] != c) error(std::string("expected '") + c + "', found " + quote(s_.substr(pos_)));
    ++pos_;
  }

  /// 'text' or "text"; escapes are rejected (NumPy never writes them in these fields).
  std::string string_literal(const char* what) {
    const char q = peek();
    if (q != '\'' && q != '"') error(std::string("expected ") + what + " (a quoted string)");
    const std::size_t start = ++pos_;
    while (pos_ < s_.size() && s_[pos_] != q) {
      if (s_[pos_] == '\\') error("escape sequences in strings are not supported");
      ++pos_;
    }
    if (pos_ >= s_.size()) error("unterminated string");
    return std::string(s_.substr(start, pos_++ - start));
  }

  void descr(header& h) {
    const std::string d = string_literal("the descr value");
    // '<' little-endian, '>' big-endian, '=' native; then the kind 'f' and the size in bytes.
    if (d.size() == 3 && (d[0] == '<' || d[0] == '>' || d[0] == '=') && d[1] == 'f') {
      h.big_endian = d[0] == '>' || (d[0] == '=' && std::endian::native == std::endian::big);
      const char size = d[2];
      if (size == '2' || size == '4' || size == '8') {
        h.type = size == '2' ? stored_type::f16 : size == '4' ? stored_type::f32 : stored_type::f64;
        return;
      }
    }
    error("unsupported descr " + quote(d) + " (supported: '<f2', '<f4', '<f8', also '>' and '=')");
  }

  bool boolean() {
    const std::string_view rest = s_.substr(pos_);
    if (rest.starts_with("True")) {
      pos_ += 4;
      return true;
    }
    if (rest.starts_with("False")) {
      pos_ += 5;
      return false;
    }
    error("expected True or False, found " + quote(rest));
  }

  std::size_t integer() {
    if (peek() == '-') error("negative dimension in 'shape'");
    if (peek() < '0' || peek() > '9') error("expected a dimension (a decimal integer)");
    std::size_t v = 0;
    constexpr std::size_t max = std::numeric_limits<std::size_t>::max();
    while (peek() >= '0' && peek() <= '9') {
      const auto digit = static_cast<std::size_t>(peek() - '0');
      if (v > (max - digit) / 10) error("dimension in 'shape' does not fit in 64 bits");
      v = v * 10 + digit;
      ++pos_;
    }
    return v;
  }

  /// A Python tuple of non-negative integers: (), (n,), (n, m), with an optional trailing comma
  /// after the last element.
  void shape(header& h) {
    expect('(');
    h.shape.clear();
    skip_space();
    bool comma_after_last = false;
    while (peek() != ')') {
      if (h.shape.size() == max_dims)
        error("'shape' has more than " + std::to_string(max_dims) + " dimensions");
      h.shape.push_back(integer());
      skip_space();
      comma_after_last = peek() == ',';
      if (comma_after_last) {
        ++pos_;
        skip_space();
      } else if (peek() != ')') {
        error("expected ',' or ')' in 'shape'");
      }
    }
    ++pos_;  // the ')'
    // Python spells a 1-tuple "(n,)": "(n)" is an integer in parentheses, not a tuple.
    if (h.shape.size() == 1 && !comma_after_last)
      error("a 1-element 'shape' must be written (n,), found (n)");
  }

  std::string_view s_;
  std::string_view name_;
  std::size_t pos_ = 0;
};

inline std::uint64_t read_le(const std::byte* p, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

/// IEEE 754 binary16 → binary32, exact for every value (subnormals, infinities, NaN payloads).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / NaN
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);  // normal: rebias 15 → 127
  } else if (mant == 0) {
    bits = sign;  // ±0
  } else {
    // Subnormal: value = mant · 2^−24, exact in float.
    const float v = static_cast<float>(mant) * 0x1p-24f;
    return sign ? -v : v;
  }
  return std::bit_cast<float>(bits);
}

}  // namespace detail

/// Parses and validates the preamble and header of an .npy file held in `bytes`; checks that
/// the data that follows has exactly the size the header announces. `name` is only used in
/// error messages.
inline header parse_header(std::span<const std::byte> bytes, std::string_view name = "<memory>") {
  using detail::fail;
  static constexpr unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  const std::size_t n = bytes.size();
  if (n < 10)
    fail(name, "file of " + std::to_string(n) +
                   " bytes is too short for an NPY preamble (magic, version, header length)");
  for (std::size_t i = 0; i < 6; ++i)
    if (static_cast<unsigned char>(bytes[i]) != magic[i])
      fail(name, "not an NPY file (the first 6 bytes are not \\x93NUMPY)");
  header h;
  h.major = static_cast<int>(bytes[6]);
  h.minor = static_cast<int>(bytes[7]);
  if (h.major < 1 || h.major > 3 || h.minor != 0)
    fail(name, "unsupported NPY format version " + std::to_string(h.major) + "." +
                   std::to_string(h.minor) + " (supported: 1.0, 2.0, 3.0)");
  const std::size_t len_bytes = h.major == 1 ? 2 : 4, prefix = 8 + len_bytes;
  if (n < prefix)
    fail(name, "file of " + std::to_string(n) + " bytes ends inside the header length (version " +
                   std::to_string(h.major) + ".0 needs " + std::to_string(prefix) + " bytes)");
  const std::uint64_t header_len = detail::read_le(bytes.data() + 8, len_bytes);
  if (header_len > n - prefix)
    fail(name, "header length " + std::to_string(header_len) + " exceeds the " +
                   std::to_string(n - prefix) + " bytes after the preamble");
  h.data_offset = prefix + static_cast<std::size_t>(header_len);
  const std::string_view text(reinterpret_cast<const char*>(bytes.data() + prefix),
                              static_cast<std::size_t>(header_len));
  detail::dict_parser(text, name).parse(h);

  // Element count and byte size, with overflow checks; a zero dimension makes the array empty
  // whatever the others are.
  bool empty = false;
  for (std::size_t d : h.shape) empty |= d == 0;
  const std::size_t item = detail::item_size(h.type);
  std::size_t count = 1;
  if (empty) {
    count = 0;
  } else {
    for (std::size_t d : h.shape) {
      if (count > std::numeric_limits<std::size_t>::max() / d)
        fail(name, "the element count of 'shape' overflows 64 bits");
      count *= d;
    }
    if (count > std::numeric_limits<std::size_t>::max() / item)
      fail(name, "the data size of 'shape' overflows 64 bits");
  }
  const std::size_t need = count * item, have = n - h.data_offset;
  if (have < need)
    fail(name, "truncated data: the header announces " + std::to_string(count) + " elements (" +
                   std::to_string(need) + " bytes), the file has " + std::to_string(have) +
                   " bytes after the header");
  if (have > need)
    fail(name, std::to_string(have - need) + " unexpected bytes after the " + std::to_string(need) +
                   " bytes of data");
  h.count = count;
  return h;
}

/// Parses a whole .npy file held in memory; values are converted to float (f8 values are
/// rounded to nearest). Throws std::runtime_error on any malformed input.
inline array parse(std::span<const std::byte> bytes, std::string_view name = "<memory>") {
  const header h = parse_header(bytes, name);
  array a;
  a.shape = h.shape;
  a.stored = h.type;
  a.values.resize(h.count);  // ≤ the file's own size: checked by parse_header
  const std::size_t item = detail::item_size(h.type);
  const std::byte* p = bytes.data() + h.data_offset;
  for (std::size_t i = 0; i < h.count; ++i, p += item) {
    // Assembled byte by byte in the file's order: no alignment assumption, no host-order one.
    std::uint64_t raw = 0;
    if (h.big_endian) {
      for (std::size_t b = 0; b < item; ++b) raw = (raw << 8) | static_cast<std::uint64_t>(p[b]);
    } else {
      raw = detail::read_le(p, item);
    }
    switch (h.type) {
      case stored_type::f16:
        a.values[i] = detail::half_to_float(static_cast<std::uint16_t>(raw));
        break;
      case stored_type::f32:
        a.values[i] = std::bit_cast<float>(static_cast<std::uint32_t>(raw));
        break;
      case stored_type::f64:
        a.values[i] = static_cast<float>(std::bit_cast<double>(raw));
        break;
    }
  }
  return a;
}

/// Convenience overload for text-like buffers.
inline array parse(std::string_view bytes, std::string_view name = "<memory>") {
  return parse(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())), name);
}

/// Reads and parses the file at `path`.
inline array load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) detail::fail(path, "cannot open the file");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) detail::fail(path, "read error");
  const std::string bytes = std::move(buffer).str();
  return parse(std::string_view(bytes), path);
}

}  // namespace npy
