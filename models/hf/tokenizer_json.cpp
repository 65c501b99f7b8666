#include "models/hf/json_file.hpp"
#include "models/hf/tokenizer_parts.hpp"

#include <filesystem>
#include <map>

namespace aeg::models::hf {

namespace {

using json = nlohmann::json;
using gguf::value;

using namespace token_type;

// U+2581, SentencePiece's spelling of a space.
constexpr std::string_view space_symbol = "\xE2\x96\x81";

// The Split expressions of the byte-level tokenizers this runtime implements, as their
// tokenizer.json files write them, and the GGUF pre-tokenizer each one is.
constexpr std::pair<std::string_view, std::string_view> split_expressions[] = {
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "llama-bpe"},
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "qwen2"},
};

std::string type_of(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>()
                                                                      : std::string{};
}

// The steps of a component that may be one step or a Sequence of them.
std::vector<json> steps(const json& j, const char* list_key) {
  if (j.is_null())
    return {};
  if (type_of(j) == "Sequence" && j.contains(list_key) && j[list_key].is_array())
    return j[list_key].get<std::vector<json>>();
  return {j};
}

std::string shortened(const json& j) {
  auto s = j.dump();
  return s.size() > 240 ? s.substr(0, 240) + "..." : s;
}

// The GGUF pre-tokenizer name of a byte-level tokenizer's pre_tokenizer, or a refusal naming it.
result<std::string> byte_level_pre(const json& pre, const std::string& file) {
  const auto list = steps(pre, "pretokenizers");
  auto byte_level = [](const json& s, bool regex) {
    return type_of(s) == "ByteLevel" && s.value("use_regex", true) == regex &&
           !s.value("add_prefix_space", false);
  };
  if (list.size() == 1 && byte_level(list[0], true))
    return std::string("gpt2");
  if (list.size() == 2 && type_of(list[0]) == "Digits" &&
      list[0].value("individual_digits", false) && byte_level(list[1], true))
    return std::string("smollm");
  if (list.size() == 2 && type_of(list[0]) == "Split" && byte_level(list[1], false) &&
      list[0].value("behavior", std::string{}) == "Isolated" && !list[0].value("invert", false) &&
      list[0].contains("pattern") && list[0]["pattern"].contains("Regex")) {
    const auto expr = list[0]["pattern"]["Regex"].get<std::string>();
    for (const auto& [known, name] : split_expressions)
      if (expr == known)
        return std::string(name);
  }
  return fail(errc::invalid_argument,
              file + ": the pre-tokenizer " + shortened(pre) +
                  " is not one this runtime implements (GPT-2's, SmolLM's, Llama 3's and "
                  "Qwen2's are); use a GGUF of the model");
}

// Whether a SentencePiece-style tokenizer adds a space before the text, and whether its
// normalizer and pre-tokenizer are ones it can follow.
result<bool> sentencepiece_space_prefix(const json& tj, const std::string& file) {
  bool prefix = false;
  for (const auto& n : steps(tj["normalizer"], "normalizers")) {
    const auto t = type_of(n);
    if (t == "Prepend" && n.value("prepend", std::string{}) == space_symbol)
      prefix = true;
    else if (!(t == "Replace" && n.contains("content") && n["content"] == space_symbol))
      return fail(errc::invalid_argument, file + ": the normalizer " + shortened(n) +
                                              " is not supported for a SentencePiece vocabulary");
  }
  for (const auto& p : steps(tj["pre_tokenizer"], "pretokenizers")) {
    if (type_of(p) != "Metaspace")
      return fail(errc::invalid_argument, file + ": the pre-tokenizer " + shortened(p) +
                                              " is not supported for a SentencePiece vocabulary");
    prefix = p.value("prepend_scheme", std::string("always")) != "never" &&
             p.value("add_prefix_space", true);
  }
  return prefix;
}

result<vocabulary> read_vocabulary(const json& tj, std::size_t vocab_size, bool sentencepiece,
                                   const std::string& file) {
  const auto& model = tj["model"];
  if (!model.contains("vocab") || !model["vocab"].is_object())
    return fail(errc::corrupt_data, file + ": model.vocab is missing");
  std::map<std::int64_t, std::pair<std::string, std::int32_t>> by_id;
  for (const auto& [text, id] : model["vocab"].items())
    by_id[id.get<std::int64_t>()] = {text, normal};
  if (tj.contains("added_tokens") && tj["added_tokens"].is_array())
    for (const auto& a : tj["added_tokens"])
      by_id[a.at("id").get<std::int64_t>()] = {a.at("content").get<std::string>(),
                                               a.value("special", false) ? control : user_defined};
  if (by_id.empty() || by_id.begin()->first < 0)
    return fail(errc::corrupt_data, file + ": the vocabulary is empty or has a negative id");
  const auto count = static_cast<std::size_t>(by_id.rbegin()->first) + 1;
  if (count > vocab_size)
    return fail(errc::corrupt_data, file + ": token id " + std::to_string(count - 1) +
                                        " exceeds the model's vocab_size " +
                                        std::to_string(vocab_size));
  vocabulary v;
  v.tokens.resize(vocab_size);
  v.types.assign(vocab_size, unused);
  for (std::size_t i = 0; i < vocab_size; ++i)
    v.tokens[i] = "[PAD" + std::to_string(i) + "]"; // ids the model has and the vocabulary not
  const auto unk = model.contains("unk_token") && model["unk_token"].is_string()
                       ? model["unk_token"].get<std::string>()
                       : std::string{};
  for (auto& [id, entry] : by_id) {
    auto& [text, type] = entry;
    if (sentencepiece && type == normal && text.size() == 6 && text.starts_with("<0x") &&
        text.ends_with(">"))
      type = byte;
    if (!unk.empty() && text == unk)
      type = unknown;
    v.tokens[id] = text;
    v.types[id] = type;
    v.ids.emplace(text, static_cast<std::int32_t>(id));
  }
  return v;
}

