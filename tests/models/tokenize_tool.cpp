// Answers the tokenizer_reference and sentencepiece_reference tests: reads a JSON array on
// stdin, writes a JSON array.
//
//   tokenize_tool --model PATH [--parse-special]  strings -> [{"ids": [...], "decoded": "..."}]
//   tokenize_tool --model FILE --chat             [{"messages": [{"role", "content"}],
//                                                   "add_generation_prompt": bool}] -> strings
//                 (--template JINJA_FILE: that template recognised instead of the model's own)
//   tokenize_tool --split NAME                    strings -> [[piece, ...], ...] (pre-tokenizer
//                                                 NAME alone; no model needed)
#include "models/gguf/file.hpp"
#include "models/hf/folder.hpp"
#include "models/tokenizer/chat_template.hpp"
#include "models/tokenizer/pre_tokenizer.hpp"
#include "models/tokenizer/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

namespace {

int usage() {
  std::cerr << "usage: tokenize_tool --model FILE [--parse-special | --chat] < input.json\n"
               "       tokenize_tool --split PRE_TOKENIZER_NAME < input.json\n";
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  using namespace aeg::models;
  std::string model;
  bool parse_special = false;
  bool chat = false;
  std::optional<std::string> split;
  std::string template_file; // a Jinja template to recognise instead of the model's own
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--model" && i + 1 < argc)
      model = argv[++i];
    else if (arg == "--parse-special")
      parse_special = true;
    else if (arg == "--chat")
      chat = true;
    else if (arg == "--split" && i + 1 < argc)
      split = argv[++i];
    else if (arg == "--template" && i + 1 < argc)
      template_file = argv[++i];
    else
      return usage();
  }
  if (model.empty() == !split.has_value())
    return usage();

  nlohmann::json input;
  try {
    input = nlohmann::json::parse(std::cin);
  } catch (const nlohmann::json::exception& e) {
    std::cerr << "tokenize_tool: bad JSON on stdin: " << e.what() << "\n";
    return 1;
  }
  if (!input.is_array())
    return usage();

  nlohmann::json output = nlohmann::json::array();
  if (split) {
    auto pre = pre_tokenizer::create(*split);
    if (!pre) {
      std::cerr << "tokenize_tool: " << pre.error().to_string() << "\n";
      return 1;
    }
    for (const auto& s : input) {
      const std::string text = s.get<std::string>();
      std::vector<std::string_view> pieces;
      pre->split(text, pieces);
      output.push_back(std::vector<std::string>(pieces.begin(), pieces.end()));
    }
    std::cout << output.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }

  auto file = open_model(model); // a GGUF file or a Hugging Face folder
  if (!file) {
    std::cerr << "tokenize_tool: " << file.error().to_string() << "\n";
    return 1;
  }
  try {
    if (chat) {
      auto tmpl = chat_template::from_gguf(*file);
      if (!template_file.empty()) {
        std::ifstream in(template_file);
        const std::string text((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
        tmpl = chat_template::from_text(text);
      }
      if (!tmpl) {
        std::cerr << "tokenize_tool: " << tmpl.error().to_string() << "\n";
        return 1;
      }
      for (const auto& conv : input) {
        std::vector<chat_message> messages;
        for (const auto& m : conv.at("messages"))
          messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
        output.push_back(tmpl->render(messages, conv.at("add_generation_prompt").get<bool>()));
      }
    } else {
      auto tok = tokenizer::from_gguf(*file);
      if (!tok) {
        std::cerr << "tokenize_tool: " << tok.error().to_string() << "\n";
        return 1;
      }
      for (const auto& s : input) {
        const auto ids = tok->encode(s.get<std::string>(), parse_special);
        output.push_back({{"ids", ids}, {"decoded", tok->decode(ids, parse_special)}});
      }
    }
  } catch (const nlohmann::json::exception& e) {
    std::cerr << "tokenize_tool: unexpected JSON: " << e.what() << "\n";
    return 1;
  }
  std::cout << output.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  return 0;
}
