#pragma once

// Reading JSON documents whose errors say where they are ("devices[1].memory_mib: must be a
// number from 1 to ..."): the topology file's parser and others of its kind. Internal to actors/.

#include "coro/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace aeg::actors::json_fields {

using json = nlohmann::json;

/// `v` as the shortest text that reads back the same.
std::string show(double v);

/// The document in `text`, with what field readers never see (a key given twice, a number no
/// double holds) named where it is. `document` starts the errors ("topology").
result<json> parse_json(std::string_view text, const std::string& document);

/// Reads fields of one JSON object, remembering where it is so errors can point at it. Holds a
/// reference to the object: it must outlive the reader.
class reader {
public:
  reader(const json& j, std::string where) : j_(j), where_(std::move(where)) {}

  std::string at(const std::string& key) const {
    return where_ + (where_.empty() ? "" : ".") + key;
  }

  result<void> known(std::initializer_list<const char*> keys) const {
    if (!j_.is_object())
      return fail(errc::invalid_argument, where_ + ": expected an object");
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (std::none_of(keys.begin(), keys.end(), [&](const char* k) { return it.key() == k; }))
        return fail(errc::invalid_argument, at(it.key()) + ": unknown field");
    return {};
  }

  template <class T>
  result<T> get(const std::string& key, T fallback) const {
    if (!j_.contains(key))
      return fallback;
    try {
      return j_.at(key).get<T>();
    } catch (const std::exception&) {
      return fail(errc::invalid_argument, at(key) + ": wrong type");
    }
  }

  // A number from `lo` to `hi` (finite; NaN and 1e400 are not numbers here).
  result<double> number(const std::string& key, double fallback, double lo, double hi) const {
    if (!j_.contains(key))
      return fallback;
    const json& v = j_.at(key);
    if (!v.is_number() || !(v.get<double>() >= lo && v.get<double>() <= hi))
      return fail(errc::invalid_argument, at(key) + ": must be a number from " + show(lo) + " to " +
                                              show(hi) + "; it is " + v.dump());
    return v.get<double>();
  }

  // A whole number from `lo` to `hi`: negatives and fractions are refused, never wrapped.
  result<std::uint64_t> count(const std::string& key, std::uint64_t fallback, std::uint64_t lo,
                              std::uint64_t hi) const {
    if (!j_.contains(key))
      return fallback;
    const json& v = j_.at(key);
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() < lo || v.get<std::uint64_t>() > hi)
      return fail(errc::invalid_argument, at(key) + ": must be a whole number from " +
                                              std::to_string(lo) + " to " + std::to_string(hi) +
                                              "; it is " + v.dump());
    return v.get<std::uint64_t>();
  }

  // A string that is not empty.
  result<std::string> name(const std::string& key) const {
    auto s = required<std::string>(key);
    if (s && s->empty())
      return fail(errc::invalid_argument, at(key) + ": must not be empty");
    return s;
  }

  template <class T>
  result<T> required(const std::string& key) const {
    if (!j_.contains(key))
      return fail(errc::invalid_argument, at(key) + ": missing");
    return get<T>(key, T{});
  }

private:
  const json& j_;
  std::string where_;
};

} // namespace aeg::actors::json_fields
