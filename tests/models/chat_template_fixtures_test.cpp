// Chat templates against what transformers renders: tests/models/fixtures/chat_templates holds
// the models' own template texts and apply_chat_template's output for a set of conversations
// (tests/models/chat_template_fixtures.py writes it). Also the dates, JSON strings and trimming
// the templates compute, and how template texts are told apart.

#include "models/tokenizer/chat_template.hpp"
#include "models/tokenizer/chat_template_text.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace aeg::models {
namespace {

using namespace std::chrono_literals;

const std::string folder = std::string(AEG_SOURCE_DIR) + "/tests/models/fixtures/chat_templates/";
// The models' own templates are not part of the repository: scripts/fetch-model copies them here
// from llama.cpp's sources (PyPI's llama-cpp-python sdist).
const std::string fetched = std::string(AEG_SOURCE_DIR) + "/models/chat-templates/";

// Where `file` is: with the fixtures (the older families' templates, ours) or fetched; empty
// when it is neither.
std::string template_path(const std::string& file) {
  for (const auto& dir : {folder, fetched})
    if (std::ifstream(dir + file).good())
      return dir + file;
  return {};
}

#define SKIP_UNLESS_FETCHED(file)                                                                  \
  if (template_path(file).empty())                                                                 \
  GTEST_SKIP() << file << " is not in models/chat-templates/: run scripts/fetch-model"

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const nlohmann::json& expected() {
  static const nlohmann::json j = nlohmann::json::parse(read_text(folder + "expected.json"));
  return j;
}

chat_text::day parse_day(const std::string& iso) { // "2025-03-04"
  return std::chrono::year{std::stoi(iso.substr(0, 4))} /
         std::chrono::month{static_cast<unsigned>(std::stoi(iso.substr(5, 2)))} /
         std::chrono::day{static_cast<unsigned>(std::stoi(iso.substr(8, 2)))};
}

std::vector<chat_message> conversation(std::size_t i) {
  std::vector<chat_message> out;
  for (const auto& m : expected().at("conversations").at(i))
    out.push_back({m.at("role"), m.at("content")});
  return out;
}

const nlohmann::json& fixture(const std::string& file) {
  for (const auto& t : expected().at("templates"))
    if (t.at("file") == file)
      return t;
  throw std::runtime_error("no fixture for " + file);
}

chat_template load(const std::string& file) {
  const auto& f = fixture(file);
  auto t = chat_template::from_text(read_text(template_path(file)), f.at("bos").get<std::string>(),
                                    f.at("eos").get<std::string>());
  EXPECT_TRUE(t) << file << ": " << t.error().to_string();
  return t ? std::move(*t) : chat_template::chatml();
}

class ChatTemplateFixtures : public ::testing::TestWithParam<std::string> {};

// Each template is recognised as its family and renders every conversation transformers
// rendered (those the template refuses are skipped) byte for byte, on the fixture's date.
TEST_P(ChatTemplateFixtures, RendersAsTransformersDoes) {
  const std::string file = GetParam();
  SKIP_UNLESS_FETCHED(file);
  const auto& f = fixture(file);
  const chat_template t = load(file);
  EXPECT_EQ(t.name(), f.at("family").get<std::string>());
  const auto day = parse_day(expected().at("date"));
  int compared = 0;
  for (const auto& c : f.at("cases")) {
    if (!c.contains("text"))
      continue;
    const std::size_t i = c.at("conversation");
    const bool generation = c.at("add_generation_prompt");
    EXPECT_EQ(t.render(conversation(i), generation, day), c.at("text").get<std::string>())
        << file << ", conversation " << i << (generation ? " with" : " without")
        << " the generation prompt";
    ++compared;
  }
  EXPECT_GE(compared, 8) << "too few renderings to compare";
}

INSTANTIATE_TEST_SUITE_P(Templates, ChatTemplateFixtures,
                         ::testing::Values("chatml.jinja", "llama3.jinja", "llama2.jinja",
                                           "mistral.jinja",
                                           "meta-llama-Llama-3.1-8B-Instruct.jinja",
                                           "meta-llama-Llama-3.2-3B-Instruct.jinja",
                                           "mistralai-Mistral-7B-Instruct-v0.2-v1.jinja",
                                           "mistralai-Mistral-Large-Instruct-2407.jinja",
                                           "mistralai-Mistral-Nemo-Instruct-2407.jinja",
                                           "mistralai-Mistral-Large-Instruct-2411.jinja",
                                           "mistralai-Mistral-Small-3.2-24B-Instruct-2506.jinja",
                                           "mistralai-Ministral-3-14B-Reasoning-2512.jinja"),
                         [](const auto& info) {
                           std::string name =
                               info.param.substr(0, info.param.size() - 6); // no ".jinja"
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c)))
                               c = '_';
                           return name;
                         });

const std::vector<chat_message> hi = {{"user", "Hi"}};

