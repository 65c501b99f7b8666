// The prompt's side of the API on the shared test server (SmolLM2 as "alpha" and "beta"):
// /tokenize and /detokenize (the ids the model's own tokenizer gives, a round trip to the text,
// conversations through the chat template, pieces, errors in OpenAI's shape) and completions'
// `echo`.
#include "models/gguf/file.hpp"
#include "models/tokenizer/text_model.hpp"
#include "tests/apps/server_fixture.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace aeg::server {
namespace {

using json = nlohmann::json;

// SmolLM2's text side, read here independently of the server.
models::text_model smollm2() {
  auto f = models::gguf::file::open(model_path);
  EXPECT_TRUE(f.has_value());
  return *models::text_model::from_gguf(*f);
}

TEST_F(Server, TokenizeGivesTheModelsIdsAndDetokenizeTheTextBack) {
  const auto text = smollm2();
  const std::string prompt = "The capital of France is Paris. 12345 ünïcödé <|im_start|>";
  auto [status, answer] = post("/tokenize", {{"model", "alpha"}, {"prompt", prompt}});
  ASSERT_EQ(status, 200) << answer.dump();
  const auto ids = answer.at("tokens").get<std::vector<std::int32_t>>();
  EXPECT_EQ(ids, text.encode_prompt(prompt));
  EXPECT_EQ(answer.at("count"), ids.size());
  EXPECT_EQ(answer.at("max_model_len"), 8192);

  auto [dstatus, back] = post("/detokenize", {{"model", "alpha"}, {"tokens", ids}});
  ASSERT_EQ(dstatus, 200) << back.dump();
  EXPECT_EQ(back.at("prompt"), prompt);
  EXPECT_EQ(back.at("content"), prompt); // llama.cpp's name for it

  // llama.cpp's shape: "content", and pieces that spell the text (a piece that ends inside a
  // character as its bytes).
  auto [pstatus, pieces] =
      post("/tokenize", {{"model", "alpha"}, {"content", prompt}, {"with_pieces", true}});
  ASSERT_EQ(pstatus, 200) << pieces.dump();
  std::string spelled;
  for (const auto& t : pieces.at("tokens")) {
    if (t.at("piece").is_string())
      spelled += t.at("piece").get<std::string>();
    else
      for (const auto& b : t.at("piece"))
        spelled.push_back(static_cast<char>(b.get<int>()));
  }
  EXPECT_EQ(spelled, prompt);
}

TEST_F(Server, TokenizeRendersAConversationThroughTheChatTemplate) {
  const auto text = smollm2();
  const json messages = {
      {{"role", "system"}, {"content", "Be brief."}},
      {{"role", "user"},
       {"content", {{{"type", "text"}, {"text", "Hi "}}, {{"type", "text"}, {"text", "there"}}}}}};
  auto [status, answer] = post("/tokenize", {{"model", "beta"}, {"messages", messages}});
  ASSERT_EQ(status, 200) << answer.dump();
  const std::vector<models::chat_message> same = {{"system", "Be brief."}, {"user", "Hi there"}};
  EXPECT_EQ(answer.at("tokens").get<std::vector<std::int32_t>>(), text.encode_chat(same));
}

TEST_F(Server, TokenizeErrorsNameWhatIsWrong) {
  auto [unknown, e1] = post("/tokenize", {{"model", "gamma-9"}, {"prompt", "x"}});
  EXPECT_EQ(unknown, 404);
  EXPECT_EQ(e1["error"]["code"], "model_not_found");
  auto [none, e2] = post("/tokenize", {{"model", "alpha"}});
  EXPECT_EQ(none, 400);
  EXPECT_EQ(e2["error"]["param"], "prompt");
  auto [which, e3] = post("/tokenize", {{"prompt", "x"}});
  EXPECT_EQ(which, 400);
  EXPECT_NE(e3["error"]["message"].get<std::string>().find("'model' is required"),
            std::string::npos);
  auto [range, e4] = post("/detokenize", {{"model", "alpha"}, {"tokens", {1, 2, 999999}}});
  EXPECT_EQ(range, 400);
  EXPECT_NE(e4["error"]["message"].get<std::string>().find("999999"), std::string::npos);
  // Behind the API key like /v1/*.
  http_client anonymous(server_->url(), "");
  auto r = anonymous.request("POST", "/tokenize", R"({"model": "alpha", "prompt": "x"})");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 401);
}

// `echo`: a completion's text begins with its prompt, streamed or not, given as text or as ids.
TEST_F(Server, EchoBeginsTheCompletionWithItsPrompt) {
  const std::string prompt = "The capital of France is";
  auto [status, whole] = post("/v1/completions", {{"model", "alpha"},
                                                  {"prompt", prompt},
                                                  {"max_tokens", 4},
                                                  {"temperature", 0},
                                                  {"echo", true}});
  ASSERT_EQ(status, 200) << whole.dump();
  const auto text = whole["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text.substr(0, prompt.size()), prompt);
  EXPECT_GT(text.size(), prompt.size());

  auto streamed = stream("/v1/completions", {{"model", "alpha"},
                                             {"prompt", prompt},
                                             {"max_tokens", 4},
                                             {"temperature", 0},
                                             {"echo", true}});
  ASSERT_EQ(streamed.status, 200);
  std::string joined;
  for (const auto& e : streamed.events)
    joined += e["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(joined, text); // the same greedy answer, the prompt first

  const auto ids = smollm2().encode_prompt(prompt);
  auto [istatus, by_ids] = post(
      "/v1/completions",
      {{"model", "alpha"}, {"prompt", ids}, {"max_tokens", 4}, {"temperature", 0}, {"echo", true}});
  ASSERT_EQ(istatus, 200) << by_ids.dump();
  EXPECT_EQ(by_ids["choices"][0]["text"].get<std::string>().substr(0, prompt.size()), prompt);

  auto [chat, refused] = post(
      "/v1/chat/completions",
      {{"model", "alpha"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"echo", true}});
  EXPECT_EQ(chat, 400);
  EXPECT_EQ(refused["error"]["param"], "echo");
}

} // namespace
} // namespace aeg::server
