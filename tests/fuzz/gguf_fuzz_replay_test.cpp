// Runs the GGUF fuzz entry point in every build: the seed corpus, every truncation, and
// deterministic mutations of it (byte flips, boundary integers over counts, lengths, dims and
// offsets). A crash or an abort here is a reader bug; scripts/fuzz explores further.

#include "models/gguf/file.hpp"
#include "tests/fuzz/gguf_fuzz.hpp"
#include "tests/fuzz/gguf_seeds.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <vector>

namespace {

using aeg::testing::gguf_seed_corpus;

void run(const std::vector<std::byte>& b) {
  // An empty vector's data() may be null: hand the entry point a valid pointer regardless.
  static const std::uint8_t none = 0;
  const auto* p = b.empty() ? &none : reinterpret_cast<const std::uint8_t*>(b.data());
  ASSERT_EQ(LLVMFuzzerTestOneInput(p, b.size()), 0);
}

TEST(GgufFuzzReplay, SeedsParseAndPassTheEntryPoint) {
  const auto seeds = gguf_seed_corpus();
  ASSERT_GE(seeds.size(), 8u);
  for (const auto& s : seeds) {
    auto f = aeg::models::gguf::file::parse(std::span<const std::byte>(s.bytes));
    EXPECT_TRUE(f) << s.name << ": " << f.error().message;
    run(s.bytes);
  }
}

TEST(GgufFuzzReplay, EveryTruncationOfEverySeed) {
  for (const auto& s : gguf_seed_corpus()) {
    // Every prefix of the small seeds; a stride through the larger ones.
    const std::size_t step = s.bytes.size() <= 4096 ? 1 : 7;
    for (std::size_t n = 0; n < s.bytes.size(); n += step)
      run(std::vector<std::byte>(s.bytes.begin(),
                                 s.bytes.begin() + static_cast<std::ptrdiff_t>(n)));
  }
}

TEST(GgufFuzzReplay, BoundaryIntegersAtEveryOffsetOfTheSmallSeeds) {
  constexpr std::array<std::uint64_t, 12> boundary = {0,
                                                      1,
                                                      2,
                                                      3,
                                                      4,
                                                      0x7f,
                                                      0xff,
                                                      0x7fffffff,
                                                      0xffffffff,
                                                      1ull << 62,
                                                      0x7fffffffffffffff,
                                                      0xffffffffffffffff};
  for (const auto& s : gguf_seed_corpus()) {
    if (s.bytes.size() > 4096)
      continue;
    for (std::size_t at = 0; at < s.bytes.size(); ++at)
      for (std::size_t width : {1u, 4u, 8u}) {
        if (at + width > s.bytes.size())
          continue;
        for (auto v : boundary) {
          auto m = s.bytes;
          std::memcpy(m.data() + at, &v, width);
          run(m);
        }
      }
  }
}

TEST(GgufFuzzReplay, RandomMutationsOfEverySeed) {
  std::mt19937_64 rng(12345); // a fixed sequence: the same mutations in every run
  for (const auto& s : gguf_seed_corpus()) {
    for (int round = 0; round < 1500; ++round) {
      auto m = s.bytes;
      if (m.empty())
        break;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) {
        const std::size_t at = rng() % m.size();
        switch (rng() % 4) {
        case 0: // a random byte
          m[at] = static_cast<std::byte>(rng());
          break;
        case 1: // a flipped bit
          m[at] ^= static_cast<std::byte>(1u << (rng() % 8));
          break;
        case 2: { // a random 8-byte integer
          const std::uint64_t v = rng();
          std::memcpy(m.data() + at, &v, std::min<std::size_t>(8, m.size() - at));
          break;
        }
        default: // a cut
          m.resize(at);
          break;
        }
        if (m.empty())
          break;
      }
      run(m);
    }
  }
}

} // namespace
