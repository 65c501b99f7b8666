// Runs the HTTP fuzz entry point in every build: the seeds, every truncation, and deterministic
// mutations (every byte replaced by the characters framing hinges on). A crash or an abort here
// is a parser bug; scripts/fuzz --target http explores further.

#include "tests/fuzz/http_fuzz.hpp"

#include <gtest/gtest.h>

#include <string>

namespace aeg::testing {
namespace {

void run(const std::string& bytes, std::uint8_t mode) {
  std::string input(1, static_cast<char>(mode));
  input += bytes;
  ASSERT_EQ(http_fuzz_one(reinterpret_cast<const std::uint8_t*>(input.data()), input.size()), 0);
}

TEST(HttpFuzzReplay, SeedsInEveryPieceSize) {
  const auto seeds = http_seed_corpus();
  ASSERT_GE(seeds.size(), 8u);
  for (const auto& s : seeds)
    for (std::uint8_t mode = 0; mode < 16; ++mode)
      run(s, mode);
}

TEST(HttpFuzzReplay, EveryTruncationOfEverySeed) {
  for (const auto& s : http_seed_corpus())
    for (std::size_t n = 0; n <= s.size(); ++n)
      run(s.substr(0, n), static_cast<std::uint8_t>(n));
}

TEST(HttpFuzzReplay, FramingCharactersAtEveryOffset) {
  for (const auto& s : http_seed_corpus())
    for (std::size_t i = 0; i < s.size(); ++i)
      for (char c : {'\r', '\n', ' ', ':', ';', '"', '0', 'f', '\0', '\x7f'}) {
        std::string m = s;
        m[i] = c;
        run(m, static_cast<std::uint8_t>(i));
      }
}

} // namespace
} // namespace aeg::testing
