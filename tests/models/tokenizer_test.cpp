// The tokenizer on the real SmolLM2 vocabulary: metadata, every token, a varied corpus, known
// vectors (checked against Hugging Face `tokenizers`), special tokens, bytes, long inputs.

#include "models/tokenizer/tokenizer.hpp"
#include "tests/models/smollm2.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace aeg::models {
namespace {

using ids = std::vector<std::int32_t>;

TEST(Tokenizer, ReadsSmolLM2Metadata) {
  AEG_REQUIRE_SMOLLM2(tok);
  EXPECT_EQ(tok.num_tokens(), 49152u);
  EXPECT_EQ(tok.num_merges(), 48900u);
  EXPECT_EQ(tok.bos(), 1);
  EXPECT_EQ(tok.eos(), 2);
  EXPECT_EQ(tok.unknown(), 0);
  EXPECT_EQ(tok.padding(), 2);
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.pre_tokenizer_name(), "smollm");
  EXPECT_EQ(tok.token_text(1), "<|im_start|>");
  EXPECT_EQ(tok.token_id("<|im_end|>"), 2);
  EXPECT_EQ(tok.token_id("Ġthe"), 260);
  for (std::int32_t id = 0; id <= 16; ++id)
    EXPECT_EQ(tok.kind(id), token_kind::control) << id;
  EXPECT_EQ(tok.kind(17), token_kind::normal);
}

TEST(Tokenizer, EndOfGeneration) {
  AEG_REQUIRE_SMOLLM2(tok);
  EXPECT_TRUE(tok.is_end_of_generation(2));  // <|im_end|>, the eos
  EXPECT_TRUE(tok.is_end_of_generation(0));  // <|endoftext|>
  EXPECT_TRUE(tok.is_end_of_generation(4));  // <reponame>: llama.cpp's FIM repository token
  EXPECT_FALSE(tok.is_end_of_generation(1)); // <|im_start|>
  EXPECT_FALSE(tok.is_end_of_generation(3)); // <repo_name>
  EXPECT_FALSE(tok.is_end_of_generation(*tok.token_id("Ġthe")));
  EXPECT_FALSE(tok.is_end_of_generation(49152));
}

TEST(Tokenizer, KnownVectors) {
  AEG_REQUIRE_SMOLLM2(tok);
  // Ids from Hugging Face `tokenizers` built from this file's vocabulary and merges.
  EXPECT_EQ(tok.encode("Hello, world!", false), (ids{19556, 28, 905, 17}));
  EXPECT_EQ(tok.encode("The capital of France is", false), (ids{504, 3575, 282, 4649, 314}));
  EXPECT_EQ(tok.encode("12345", false), (ids{33, 34, 35, 36, 37}));
  EXPECT_EQ(tok.encode("  multiple   spaces", false), (ids{216, 2701, 256, 5600}));
  EXPECT_EQ(tok.encode("Caf\xC3\xA9 d\xC3\xA9j\xC3\xA0 vu.", false),
            (ids{51, 1939, 2756, 32564, 90, 16739, 386, 101, 30}));
  EXPECT_EQ(tok.encode("I'm don't", false), (ids{57, 5248, 1326, 982}));
  EXPECT_EQ(tok.encode("def f(x):\n    return x ** 2\n", false),
            (ids{1604, 275, 24, 104, 727, 472, 1003, 1792, 1903, 216, 34, 198}));
  EXPECT_EQ(
      tok.encode("\xE4\xB8\xAD\xE6\x96\x87\xE5\xAD\x97\xE7\xAC\xA6\xE6\xB5\x8B\xE8\xAF\x95", false),
      (ids{28589, 29184, 36518, 40562, 116, 43222, 229, 16313, 239}));
  EXPECT_EQ(tok.encode("emoji \xF0\x9F\x98\x80", false), (ids{391, 33777, 40303, 218}));
  EXPECT_EQ(
      tok.encode("You are a helpful AI assistant named SmolLM, trained by Hugging Face", false),
      (ids{2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712,
           8182}));
  EXPECT_EQ(tok.encode("", false), ids{});
}

TEST(Tokenizer, DigitsAreOneTokenEach) {
  AEG_REQUIRE_SMOLLM2(tok);
  const ids got = tok.encode("12345", false);
  ASSERT_EQ(got.size(), 5u);
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(tok.decode(ids{got[i]}), std::string(1, static_cast<char>('1' + i)));
}

