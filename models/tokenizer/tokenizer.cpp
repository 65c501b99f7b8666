#include "models/tokenizer/tokenizer.hpp"

#include "models/tokenizer/byte_level.hpp"
#include "models/tokenizer/byte_level_bpe.hpp"
#include "models/tokenizer/pre_tokenizer.hpp"
#include "models/tokenizer/sentencepiece.hpp"
#include "models/tokenizer/utf8.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <limits>
#include <span>
#include <unordered_map>

namespace aeg::models {
namespace {

constexpr std::string_view key_model = "tokenizer.ggml.model";
constexpr std::string_view key_pre = "tokenizer.ggml.pre";
constexpr std::string_view key_tokens = "tokenizer.ggml.tokens";
constexpr std::string_view key_token_type = "tokenizer.ggml.token_type";
constexpr std::string_view key_add_bos = "tokenizer.ggml.add_bos_token";

// Token texts llama.cpp (llama-vocab.cpp) treats as end of generation whatever their type.
constexpr std::array<std::string_view, 20> eog_texts = {
    "<|eot_id|>",    "<|im_end|>",
    "<|end|>",       "<|return|>",
    "<|call|>",      "<|flush|>",
    "<|calls|>",     "<end_of_turn>",
    "<|endoftext|>", "</s>",
    "<|eom_id|>",    "<EOT>",
    "_<EOT>",        "[EOT]",
    "[EOS]",         "<|end_of_text|>",
    "<eos>",         "<end_of_utterance>",
    "<turn|>",       "<|tool_response>",
};

// Fill-in-the-middle padding, repository and file-separator tokens, which llama.cpp also ends
// generation on; found by these texts when the file does not name them (SmolLM2: <reponame>).
constexpr std::array<std::string_view, 5> fim_pad_texts = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>",
                                                           "<PAD>", "[PAD]"};
constexpr std::array<std::string_view, 5> fim_rep_texts = {"<|fim_repo|>", "<|repo_name|>",
                                                           "<fim-repo>", "<REPO>", "<reponame>"};
constexpr std::array<std::string_view, 1> fim_sep_texts = {"<|file_sep|>"};

struct text_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

token_kind kind_from_type(std::int64_t type) {
  return type >= 1 && type <= 6 ? static_cast<token_kind>(type) : token_kind::undefined;
}

} // namespace

struct tokenizer::impl {
  std::vector<std::string> texts;
  std::vector<token_kind> kinds;
  std::string pieces;                    // decoded bytes of every token, back to back
  std::vector<std::size_t> piece_bounds; // num_tokens + 1 offsets into `pieces`
  std::unordered_map<std::string, std::int32_t, text_hash, std::equal_to<>> ids;
  std::vector<std::int32_t> specials; // matched in this order: longest text first
  std::vector<std::uint8_t> eog;
  std::optional<std::int32_t> bos, eos, unk, pad;
  bool add_bos = false;
  std::string model_name;
  std::optional<pre_tokenizer> pre;  // "gpt2" only
  std::optional<byte_level_bpe> bpe; // "gpt2" only
  std::string pre_name;
  std::optional<sentencepiece> spm; // "llama" only
  bool space_prefix = false;        // decode drops the first token's leading space
};

namespace {

// The id under `key`; `fallback` (when in range) if the file has no such key.
result<std::optional<std::int32_t>> read_id(const gguf::file& f, std::string_view key,
                                            std::size_t num_tokens,
                                            std::optional<std::int32_t> fallback = {}) {
  if (f.find(key) == nullptr)
    return fallback && static_cast<std::size_t>(*fallback) < num_tokens
               ? fallback
               : std::optional<std::int32_t>{};
  AEG_TRY_ASSIGN(auto v, f.get_uint(key));
  if (v >= num_tokens)
    return fail(errc::corrupt_data, "GGUF metadata " + std::string(key) + " = " +
                                        std::to_string(v) +
                                        " is out of range: the vocabulary has " +
                                        std::to_string(num_tokens) + " tokens");
  return std::optional<std::int32_t>(static_cast<std::int32_t>(v));
}

} // namespace

