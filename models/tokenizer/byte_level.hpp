#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

/// GPT-2's byte-level alphabet: each of the 256 byte values stands for one printable code point
/// (bytes that are printable Latin-1 map to themselves, the other 68 to U+0100..U+0143 in order),
/// so a byte-level BPE vocabulary stores `" the"` as `"Ġthe"`.
namespace aeg::models::byte_level {

/// The code point that stands for byte `b`.
char32_t to_code_point(std::uint8_t b) noexcept;

/// The byte that `cp` stands for; nullopt when `cp` is outside the alphabet.
std::optional<std::uint8_t> to_byte(char32_t cp) noexcept;

/// Raw bytes to their byte-level spelling (UTF-8 of the alphabet characters).
std::string encode(std::string_view bytes);

/// A byte-level spelling back to raw bytes. Characters outside the alphabet, and bytes that are
/// not well-formed UTF-8, are copied through unchanged.
std::string decode(std::string_view text);

} // namespace aeg::models::byte_level
