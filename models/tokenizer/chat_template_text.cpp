#include "models/tokenizer/chat_template_text.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <ctime>

namespace aeg::models::chat_text {
namespace {

// The escape after a backslash in a Jinja string literal, as Python's "unicode-escape" decodes
// it (Jinja unescapes literals that way); false for one kept as written (`\x41`, `\u00e9`: rare
// in templates, and kept rather than guessed).
bool unescape(char e, std::string& out) {
  switch (e) {
  case 'n':
    out += '\n';
    return true;
  case 't':
    out += '\t';
    return true;
  case 'r':
    out += '\r';
    return true;
  case 'f':
    out += '\f';
    return true;
  case 'v':
    out += '\v';
    return true;
  case 'b':
    out += '\b';
    return true;
  case 'a':
    out += '\a';
    return true;
  case '\n': // a line continuation writes nothing
    return true;
  case '\\':
  case '\'':
  case '"':
    out += e;
    return true;
  default:
    return false;
  }
}

// The literal whose opening quote is at s[i]; i ends past its closing quote.
std::string read_literal(std::string_view s, std::size_t& i) {
  const char quote = s[i++];
  std::string literal;
  while (i < s.size() && s[i] != quote) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      if (!unescape(s[i + 1], literal)) {
        literal += '\\';
        literal += s[i + 1];
      }
      i += 2;
    } else {
      literal += s[i++];
    }
  }
  ++i; // closing quote
  return literal;
}

// The inside of each `{{ }}` and `{% %}` block, with its kind ('{' or '%'); the end of a block
// is looked for outside string literals.
template <class Fn>
void for_each_block(std::string_view jinja, Fn&& fn) {
  std::size_t i = 0;
  while (i + 1 < jinja.size()) {
    if (jinja[i] != '{' || (jinja[i + 1] != '{' && jinja[i + 1] != '%')) {
      ++i;
      continue;
    }
    const char kind = jinja[i + 1];
    const std::string_view close = kind == '{' ? "}}" : "%}";
    const std::size_t begin = i + 2;
    i = begin;
    while (i < jinja.size() && jinja.substr(i, 2) != close) {
      if (jinja[i] == '\'' || jinja[i] == '"')
        (void)read_literal(jinja, i);
      else
        ++i;
    }
    fn(kind, jinja.substr(begin, std::min(i, jinja.size()) - begin));
    i += 2;
  }
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
}

// The block's statement without the whitespace control marks (`{%- ... -%}`) and blanks.
std::string_view statement(std::string_view inner) {
  if (!inner.empty() && (inner.front() == '-' || inner.front() == '+'))
    inner.remove_prefix(1);
  if (!inner.empty() && (inner.back() == '-' || inner.back() == '+'))
    inner.remove_suffix(1);
  while (!inner.empty() && is_space(inner.front()))
    inner.remove_prefix(1);
  while (!inner.empty() && is_space(inner.back()))
    inner.remove_suffix(1);
  return inner;
}

// The right-hand side of `set name = ...` in `s`, or nullopt when `s` sets something else.
std::optional<std::string_view> assigned(std::string_view s, std::string_view name) {
  if (!s.starts_with("set") || s.size() < 4 || !is_space(s[3]))
    return std::nullopt;
  std::size_t i = 3;
  while (i < s.size() && is_space(s[i]))
    ++i;
  if (s.substr(i, name.size()) != name)
    return std::nullopt;
  i += name.size();
  while (i < s.size() && is_space(s[i]))
    ++i;
  if (i >= s.size() || s[i] != '=' || (i + 1 < s.size() && s[i + 1] == '='))
    return std::nullopt;
  return s.substr(i + 1);
}

// `a + "b" + strftime_now("c")` as terms; nullopt for anything else.
std::optional<std::vector<term>> terms_of(std::string_view s) {
  std::vector<term> out;
  std::size_t i = 0;
  auto skip = [&] {
    while (i < s.size() && is_space(s[i]))
      ++i;
  };
  for (;;) {
    skip();
    if (i >= s.size())
      return std::nullopt;
    if (s[i] == '\'' || s[i] == '"') {
      out.push_back({term::literal, read_literal(s, i)});
    } else if (is_name_char(s[i])) {
      const std::size_t b = i;
      while (i < s.size() && is_name_char(s[i]))
        ++i;
      const std::string name(s.substr(b, i - b));
      skip();
      if (i < s.size() && s[i] == '(') {
        ++i;
        skip();
        if (name != "strftime_now" || i >= s.size() || (s[i] != '\'' && s[i] != '"'))
          return std::nullopt;
        std::string format = read_literal(s, i);
        skip();
        if (i >= s.size() || s[i++] != ')')
          return std::nullopt;
        out.push_back({term::strftime, std::move(format)});
      } else {
        out.push_back({term::variable, name});
      }
    } else {
      return std::nullopt;
    }
    skip();
    if (i >= s.size())
      return out;
    if (s[i++] != '+')
      return std::nullopt;
  }
}