result<tokenizer> tokenizer::from_gguf(const gguf::file& f) {
  auto state = std::make_shared<impl>();

  // --- model and pre-tokenizer --------------------------------------------------------------
  if (f.find(key_model) == nullptr)
    return fail(errc::not_found,
                "the GGUF file has no tokenizer (tokenizer.ggml.model is missing); use a model "
                "file converted with its tokenizer");
  auto model = f.get_string(key_model);
  if (!model)
    return tl::unexpected(model.error());
  if (*model != "gpt2" && *model != "llama")
    return fail(errc::invalid_argument,
                "tokenizer model '" + *model +
                    "' (tokenizer.ggml.model) is not supported; supported: 'gpt2' (byte-level "
                    "BPE) and 'llama' (SentencePiece BPE)");
  const bool is_spm = *model == "llama";
  state->model_name = *model;
  if (is_spm) {
    // SentencePiece splits no text before merging; llama.cpp ignores tokenizer.ggml.pre here.
    state->pre_name = "default";
  } else {
    std::string pre_name;
    if (f.find(key_pre) != nullptr) {
      AEG_TRY_ASSIGN(auto pre, f.get_string(key_pre));
      pre_name = std::move(pre);
    }
    auto pre = pre_tokenizer::create(pre_name);
    if (!pre)
      return tl::unexpected(pre.error());
    state->pre = std::move(*pre);
    // llama.cpp uses its 'default' expressions when a file names no pre-tokenizer.
    state->pre_name = pre_name.empty() ? "default" : pre_name;
  }

  // --- vocabulary ---------------------------------------------------------------------------
  if (f.find(key_tokens) == nullptr)
    return fail(errc::not_found, "the GGUF file has no tokenizer.ggml.tokens");
  auto tokens = f.get_string_array(key_tokens);
  if (!tokens)
    return tl::unexpected(tokens.error());
  if (tokens->empty())
    return fail(errc::corrupt_data, "tokenizer.ggml.tokens is empty");
  if (tokens->size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
    return fail(errc::corrupt_data, "tokenizer.ggml.tokens has more tokens than int32 ids hold");
  const std::size_t n = tokens->size();
  state->texts = std::move(*tokens);
  state->ids.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto& text = state->texts[i];
    if (text.empty()) // as llama.cpp does, so that every token has a distinct text
      text = "[EMPTY_" + std::to_string(i) + "]";
    auto [it, inserted] = state->ids.emplace(text, static_cast<std::int32_t>(i));
    if (!inserted)
      return fail(errc::corrupt_data, "tokenizer.ggml.tokens holds " + quoted(text) +
                                          " twice (ids " + std::to_string(it->second) + " and " +
                                          std::to_string(i) + ")");
  }

  state->kinds.assign(n, token_kind::normal);
  if (f.find(key_token_type) != nullptr) {
    AEG_TRY_ASSIGN(auto types, f.get_int_array(key_token_type));
    if (types.size() != n)
      return fail(errc::corrupt_data, "tokenizer.ggml.token_type has " +
                                          std::to_string(types.size()) + " entries for " +
                                          std::to_string(n) + " tokens");
    for (std::size_t i = 0; i < n; ++i)
      state->kinds[i] = kind_from_type((types)[i]);
  }

  // --- merges (byte-level BPE) ---------------------------------------------------------------
  if (!is_spm) {
    AEG_TRY_ASSIGN(auto bpe, byte_level_bpe::from_gguf(f, [&](std::string_view text) {
                     const auto it = state->ids.find(text);
                     return it == state->ids.end() ? std::optional<std::int32_t>{}
                                                   : std::optional<std::int32_t>(it->second);
                   }));
    state->bpe = std::move(bpe);
  }

  // --- special ids --------------------------------------------------------------------------
  // A SentencePiece file without them gets llama.cpp's defaults: <unk> 0, <s> 1, </s> 2.
  const auto spm_default = [&](std::int32_t id) {
    return is_spm ? std::optional<std::int32_t>(id) : std::nullopt;
  };
  auto bos = read_id(f, "tokenizer.ggml.bos_token_id", n, spm_default(1));
  auto eos = read_id(f, "tokenizer.ggml.eos_token_id", n, spm_default(2));
  auto unk = read_id(f, "tokenizer.ggml.unknown_token_id", n, spm_default(0));
  auto pad = read_id(f, "tokenizer.ggml.padding_token_id", n);
  auto eot = read_id(f, "tokenizer.ggml.eot_token_id", n);
  auto eom = read_id(f, "tokenizer.ggml.eom_token_id", n);
  for (auto* r : {&bos, &eos, &unk, &pad, &eot, &eom})
    if (!*r)
      return tl::unexpected(r->error());
  state->bos = *bos;
  state->eos = *eos;
  state->unk = *unk;
  state->pad = *pad;

  // llama.cpp starts a SentencePiece model's prompts with BOS unless the file says otherwise.
  state->add_bos = is_spm;

  if (const gguf::value* v = f.find(key_add_bos)) {
    if (v->type == gguf::value_type::boolean || v->is_unsigned())
      state->add_bos = v->u != 0;
    else if (v->is_integer())
      state->add_bos = v->i != 0;
    else
      return fail(errc::corrupt_data, "tokenizer.ggml.add_bos_token is not a boolean");
  }
  if (state->add_bos && !state->bos)
    return fail(errc::corrupt_data,
                "tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is not set");

  // --- end of generation --------------------------------------------------------------------
  state->eog.assign(n, 0);
  for (std::string_view text : eog_texts) {
    const auto it = state->ids.find(text);
    if (it == state->ids.end())
      continue;
    state->eog[static_cast<std::size_t>(it->second)] = 1;
    // llama.cpp turns such tokens into control tokens whatever the file says.
    state->kinds[static_cast<std::size_t>(it->second)] = token_kind::control;
  }
  for (const auto& id : {*eos, *eot, *eom})
    if (id)
      state->eog[static_cast<std::size_t>(*id)] = 1;
  const auto fim = [&](std::string_view key,
                       std::span<const std::string_view> texts) -> result<void> {
    auto id = read_id(f, key, n);
    if (!id)
      return tl::unexpected(id.error());
    if (!*id) { // the lowest id with one of the texts (llama.cpp takes whichever it meets first)
      for (std::string_view text : texts) {
        const auto it = state->ids.find(text);
        if (it != state->ids.end() && (!*id || it->second < **id))
          *id = it->second;
      }
      if (*id)
        state->kinds[static_cast<std::size_t>(**id)] = token_kind::control;
    }
    if (*id)
      state->eog[static_cast<std::size_t>(**id)] = 1;
    return {};
  };
  AEG_TRY(fim("tokenizer.ggml.fim_pad_token_id", fim_pad_texts));
  AEG_TRY(fim("tokenizer.ggml.fim_rep_token_id", fim_rep_texts));
  AEG_TRY(fim("tokenizer.ggml.fim_sep_token_id", fim_sep_texts));

  // --- SentencePiece scores and space prefix ------------------------------------------------
  // After the kinds are final, so that no token treated as control is a merge result.
  if (is_spm) {
    AEG_TRY_ASSIGN(auto spm, sentencepiece::from_gguf(f, state->texts, state->kinds, state->unk));
    state->space_prefix = spm.add_space_prefix();
    state->spm = std::move(spm);
  }

  // --- special-token matching order and decoded pieces ---------------------------------------
  for (std::size_t i = 0; i < n; ++i) {
    const token_kind k = state->kinds[i];
    if (k == token_kind::control || k == token_kind::user_defined || k == token_kind::unknown)
      state->specials.push_back(static_cast<std::int32_t>(i));
  }
  // Longest first as in llama.cpp; ties by id, so that the order does not depend on the sort.
  std::sort(state->specials.begin(), state->specials.end(), [&](std::int32_t a, std::int32_t b) {
    const std::size_t la = state->texts[static_cast<std::size_t>(a)].size();
    const std::size_t lb = state->texts[static_cast<std::size_t>(b)].size();
    return la != lb ? la > lb : a < b;
  });

  state->piece_bounds.reserve(n + 1);
  state->piece_bounds.push_back(0);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& text = state->texts[i];
    switch (state->kinds[i]) {
    case token_kind::normal:
      state->pieces += is_spm ? sentencepiece::unescape(text) : byte_level::decode(text);
      break;
    case token_kind::control:
    case token_kind::unknown:
    case token_kind::user_defined:
      state->pieces += text;
      break;
    case token_kind::byte:
      // "<0xXX>" stands for byte XX.
      if (text.size() == 6 && text.starts_with("<0x") && text.ends_with(">")) {
        unsigned value = 0;
        bool ok = true;
        for (char c : std::string_view(text).substr(3, 2)) {
          value <<= 4;
          if (c >= '0' && c <= '9')
            value |= static_cast<unsigned>(c - '0');
          else if (c >= 'A' && c <= 'F')
            value |= static_cast<unsigned>(c - 'A' + 10);
          else if (c >= 'a' && c <= 'f')
            value |= static_cast<unsigned>(c - 'a' + 10);
          else
            ok = false;
        }
        if (ok)
          state->pieces.push_back(static_cast<char>(value));
      }
      break;
    case token_kind::unused:
    case token_kind::undefined:
      break;
    }
    state->piece_bounds.push_back(state->pieces.size());
  }

  return tokenizer(std::move(state));
}

