// Pre-tokenizer splits; the expected pieces were checked against Hugging Face `tokenizers`
// (Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)] for smollm, ByteLevel
// alone for gpt2).

#include "models/tokenizer/pre_tokenizer.hpp"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace aeg::models {
namespace {

using pieces = std::vector<std::string>;

pieces split(const pre_tokenizer& pre, std::string_view text) {
  std::vector<std::string_view> views;
  pre.split(text, views);
  pieces out;
  std::size_t covered = 0;
  for (auto v : views) {
    EXPECT_FALSE(v.empty());
    EXPECT_EQ(v.data(), text.data() + covered) << "pieces must tile the text in order";
    covered += v.size();
    out.emplace_back(v);
  }
  EXPECT_EQ(covered, text.size());
  return out;
}

pre_tokenizer make(std::string_view name) {
  auto pre = pre_tokenizer::create(name);
  EXPECT_TRUE(pre) << pre.error().to_string();
  return std::move(*pre);
}

TEST(PreTokenizer, SmollmSplitsDigitsOneByOne) {
  const auto pre = make("smollm");
  EXPECT_EQ(split(pre, "12345"), (pieces{"1", "2", "3", "4", "5"}));
  EXPECT_EQ(split(pre, "Hello world! 123"), (pieces{"Hello", " world", "!", " ", "1", "2", "3"}));
  EXPECT_EQ(split(pre, " 2024-01-31"),
            (pieces{" ", "2", "0", "2", "4", "-", "0", "1", "-", "3", "1"}));
  EXPECT_EQ(split(pre, "foo(bar) + 3.5"),
            (pieces{"foo", "(", "bar", ")", " +", " ", "3", ".", "5"}));
  // Non-ASCII digits are \p{N} too.
  EXPECT_EQ(split(pre, "\xD9\xA1\xD9\xA2"), (pieces{"\xD9\xA1", "\xD9\xA2"}));
}

TEST(PreTokenizer, Gpt2KeepsDigitRuns) {
  const auto pre = make("gpt2");
  EXPECT_EQ(split(pre, "12345"), (pieces{"12345"}));
  EXPECT_EQ(split(pre, "Hello world! 123"), (pieces{"Hello", " world", "!", " 123"}));
  EXPECT_EQ(split(pre, " 2024-01-31"), (pieces{" 2024", "-", "01", "-", "31"}));
  EXPECT_EQ(split(make("gpt-2"), "foo(bar) + 3.5"),
            (pieces{"foo", "(", "bar", ")", " +", " 3", ".", "5"}));
}

TEST(PreTokenizer, WhitespaceRunLeavesItsLastSpaceToTheNextWord) {
  const auto pre = make("smollm");
  EXPECT_EQ(split(pre, "a   b"), (pieces{"a", "  ", " b"}));
  EXPECT_EQ(split(pre, "  x"), (pieces{" ", " x"}));
  EXPECT_EQ(split(pre, "x  "), (pieces{"x", "  "}));
  EXPECT_EQ(split(pre, "a\n\nb"), (pieces{"a", "\n", "\n", "b"}));
  EXPECT_EQ(split(pre, "x\r\n\r\ny"), (pieces{"x", "\r\n\r", "\n", "y"}));
  EXPECT_EQ(split(pre, "tab\tx"), (pieces{"tab", "\t", "x"}));
  // U+00A0 and U+0085 are White_Space, as in llama.cpp's splitter.
  EXPECT_EQ(split(pre, "\xC2\xA0\xC2\xA0nbsp"), (pieces{"\xC2\xA0", "\xC2\xA0", "nbsp"}));
  EXPECT_EQ(split(pre, "a\xC2\x85\xC2\x85"
                       "b"),
            (pieces{"a", "\xC2\x85", "\xC2\x85", "b"}));
}

TEST(PreTokenizer, ContractionsAndPunctuation) {
  const auto pre = make("smollm");
  EXPECT_EQ(split(pre, "I'm don't we'll THEY'RE"),
            (pieces{"I", "'m", " don", "'t", " we", "'ll", " THEY", "'", "RE"}));
  EXPECT_EQ(split(pre, "'hello'"), (pieces{"'", "hello", "'"}));
  EXPECT_EQ(split(pre, "emoji \xF0\x9F\x98\x80!"), (pieces{"emoji", " \xF0\x9F\x98\x80!"}));
  EXPECT_EQ(split(pre, "\xC3\xA9 \xC3\xA8 \xE4\xB8\xAD\xE6\x96\x87"),
            (pieces{"\xC3\xA9", " \xC3\xA8", " \xE4\xB8\xAD\xE6\x96\x87"}));
}

TEST(PreTokenizer, DefaultAndFalconSetsMatchLlamaCpp) {
  // default: punctuation runs, GPT-2, digit runs, then groups of three ASCII digits.
  EXPECT_EQ(split(make("default"), "x+=12345;"), (pieces{"x", "+=", "123", "45", ";"}));
  EXPECT_EQ(split(make(""), "x+=12345;"), (pieces{"x", "+=", "123", "45", ";"}));
  EXPECT_EQ(split(make("falcon"), "a`b 1234"), (pieces{"a", "`", "b", " ", "123", "4"}));
}

TEST(PreTokenizer, IllFormedUtf8SplitsLikeReplacementCharactersAndKeepsItsBytes) {
  const auto pre = make("smollm");
  // Each ill-formed byte acts as U+FFFD (a symbol): it joins the punctuation run around it.
  EXPECT_EQ(split(pre, "ab\xFF\xFE!cd"), (pieces{"ab", "\xFF\xFE!", "cd"}));
  EXPECT_EQ(split(pre, "x \x80y"), (pieces{"x", " \x80", "y"}));
  EXPECT_EQ(split(pre, "\xE2\x82"), (pieces{"\xE2\x82"}));
  EXPECT_EQ(split(pre, "\xC3"), (pieces{"\xC3"}));
}

TEST(PreTokenizer, LongRunsSplitInOnePiece) {
  const auto pre = make("smollm");
  EXPECT_EQ(split(pre, std::string(200'000, ' ')), (pieces{std::string(200'000, ' ')}));
  EXPECT_EQ(split(pre, std::string(200'000, 'a')), (pieces{std::string(200'000, 'a')}));
  const std::string spaces_then_word = std::string(100'000, ' ') + "x";
  EXPECT_EQ(split(pre, spaces_then_word), (pieces{std::string(99'999, ' '), " x"}));
  EXPECT_EQ(split(pre, std::string(100'000, '!')), (pieces{std::string(100'000, '!')}));
}

TEST(PreTokenizer, UnknownNameIsAnErrorNamingIt) {
  auto pre = pre_tokenizer::create("deepseek-v3");
  ASSERT_FALSE(pre);
  EXPECT_EQ(pre.error().code, errc::invalid_argument);
  EXPECT_NE(pre.error().message.find("'deepseek-v3'"), std::string::npos);
  EXPECT_NE(pre.error().message.find("smollm"), std::string::npos);
  for (const char* name : {"smollm", "starcoder", "refact", "command-r", "gpt2", "gpt-2", "olmo",
                           "mpt", "default", "falcon", "llama3", "llama-bpe", "qwen2"})
    EXPECT_TRUE(pre_tokenizer::create(name)) << name;
}

// Llama 3 keeps up to three digits together, Qwen2 none; both keep a letter run with the one
// non-letter before it, and newlines apart from the spaces before a word.
TEST(PreTokenizer, Llama3AndQwen2DifferOnlyInDigitRuns) {
  const std::string text = "I'M 12345 apples,\n\n  hi";
  EXPECT_EQ(split(make("llama3"), text),
            (pieces{"I", "'M", " ", "123", "45", " apples", ",\n\n", " ", " hi"}));
  EXPECT_EQ(split(make("qwen2"), text),
            (pieces{"I", "'M", " ", "1", "2", "3", "4", "5", " apples", ",\n\n", " ", " hi"}));
}

TEST(PreTokenizer, SharedBetweenThreads) {
  const auto pre = make("smollm");
  const std::string text = "Thread-safe? Yes: 42 threads, 'quoted' text\n\twith tabs.";
  const pieces expected = split(pre, text);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      int good = 0;
      for (int i = 0; i < 500; ++i) {
        std::vector<std::string_view> views;
        pre.split(text, views);
        good += pieces(views.begin(), views.end()) == expected ? 1 : 0;
      }
      ok[static_cast<std::size_t>(t)] = good;
    });
  for (auto& th : threads)
    th.join();
  for (int good : ok)
    EXPECT_EQ(good, 500);
}

} // namespace
} // namespace aeg::models
