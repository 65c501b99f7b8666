// OpenAI request validation, stop strings and response shapes, without a server.

#include "apps/server/openai.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <limits>

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
      {R"({"model": "m", "prompt": "x", "n": 0})", false, "n"},
      {R"({"model": "m", "prompt": "x", "n": 17})", false, "n"},
      {R"({"model": "m", "prompt": "x", "n": 2, "best_of": 3})", false, "best_of"},
      {R"({"model": "m", "prompt": "x", "logprobs": 21})", false, "logprobs"},
      {R"({"model": "m", "prompt": "x", "logprobs": true})", false, "logprobs"},
      {R"({"model": "m", "prompt": "x", "logprobs": 1, "echo": true})", false, "logprobs"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": 2})", true,
       "logprobs"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", true,
       "top_logprobs"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": true,
          "top_logprobs": 21})",
       true, "top_logprobs"},
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

TEST(ParseCompletion, ReadsChoicesAndLogprobsInEachEndpointsShape) {
  auto text = parse_completion(R"({"model": "m", "prompt": "x", "n": 3, "logprobs": 2})", false);
  ASSERT_TRUE(text.has_value()) << text.error().message;
  EXPECT_EQ(text->n, 3u);
  EXPECT_EQ(text->logprobs, 2);
  auto zero = parse_completion(R"({"model": "m", "prompt": "x", "logprobs": 0})", false);
  ASSERT_TRUE(zero.has_value());
  EXPECT_EQ(zero->logprobs, 0); // the picked token's alone
  auto none = parse_completion(R"({"model": "m", "prompt": "x", "logprobs": null})", false);
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->logprobs, -1);
  EXPECT_EQ(none->n, 1u);

  const std::string user = R"("messages": [{"role": "user", "content": "x"}])";
  auto chat = parse_completion(R"({"model": "m", )" + user + R"(, "logprobs": true,
      "top_logprobs": 5, "n": 2, "best_of": 2})",
                               true);
  ASSERT_TRUE(chat.has_value()) << chat.error().message;
  EXPECT_EQ(chat->logprobs, 5);
  EXPECT_EQ(chat->n, 2u);
  auto plain = parse_completion(R"({"model": "m", )" + user + R"(, "logprobs": true})", true);
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->logprobs, 0);
  auto off = parse_completion(R"({"model": "m", )" + user + R"(, "logprobs": false,
      "top_logprobs": 0})",
                              true);
  ASSERT_TRUE(off.has_value());
  EXPECT_EQ(off->logprobs, -1);
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
  auto full = json::parse(chat.full({{"hi", "stop", std::nullopt}}, {3, 1}));
  EXPECT_EQ(full["object"], "chat.completion");
  EXPECT_EQ(full["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(full["choices"][0]["message"]["content"], "hi");
  EXPECT_EQ(full["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(full["usage"]["total_tokens"], 4);
  EXPECT_EQ(full["choices"][0]["index"], 0);
  EXPECT_TRUE(full["choices"][0]["logprobs"].is_null());
  auto first = json::parse(chat.chunk(0, "a", std::nullopt, true, true));
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["content"], "a");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first.contains("usage") && first["usage"].is_null());
  auto last = json::parse(chat.chunk(0, "", "length", false, false));
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(last["choices"][0]["delta"].contains("content"));
  auto usage = json::parse(chat.usage_chunk({3, 1}));
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 1);

  response_shape text{false, "cmpl-1", "m", 100};
  auto t =
      json::parse(text.full({{"x", "length", std::nullopt}, {"y", "stop", std::nullopt}}, {1, 2}));
  EXPECT_EQ(t["object"], "text_completion");
  EXPECT_EQ(t["choices"][0]["text"], "x");
  EXPECT_EQ(t["choices"][1]["text"], "y");
  EXPECT_EQ(t["choices"][1]["index"], 1);
  EXPECT_EQ(t["choices"][1]["finish_reason"], "stop");
  EXPECT_EQ(json::parse(text.chunk(3, "z", std::nullopt, false, false))["choices"][0]["index"], 3);
  auto list = json::parse(models_list({"a", "b"}, 5));
  EXPECT_EQ(list["object"], "list");
  EXPECT_EQ(list["data"][1]["id"], "b");
}

// Log-probabilities in each endpoint's shape: a chat's content entries with bytes and
// alternatives, a completion's parallel lists with text offsets; -infinity as OpenAI's floor.
TEST(ResponseShape, ShowsLogprobsAsEachEndpointDoes) {
  const float never = -std::numeric_limits<float>::infinity();
  const std::vector<logprob_entry> entries = {
      {" Paris", -0.25f, {{" Paris", -0.25f}, {" Lyon", -2.5f}}, 0},
      {"\xc3", -1.0f, {{"\xc3", -1.0f}, {"!", never}}, 6}};
  response_shape chat{true, "chatcmpl-1", "m", 100};
  auto c = json::parse(chat.full({{" Paris", "stop", entries}}, {3, 2}));
  const auto& content = c["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["token"], " Paris");
  EXPECT_FLOAT_EQ(content[0]["logprob"].get<float>(), -0.25f);
  EXPECT_EQ(content[0]["bytes"], json::array({32, 80, 97, 114, 105, 115}));
  EXPECT_EQ(content[0]["top_logprobs"][1]["token"], " Lyon");
  EXPECT_EQ(content[1]["bytes"], json::array({0xc3})); // half a character: its byte
  EXPECT_EQ(content[1]["top_logprobs"][1]["logprob"], -9999.0);
  auto streamed = json::parse(chat.chunk(1, " Paris", std::nullopt, false, false, &entries));
  EXPECT_EQ(streamed["choices"][0]["logprobs"]["content"].size(), 2u);

  response_shape text{false, "cmpl-1", "m", 100};
  auto t = json::parse(text.full({{" Paris", "stop", entries}}, {3, 2}));
  const auto& lp = t["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"][0], " Paris");
  EXPECT_FLOAT_EQ(lp["token_logprobs"][0].get<float>(), -0.25f);
  EXPECT_FLOAT_EQ(lp["top_logprobs"][0][" Lyon"].get<float>(), -2.5f);
  EXPECT_EQ(lp["text_offset"], json::array({0, 6}));
  EXPECT_EQ(text_characters("h\xc3\xa9!"), 3u);
}

} // namespace
} // namespace aeg::server
