// A folder's SentencePiece tokenizer.model (Llama 2, Mistral, Yi folders without tokenizer.json),
// turned into GGUF tokenizer metadata as llama.cpp's convert_hf_to_gguf.py does.
#include "models/hf/json_file.hpp"
#include "models/hf/sentencepiece_proto.hpp"
#include "models/hf/tokenizer_parts.hpp"

#include <cmath>
#include <filesystem>

namespace aeg::models::hf {

namespace {

using json = nlohmann::json;
using gguf::value;

// llama.cpp's converter scores added and padding tokens so; they are never merge results.
constexpr float added_score = -1000.0f;

// Refuses what the SentencePiece tokenizer (models/tokenizer/sentencepiece.hpp) cannot do: it
// merges by score (BPE), escapes spaces as "▁", and applies no normalization.
result<void> check_supported(const sentencepiece_proto& m, const std::string& file) {
  auto refuse = [&](const std::string& what) {
    return fail(errc::invalid_argument,
                file + ": " + what +
                    "; SentencePiece BPE models with the identity normalizer (Llama 2, Mistral, "
                    "Yi) load: use a GGUF of this model or a folder with its tokenizer.json");
  };
  if (m.model_type != sentencepiece_proto::model_kind::bpe)
    return refuse("the model type is '" + sentencepiece_proto::kind_name(m.model_type) +
                  "', which this runtime's SentencePiece tokenizer does not implement");
  if (m.precompiled_charsmap_bytes != 0)
    return refuse("the normalizer '" + m.normalizer_name +
                  "' rewrites text before encoding (a precompiled character map of " +
                  std::to_string(m.precompiled_charsmap_bytes) + " bytes), which is not supported");
  if (m.remove_extra_whitespaces)
    return refuse("normalizer_spec.remove_extra_whitespaces is set (leading, trailing and repeated "
                  "spaces are folded), which is not supported");
  if (!m.escape_whitespaces)
    return refuse("normalizer_spec.escape_whitespaces is off (spaces are not spelled '▁'), which "
                  "is not supported");
  if (m.treat_whitespace_as_suffix)
    return refuse("trainer_spec.treat_whitespace_as_suffix is set, which is not supported");
  return {};
}

// The pieces as a vocabulary of `vocab_size` ids: the model's, then unused [PADn] tokens.
result<vocabulary> pieces_vocabulary(const sentencepiece_proto& m, std::size_t vocab_size,
                                     const std::string& file, std::vector<float>& scores) {
  if (m.pieces.size() > vocab_size)
    return fail(errc::corrupt_data, file + " has " + std::to_string(m.pieces.size()) +
                                        " pieces, more than config.json's vocab_size " +
                                        std::to_string(vocab_size) +
                                        "; the tokenizer is not this model's");
  vocabulary v;
  v.tokens.reserve(vocab_size);
  for (std::size_t i = 0; i < m.pieces.size(); ++i) {
    const auto& p = m.pieces[i];
    const auto where = file + ": piece " + std::to_string(i);
    if (p.text.empty())
      return fail(errc::corrupt_data, where + " is empty; the file is damaged");
    if (!std::isfinite(p.score))
      return fail(errc::corrupt_data,
                  where + " has a score that is not finite; the file is damaged");
    if (!v.ids.emplace(p.text, static_cast<std::int32_t>(i)).second)
      return fail(errc::corrupt_data,
                  where + " '" + p.text + "' repeats an earlier piece; the file is damaged");
    v.tokens.push_back(p.text);
    v.types.push_back(p.type);
    scores.push_back(p.score);
  }
  for (std::size_t i = m.pieces.size(); i < vocab_size; ++i) {
    v.tokens.push_back("[PAD" + std::to_string(i) + "]"); // ids the model has and the file not
    v.types.push_back(token_type::unused);
    scores.push_back(added_score);
  }
  return v;
}

// Sets token `id` to an added token (added_tokens.json, tokenizer_config.json's
// added_tokens_decoder), as llama.cpp's converter does: a piece of the same text that is
// already special stays as it is; otherwise the id becomes the added text.
result<void> add_token(vocabulary& v, std::vector<float>& scores, std::int64_t id,
                       const std::string& text, bool special, const std::string& file) {
  if (id < 0 || static_cast<std::size_t>(id) >= v.tokens.size() || text.empty())
    return fail(errc::corrupt_data, file + ": added token '" + text + "' has id " +
                                        std::to_string(id) + ", outside config.json's vocab_size " +
                                        std::to_string(v.tokens.size()));
  const auto i = static_cast<std::size_t>(id);
  const auto type = v.types[i];
  if (v.tokens[i] == text && (type == token_type::control || type == token_type::unknown))
    return {};
  if (const auto other = v.id(text); other && *other != id)
    return fail(errc::corrupt_data, file + ": added token '" + text + "' (id " +
                                        std::to_string(id) + ") is also token " +
                                        std::to_string(*other) + " of tokenizer.model");
  v.ids.erase(v.tokens[i]);
  v.ids.emplace(text, static_cast<std::int32_t>(id));
  v.tokens[i] = text;
  v.types[i] = special ? token_type::control : token_type::user_defined;
  scores[i] = added_score;
  return {};
}

result<void> read_added_tokens(const std::string& dir, vocabulary& v, std::vector<float>& scores) {
  namespace fs = std::filesystem;
  if (const auto file = dir + "/added_tokens.json"; fs::exists(file)) {
    AEG_TRY_ASSIGN(const auto added, read_json(file));
    for (const auto& [text, id] : added.items())
      AEG_TRY(add_token(v, scores, id.get<std::int64_t>(), text, false, file));
  }
  if (const auto file = dir + "/tokenizer_config.json"; fs::exists(file)) {
    AEG_TRY_ASSIGN(const auto cfg, read_json(file));
    if (cfg.contains("added_tokens_decoder") && cfg["added_tokens_decoder"].is_object())
      for (const auto& [id, t] : cfg["added_tokens_decoder"].items())
        AEG_TRY(add_token(v, scores, std::stoll(id), t.at("content").get<std::string>(),
                          t.value("special", false), file));
  }
  return {};
}

} // namespace

result<void> read_tokenizer_model(const std::string& dir, std::size_t vocab_size, metadata& out) {
  const auto file = dir + "/tokenizer.model";
  AEG_TRY_ASSIGN(const auto m, sentencepiece_proto::read(file));
  AEG_TRY(check_supported(m, file));
  std::vector<float> scores;
  AEG_TRY_ASSIGN(auto vocab, pieces_vocabulary(m, vocab_size, file, scores));
  try {
    AEG_TRY(read_added_tokens(dir, vocab, scores));
  } catch (const std::invalid_argument&) { // std::stoll of an added_tokens_decoder key
    return fail(errc::corrupt_data,
                dir + "/tokenizer_config.json: an added_tokens_decoder key is not a token id");
  } catch (const std::out_of_range&) {
    return fail(errc::corrupt_data,
                dir + "/tokenizer_config.json: an added_tokens_decoder key is not a token id");
  }
  out.emplace_back("tokenizer.ggml.model", value::of_string("llama"));
  out.emplace_back("tokenizer.ggml.tokens", value::of_strings(vocab.tokens));
  out.emplace_back("tokenizer.ggml.scores", value::of_float32s(scores));
  out.emplace_back("tokenizer.ggml.token_type", value::of_int32s(vocab.types));
  out.emplace_back("tokenizer.ggml.add_space_prefix", value::of_bool(m.add_dummy_prefix));

  // tokenizer.model's own ids where tokenizer_config.json names none; -1 means none.
  auto own = [&](std::int32_t id) -> std::optional<std::int32_t> {
    if (id < 0 || static_cast<std::size_t>(id) >= m.pieces.size())
      return std::nullopt;
    return id;
  };
  special_defaults defaults;
  defaults.bos = own(m.bos_id);
  defaults.eos = own(m.eos_id);
  defaults.unknown = own(m.unk_id);
  defaults.padding = own(m.pad_id);
  defaults.add_bos = true; // as transformers' LlamaTokenizer and llama.cpp default for them
  return append_special_tokens(dir, vocab, defaults, out);
}

} // namespace aeg::models::hf
