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

namespace {

struct format_info {
  chat_format format;
  std::string_view name, bos, eos;
};

constexpr format_info formats[] = {
    {chat_format::chatml, "chatml", "", ""},
    {chat_format::llama3, "llama3", "<|begin_of_text|>", "<|eot_id|>"},
    {chat_format::llama2, "llama2", "<s>", "</s>"},
    {chat_format::mistral, "mistral", "<s>", "</s>"},
};

const format_info& info(chat_format f) {
  for (const auto& i : formats)
    if (i.format == f)
      return i;
  return formats[0];
}

// Jinja's `trim` and Python's `strip()` on the white space prompts carry.
std::string_view trimmed(std::string_view s) {
  constexpr std::string_view ws = " \t\n\r\f\v";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string_view::npos)
    return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// The text of token `key_id`'s id in the vocabulary of `f`, or "" when the file has none.
std::string token_text(const gguf::file& f, const char* key_id) {
  if (f.find(key_id) == nullptr || f.find("tokenizer.ggml.tokens") == nullptr)
    return {};
  auto id = f.get_uint(key_id);
  auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (!id || !tokens || *id >= tokens->size())
    return {};
  return (*tokens)[*id];
}

} // namespace

result<chat_template> chat_template::from_gguf(const gguf::file& f) {
  constexpr std::string_view key = "tokenizer.chat_template";
  if (f.find(key) == nullptr)
    return chatml();
  AEG_TRY_ASSIGN(auto text, f.get_string(key));
  return from_text(text, token_text(f, "tokenizer.ggml.bos_token_id"),
                   token_text(f, "tokenizer.ggml.eos_token_id"));
}

result<chat_template> chat_template::from_text(std::string_view jinja, std::string_view bos,
                                               std::string_view eos) {
  if (jinja.find("<|start_header_id|>") != std::string_view::npos)
    return named("llama3", bos, eos);
  if (jinja.find("[INST]") != std::string_view::npos &&
      jinja.find("<<SYS>>") != std::string_view::npos)
    return named("llama2", bos, eos);
  if (jinja.find("' [/INST]'") != std::string_view::npos)
    return named("mistral", bos, eos);
  if (jinja.find(im_start) == std::string_view::npos)
    return fail(errc::invalid_argument,
                "the model's chat template (tokenizer.chat_template) is not one of the formats "
                "rendered here (" +
                    names() +
                    "); give --chat-template NAME (or the topology's chat_template) to pick one, "
                    "or render prompts yourself");
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

result<chat_template> chat_template::named(std::string_view name, std::string_view bos,
                                           std::string_view eos) {
  for (const auto& i : formats)
    if (i.name == name)
      return chat_template(i.format, std::nullopt, std::string(bos.empty() ? i.bos : bos),
                           std::string(eos.empty() ? i.eos : eos));
  return fail(errc::invalid_argument,
              "unknown chat template '" + std::string(name) + "'; known: " + names());
}

std::string chat_template::names() {
  std::string out;
  for (const auto& i : formats)
    out += (out.empty() ? "" : ", ") + std::string(i.name);
  return out;
}

chat_template chat_template::chatml(std::optional<std::string> default_system) {
  return chat_template(chat_format::chatml, std::move(default_system), {}, {});
}

std::string_view chat_template::name() const noexcept {
  return info(format_).name;
}

std::string chat_template::render(std::span<const chat_message> messages,
                                  bool add_generation_prompt) const {
  switch (format_) {
  case chat_format::llama3:
    return render_llama3(messages, add_generation_prompt);
  case chat_format::llama2:
    return render_llama2(messages);
  case chat_format::mistral:
    return render_mistral(messages);
  case chat_format::chatml:
    break;
  }
  return render_chatml(messages, add_generation_prompt);
}

std::string chat_template::render_chatml(std::span<const chat_message> messages,
                                         bool generation) const {
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
  if (generation) {
    out += im_start;
    out += "assistant\n";
  }
  return out;
}

std::string chat_template::render_llama3(std::span<const chat_message> messages,
                                         bool generation) const {
  std::string out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (i == 0)
      out += bos_;
    out += "<|start_header_id|>";
    out += messages[i].role;
    out += "<|end_header_id|>\n\n";
    out += trimmed(messages[i].content);
    out += "<|eot_id|>";
  }
  if (generation)
    out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string chat_template::render_llama2(std::span<const chat_message> messages) const {
  std::optional<std::string_view> system;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    messages = messages.subspan(1);
  }
  std::string out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    std::string content;
    if (i == 0 && system)
      content = "<<SYS>>\n" + std::string(*system) + "\n<</SYS>>\n\n" + messages[i].content;
    else
      content = messages[i].content;
    if (messages[i].role == "user") {
      out += bos_;
      out += "[INST] ";
      out += trimmed(content);
      out += " [/INST]";
    } else if (messages[i].role == "assistant") {
      out += ' ';
      out += trimmed(content);
      out += ' ';
      out += eos_;
    }
  }
  return out;
}

std::string chat_template::render_mistral(std::span<const chat_message> messages) const {
  std::optional<std::string_view> system;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    messages = messages.subspan(1);
  }
  std::string out = bos_;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role == "user") {
      out += "[INST] ";
      if (i == 0 && system) {
        out += *system;
        out += "\n\n";
      }
      out += messages[i].content;
      out += " [/INST]";
    } else if (messages[i].role == "assistant") {
      out += messages[i].content;
      out += eos_;
    }
  }
  return out;
}

} // namespace aeg::models
