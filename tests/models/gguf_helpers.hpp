#pragma once

// Building GGUF values and files by hand for the reader's tests, and checking a refusal.

#include "coro/error.hpp"
#include "models/gguf/file.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

namespace aeg::models::gguf::testing {

// A parsed file points into its bytes: callers keep them alive while they use tensor data.
inline result<gguf::file> parse(const std::vector<std::byte>& b) {
  return gguf::file::parse(std::span<const std::byte>(b));
}

// The file must be refused with corrupt_data and a message holding every one of `needles`.
inline void expect_refused(const std::vector<std::byte>& b,
                           std::initializer_list<std::string> needles) {
  auto f = parse(b);
  ASSERT_FALSE(f.has_value()) << "a broken file was accepted";
  EXPECT_EQ(f.error().code, errc::corrupt_data);
  for (const auto& n : needles)
    EXPECT_NE(f.error().message.find(n), std::string::npos)
        << "message '" << f.error().message << "' lacks '" << n << "'";
}

inline value scalar(value_type t, std::uint64_t u, std::int64_t i = 0, double f = 0) {
  value v;
  v.type = t;
  v.u = u;
  v.i = i;
  v.f = f;
  return v;
}

inline value string_value(std::string s) {
  value v;
  v.type = value_type::string;
  v.s = std::move(s);
  return v;
}

inline value array_of(value_type elem, std::vector<value> items) {
  value v;
  v.type = value_type::array;
  v.elem_type = elem;
  v.items = std::move(items);
  return v;
}

inline std::vector<std::byte> float_bytes(const std::vector<float>& x) {
  std::vector<std::byte> b(x.size() * sizeof(float));
  std::memcpy(b.data(), x.data(), b.size());
  return b;
}

} // namespace aeg::models::gguf::testing