// Llama 3.1 and 3.3 write their own default date whatever the day; 3.2 calls strftime_now,
// which transformers defines, so it writes today's local date.
TEST(ChatTemplateDates, Llama31WritesItsDefaultDateAndLlama32Today) {
  SKIP_UNLESS_FETCHED("meta-llama-Llama-3.1-8B-Instruct.jinja");
  SKIP_UNLESS_FETCHED("meta-llama-Llama-3.2-3B-Instruct.jinja");
  const auto l31 = load("meta-llama-Llama-3.1-8B-Instruct.jinja");
  const auto a = l31.render(hi, true, 2030y / 1 / 2);
  EXPECT_EQ(a, l31.render(hi, true, 2025y / 12 / 31));
  EXPECT_NE(a.find("\nToday Date: 26 Jul 2024\n\n"), std::string::npos) << a;

  const auto l32 = load("meta-llama-Llama-3.2-3B-Instruct.jinja");
  EXPECT_NE(l32.render(hi, true, 2030y / 1 / 2).find("\nToday Date: 02 Jan 2030\n\n"),
            std::string::npos);
  const auto before = chat_text::today();
  const auto now = l32.render(hi, true);
  const auto after = chat_text::today();
  EXPECT_TRUE(now == l32.render(hi, true, before) || now == l32.render(hi, true, after)) << now;
}

TEST(ChatTemplateDates, MistralSmallDatesItsDefaultSystemPrompt) {
  SKIP_UNLESS_FETCHED("mistralai-Mistral-Small-3.2-24B-Instruct-2506.jinja");
  SKIP_UNLESS_FETCHED("mistralai-Ministral-3-14B-Reasoning-2512.jinja");
  const auto t = load("mistralai-Mistral-Small-3.2-24B-Instruct-2506.jinja");
  const auto prompt = t.default_system_prompt(2025y / 3 / 4);
  ASSERT_TRUE(prompt);
  EXPECT_TRUE(prompt->starts_with("You are Mistral Small 3, a Large Language Model"));
  EXPECT_NE(prompt->find("The current date is 2025-03-04.\n\n"), std::string::npos);
  EXPECT_EQ(t.render(hi, true, 2025y / 3 / 4),
            "<s>[SYSTEM_PROMPT]" + *prompt + "[/SYSTEM_PROMPT][INST]Hi[/INST]");
  // A system message of the conversation replaces it.
  const std::vector<chat_message> with_system = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(t.render(with_system, true),
            "<s>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]Hi[/INST]");
  // Ministral 3's default is one literal, with no date in it.
  const auto ministral = load("mistralai-Ministral-3-14B-Reasoning-2512.jinja");
  ASSERT_TRUE(ministral.default_system_prompt());
  EXPECT_EQ(ministral.default_system_prompt(2025y / 3 / 4),
            ministral.default_system_prompt(2031y / 7 / 9));
}