constexpr std::array<std::string_view, 12> months = {
    "January", "February", "March",     "April",   "May",      "June",
    "July",    "August",   "September", "October", "November", "December"};
constexpr std::array<std::string_view, 7> weekdays = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                      "Thursday", "Friday", "Saturday"};

std::string number(unsigned v, int width, char pad) {
  std::string s = std::to_string(v);
  while (static_cast<int>(s.size()) < width)
    s.insert(s.begin(), pad);
  return s;
}

// The UTF-8 code point starting at s[i] (i on a lead byte), and its length in `len`.
char32_t code_point(std::string_view s, std::size_t i, std::size_t& len) {
  const auto b = static_cast<unsigned char>(s[i]);
  len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
  if (i + len > s.size()) {
    len = 1;
    return b;
  }
  char32_t cp = len == 1 ? b : b & (0x7F >> len);
  for (std::size_t k = 1; k < len; ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

// Python's str.isspace(), which str.strip() and Jinja's `trim` strip.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

} // namespace

std::string date_rule::on(day d) const {
  return format.empty() ? fixed : format_date(format, d);
}

std::string dated_text::with(std::string_view date) const {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0)
      out += date;
    out += parts[i];
  }
  return out;
}

std::vector<std::string> string_literals(std::string_view jinja) {
  std::vector<std::string> out;
  for_each_block(jinja, [&](char, std::string_view inner) {
    for (std::size_t i = 0; i < inner.size();) {
      if (inner[i] == '\'' || inner[i] == '"')
        out.push_back(read_literal(inner, i));
      else
        ++i;
    }
  });
  return out;
}

std::vector<std::optional<std::vector<term>>> assignments(std::string_view jinja,
                                                          std::string_view name) {
  std::vector<std::optional<std::vector<term>>> out;
  for_each_block(jinja, [&](char kind, std::string_view inner) {
    if (kind != '%')
      return;
    if (auto rhs = assigned(statement(inner), name))
      out.push_back(terms_of(*rhs));
  });
  return out;
}

std::string format_date(std::string_view format, day d) {
  const unsigned dd = static_cast<unsigned>(d.day());
  const unsigned mm = static_cast<unsigned>(d.month());
  const int yyyy = static_cast<int>(d.year());
  const auto wd = std::chrono::weekday(std::chrono::sys_days(d)).c_encoding();
  const auto yday =
      (std::chrono::sys_days(d) - std::chrono::sys_days(d.year() / std::chrono::January / 1))
          .count() +
      1;
  std::string out;
  for (std::size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%' || i + 1 >= format.size()) {
      out += format[i];
      continue;
    }
    const bool unpadded = format[i + 1] == '-' && i + 2 < format.size();
    const char c = format[unpadded ? i + 2 : i + 1];
    const int width = unpadded ? 0 : 2;
    std::string piece;
    switch (c) {
    case 'd':
      piece = number(dd, width, '0');
      break;
    case 'e':
      piece = number(dd, width, ' ');
      break;
    case 'm':
      piece = number(mm, width, '0');
      break;
    case 'Y':
      piece = std::to_string(yyyy);
      break;
    case 'y':
      piece = number(static_cast<unsigned>(yyyy % 100), 2, '0');
      break;
    case 'b':
      piece = months[mm - 1].substr(0, 3);
      break;
    case 'B':
      piece = months[mm - 1];
      break;
    case 'a':
      piece = weekdays[wd].substr(0, 3);
      break;
    case 'A':
      piece = weekdays[wd];
      break;
    case 'j':
      piece = number(static_cast<unsigned>(yday), 3, '0');
      break;
    case '%':
      piece = "%";
      break;
    default:
      piece = std::string(format.substr(i, unpadded ? 3 : 2));
      break;
    }
    out += piece;
    i += unpadded ? 2 : 1;
  }
  return out;
}

day today() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  return std::chrono::year{local.tm_year + 1900} /
         std::chrono::month{static_cast<unsigned>(local.tm_mon + 1)} /
         std::chrono::day{static_cast<unsigned>(local.tm_mday)};
}

std::string json_quoted(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    case '\b':
      out += "\\b";
      break;
    case '\f':
      out += "\\f";
      break;
    default:
      if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
        out += buf;
      } else {
        out += c;
      }
    }
  }
  out += '"';
  return out;
}

std::string_view trimmed(std::string_view s) {
  std::size_t b = 0, len = 0;
  while (b < s.size() && is_python_space(code_point(s, b, len)))
    b += len;
  std::size_t e = s.size();
  while (e > b) {
    std::size_t start = e - 1;
    while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80)
      --start;
    if (!is_python_space(code_point(s, start, len)) || start + len != e)
      break;
    e = start;
  }
  return s.substr(b, e - b);
}

} // namespace aeg::models::chat_text
