#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

/// What `chat_template` reads from a Jinja template's text (its string literals and simple
/// `{% set %}` assignments, without running it) and the texts templates compute as transformers
/// runs them: dates from `strftime_now`, JSON strings from `tojson`, Jinja's `trim`.
namespace aeg::models::chat_text {

/// A calendar day, as `strftime_now` sees it (transformers: the local date).
using day = std::chrono::year_month_day;

/// The date a template writes: today's date as `format` (strftime) when it calls
/// `strftime_now`, which transformers defines; else `fixed`.
struct date_rule {
  std::string fixed;  ///< used when `format` is empty
  std::string format; ///< strftime format of `strftime_now`, or empty
  /// The date written on `d`.
  std::string on(day d) const;
};

/// A text a template writes with dates in it: `parts` joined by the date.
struct dated_text {
  std::vector<std::string> parts; ///< the text before, between and after the dates
  /// The text with `date` between the parts.
  std::string with(std::string_view date) const;
  /// Whether the text writes a date.
  bool dated() const noexcept { return parts.size() > 1; }
};

/// A term of a `+` expression on the right of `{% set name = ... %}`.
struct term {
  enum kind_t { literal, variable, strftime } kind; ///< `"text"`, `name`, `strftime_now("fmt")`
  std::string text; ///< the literal (unescaped), the variable's name or the format
};

/// The string literals inside `{{ }}` and `{% %}` blocks, unescaped as Jinja does.
std::vector<std::string> string_literals(std::string_view jinja);

/// Each `{% set name = ... %}` of the template, in order: its terms, or nullopt for an
/// expression that is not literals, variables and `strftime_now` calls joined by `+`.
std::vector<std::optional<std::vector<term>>> assignments(std::string_view jinja,
                                                          std::string_view name);

/// `d` written as strftime's `format` does in the C locale: `%d %e %m %Y %y %b %B %a %A %j %%`
/// and glibc's `%-d %-m %-e` (no padding); another conversion is written as it stands.
std::string format_date(std::string_view format, day d);

/// The local date today.
day today();

/// `s` as a JSON string, as transformers' `tojson` (Python's `json.dumps(s,
/// ensure_ascii=False)`) writes it.
std::string json_quoted(std::string_view s);

/// Jinja's `trim` and Python's `strip()` on the white space prompts carry.
std::string_view trimmed(std::string_view s);

} // namespace aeg::models::chat_text
