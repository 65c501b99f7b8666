#pragma once

// For tests that talk HTTP to a server over loopback: the real model, raw exchanges for what a
// well-behaved client would never send, and a folder holding the model for one server.

#include "apps/server/server.hpp"

#include <asio.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace aeg::server {

inline const std::string model_path =
    std::string(AEG_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

// Raw bytes in, raw bytes out: for what a well-behaved client would never send.
inline std::string raw_exchange(std::uint16_t port, const std::string& bytes,
                                bool half_close = true) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(s, asio::buffer(bytes));
  asio::error_code ec;
  if (half_close)
    s.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  std::string out;
  std::array<char, 4096> buf{};
  for (;;) {
    const auto n = s.read_some(asio::buffer(buf), ec);
    out.append(buf.data(), n);
    if (ec)
      break;
  }
  return out;
}

// The value of header `name` in a raw answer's head ("" when absent).
inline std::string header_of(const std::string& raw, const std::string& name) {
  const auto head = raw.substr(0, raw.find("\r\n\r\n"));
  const auto at = head.find("\r\n" + name + ": ");
  if (at == std::string::npos)
    return "";
  const auto start = at + name.size() + 4;
  return head.substr(start, head.find("\r\n", start) - start);
}

inline int status_of(const std::string& raw) {
  if (raw.size() < 12)
    return 0;
  return std::stoi(raw.substr(9, 3));
}

/// A folder of its own holding the real model as "tiny.gguf", removed with it: what a server
/// started with `options()` serves.
class model_folder {
public:
  explicit model_folder(const std::string& name)
      : dir_(std::filesystem::temp_directory_path() /
             ("aeg-" + name + "-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(dir_);
    if (std::filesystem::exists(model_path))
      std::filesystem::copy_file(model_path, dir_ / "tiny.gguf",
                                 std::filesystem::copy_options::overwrite_existing);
  }
  ~model_folder() { std::filesystem::remove_all(dir_); }
  model_folder(const model_folder&) = delete;
  model_folder& operator=(const model_folder&) = delete;

  const std::filesystem::path& dir() const noexcept { return dir_; }
  /// Serve options for this folder's models on the CPU.
  serve_options options() const {
    serve_options o;
    o.models_dir = dir_.string();
    o.backend = "cpu";
    return o;
  }

private:
  std::filesystem::path dir_;
};

} // namespace aeg::server