std::vector<std::int32_t> tokenizer::encode(std::string_view text, bool parse_special) const {
  const impl& s = *impl_;
  std::vector<std::int32_t> out;
  if (text.empty())
    return out;

  // 1. Cut out special tokens as llama.cpp's tokenizer_st_partition does: one token at a time,
  //    longest first, every occurrence in every fragment still raw.
  struct fragment {
    std::size_t begin;
    std::size_t end;
    std::int32_t token; // -1: raw text
  };
  std::vector<fragment> fragments{{0, text.size(), -1}};
  std::vector<fragment> next;
  for (const std::int32_t id : s.specials) {
    const token_kind k = s.kinds[static_cast<std::size_t>(id)];
    if (!parse_special && (k == token_kind::control || k == token_kind::unknown))
      continue;
    const std::string_view special = s.texts[static_cast<std::size_t>(id)];
    next.clear();
    bool found = false;
    for (const fragment& f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      const std::string_view window = text.substr(0, f.end);
      std::size_t pos = f.begin;
      for (std::size_t m; (m = window.find(special, pos)) != std::string_view::npos;) {
        found = true;
        if (m > pos)
          next.push_back({pos, m, -1});
        next.push_back({m, m + special.size(), id});
        pos = m + special.size();
      }
      if (pos < f.end)
        next.push_back({pos, f.end, -1});
    }
    if (found)
      fragments.swap(next);
  }

  // 2. SentencePiece: merge each raw fragment whole; one that begins the text or follows a
  //    special token gets the space prefix (llama.cpp's rule).
  if (s.spm) {
    bool at_start = true;
    for (const fragment& f : fragments) {
      if (f.token >= 0) {
        out.push_back(f.token);
        at_start = true;
      } else {
        s.spm->encode(text.substr(f.begin, f.end - f.begin), at_start, out);
        at_start = false;
      }
    }
    return out;
  }

  // 2. Byte-level BPE: pre-tokenize and merge each raw fragment.
  std::vector<std::string_view> pieces;
  byte_level_bpe::scratch scratch;
  std::string repaired;
  out.reserve(text.size() / 3);
  for (const fragment& f : fragments) {
    if (f.token >= 0) {
      out.push_back(f.token);
      continue;
    }
    std::string_view raw = text.substr(f.begin, f.end - f.begin);
    if (!utf8::is_valid(raw)) {
      // Keep ill-formed bytes that have a token of their own; the others become U+FFFD, which
      // is what llama.cpp makes of every ill-formed byte.
      repaired.clear();
      std::size_t i = 0;
      while (i < raw.size()) {
        const utf8::decoded d = utf8::decode(raw.substr(i));
        if (d.state != utf8::status::ok &&
            s.bpe->byte_token(static_cast<unsigned char>(raw[i])) < 0) {
          repaired.append(utf8::replacement);
          i += 1;
        } else {
          const std::size_t len = d.state == utf8::status::ok ? d.length : 1;
          repaired.append(raw.substr(i, len));
          i += len;
        }
      }
      raw = repaired;
    }
    pieces.clear();
    s.pre->split(raw, pieces);
    for (std::string_view piece : pieces)
      s.bpe->encode(piece, scratch, out);
  }
  return out;
}

