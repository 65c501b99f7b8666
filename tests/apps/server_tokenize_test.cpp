// /tokenize and /detokenize on the shared test server (SmolLM2 as "alpha" and "beta"): the ids
// the model's own tokenizer gives, a round trip to the text, conversations through the chat
// template, pieces, and errors in OpenAI's shape.
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

} // namespace
} // namespace aeg::server