// The merge rules as GGUF writes them ("A B"): tokenizer.json has them as such strings or, since
// tokenizers 0.20, as pairs.
std::vector<std::string> merge_rules(const json& model) {
  std::vector<std::string> out;
  if (model.contains("merges") && model["merges"].is_array())
    for (const auto& m : model["merges"])
      out.push_back(m.is_string() ? m.get<std::string>()
                                  : m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
  return out;
}

// Whether the post-processor starts every text with a special token (Llama 3 adds its bos so).
std::optional<std::string> leading_special(const json& post) {
  for (const auto& p : steps(post, "processors")) {
    if (type_of(p) != "TemplateProcessing" || !p.contains("single") || p["single"].empty())
      continue;
    const auto& first = p["single"][0];
    if (first.contains("SpecialToken"))
      return first["SpecialToken"].value("id", std::string{});
  }
  return std::nullopt;
}

} // namespace

result<void> read_tokenizer_json(const std::string& dir, std::size_t vocab_size, metadata& out) {
  const auto file = dir + "/tokenizer.json";
  AEG_TRY_ASSIGN(auto tj, read_json(file));
  const auto& model = tj["model"];
  if (type_of(model) != "BPE")
    return fail(errc::invalid_argument,
                file + ": the tokenizer model is '" + type_of(model) +
                    "'; BPE vocabularies (byte-level or SentencePiece) load");
  bool byte_level = type_of(tj["decoder"]) == "ByteLevel";
  for (const auto& p : steps(tj["pre_tokenizer"], "pretokenizers"))
    byte_level = byte_level || type_of(p) == "ByteLevel";
  const bool sentencepiece = !byte_level;

  AEG_TRY_ASSIGN(auto vocab, read_vocabulary(tj, vocab_size, sentencepiece, file));
  const auto merges = merge_rules(model);
  if (byte_level) {
    for (const auto& n : steps(tj["normalizer"], "normalizers"))
      if (type_of(n) != "NFC") // Qwen2's: text in NFC already (nearly all text) is unchanged
        return fail(errc::invalid_argument, file + ": the normalizer " + shortened(n) +
                                                " is not supported for a byte-level vocabulary");
    AEG_TRY_ASSIGN(auto pre, byte_level_pre(tj["pre_tokenizer"], file));
    out.emplace_back("tokenizer.ggml.model", value::of_string("gpt2"));
    out.emplace_back("tokenizer.ggml.pre", value::of_string(pre));
  } else {
    AEG_TRY_ASSIGN(auto prefix, sentencepiece_space_prefix(tj, file));
    // SentencePiece merges by score; a merged piece scores by its rule's rank.
    std::vector<float> scores(vocab.tokens.size(), -1e9f);
    for (std::size_t r = 0; r < merges.size(); ++r) {
      const auto cut = merges[r].find(' ');
      auto id = vocab.id(merges[r].substr(0, cut) + merges[r].substr(cut + 1));
      if (cut != std::string::npos && id && scores[*id] == -1e9f)
        scores[*id] = -static_cast<float>(r);
    }
    out.emplace_back("tokenizer.ggml.model", value::of_string("llama"));
    out.emplace_back("tokenizer.ggml.scores", value::of_float32s(scores));
    out.emplace_back("tokenizer.ggml.add_space_prefix", value::of_bool(prefix));
  }
  out.emplace_back("tokenizer.ggml.tokens", value::of_strings(vocab.tokens));
  out.emplace_back("tokenizer.ggml.token_type", value::of_int32s(vocab.types));
  if (byte_level)
    out.emplace_back("tokenizer.ggml.merges", value::of_strings(merges));

  special_defaults defaults;
  defaults.leading = vocab.id(leading_special(tj["post_processor"]));
  defaults.bos = defaults.leading;
  defaults.unknown = vocab.id(model.contains("unk_token") && model["unk_token"].is_string()
                                  ? std::optional(model["unk_token"].get<std::string>())
                                  : std::nullopt);
  return append_special_tokens(dir, vocab, defaults, out);
}

result<void> read_tokenizer(const std::string& dir, std::size_t vocab_size, metadata& out) {
  namespace fs = std::filesystem;
  // tokenizer.json first: when a folder has both, it is what transformers itself loads.
  const bool has_json = fs::exists(dir + "/tokenizer.json");
  if (!has_json && !fs::exists(dir + "/tokenizer.model"))
    return fail(errc::not_found, "'" + dir +
                                     "' has no tokenizer.json and no tokenizer.model; save the "
                                     "model's tokenizer with transformers to write one");
  try {
    return has_json ? read_tokenizer_json(dir, vocab_size, out)
                    : read_tokenizer_model(dir, vocab_size, out);
  } catch (const nlohmann::json::exception& e) {
    return fail(errc::corrupt_data, dir +
                                        ": tokenizer.json, tokenizer_config.json or "
                                        "generation_config.json holds an unexpected value: " +
                                        e.what());
  }
}

} // namespace aeg::models::hf
