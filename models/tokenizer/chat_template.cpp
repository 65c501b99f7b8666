#include "models/tokenizer/chat_template.hpp"

#include <vector>

namespace aeg::models {
namespace {

constexpr std::string_view im_start = "<|im_start|>";
constexpr std::string_view im_end = "<|im_end|>";
constexpr std::string_view system_head = "<|im_start|>system\n";

// The string literals inside `{{ }}` and `{% %}` blocks of a Jinja template, unescaped.
std::vector<std::string> string_literals(std::string_view jinja) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i + 1 < jinja.size()) {
    if (jinja[i] != '{' || (jinja[i + 1] != '{' && jinja[i + 1] != '%')) {
      ++i;
      continue;
    }
    const std::string_view close = jinja[i + 1] == '{' ? "}}" : "%}";
    i += 2;
    while (i < jinja.size() && jinja.substr(i, 2) != close) {
      const char quote = jinja[i];
      if (quote != '\'' && quote != '"') {
        ++i;
        continue;
      }
      std::string literal;
      ++i;
      while (i < jinja.size() && jinja[i] != quote) {
        if (jinja[i] == '\\' && i + 1 < jinja.size()) {
          const char e = jinja[i + 1];
          switch (e) {
          case 'n':
            literal += '\n';
            break;
          case 't':
            literal += '\t';
            break;
          case 'r':
            literal += '\r';
            break;
          case '\\':
          case '\'':
          case '"':
            literal += e;
            break;
          default:
            literal += '\\';
            literal += e;
            break;
          }
          i += 2;
        } else {
          literal += jinja[i++];
        }
      }
      ++i; // closing quote
      out.push_back(std::move(literal));
    }
    i += 2;
  }
  return out;
}

} // namespace

result<chat_template> chat_template::from_gguf(const gguf::file& f) {
  constexpr std::string_view key = "tokenizer.chat_template";
  if (f.find(key) == nullptr)
    return chatml();
  AEG_TRY_ASSIGN(auto text, f.get_string(key));
  return from_text(text);
}

result<chat_template> chat_template::from_text(std::string_view jinja) {
  if (jinja.find(im_start) == std::string_view::npos)
    return fail(errc::invalid_argument,
                "the model's chat template (tokenizer.chat_template) is not ChatML (it has no "
                "<|im_start|>); only ChatML templates are supported. Render prompts yourself or "
                "fall back to chat_template::chatml()");
  // A literal holding a whole system turn is the default prompt the template inserts when the
  // conversation brings none (SmolLM2: `loop.first and messages[0]['role'] != 'system'`).
  for (const std::string& literal : string_literals(jinja)) {
    const std::size_t head = literal.find(system_head);
    if (head == std::string::npos)
      continue;
    const std::size_t body = head + system_head.size();
    const std::size_t end = literal.find(im_end, body);
    if (end == std::string::npos)
      continue;
    return chatml(literal.substr(body, end - body));
  }
  return chatml();
}

chat_template chat_template::chatml(std::optional<std::string> default_system) {
  return chat_template(std::move(default_system));
}

std::string chat_template::render(std::span<const chat_message> messages,
                                  bool add_generation_prompt) const {
  std::string out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (i == 0 && default_system_ && messages[0].role != "system") {
      out += system_head;
      out += *default_system_;
      out += im_end;
      out += '\n';
    }
    out += im_start;
    out += messages[i].role;
    out += '\n';
    out += messages[i].content;
    out += im_end;
    out += '\n';
  }
  if (add_generation_prompt) {
    out += im_start;
    out += "assistant\n";
  }
  return out;
}

} // namespace aeg::models
