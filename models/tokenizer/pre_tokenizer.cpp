#include "models/tokenizer/pre_tokenizer.hpp"

#include "models/tokenizer/utf8.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <array>
#include <cstdint>
#include <pcre2.h>
#include <utility>

namespace aeg::models {
namespace {

// Unicode White_Space, the set llama.cpp's splitter tests; PCRE2's own `\s` differs by version.
#define AEG_WS                                                                                     \
  "\\x{09}-\\x{0D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"             \
  "\\x{202F}\\x{205F}\\x{3000}"

// llama.cpp routes this expression to a hand-written splitter (unicode_regex_split_custom_gpt2)
// that implements the full GPT-2 expression, trailing `|\s+` included.
constexpr const char* gpt2_expr = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+"
                                  "| ?[^" AEG_WS "\\p{L}\\p{N}]+"
                                  "|[" AEG_WS "]+(?![^" AEG_WS "])|[" AEG_WS "]+";

// Llama 3's and Qwen2's expression (their tokenizer.json Split), which differ only in digit runs:
// up to three digits a piece (llama3) or one (qwen2). Contractions match in any case.
#define AEG_BPE_EXPR(digits)                                                                       \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" digits "| ?[^" AEG_WS        \
  "\\p{L}\\p{N}]+[\\r\\n]*|[" AEG_WS "]*[\\r\\n]+|[" AEG_WS "]+(?![^" AEG_WS "])|[" AEG_WS "]+"
constexpr const char* llama3_expr = AEG_BPE_EXPR("{1,3}");
constexpr const char* qwen2_expr = AEG_BPE_EXPR("");

#undef AEG_BPE_EXPR
#undef AEG_WS

struct expr_set {
  std::string_view set;
  std::vector<const char*> exprs;
  std::vector<std::string_view> names;
};

const std::vector<expr_set>& expr_sets() {
  static const std::vector<expr_set> sets = {
      {"smollm",
       {"\\p{N}", gpt2_expr},
       {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b",
        "mellum2"}},
      {"gpt2",
       {gpt2_expr},
       {"gpt2", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "a.x-4.0", "mellum", "exaone4",
        "mpt", "olmo", "jais", "trillion", "granite-docling"}},
      {"llama3", {llama3_expr}, {"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"}},
      {"qwen2", {qwen2_expr}, {"qwen2", "deepseek-r1-qwen", "megrez"}},
      {"falcon", {"[\\p{P}$+<=>^~|`]+", gpt2_expr, "[0-9][0-9][0-9]"}, {"falcon"}},
      {"default", {"[\\p{P}$+<=>^~|]+", gpt2_expr, "\\p{N}+", "[0-9][0-9][0-9]"}, {"default", ""}},
  };
  return sets;
}

struct code_deleter {
  void operator()(pcre2_code* code) const noexcept { pcre2_code_free(code); }
};
struct match_data_deleter {
  void operator()(pcre2_match_data* md) const noexcept { pcre2_match_data_free(md); }
};

using code_ptr = std::unique_ptr<pcre2_code, code_deleter>;

std::string pcre2_message(int code) {
  std::array<PCRE2_UCHAR, 256> buf{};
  pcre2_get_error_message(code, buf.data(), buf.size());
  return std::string(reinterpret_cast<const char*>(buf.data()));
}

using span_list = std::vector<std::pair<std::size_t, std::size_t>>; // [begin, end) byte offsets

} // namespace

struct pre_tokenizer::impl {
  std::string name;
  std::vector<code_ptr> exprs;
};

std::string pre_tokenizer::supported_names() {
  std::string out;
  for (const auto& set : expr_sets()) {
    for (auto name : set.names) {
      if (name.empty())
        continue;
      if (!out.empty())
        out += ", ";
      out += name;
    }
  }
  return out;
}

result<pre_tokenizer> pre_tokenizer::create(std::string_view name) {
  const expr_set* found = nullptr;
  for (const auto& set : expr_sets())
    for (auto n : set.names)
      if (n == name)
        found = &set;
  if (found == nullptr)
    return fail(errc::invalid_argument,
                "pre-tokenizer '" + std::string(name) +
                    "' (tokenizer.ggml.pre) is not supported; supported: " + supported_names());
  auto state = std::make_shared<impl>();
  state->name = std::string(name);
  for (const char* expr : found->exprs) {
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    code_ptr code(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(expr), PCRE2_ZERO_TERMINATED,
                                PCRE2_UTF | PCRE2_UCP, &err, &err_offset, nullptr));
    if (!code)
      return fail(errc::internal, "PCRE2 rejected the pre-tokenizer expression '" +
                                      std::string(expr) + "' at offset " +
                                      std::to_string(err_offset) + ": " + pcre2_message(err));
    // JIT is an optimisation only: where it is unavailable pcre2_match interprets the pattern.
    (void)pcre2_jit_compile(code.get(), PCRE2_JIT_COMPLETE);
    state->exprs.push_back(std::move(code));
  }
  return pre_tokenizer(std::move(state));
}

