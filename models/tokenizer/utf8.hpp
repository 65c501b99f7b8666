#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace aeg::models::utf8 {

/// What `decode` found at the start of its input.
enum class status : std::uint8_t {
  ok,         ///< a well-formed sequence of `length` bytes
  incomplete, ///< a well-formed prefix that the input ends inside (`length` bytes so far)
  invalid,    ///< no well-formed sequence; `length` is its maximal subpart (Unicode 3.9): the
              ///< bytes one U+FFFD stands for
};

/// One decoded code point.
struct decoded {
  char32_t code_point = 0; ///< U+FFFD unless `state` is `ok`
  std::uint8_t length = 0; ///< bytes consumed
  status state = status::invalid;
};

/// The replacement character U+FFFD in UTF-8.
inline constexpr std::string_view replacement = "\xEF\xBF\xBD";

/// Decodes the code point at the start of `s` (which must not be empty) by the strict rules of
/// Unicode Table 3-7: overlong forms, surrogates and values above U+10FFFF are invalid.
decoded decode(std::string_view s) noexcept;

/// True when all of `s` is well-formed UTF-8.
bool is_valid(std::string_view s) noexcept;

/// Appends the UTF-8 encoding of `cp` (which must be a Unicode scalar value) to `out`.
void append(std::string& out, char32_t cp);

} // namespace aeg::models::utf8
