#include "actors/json_fields.hpp"

#include <cstdio>
#include <set>
#include <vector>

namespace aeg::actors::json_fields {

std::string show(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

namespace {

// Follows the parser through a document so that what the field readers never see (a key given
// twice, a number no double holds) can be named where it is, as "devices[1].memory_mib".
class path_tracker {
public:
  void on(json::parse_event_t event, const json& parsed) {
    using ev = json::parse_event_t;
    switch (event) {
    case ev::object_start:
    case ev::array_start:
      frames_.push_back({.array = event == ev::array_start});
      break;
    case ev::key: {
      auto& f = frames_.back();
      f.key = parsed.get<std::string>();
      if (!f.keys.insert(f.key).second && duplicate_.empty()) {
        const auto where = path(frames_.size() - 1);
        duplicate_ =
            (where.empty() ? "" : where + ": ") + "the key '" + f.key + "' appears twice; keep one";
      }
      break;
    }
    case ev::object_end:
    case ev::array_end:
      frames_.pop_back();
      next_element();
      break;
    case ev::value:
      next_element();
      break;
    }
  }

  // Where the value being parsed now sits.
  std::string here() const { return path(frames_.size()); }

  // The first key given twice in one object, as an error; empty when none was.
  const std::string& duplicate() const { return duplicate_; }

private:
  struct frame {
    bool array = false;
    std::size_t index = 0; // array: the element being parsed
    std::string key;       // object: the member being parsed
    std::set<std::string> keys;
  };

  void next_element() {
    if (!frames_.empty() && frames_.back().array)
      ++frames_.back().index;
  }

  // The path through the outermost `n` containers.
  std::string path(std::size_t n) const {
    std::string p;
    for (std::size_t i = 0; i < n; ++i)
      p += frames_[i].array ? "[" + std::to_string(frames_[i].index) + "]"
                            : (p.empty() ? "" : ".") + frames_[i].key;
    return p;
  }

  std::vector<frame> frames_;
  std::string duplicate_;
};

} // namespace

// The document, with what the field readers never see (a key given twice, a number no double
// holds) named where it is.
result<json> parse_json(std::string_view text, const std::string& document) {
  json doc;
  // A key given twice in one object: JSON parsers keep one silently, which hides typos.
  path_tracker tracker;
  try {
    doc = json::parse(text, [&](int, json::parse_event_t event, json& parsed) {
      tracker.on(event, parsed);
      return true;
    });
  } catch (const json::out_of_range& e) {
    // The parser's only range error: a number no double holds (1e400), quoted in its message.
    const std::string what = e.what();
    const auto open = what.find('\''), close = what.rfind('\'');
    const auto number = open < close ? what.substr(open + 1, close - open - 1) : "a number there";
    const auto where = tracker.here();
    return fail(errc::invalid_argument, document + ": " + (where.empty() ? "" : where + ": ") +
                                            number + " is not a number a double holds");
  } catch (const json::exception& e) {
    return fail(errc::invalid_argument, document + ": not valid JSON: " + e.what());
  }
  if (!tracker.duplicate().empty())
    return fail(errc::invalid_argument, document + ": " + tracker.duplicate());
  return doc;
}

} // namespace aeg::actors::json_fields
