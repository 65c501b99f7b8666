// The ChatML renderer produces exactly what SmolLM2's Jinja template renders (reference 2.10;
// tests/models/tokenizer_reference.py also compares with jinja2).

#include "models/gguf/writer.hpp"
#include "models/tokenizer/chat_template.hpp"
#include "models/tokenizer/text_model.hpp"
#include "tests/models/smollm2.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace aeg::models {
namespace {

// SmolLM2-135M-Instruct's tokenizer.chat_template, verbatim.
constexpr std::string_view smollm2_template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

constexpr std::string_view default_system =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

chat_template smollm2() {
  auto t = chat_template::from_text(smollm2_template);
  EXPECT_TRUE(t) << t.error().to_string();
  return std::move(*t);
}

TEST(ChatTemplate, FindsSmolLM2DefaultSystemPrompt) {
  const auto t = smollm2();
  EXPECT_EQ(t.name(), "chatml");
  ASSERT_TRUE(t.default_system_prompt());
  EXPECT_EQ(*t.default_system_prompt(), default_system);
}

TEST(ChatTemplate, OneUserTurnMatchesTheReference) {
  const std::vector<chat_message> messages = {{"user", "Hi"}};
  EXPECT_EQ(smollm2().render(messages, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, MultiTurnWithoutSystemMessage) {
  const std::vector<chat_message> messages = {
      {"user", "Hi"}, {"assistant", "Hello! How can I help?"}, {"user", "Tell me a joke."}};
  EXPECT_EQ(smollm2().render(messages, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
            "<|im_start|>user\nTell me a joke.<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(smollm2().render(messages, false),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
            "<|im_start|>user\nTell me a joke.<|im_end|>\n");
}

TEST(ChatTemplate, MultiTurnWithSystemMessageReplacesTheDefault) {
  const std::vector<chat_message> messages = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}};
  EXPECT_EQ(smollm2().render(messages, true), "<|im_start|>system\nBe brief.<|im_end|>\n"
                                              "<|im_start|>user\nHi<|im_end|>\n"
                                              "<|im_start|>assistant\nHello.<|im_end|>\n"
                                              "<|im_start|>user\nBye<|im_end|>\n"
                                              "<|im_start|>assistant\n");
}

TEST(ChatTemplate, EmptyConversation) {
  EXPECT_EQ(smollm2().render({}, true), "<|im_start|>assistant\n");
  EXPECT_EQ(smollm2().render({}, false), "");
}

TEST(ChatTemplate, PlainChatMLHasNoDefaultSystemPrompt) {
  auto t = chat_template::from_text(
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
      "{{ '<|im_start|>assistant\\n' }}{% endif %}");
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_FALSE(t->default_system_prompt());
  const std::vector<chat_message> messages = {{"user", "Hi"}};
  EXPECT_EQ(t->render(messages, true), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(chat_template::chatml().render(messages, false), "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, EscapedDefaultSystemPromptIsUnescaped) {
  auto t = chat_template::from_text(
      "{%- if messages[0]['role'] != 'system' %}{{- \"<|im_start|>system\\nIt's \\\"fine\\\"."
      "<|im_end|>\\n\" }}{%- endif %}{% for m in messages %}...{% endfor %}");
  ASSERT_TRUE(t) << t.error().to_string();
  ASSERT_TRUE(t->default_system_prompt());
  EXPECT_EQ(*t->default_system_prompt(), "It's \"fine\".");
}

TEST(ChatTemplate, UnrecognisedTemplateIsAnError) {
  auto t = chat_template::from_text("{% for m in messages %}[INST] {{ m['content'] }} [/INST]"
                                    "{% endfor %}");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, errc::invalid_argument);
  EXPECT_NE(t.error().message.find("chatml, llama3, llama2, mistral"), std::string::npos);
  EXPECT_NE(t.error().message.find("--chat-template"), std::string::npos);
  auto unknown = chat_template::named("vicuna");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("'vicuna'"), std::string::npos);
}

// The conversation of the Jinja renders below (Python jinja2 on Meta's templates).
const std::vector<chat_message> four_turns = {
    {"system", "Be brief."}, {"user", " Hi \n"}, {"assistant", "Hello!"}, {"user", "Joke?"}};

TEST(ChatTemplate, Llama3TrimsEachMessageAndOpensTheAssistantsHeader) {
  auto t = chat_template::from_text("{{ '<|start_header_id|>' + message['role'] }}");
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(t->name(), "llama3");
  EXPECT_EQ(t->render(four_turns, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>"
            "assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>"
            "\n\nJoke?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama2FoldsTheSystemMessageIntoTheFirstInstruction) {
  auto t = chat_template::from_text("{{ bos_token + '[INST] ' }}{{ '<<SYS>>\\n' }}", "<s>", "</s>");
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(t->name(), "llama2");
  const std::string want =
      "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello! </s><s>[INST] Joke? [/INST]";
  EXPECT_EQ(t->render(four_turns, true), want);
  EXPECT_EQ(t->render(four_turns, false), want) << "the model answers after [/INST] either way";
  EXPECT_EQ(chat_template::named("llama2")->render(four_turns, true), want);
}

TEST(ChatTemplate, FileWithoutTemplateFallsBackToChatML) {
  gguf::writer w;
  w.add_string("general.architecture", "llama");
  const auto bytes = w.bytes();
  auto f = gguf::file::parse(bytes);
  ASSERT_TRUE(f);
  auto t = chat_template::from_gguf(*f);
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_FALSE(t->default_system_prompt());
}

TEST(ChatTemplate, RealModelTemplate) {
  AEG_REQUIRE_SMOLLM2(tok);
  (void)tok;
  auto t = chat_template::from_gguf(*testing::smollm2_file());
  ASSERT_TRUE(t) << t.error().to_string();
  ASSERT_TRUE(t->default_system_prompt());
  EXPECT_EQ(*t->default_system_prompt(), default_system);
  const std::vector<chat_message> messages = {{"user", "Hi"}};
  EXPECT_EQ(t->render(messages, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, MistralPutsEachAnswerRightAfterItsInstruction) {
  auto t = chat_template::from_text(
      "{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' "
      "}}{% endfor %}");
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(t->name(), "mistral");
  // Checked with jinja2 on Mistral-7B-Instruct-v0.2's template (without the system message,
  // which that template refuses).
  const std::vector<chat_message> three(four_turns.begin() + 1, four_turns.end());
  EXPECT_EQ(t->render(three, true), "<s>[INST]  Hi \n [/INST]Hello!</s>[INST] Joke? [/INST]");
  EXPECT_EQ(t->render(four_turns, true),
            "<s>[INST] Be brief.\n\n Hi \n [/INST]Hello!</s>[INST] Joke? [/INST]");
}

// A named format replaces the file's own, with the file's BOS text; stop tokens stay the file's.
TEST(ChatTemplate, ANamedFormatReplacesTheFilesOwn) {
  AEG_REQUIRE_SMOLLM2(tok);
  auto own = text_model::from_gguf(*testing::smollm2_file());
  auto llama3 = text_model::from_gguf(*testing::smollm2_file(), "llama3");
  ASSERT_TRUE(own && llama3);
  EXPECT_EQ(llama3->chat().name(), "llama3");
  EXPECT_EQ(llama3->stop_tokens(), own->stop_tokens());
  const std::vector<chat_message> messages = {{"user", "Hi"}};
  ASSERT_TRUE(tok.bos());
  EXPECT_EQ(llama3->chat().render(messages, false),
            std::string(tok.token_text(*tok.bos())) +
                "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  auto bad = text_model::from_gguf(*testing::smollm2_file(), "vicuna");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("known: chatml, llama3, llama2, mistral"), std::string::npos);
}

} // namespace
} // namespace aeg::models
