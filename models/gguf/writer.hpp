#pragma once

#include "coro/error.hpp"
#include "models/gguf/file.hpp"
#include "models/gguf/types.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace aeg::models::gguf {

/// Builds a GGUF v3 file in memory: metadata in the order added, then tensor infos, then the
/// tensor data, each aligned to 32 bytes (or to `set_alignment`). Used by tests and tools to make
/// models of any shape. It checks tensor sizes, not keys: duplicate keys are written as given.
class writer {
public:
  /// Adds a key with a value of the type its name says.
  void add_uint32(const std::string& key, std::uint32_t v);
  void add_uint64(const std::string& key, std::uint64_t v);
  void add_int32(const std::string& key, std::int32_t v);
  void add_float32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_int32_array(const std::string& key, const std::vector<std::int32_t>& v);
  /// Adds a value of any type, arrays (nested ones too) by their `elem_type` and `items`.
  void add_value(const std::string& key, const value& v);

  /// Aligns the data section and every tensor to `alignment` bytes (a power of two) and records
  /// it as `general.alignment` (uint32) at this point of the metadata.
  /// `errc::invalid_argument` when `alignment` is not a power of two.
  result<void> set_alignment(std::uint32_t alignment);

  /// Adds a tensor whose encoded bytes (in `type`'s block layout) are `data`.
  /// `errc::invalid_argument` when the size does not match the shape and type.
  result<void> add_tensor(const std::string& name, std::vector<std::uint64_t> dims,
                          tensor_type type, std::span<const std::byte> data);

  /// The whole file.
  std::vector<std::byte> bytes() const;
  /// Writes the file to `path`.
  result<void> write(const std::string& path) const;

private:
  struct tensor {
    std::string name;
    std::vector<std::uint64_t> dims;
    tensor_type type;
    std::vector<std::byte> data;
  };
  template <class T>
  void put(std::vector<std::byte>& out, T v) const;
  void put_string(std::vector<std::byte>& out, const std::string& s) const;
  void begin_kv(const std::string& key, value_type type);
  void put_value(const value& v);
  std::uint64_t align_up(std::uint64_t x) const {
    return (x + alignment_ - 1) / alignment_ * alignment_;
  }

  std::vector<std::byte> kv_;
  std::uint64_t num_kv_ = 0;
  std::uint64_t alignment_ = 32;
  std::vector<tensor> tensors_;
};

} // namespace aeg::models::gguf
