#pragma once

// What HTTP/1.1's request and response parsers share (RFC 9110, 9112): the grammar of tokens,
// field values and chunk sizes, CRLF lines under a byte limit, and message bodies framed by a
// length, by chunks or by the connection's end. Strict: a bare LF or CR, a chunk longer than
// its size, a size line with junk in it are refused, never guessed at.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace aeg::server::framing {

/// RFC 9110, 5.6.2: a character of a token.
bool is_tchar(char c);
/// A non-empty run of token characters.
bool is_token(std::string_view s);
/// The value of a hexadecimal digit, or -1.
int hex_digit(char c);
/// A field value's characters: visible, obs-text, space and tab (no CR, LF or other controls).
bool is_field_char(char c);
/// `v` without leading and trailing spaces and tabs.
std::string_view trim(std::string_view v);
/// Whether a comma-separated header value (Connection) lists `token`, in any case.
bool lists(const std::string* value, std::string_view token);

/// Why a message is refused: the status a server answers with (a client only reports `why`).
struct refusal {
  int status;
  std::string why;
};

/// Reads CRLF-terminated lines from bytes that arrive in pieces, under a byte limit.
class line_reader {
public:
  /// `what` names the message in errors ("request", "response").
  explicit line_reader(std::string_view what) : what_(what) {}

  /// Takes one line of `data` from `pos` (without its CRLF) into `out`, or keeps the rest of
  /// `data` when the line is not complete yet. `counted` gathers the bytes taken; past `limit`
  /// the line is refused with `over`. True when `out` holds a line; false when more bytes are
  /// needed or the line was refused (then `refused` says why).
  bool take(std::string_view data, std::size_t& pos, std::string& out, std::size_t& counted,
            std::size_t limit, const refusal& over, std::optional<refusal>& refused);
  /// Whether part of a line is waiting for its end.
  bool pending() const noexcept { return !line_.empty(); }

private:
  std::string_view what_;
  std::string line_;
};

/// A message body as it arrives: `length` bytes, chunks (with trailers), or everything until
/// the connection closes. Decoded bytes are appended to the caller's string.
class body_reader {
public:
  enum class kind { length, chunked, until_close };
  struct limits {
    std::uint64_t max_body_bytes;  ///< beyond: refused with 413
    std::size_t max_trailer_bytes; ///< the trailers' bytes; beyond: refused with 431
  };

  /// `what` names the message in errors ("request", "response").
  explicit body_reader(std::string_view what) : what_(what), lines_(what) {}

  /// Starts a body of `k` (`length` bytes for kind::length); zero length is complete at once.
  void start(kind k, std::uint64_t length, limits l);
  /// Consumes body bytes of `data` from `pos`, appending what they decode to `out`; stops at
  /// the body's end (the bytes after it belong to the next message) or at a refusal.
  void feed(std::string_view data, std::size_t& pos, std::string& out);
  /// The connection closed: ends a body that runs until then. False when the body was cut short.
  bool close();
  bool complete() const noexcept { return st_ == state::complete; }
  const std::optional<refusal>& refused() const noexcept { return refused_; }

private:
  enum class state { data, chunk_size, chunk_data, chunk_end, trailers, complete };
  void chunk_header(std::string_view data, std::size_t& pos, const std::string& out);
  void chunk_end(std::string_view data, std::size_t& pos);
  void trailers(std::string_view data, std::size_t& pos);

  std::string_view what_;
  line_reader lines_;
  kind kind_ = kind::length;
  limits limits_{0, 0};
  state st_ = state::complete;
  std::uint64_t remaining_ = 0;
  std::size_t chunk_end_seen_ = 0, trailer_bytes_ = 0, size_line_bytes_ = 0;
  std::optional<refusal> refused_;
};

} // namespace aeg::server::framing
