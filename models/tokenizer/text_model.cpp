#include "models/tokenizer/text_model.hpp"

namespace aeg::models {

result<text_model> text_model::from_gguf(const gguf::file& f, std::string_view chat_template) {
  AEG_TRY_ASSIGN(auto tok, tokenizer::from_gguf(f));
  if (!chat_template.empty()) {
    auto text_of = [&](std::optional<std::int32_t> id) {
      return id ? std::string(tok.token_text(*id)) : std::string();
    };
    AEG_TRY_ASSIGN(auto named,
                   chat_template::named(chat_template, text_of(tok.bos()), text_of(tok.eos())));
    text_model m(std::move(tok), std::move(named));
    m.collect_stop_tokens();
    return m;
  }
  auto tmpl = chat_template::from_gguf(f);
  std::string note;
  if (!tmpl) {
    note = tmpl.error().message + "; using ChatML";
    tmpl = chat_template::chatml();
  }
  text_model m(std::move(tok), std::move(*tmpl));
  m.template_note_ = std::move(note);
  m.collect_stop_tokens();
  return m;
}

void text_model::collect_stop_tokens() {
  for (std::size_t i = 0; i < tok_.num_tokens(); ++i)
    if (tok_.is_end_of_generation(static_cast<std::int32_t>(i)))
      stop_tokens_.push_back(static_cast<std::int32_t>(i));
}

std::vector<std::int32_t> text_model::encode_prompt(std::string_view text) const {
  auto ids = tok_.encode(text, true);
  if (tok_.add_bos() && tok_.bos())
    ids.insert(ids.begin(), *tok_.bos());
  return ids;
}

std::vector<std::int32_t> text_model::encode_chat(std::span<const chat_message> messages) const {
  return tok_.encode(chat_.render(messages, true), true);
}

} // namespace aeg::models