TEST(Tokenizer, SpecialTokensWhenParsingSpecial) {
  AEG_REQUIRE_SMOLLM2(tok);
  const std::string text = "<|im_start|>user\nHi<|im_end|>";
  const ids special = tok.encode(text, true);
  EXPECT_EQ(special, (ids{1, 4093, 198, 26843, 2}));
  EXPECT_EQ(tok.decode(special), "user\nHi");
  EXPECT_EQ(tok.decode(special, true), text);

  // Without parse_special the markers are plain text.
  const ids literal = tok.encode(text, false);
  EXPECT_EQ(literal, (ids{44, 108, 306, 79, 3738, 108, 46, 4093, 198, 26843, 44, 108, 306, 79, 486,
                          108, 46}));
  for (std::int32_t id : literal)
    EXPECT_EQ(tok.kind(id), token_kind::normal);
  EXPECT_EQ(tok.decode(literal), text);

  // Longest marker first, everything else tokenized around it.
  EXPECT_EQ(tok.encode("<|im_end|><|im_end|>", true), (ids{2, 2}));
  EXPECT_EQ(tok.encode("a<|endoftext|>b", true),
            (ids{tok.encode("a", false)[0], 0, tok.encode("b", false)[0]}));
}

TEST(Tokenizer, EveryVocabularyTokenRoundTrips) {
  AEG_REQUIRE_SMOLLM2(tok);
  std::size_t exact = 0;
  std::size_t normal = 0;
  std::vector<std::int32_t> inexact;
  for (std::int32_t id = 0; id < static_cast<std::int32_t>(tok.num_tokens()); ++id) {
    const bool special = tok.kind(id) == token_kind::control;
    const std::string text = tok.decode(ids{id}, special);
    ASSERT_FALSE(text.empty()) << "token " << id << " decodes to nothing";
    const ids again = tok.encode(text, special);
    ASSERT_EQ(tok.decode(again, special), text) << "token " << id << " " << tok.token_text(id);
    if (special) {
      EXPECT_EQ(again, ids{id});
      continue;
    }
    ++normal;
    if (again == ids{id})
      ++exact;
    else if (inexact.size() < 20)
      inexact.push_back(id);
  }
  std::printf("[ info ] %zu of %zu normal tokens encode back to exactly themselves\n", exact,
              normal);
  for (std::int32_t id : inexact)
    std::printf("[ info ]   e.g. %d '%s' -> %zu tokens\n", id,
                std::string(tok.token_text(id)).c_str(),
                tok.encode(tok.decode(ids{id}), false).size());
  // A token is inexact when pre-tokenization splits its text (e.g. "Ġ1" holds a digit) or BPE
  // reaches a different segmentation; that is rare for this vocabulary.
  EXPECT_GE(exact * 1000, normal * 990) << "fewer than 99% of tokens encode to themselves";
}

TEST(Tokenizer, CorpusRoundTripsExactly) {
  AEG_REQUIRE_SMOLLM2(tok);
  const std::vector<std::string> corpus = {
      "Hello, world!",
      "12345 and 67.89 and 1,000,000",
      "a   b    c     d",
      "   leading and trailing   ",
      "tab\tseparated\tvalues\t",
      "line1\nline2\r\nline3\rline4\n\n\n",
      " \n \t \n ",
      "!!!???...,,,;;;:::---===",
      "Caf\xC3\xA9 na\xC3\xAFve co\xC3\xB6perate fa\xC3\xA7"
      "ade",
      "\xCE\x95\xCE\xBB\xCE\xBB\xCE\xB7\xCE\xBD\xCE\xB9\xCE\xBA\xCE\xAC and "
      "\xD0\xA0\xD1\x83\xD1\x81\xD1\x81\xD0\xBA\xD0\xB8\xD0\xB9",
      "\xE4\xB8\xAD\xE6\x96\x87\xE5\xAD\x97\xE7\xAC\xA6 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E "
      "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",
      "emoji \xF0\x9F\x98\x80\xF0\x9F\x98\x83 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD "
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",
      "mixed: English, \xD8\xA7\xD9\x84\xD8\xB9\xD8\xB1\xD8\xA8\xD9\x8A\xD8\xA9, "
      "\xE0\xA4\xB9\xE0\xA4\xBF\xE0\xA4\xA8\xE0\xA5\x8D\xE0\xA4\xA6\xE0\xA5\x80, 123",
      "int main() {\n    std::printf(\"%d\\n\", 42);\n    return 0;\n}\n",
      "def f(x):\n\treturn [i ** 2 for i in range(x) if i % 3 == 0]  # squares\n",
      "<html><body class=\"x\">&amp;&lt;</body></html>",
      "https://example.com/path?q=1&r=two#frag user@example.com",
      "I'm sure you'll see they're fine; we've done it, she'd say. It's O'Neil's.",
      "zero\xE2\x80\x8Bwidth and soft\xC2\xAD"
      "hyphen and nbsp\xC2\xA0here",
      std::string("nul\0byte", 8),
      "<|im_start|> not parsed <|im_end|>",
  };
  for (const auto& text : corpus) {
    const ids got = tok.encode(text, false);
    EXPECT_EQ(tok.decode(got), text) << "text: " << text;
  }
}