TEST(ChatTemplateNames, NewFormatsAreNamedAndListed) {
  EXPECT_EQ(chat_template::names(), "chatml, llama3, llama2, mistral, llama3.1, mistral-v1, "
                                    "mistral-v3, mistral-v3-tekken, mistral-v7, mistral-v7-tekken");
  auto l31 = chat_template::named("llama3.1");
  ASSERT_TRUE(l31);
  EXPECT_EQ(l31->render(hi, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge "
            "Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user"
            "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  const std::vector<chat_message> turns = {
      {"system", "S"}, {"user", "U1"}, {"assistant", " A1 "}, {"user", "U2"}};
  auto render = [&](std::string_view name) {
    return chat_template::named(name)->render(turns, true);
  };
  EXPECT_EQ(render("mistral-v1"), "<s> [INST] S\n\nU1 [/INST]  A1 </s> [INST] U2 [/INST]");
  EXPECT_EQ(render("mistral-v3"), "<s>[INST] U1[/INST] A1</s>[INST] S\n\nU2[/INST]");
  EXPECT_EQ(render("mistral-v3-tekken"), "<s>[INST]U1[/INST] A1 </s>[INST]S\n\nU2[/INST]");
  EXPECT_EQ(render("mistral-v7"),
            "<s>[SYSTEM_PROMPT] S[/SYSTEM_PROMPT][INST] U1[/INST]  A1 </s>[INST] U2[/INST]");
  EXPECT_EQ(render("mistral-v7-tekken"),
            "<s>[SYSTEM_PROMPT]S[/SYSTEM_PROMPT][INST]U1[/INST] A1 </s>[INST]U2[/INST]");
  EXPECT_FALSE(chat_template::named("mistral-v7-tekken")->default_system_prompt())
      << "without the template's text there is no default system prompt";
}

// Each family is told by literals its templates write, not by where they sit in the text.
TEST(ChatTemplateRecognition, DistinctiveLiteralsPickTheFamily) {
  auto family = [](std::string_view jinja) {
    auto t = chat_template::from_text(jinja);
    return t ? std::string(t->name()) : "refused: " + t.error().message;
  };
  EXPECT_EQ(family("{{ ' [INST] ' + m + ' [/INST]' }}"), "mistral-v1");
  EXPECT_EQ(family("{{ '[INST] ' + m + ' [/INST]' }}"), "mistral");
  EXPECT_EQ(family("{{- \"[INST] \" + m + \"[/INST]\" }}"), "mistral-v3");
  EXPECT_EQ(family("{{- \"[INST]\" + m + \"[/INST]\" }}"), "mistral-v3-tekken");
  EXPECT_EQ(family("{{ '[SYSTEM_PROMPT] ' + s + '[/SYSTEM_PROMPT]' }}"), "mistral-v7");
  EXPECT_EQ(family("{{ '[SYSTEM_PROMPT]' + s + '[/SYSTEM_PROMPT]' }}"), "mistral-v7-tekken");
  EXPECT_EQ(family("{{ '<|start_header_id|>' }}{{ 'Cutting Knowledge Date: May 2024\\n' }}"),
            "llama3.1");
  // [INST] only as plain text, or a default system message computed by a filter: refused,
  // with the way out.
  for (std::string_view jinja :
       {std::string_view("[INST] {{ m }} [/INST]"),
        std::string_view(
            "{%- set default_system_message = 'x' | upper %}{{ '[SYSTEM_PROMPT]' }}")}) {
    auto t = chat_template::from_text(jinja);
    ASSERT_FALSE(t) << jinja;
    EXPECT_NE(t.error().message.find("--chat-template"), std::string::npos);
    EXPECT_NE(t.error().message.find(chat_template::names()), std::string::npos);
  }
}

TEST(ChatTemplateRecognition, AFineTunesKnowledgeDateIsKept) {
  auto t = chat_template::from_text(
      "{{ bos_token }}{%- set date_string = \"1 Jan 2025\" %}{{ '<|start_header_id|>' }}"
      "{{- \"Cutting Knowledge Date: May 2024\\n\" }}");
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_NE(t->render(hi, false).find("Cutting Knowledge Date: May 2024\nToday Date: 1 Jan 2025\n"),
            std::string::npos);
}

TEST(ChatText, FormatsDatesAsStrftimeInTheCLocale) {
  EXPECT_EQ(chat_text::format_date("%d %b %Y", 2024y / 7 / 26), "26 Jul 2024");
  EXPECT_EQ(chat_text::format_date("%d %b %Y", 2025y / 3 / 4), "04 Mar 2025");
  EXPECT_EQ(chat_text::format_date("%Y-%m-%d", 2025y / 3 / 4), "2025-03-04");
  EXPECT_EQ(chat_text::format_date("%A %a %B %e|%-d|%-m %y %j %% %Q", 2024y / 2 / 29),
            "Thursday Thu February 29|29|2 24 060 % %Q");
  EXPECT_EQ(chat_text::format_date("%e %-d %j", 2023y / 1 / 5), " 5 5 005");
}

TEST(ChatText, QuotesJsonAsPythonDoes) {
  EXPECT_EQ(chat_text::json_quoted("a\"b\\c\nd\te\x01 é 👋"), "\"a\\\"b\\\\c\\nd\\te\\u0001 é 👋\"");
}

TEST(ChatText, TrimsWhatPythonsStripTrims) {
  EXPECT_EQ(chat_text::trimmed("\u00a0 Hi\u3000\u2028\u0085"), "Hi");
  EXPECT_EQ(chat_text::trimmed("\u200bHi\u200b"), "\u200bHi\u200b") << "not white space";
  EXPECT_EQ(chat_text::trimmed("é"), "é");
  EXPECT_EQ(chat_text::trimmed(" \t\n"), "");
}

TEST(ChatText, ReadsLiteralsAndAssignments) {
  const auto literals = chat_text::string_literals(
      "text 'not this' {{ 'a\\n' + \"b\\\"c\" }}{% if x == 'd\\\ne' %}{# 'no' #}");
  EXPECT_EQ(literals, (std::vector<std::string>{"a\n", "b\"c", "de"}));
  const auto sets = chat_text::assignments(
      "{%- set today = strftime_now(\"%Y-%m-%d\") %}{% set ns.today = 1 %}"
      "{%- set today = 'x' + today + \"y\" -%}{% set today == 1 %}{% set today = a | b %}",
      "today");
  ASSERT_EQ(sets.size(), 3u);
  ASSERT_TRUE(sets[0] && sets[1]);
  ASSERT_EQ(sets[0]->size(), 1u);
  EXPECT_EQ((*sets[0])[0].kind, chat_text::term::strftime);
  EXPECT_EQ((*sets[0])[0].text, "%Y-%m-%d");
  ASSERT_EQ(sets[1]->size(), 3u);
  EXPECT_EQ((*sets[1])[1].kind, chat_text::term::variable);
  EXPECT_EQ((*sets[1])[2].text, "y");
  EXPECT_FALSE(sets[2]) << "a filter is not reproduced";
}

} // namespace
} // namespace aeg::models
