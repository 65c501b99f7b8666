#include "models/tokenizer/chat_template.hpp"

#include <algorithm>
#include <vector>

namespace aeg::models {
namespace {

using chat_text::trimmed;

constexpr std::string_view im_start = "<|im_start|>";
constexpr std::string_view im_end = "<|im_end|>";
constexpr std::string_view system_head = "<|im_start|>system\n";

struct format_info {
  chat_format format;
  std::string_view name, bos, eos;
};

// The first four keep their order: names() lists them first, as it always has.
constexpr format_info formats[] = {
    {chat_format::chatml, "chatml", "", ""},
    {chat_format::llama3, "llama3", "<|begin_of_text|>", "<|eot_id|>"},
    {chat_format::llama2, "llama2", "<s>", "</s>"},
    {chat_format::mistral, "mistral", "<s>", "</s>"},
    {chat_format::llama3_1, "llama3.1", "<|begin_of_text|>", "<|eot_id|>"},
    {chat_format::mistral_v1, "mistral-v1", "<s>", "</s>"},
    {chat_format::mistral_v3, "mistral-v3", "<s>", "</s>"},
    {chat_format::mistral_v3_tekken, "mistral-v3-tekken", "<s>", "</s>"},
    {chat_format::mistral_v7, "mistral-v7", "<s>", "</s>"},
    {chat_format::mistral_v7_tekken, "mistral-v7-tekken", "<s>", "</s>"},
};

const format_info& info(chat_format f) {
  for (const auto& i : formats)
    if (i.format == f)
      return i;
  return formats[0];
}

// Llama 3.1's header line and date when the template does not say (`named("llama3.1")`).
constexpr std::string_view llama_knowledge_line = "Cutting Knowledge Date: December 2023\n";
constexpr std::string_view llama_default_date = "26 Jul 2024";

// The one wording of "this template is not rendered here".
tl::unexpected<error> unrecognised() {
  return fail(errc::invalid_argument,
              "the model's chat template (tokenizer.chat_template) is not one of the formats "
              "rendered here (" +
                  chat_template::names() +
                  "); give --chat-template NAME (or the topology's chat_template) to pick one, "
                  "or render prompts yourself");
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

bool any_literal(const std::vector<std::string>& literals, auto&& pred) {
  return std::any_of(literals.begin(), literals.end(), pred);
}

// Mistral's `[INST]` templates, told apart by the literals around the instruction.
std::optional<chat_format> recognise_inst(const std::vector<std::string>& literals) {
  auto starts = [&](std::string_view p) {
    return any_literal(literals, [&](const std::string& l) { return l.starts_with(p); });
  };
  auto ends = [&](std::string_view p) {
    return any_literal(literals, [&](const std::string& l) { return l.ends_with(p); });
  };
  if (starts(" [INST]"))
    return chat_format::mistral_v1;
  if (ends(" [/INST]"))
    return chat_format::mistral;
  if (!ends("[/INST]") && !starts("[/INST]"))
    return std::nullopt;
  return starts("[INST] ") ? chat_format::mistral_v3 : chat_format::mistral_v3_tekken;
}

std::optional<chat_format> recognise(std::string_view jinja,
                                     const std::vector<std::string>& literals) {
  auto has = [&](std::string_view s) { return jinja.find(s) != std::string_view::npos; };
  if (has("<|start_header_id|>"))
    return has("Cutting Knowledge Date") ? chat_format::llama3_1 : chat_format::llama3;
  if (has("[SYSTEM_PROMPT]")) {
    const bool spaced = any_literal(literals, [](const std::string& l) {
      return l.starts_with("[SYSTEM_PROMPT] ") || l.starts_with("[INST] ");
    });
    return spaced ? chat_format::mistral_v7 : chat_format::mistral_v7_tekken;
  }
  if (has("[INST]"))
    return has("<<SYS>>") ? std::optional(chat_format::llama2) : recognise_inst(literals);
  if (has(im_start))
    return chat_format::chatml;
  return std::nullopt;
}

// A literal holding a whole system turn is the default prompt a ChatML template inserts when
// the conversation brings none (SmolLM2: `loop.first and messages[0]['role'] != 'system'`).
std::optional<std::string> chatml_default_system(const std::vector<std::string>& literals) {
  for (const std::string& literal : literals) {
    const std::size_t head = literal.find(system_head);
    if (head == std::string::npos)
      continue;
    const std::size_t body = head + system_head.size();
    const std::size_t end = literal.find(im_end, body);
    if (end != std::string::npos)
      return literal.substr(body, end - body);
  }
  return std::nullopt;
}

// The strftime format of a variable set to `strftime_now("...")` (Mistral's `today`).
std::optional<std::string> strftime_variable(std::string_view jinja, std::string_view name) {
  for (const auto& terms : chat_text::assignments(jinja, name))
    if (terms && terms->size() == 1 && terms->front().kind == chat_text::term::strftime)
      return terms->front().text;
  return std::nullopt;
}

// What transformers writes for `date_string`: `strftime_now(...)` when the template calls it
// (transformers defines it), else the literal the template falls back on.
chat_text::date_rule llama_date(std::string_view jinja) {
  chat_text::date_rule date{std::string(llama_default_date), {}};
  bool fixed = false;
  for (const auto& terms : chat_text::assignments(jinja, "date_string")) {
    if (!terms || terms->size() != 1)
      continue;
    const auto& t = terms->front();
    if (t.kind == chat_text::term::strftime)
      return {{}, t.text};
    if (t.kind == chat_text::term::literal && !fixed) {
      date.fixed = t.text;
      fixed = true;
    }
  }
  return date;
}

// The knowledge line of a Llama 3.1+ template: the literal that writes it.
std::string knowledge_line(const std::vector<std::string>& literals) {
  for (const std::string& l : literals)
    if (l.starts_with("Cutting Knowledge Date"))
      return l;
  return std::string(llama_knowledge_line);
}

// Mistral's `default_system_message`: literals joined by `+`, with variables that hold
// `strftime_now(...)` standing for the date (whose format lands in `date`). nullopt when the
// template sets none or an empty one; an error when it computes one otherwise.
result<std::optional<chat_text::dated_text>> mistral_default_system(std::string_view jinja,
                                                                    chat_text::date_rule& date) {
  const auto sets = chat_text::assignments(jinja, "default_system_message");
  if (sets.empty())
    return std::nullopt;
  if (!sets.front())
    return unrecognised();
  chat_text::dated_text text{{""}};
  for (const auto& t : *sets.front()) {
    if (t.kind == chat_text::term::literal) {
      text.parts.back() += t.text;
      continue;
    }
    auto format = t.kind == chat_text::term::strftime ? std::optional(t.text)
                                                      : strftime_variable(jinja, t.text);
    if (!format || (!date.format.empty() && date.format != *format))
      return unrecognised();
    date.format = *format;
    text.parts.emplace_back();
  }
  if (!text.dated() && text.parts.front().empty())
    return std::nullopt;
  return text;
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
  const auto literals = chat_text::string_literals(jinja);
  const auto format = recognise(jinja, literals);
  if (!format)
    return unrecognised();
  AEG_TRY_ASSIGN(auto t, named(info(*format).name, bos, eos));
  switch (*format) {
  case chat_format::chatml:
    if (auto prompt = chatml_default_system(literals))
      t.default_system_ = chat_text::dated_text{{std::move(*prompt)}};
    break;
  case chat_format::llama3_1:
    t.knowledge_line_ = knowledge_line(literals);
    t.date_ = llama_date(jinja);
    break;
  case chat_format::mistral_v7:
  case chat_format::mistral_v7_tekken: {
    AEG_TRY_ASSIGN(t.default_system_, mistral_default_system(jinja, t.date_));
    break;
  }
  default:
    break;
  }
  return t;
}

result<chat_template> chat_template::named(std::string_view name, std::string_view bos,
                                           std::string_view eos) {
  for (const auto& i : formats) {
    if (i.name != name)
      continue;
    chat_template t(i.format, std::string(bos.empty() ? i.bos : bos),
                    std::string(eos.empty() ? i.eos : eos));
    if (i.format == chat_format::llama3_1) {
      t.knowledge_line_ = llama_knowledge_line;
      t.date_.fixed = llama_default_date;
    }
    return t;
  }
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
  chat_template t(chat_format::chatml, {}, {});
  if (default_system)
    t.default_system_ = chat_text::dated_text{{std::move(*default_system)}};
  return t;
}

std::optional<std::string> chat_template::default_system_prompt(chat_text::day day) const {
  if (!default_system_)
    return std::nullopt;
  return default_system_->with(default_system_->dated() ? date_.on(day) : std::string());
}

std::string_view chat_template::name() const noexcept {
  return info(format_).name;
}

std::string chat_template::render(std::span<const chat_message> messages,
                                  bool add_generation_prompt, chat_text::day day) const {
  switch (format_) {
  case chat_format::chatml:
    return render_chatml(messages, add_generation_prompt, day);
  case chat_format::llama3:
    return render_llama3(messages, add_generation_prompt);
  case chat_format::llama3_1:
    return render_llama3_1(messages, add_generation_prompt, day);
  case chat_format::llama2:
    return render_llama2(messages);
  case chat_format::mistral_v7:
  case chat_format::mistral_v7_tekken:
    return render_system_prompt(messages, day);
  case chat_format::mistral:
  case chat_format::mistral_v1:
  case chat_format::mistral_v3:
  case chat_format::mistral_v3_tekken:
    break;
  }
  return render_inst(messages);
}

std::string chat_template::render_chatml(std::span<const chat_message> messages, bool generation,
                                         chat_text::day day) const {
  std::string out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (i == 0 && default_system_ && messages[0].role != "system") {
      out += system_head;
      out += *default_system_prompt(day);
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

std::string chat_template::render_llama3_1(std::span<const chat_message> messages, bool generation,
                                           chat_text::day day) const {
  std::string_view system;
  if (!messages.empty() && messages[0].role == "system") {
    system = trimmed(messages[0].content);
    messages = messages.subspan(1);
  }
  std::string out = bos_;
  out += "<|start_header_id|>system<|end_header_id|>\n\n";
  out += knowledge_line_;
  out += "Today Date: " + date_.on(day) + "\n\n";
  out += system;
  out += "<|eot_id|>";
  for (const chat_message& m : messages) {
    if (m.role == "tool" || m.role == "ipython") {
      // The template writes a tool's output with `tojson` (a string is iterable in Jinja).
      out += "<|start_header_id|>ipython<|end_header_id|>\n\n";
      out += chat_text::json_quoted(m.content);
    } else {
      out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
      out += trimmed(m.content);
    }
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

std::string chat_template::render_inst(std::span<const chat_message> messages) const {
  // How each [INST] template writes a turn; v3 puts the system message in the last turn, when
  // that is a user turn (`loop.last`), the others in the first.
  struct layout {
    std::string_view open, close, answer_prefix;
    bool system_last = false, trim_answer = false;
  };
  layout l{.open = "[INST] ", .close = " [/INST]", .answer_prefix = ""}; // v0.1, v0.2
  if (format_ == chat_format::mistral_v1)
    l = {.open = " [INST] ", .close = " [/INST]", .answer_prefix = " "};
  else if (format_ == chat_format::mistral_v3)
    l = {"[INST] ", "[/INST]", " ", true, true};
  else if (format_ == chat_format::mistral_v3_tekken)
    l = {.open = "[INST]", .close = "[/INST]", .answer_prefix = "", .system_last = true};
  std::optional<std::string_view> system;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    messages = messages.subspan(1);
  }
  std::string out = bos_;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const chat_message& m = messages[i];
    if (m.role == "user") {
      out += l.open;
      if (system && i == (l.system_last ? messages.size() - 1 : 0)) {
        out += *system;
        out += "\n\n";
      }
      out += m.content;
      out += l.close;
    } else if (m.role == "assistant") {
      out += l.answer_prefix;
      out += l.trim_answer ? trimmed(m.content) : std::string_view(m.content);
      out += eos_;
    }
  }
  return out;
}

std::string chat_template::render_system_prompt(std::span<const chat_message> messages,
                                                chat_text::day day) const {
  const std::string_view pad = format_ == chat_format::mistral_v7 ? " " : "";
  std::string out = bos_;
  if ((messages.empty() || messages[0].role != "system") && default_system_)
    out += "[SYSTEM_PROMPT]" + std::string(pad) + *default_system_prompt(day) + "[/SYSTEM_PROMPT]";
  for (const chat_message& m : messages) {
    if (m.role == "system")
      out += "[SYSTEM_PROMPT]" + std::string(pad) + m.content + "[/SYSTEM_PROMPT]";
    else if (m.role == "user")
      out += "[INST]" + std::string(pad) + m.content + "[/INST]";
    else if (m.role == "assistant")
      out += std::string(pad) + m.content + eos_;
    else if (m.role == "tool" && format_ == chat_format::mistral_v7_tekken)
      out += "[TOOL_RESULTS]" + m.content + "[/TOOL_RESULTS]";
  }
  return out;
}

} // namespace aeg::models
