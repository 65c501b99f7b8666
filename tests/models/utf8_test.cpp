// Strict UTF-8 decoding and GPT-2's byte-level alphabet.

#include "models/tokenizer/byte_level.hpp"
#include "models/tokenizer/utf8.hpp"

#include <gtest/gtest.h>

#include <string>

namespace aeg::models {
namespace {

TEST(Utf8, DecodesWellFormedSequences) {
  EXPECT_EQ(utf8::decode("A").code_point, U'A');
  EXPECT_EQ(utf8::decode("\xC3\xA9").code_point, U'\u00E9');
  EXPECT_EQ(utf8::decode("\xE4\xB8\xAD").code_point, U'\u4E2D');
  const auto emoji = utf8::decode("\xF0\x9F\x98\x80");
  EXPECT_EQ(emoji.code_point, U'\U0001F600');
  EXPECT_EQ(emoji.length, 4);
  EXPECT_EQ(emoji.state, utf8::status::ok);
}

TEST(Utf8, RejectsOverlongSurrogatesAndOutOfRange) {
  for (const std::string bad :
       {"\xC0\x80", "\xC1\xBF", "\xE0\x80\x80", "\xED\xA0\x80", "\xF0\x80\x80\x80",
        "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xFF", "\x80", "\xE2\x28\xA1"}) {
    const auto d = utf8::decode(bad);
    EXPECT_EQ(d.state, utf8::status::invalid) << testing::PrintToString(bad);
    EXPECT_EQ(d.length, 1);
    EXPECT_FALSE(utf8::is_valid(bad));
  }
}

TEST(Utf8, ReportsIncompleteSequences) {
  const auto d = utf8::decode("\xF0\x9F\x98");
  EXPECT_EQ(d.state, utf8::status::incomplete);
  EXPECT_EQ(d.length, 3);
  EXPECT_EQ(utf8::decode("\xE2").state, utf8::status::incomplete);
}

TEST(Utf8, AppendEncodes) {
  std::string s;
  for (char32_t cp : {U'A', U'\u00E9', U'\u4E2D', U'\U0001F600'})
    utf8::append(s, cp);
  EXPECT_EQ(s, "A\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80");
  EXPECT_TRUE(utf8::is_valid(s));
}

TEST(ByteLevel, AlphabetIsABijection) {
  for (unsigned b = 0; b < 256; ++b) {
    const char32_t cp = byte_level::to_code_point(static_cast<std::uint8_t>(b));
    EXPECT_EQ(byte_level::to_byte(cp), b);
  }
  EXPECT_EQ(byte_level::to_code_point(' '), U'\u0120');  // Ġ
  EXPECT_EQ(byte_level::to_code_point('\n'), U'\u010A'); // Ċ
  EXPECT_EQ(byte_level::to_code_point('a'), U'a');
  EXPECT_EQ(byte_level::to_byte(U'\u0144'), std::nullopt);
  EXPECT_EQ(byte_level::to_byte(U'\u4E2D'), std::nullopt);
}

TEST(ByteLevel, EncodeDecodeRoundTripsAllBytes) {
  std::string all;
  for (unsigned b = 0; b < 256; ++b)
    all.push_back(static_cast<char>(b));
  EXPECT_EQ(byte_level::decode(byte_level::encode(all)), all);
  EXPECT_EQ(byte_level::encode(" the"), "\xC4\xA0the");
  // Characters outside the alphabet pass through.
  EXPECT_EQ(byte_level::decode("\xE4\xB8\xAD"), "\xE4\xB8\xAD");
}

} // namespace
} // namespace aeg::models