TEST(Tokenizer, IllFormedUtf8KeepsItsBytesWhereTheVocabularyCan) {
  AEG_REQUIRE_SMOLLM2(tok);
  // Continuation bytes, truncated sequences and stray lead bytes all have tokens here.
  for (const std::string text : {"\x80", "a\xE2\x82", "\xC3(", "x\xF0\x9F\x98y", "\xE2\x82\xE2\x82",
                                 "ok \xBF\xBF ok", "\xED\xA0\x80 surrogate", "\xC2"})
    EXPECT_EQ(tok.decode(tok.encode(text, false)), text) << "text: " << text;
  // SmolLM2 has no token for 0xC0, 0xC1 or 0xF5..0xFF: they become U+FFFD, as in llama.cpp.
  EXPECT_EQ(tok.decode(tok.encode("a\xFFz", false)), "a\xEF\xBF\xBDz");
  EXPECT_EQ(tok.decode(tok.encode("\xC0\x80", false)), "\xEF\xBF\xBD\x80");
  // Nor for the well-formed control character 0x04: dropped, as llama.cpp and HF do.
  EXPECT_EQ(tok.decode(tok.encode("a\x04z", false)), "az");
}

// A guard against quadratic behaviour, not a benchmark: the limits are 10x or more above what
// this takes on a slow machine, and the times are printed.
TEST(Tokenizer, LongInputsStayFast) {
  AEG_REQUIRE_SMOLLM2(tok);
  const auto timed = [&](const std::string& label, const std::string& text, double limit_s) {
    const auto start = std::chrono::steady_clock::now();
    const ids got = tok.encode(text, false);
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("[ info ] %s: %zu bytes -> %zu tokens in %.3f s\n", label.c_str(), text.size(),
                got.size(), s);
    EXPECT_EQ(tok.decode(got), text) << label;
    EXPECT_LT(s, limit_s) << label;
  };
  timed("100k spaces", std::string(100'000, ' '), 5.0);
  timed("100k 'a'", std::string(100'000, 'a'), 5.0);
  timed("100k newlines", std::string(100'000, '\n'), 5.0);
  timed("100k '!'", std::string(100'000, '!'), 5.0);

  const std::string paragraph =
      "The quick brown fox jumps over the lazy dog. In 1969, Apollo 11 landed on the Moon; "
      "it's a well-known fact that humans can't breathe there without suits.\n"
      "Large language models tokenize text into sub-word units before processing it, and the "
      "tokenizer's speed matters when prompts are long.\n\n";
  std::string english;
  while (english.size() < 1'000'000)
    english += paragraph;
  timed("1 MB of English", english, 10.0);
}

TEST(Tokenizer, SameResultsFromManyThreads) {
  AEG_REQUIRE_SMOLLM2(tok);
  const std::string text = "<|im_start|>user\nShared tokenizers must be thread-safe: 1, 2, 3 "
                           "\xF0\x9F\x98\x80<|im_end|>\n";
  const ids expected = tok.encode(text, true);
  std::vector<int> good(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      const tokenizer copy = tok; // copies share the immutable state
      for (int i = 0; i < 300; ++i)
        good[static_cast<std::size_t>(t)] +=
            (i % 2 ? copy : tok).encode(text, true) == expected ? 1 : 0;
    });
  for (auto& th : threads)
    th.join();
  for (int g : good)
    EXPECT_EQ(g, 300);
}

} // namespace
} // namespace aeg::models