std::string_view tokenizer::piece(std::int32_t id, bool render_special) const noexcept {
  const impl& s = *impl_;
  if (id < 0 || static_cast<std::size_t>(id) >= s.texts.size())
    return {};
  const auto i = static_cast<std::size_t>(id);
  const token_kind k = s.kinds[i];
  if (!render_special && (k == token_kind::control || k == token_kind::unknown))
    return {};
  return std::string_view(s.pieces).substr(s.piece_bounds[i],
                                           s.piece_bounds[i + 1] - s.piece_bounds[i]);
}

std::string tokenizer::decode(std::span<const std::int32_t> ids, bool render_special) const {
  std::string out;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    std::string_view p = piece(ids[i], render_special);
    // The space SentencePiece put before the text: llama.cpp's detokenize drops one leading
    // space of the first token, whatever token that is.
    if (i == 0 && impl_->space_prefix && p.starts_with(' '))
      p.remove_prefix(1);
    out.append(p);
  }
  return out;
}

std::string_view tokenizer::token_text(std::int32_t id) const noexcept {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->texts.size())
    return {};
  return impl_->texts[static_cast<std::size_t>(id)];
}

std::optional<std::int32_t> tokenizer::token_id(std::string_view text) const {
  const auto it = impl_->ids.find(text);
  if (it == impl_->ids.end())
    return std::nullopt;
  return it->second;
}

