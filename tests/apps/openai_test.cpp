// OpenAI request validation, stop strings and response shapes, without a server.

#include "apps/server/openai.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace aeg::server {
namespace {

using json = nlohmann::json;

TEST(ParseCompletion, ReadsEveryParameter) {
  auto p = parse_completion(R"({"model": "m", "prompt": "hi", "max_tokens": 5, "temperature": 0.5,
      "top_p": 0.9, "top_k": 40, "seed": 7, "stop": ["\n\n", 2], "stream": true,
      "stream_options": {"include_usage": true}, "n": 1, "user": "ignored"})",
                            false);
  ASSERT_TRUE(p.has_value()) << p.error().message;
  EXPECT_EQ(p->model, "m");
  EXPECT_EQ(p->prompt, "hi");
  EXPECT_EQ(p->max_tokens, 5u);
  EXPECT_TRUE(p->max_tokens_given);
  EXPECT_FLOAT_EQ(p->sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(p->sampling.top_p, 0.9f);
  EXPECT_EQ(p->sampling.top_k, 40);
  EXPECT_EQ(p->sampling.seed, 7u);
  EXPECT_EQ(p->stop_strings, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(p->stop_tokens, std::vector<std::int32_t>{2});
  EXPECT_TRUE(p->stream);
  EXPECT_TRUE(p->include_usage);

  auto ids = parse_completion(R"({"model": "m", "prompt": [1, 2, 3]})", false);
  ASSERT_TRUE(ids.has_value());
  EXPECT_EQ(ids->prompt_tokens, (std::vector<std::int32_t>{1, 2, 3}));
  EXPECT_EQ(ids->max_tokens, 16u); // OpenAI's default for completions
  EXPECT_FALSE(ids->max_tokens_given);

  auto chat = parse_completion(R"({"model": "m", "messages": [{"role": "system", "content": "s"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
      "max_completion_tokens": 9, "stop": "END"})",
                               true);
  ASSERT_TRUE(chat.has_value()) << chat.error().message;
  ASSERT_EQ(chat->messages.size(), 2u);
  EXPECT_EQ(chat->messages[1].content, "ab");
  EXPECT_EQ(chat->max_tokens, 9u);
  EXPECT_EQ(chat->stop_strings, std::vector<std::string>{"END"});
}

TEST(ParseCompletion, BadValuesNameTheirParameter) {
  const std::vector<std::tuple<std::string, bool, std::string>> bad = {
      {"{", false, ""},
      {"[]", false, ""},
      {R"({"prompt": "x"})", false, "model"},
      {R"({"model": "m"})", false, "prompt"},
      {R"({"model": "m", "prompt": ""})", false, "prompt"},
      {R"({"model": "m", "prompt": ["a", "b"]})", false, "prompt"},
      {R"({"model": "m", "prompt": [1, -2]})", false, "prompt"},
      {R"({"model": "m", "prompt": "x", "max_tokens": 0})", false, "max_tokens"},
      {R"({"model": "m", "prompt": "x", "max_tokens": 2.5})", false, "max_tokens"},
      {R"({"model": "m", "prompt": "x", "temperature": 3})", false, "temperature"},
      {R"({"model": "m", "prompt": "x", "temperature": "hot"})", false, "temperature"},
      {R"({"model": "m", "prompt": "x", "top_p": 0})", false, "top_p"},
      {R"({"model": "m", "prompt": "x", "n": 2})", false, "n"},
      {R"({"model": "m", "prompt": "x", "logprobs": 3})", false, "logprobs"},
      {R"({"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", false, "stop"},
      {R"({"model": "m", "prompt": "x", "stop": [""]})", false, "stop"},
      {R"({"model": "m", "prompt": "x", "stream": "yes"})", false, "stream"},
      {R"({"model": "m", "prompt": "x", "stream_options": {"include_usage": true}})", false,
       "stream_options"},
      {R"({"model": "m", "messages": []})", true, "messages"},
      {R"({"model": "m", "messages": [{"role": "robot", "content": "x"}]})", true, "messages"},
      {R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       true, "messages[0].content"},
  };
  for (const auto& [body, chat, param] : bad) {
    auto p = parse_completion(body, chat);
    ASSERT_FALSE(p.has_value()) << body;
    EXPECT_EQ(p.error().status, 400) << body;
    EXPECT_EQ(p.error().param, param) << body << ": " << p.error().message;
    const auto j = json::parse(p.error().json());
    EXPECT_EQ(j["error"]["type"], "invalid_request_error");
    EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
  }
}

TEST(StopMatcher, HoldsBackWhatMayStartAStopAndCutsBeforeIt) {
  stop_matcher m({"END", "\n\n"});
  EXPECT_EQ(m.push("Hello E"), "Hello ");
  EXPECT_EQ(m.push("N"), "");
  EXPECT_EQ(m.push("d"), "ENd"); // not a stop after all
  EXPECT_EQ(m.push(" world\n"), " world");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push("\nmore"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("x"), "");
  EXPECT_EQ(m.flush(), "");

  stop_matcher split({"stop"});
  std::string out;
  for (char c : std::string("a stoop to stop here"))
    out += split.push(std::string(1, c));
  EXPECT_EQ(out, "a stoop to ");
  EXPECT_TRUE(split.stopped());

  stop_matcher none({});
  EXPECT_EQ(none.push("abc"), "abc");
  stop_matcher tail({"xyz"});
  EXPECT_EQ(tail.push("abx"), "ab");
  EXPECT_EQ(tail.flush(), "x");
}

TEST(ResponseShape, MatchesOpenAIsObjects) {
  response_shape chat{true, "chatcmpl-1", "m", 100};
  auto full = json::parse(chat.full("hi", "stop", {3, 1}));
  EXPECT_EQ(full["object"], "chat.completion");
  EXPECT_EQ(full["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(full["choices"][0]["message"]["content"], "hi");
  EXPECT_EQ(full["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(full["usage"]["total_tokens"], 4);
  auto first = json::parse(chat.chunk("a", std::nullopt, true, true));
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["content"], "a");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first.contains("usage") && first["usage"].is_null());
  auto last = json::parse(chat.chunk("", "length", false, false));
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(last["choices"][0]["delta"].contains("content"));
  auto usage = json::parse(chat.usage_chunk({3, 1}));
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 1);

  response_shape text{false, "cmpl-1", "m", 100};
  auto t = json::parse(text.full("x", "length", {1, 1}));
  EXPECT_EQ(t["object"], "text_completion");
  EXPECT_EQ(t["choices"][0]["text"], "x");
  auto list = json::parse(models_list({"a", "b"}, 5));
  EXPECT_EQ(list["object"], "list");
  EXPECT_EQ(list["data"][1]["id"], "b");
}

} // namespace
} // namespace aeg::server
