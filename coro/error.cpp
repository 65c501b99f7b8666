#include "coro/error.hpp"

namespace aeg {

std::string_view to_string(errc code) noexcept {
  switch (code) {
  case errc::cancelled:
    return "cancelled";
  case errc::timeout:
    return "timeout";
  case errc::invalid_argument:
    return "invalid_argument";
  case errc::out_of_memory:
    return "out_of_memory";
  case errc::unavailable:
    return "unavailable";
  case errc::device_error:
    return "device_error";
  case errc::not_found:
    return "not_found";
  case errc::corrupt_data:
    return "corrupt_data";
  case errc::closed:
    return "closed";
  case errc::internal:
    return "internal";
  }
  return "unknown";
}

std::string error::to_string() const {
  std::string out(aeg::to_string(code));
  out += ": ";
  out += message;
  return out;
}

error_exception::error_exception(aeg::error e)
    : std::runtime_error(e.to_string()), error_(std::move(e)) {}

cancelled_exception::cancelled_exception(std::string message)
    : error_exception(aeg::error{errc::cancelled, std::move(message)}) {}

} // namespace aeg