token_kind tokenizer::kind(std::int32_t id) const noexcept {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->kinds.size())
    return token_kind::undefined;
  return impl_->kinds[static_cast<std::size_t>(id)];
}

std::size_t tokenizer::num_tokens() const noexcept {
  return impl_->texts.size();
}
std::size_t tokenizer::num_merges() const noexcept {
  return impl_->bpe ? impl_->bpe->num_merges() : 0;
}
std::optional<std::int32_t> tokenizer::bos() const noexcept {
  return impl_->bos;
}
std::optional<std::int32_t> tokenizer::eos() const noexcept {
  return impl_->eos;
}
std::optional<std::int32_t> tokenizer::unknown() const noexcept {
  return impl_->unk;
}
std::optional<std::int32_t> tokenizer::padding() const noexcept {
  return impl_->pad;
}
bool tokenizer::add_bos() const noexcept {
  return impl_->add_bos;
}

bool tokenizer::is_end_of_generation(std::int32_t id) const noexcept {
  return id >= 0 && static_cast<std::size_t>(id) < impl_->eog.size() &&
         impl_->eog[static_cast<std::size_t>(id)] != 0;
}

const std::string& tokenizer::pre_tokenizer_name() const noexcept {
  return impl_->pre_name;
}

const std::string& tokenizer::model_name() const noexcept {
  return impl_->model_name;
}

bool tokenizer::add_space_prefix() const noexcept {
  return impl_->space_prefix;
}

} // namespace aeg::models
