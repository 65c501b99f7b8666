#include "models/tokenizer/stream_decoder.hpp"

#include "models/tokenizer/utf8.hpp"

#include <utility>

namespace aeg::models {

stream_decoder::stream_decoder(tokenizer tok, bool render_special)
    : tok_(std::move(tok)), render_special_(render_special) {}

std::string stream_decoder::feed(std::int32_t id) {
  pending_.append(tok_.piece(id, render_special_));
  return drain(false);
}

std::string stream_decoder::finish() {
  return drain(true);
}

std::string stream_decoder::drain(bool at_end) {
  std::string out;
  std::size_t i = 0;
  while (i < pending_.size()) {
    const std::string_view rest = std::string_view(pending_).substr(i);
    const utf8::decoded d = utf8::decode(rest);
    if (d.state == utf8::status::ok) {
      out.append(rest.substr(0, d.length));
      i += d.length;
    } else if (d.state == utf8::status::incomplete && !at_end) {
      break; // the next token may complete it
    } else {
      out.append(utf8::replacement); // one per maximal subpart, as Python and browsers do
      i += d.length;
    }
  }
  pending_.erase(0, i);
  return out;
}

} // namespace aeg::models
