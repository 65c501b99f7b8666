#pragma once

// A small check that a figure is well-formed XML: one root element, every tag closed in order,
// attribute values quoted, entities known, no stray '<' or '&'. Enough for generated SVG (no
// DTDs, CDATA or processing instructions beyond an XML declaration).

#include <cctype>
#include <string>
#include <vector>

namespace aeg::testing {

// Whether `text` at `i` starts a known entity ("&lt;", "&#8594;"); `i` moves past it.
inline bool entity_at(const std::string& text, std::size_t& i) {
  const auto end = text.find(';', i);
  if (end == std::string::npos || end - i > 10)
    return false;
  const std::string name = text.substr(i + 1, end - i - 1);
  bool ok = name == "lt" || name == "gt" || name == "amp" || name == "quot" || name == "apos";
  if (!ok && name.size() > 1 && name[0] == '#') {
    ok = true;
    for (std::size_t k = 1; k < name.size(); ++k)
      ok = ok && std::isdigit(static_cast<unsigned char>(name[k])) != 0;
  }
  i = end + 1;
  return ok;
}

// Reads the tag at `i` (just past '<'); false for a malformed one.
inline bool read_tag(const std::string& text, std::size_t& i, std::vector<std::string>& open,
                     int& roots) {
  const bool closing = text[i] == '/';
  i += closing ? 1 : 0;
  const auto name_start = i;
  while (i < text.size() && (std::isalnum(static_cast<unsigned char>(text[i])) != 0 ||
                             text[i] == '-' || text[i] == ':' || text[i] == '_'))
    ++i;
  const std::string name = text.substr(name_start, i - name_start);
  if (name.empty())
    return false;
  if (closing) {
    if (open.empty() || open.back() != name || text[i] != '>')
      return false;
    open.pop_back();
    ++i;
    return true;
  }
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])) != 0)
      ++i;
    if (text.compare(i, 2, "/>") == 0 || text[i] == '>') {
      const bool empty = text[i] == '/';
      i += empty ? 2 : 1;
      roots += open.empty() ? 1 : 0;
      if (!empty)
        open.push_back(name);
      return true;
    }
    const auto eq = text.find('=', i);
    if (eq == std::string::npos || eq + 1 >= text.size() || text[eq + 1] != '"')
      return false;
    const auto close = text.find('"', eq + 2);
    if (close == std::string::npos)
      return false;
    for (std::size_t k = eq + 2; k < close;) {
      if (text[k] == '<')
        return false;
      if (text[k] != '&')
        ++k;
      else if (!entity_at(text, k))
        return false;
    }
    i = close + 1;
  }
  return false;
}

// Whether `text` is a well-formed XML document.
inline bool well_formed(const std::string& text) {
  std::vector<std::string> open;
  int roots = 0;
  std::size_t i = 0;
  if (text.compare(0, 5, "<?xml") == 0)
    i = text.find("?>") + 2;
  while (i < text.size()) {
    if (text[i] == '<') {
      ++i;
      if (!read_tag(text, i, open, roots))
        return false;
    } else if (text[i] == '&') {
      if (!entity_at(text, i))
        return false;
    } else {
      if (open.empty() && std::isspace(static_cast<unsigned char>(text[i])) == 0)
        return false; // text outside the root
      ++i;
    }
  }
  return open.empty() && roots == 1;
}

// How often `part` occurs in `text`.
inline std::size_t count_of(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size()))
    ++n;
  return n;
}

} // namespace aeg::testing
