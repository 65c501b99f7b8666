#include "models/tokenizer/byte_level.hpp"

#include "models/tokenizer/utf8.hpp"

#include <array>

namespace aeg::models::byte_level {
namespace {

constexpr bool maps_to_itself(unsigned b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

constexpr std::array<char32_t, 256> make_table() {
  std::array<char32_t, 256> table{};
  char32_t next = 256;
  for (unsigned b = 0; b < 256; ++b)
    table[b] = maps_to_itself(b) ? b : next++;
  return table;
}

constexpr std::array<char32_t, 256> byte_to_cp = make_table();

// The alphabet's code points are all below 256 + 68; -1 marks those that stand for no byte.
constexpr std::array<std::int16_t, 256 + 68> make_inverse() {
  std::array<std::int16_t, 256 + 68> inverse{};
  for (auto& v : inverse)
    v = -1;
  for (unsigned b = 0; b < 256; ++b)
    inverse[byte_to_cp[b]] = static_cast<std::int16_t>(b);
  return inverse;
}

constexpr std::array<std::int16_t, 256 + 68> cp_to_byte = make_inverse();

} // namespace

char32_t to_code_point(std::uint8_t b) noexcept {
  return byte_to_cp[b];
}

std::optional<std::uint8_t> to_byte(char32_t cp) noexcept {
  if (cp >= cp_to_byte.size() || cp_to_byte[cp] < 0)
    return std::nullopt;
  return static_cast<std::uint8_t>(cp_to_byte[cp]);
}

std::string encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes)
    utf8::append(out, byte_to_cp[static_cast<unsigned char>(c)]);
  return out;
}

std::string decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    const utf8::decoded d = utf8::decode(text.substr(i));
    if (d.state == utf8::status::ok) {
      if (auto b = to_byte(d.code_point)) {
        out.push_back(static_cast<char>(*b));
      } else {
        out.append(text.substr(i, d.length));
      }
    } else {
      out.append(text.substr(i, d.length));
    }
    i += d.length;
  }
  return out;
}

} // namespace aeg::models::byte_level