const std::string& pre_tokenizer::name() const noexcept {
  return impl_->name;
}

void pre_tokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
  if (text.empty())
    return;

  // PCRE2 in UTF mode needs well-formed input. Where it is not, split a copy in which every
  // ill-formed byte is U+FFFD (as llama.cpp does), remembering where each byte came from.
  std::string sanitized;
  std::vector<std::size_t> origin; // sanitized offset -> original offset (size + 1 entries)
  std::string_view subject = text;
  if (!utf8::is_valid(text)) {
    sanitized.reserve(text.size() + 16);
    origin.reserve(text.size() + 16);
    std::size_t i = 0;
    while (i < text.size()) {
      const utf8::decoded d = utf8::decode(text.substr(i));
      if (d.state == utf8::status::ok) {
        sanitized.append(text.substr(i, d.length));
        for (std::size_t k = 0; k < d.length; ++k)
          origin.push_back(i + k);
        i += d.length;
      } else {
        sanitized.append(utf8::replacement);
        for (std::size_t k = 0; k < utf8::replacement.size(); ++k)
          origin.push_back(i);
        i += 1;
      }
    }
    origin.push_back(text.size());
    subject = sanitized;
  }

  std::unique_ptr<pcre2_match_data, match_data_deleter> md(pcre2_match_data_create(1, nullptr));
  if (!md) {
    out.push_back(text); // out of memory: one piece is still a correct (if coarse) split
    return;
  }

  span_list fragments{{0, subject.size()}};
  span_list next;
  for (const auto& code : impl_->exprs) {
    next.clear();
    for (auto [begin, end] : fragments) {
      // The fragment alone is the subject, so lookaheads stop at its end as in llama.cpp.
      const auto* ptr = reinterpret_cast<PCRE2_SPTR>(subject.data() + begin);
      const std::size_t len = end - begin;
      std::size_t start = 0;
      std::size_t prev = 0;
      while (start < len) {
        int rc = pcre2_match(code.get(), ptr, len, start, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) // e.g. JIT stack exhausted: interpret instead
          rc = pcre2_match(code.get(), ptr, len, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md.get(),
                           nullptr);
        if (rc < 0)
          break; // no (further) match; an error leaves the rest as one fragment
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        const std::size_t ms = ov[0];
        const std::size_t me = ov[1];
        if (me <= ms) { // an empty match: step one code point on
          if (ms >= len)
            break;
          start = ms + utf8::decode(subject.substr(begin + ms, len - ms)).length;
          continue;
        }
        if (ms > prev)
          next.emplace_back(begin + prev, begin + ms);
        next.emplace_back(begin + ms, begin + me);
        prev = me;
        start = me;
      }
      if (prev < len)
        next.emplace_back(begin + prev, end);
    }
    fragments.swap(next);
  }

  out.reserve(out.size() + fragments.size());
  for (auto [begin, end] : fragments) {
    if (origin.empty()) {
      out.push_back(text.substr(begin, end - begin));
    } else {
      const std::size_t b = origin[begin];
      const std::size_t e = origin[end];
      out.push_back(text.substr(b, e - b));
    }
  }
}

} // namespace aeg::models
