#pragma once

#include "coro/error.hpp"
#include "models/gguf/types.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace aeg::models::gguf {

/// One metadata value. Scalars live in the field of their kind; arrays hold their elements
/// (which may be arrays themselves, up to 8 levels deep).
struct value {
  value_type type = value_type::uint8;
  std::uint64_t u = 0;                      ///< uint8..uint64, and bool as 0/1
  std::int64_t i = 0;                       ///< int8..int64
  double f = 0;                             ///< float32, float64
  std::string s;                            ///< string
  value_type elem_type = value_type::uint8; ///< array element type
  std::vector<value> items;                 ///< array elements

  static value of_string(std::string s);
  static value of_uint32(std::uint32_t x);
  static value of_float32(float x);
  static value of_bool(bool x);
  static value of_strings(std::vector<std::string> items);
  static value of_int32s(const std::vector<std::int32_t>& items);
  static value of_float32s(const std::vector<float>& items);

  /// Whether the value is an integer of any width and signedness (bool is not).
  bool is_integer() const noexcept;
  /// Whether the value is uint8, uint16, uint32 or uint64 (its number is in `u`).
  bool is_unsigned() const noexcept;
};

/// A tensor's description and where its bytes are inside the mapped file.
struct tensor_info {
  std::string name;
  std::vector<std::uint64_t> dims; ///< ne[0] first (innermost, contiguous)
  tensor_type type = tensor_type::f32;
  std::uint64_t offset = 0; ///< from the start of the data section
  std::uint64_t num_elements = 0;
  std::uint64_t bytes = 0;
  const std::byte* data = nullptr; ///< valid while the `file` lives; aligned for its type

  /// Rows of `dims[0]` values: the product of dims[1..].
  std::uint64_t rows() const noexcept { return dims.size() < 2 ? 1 : num_elements / dims[0]; }
};

/// A GGUF v2/v3 file, memory-mapped and validated: every size, offset and count is checked
/// against the file before use, so a hostile file yields `errc::corrupt_data`, never a crash.
/// Checks, as ggml's reader makes them: magic and version (v1, byte-swapped and newer versions
/// refused), counts against the bytes left, key length <= 65535, no duplicate keys, bools 0/1,
/// known value types, arrays nested at most 8 deep, `general.alignment` a uint32 power of two,
/// tensor names < 64 bytes and unique, 1 to 4 non-zero dims with no overflow, supported types,
/// rows a multiple of the block size, aligned offsets, data inside the file and no two tensors
/// overlapping (in any order). Beyond ggml: every tensor's data is aligned for in-place reads by
/// the kernels (4 bytes for F32, 2 for the others), which a `general.alignment` of 1 or 2 can
/// break. Move-only; tensor data pointers stay valid while it lives.
class file {
public:
  /// Maps and parses the file at `path`.
  static result<file> open(const std::string& path);
  /// Parses bytes already in memory; they must outlive the returned file and start at a 4-byte
  /// aligned address (any heap buffer does). Every failure is `errc::corrupt_data` with a
  /// message naming the key or tensor at fault.
  static result<file> parse(std::span<const std::byte> bytes);
  /// A model of another format seen as GGUF (a Hugging Face folder): metadata in the order
  /// given and tensors whose bytes live in memory `keep` owns (mapped files, converted copies).
  /// Checked as a parsed file is: unique keys and names, supported types, bytes matching each
  /// shape, data aligned for its type. `errc::corrupt_data` names what is wrong.
  static result<file> assemble(std::vector<std::pair<std::string, value>> metadata,
                               std::vector<tensor_info> tensors, std::shared_ptr<const void> keep);

  /// Moves the mapping; tensor data pointers stay valid.
  file(file&&) noexcept;
  /// Moves the mapping; tensor data pointers stay valid.
  file& operator=(file&&) noexcept;
  ~file();

  /// GGUF version, 2 or 3.
  std::uint32_t version() const noexcept { return version_; }
  /// Alignment of the data section and of every tensor offset (`general.alignment`, else 32).
  std::uint32_t alignment() const noexcept { return alignment_; }
  /// Byte offset of the data section from the start of the file (a multiple of `alignment()`).
  std::uint64_t data_offset() const noexcept { return data_offset_; }

  /// Metadata by key; null when absent.
  const value* find(std::string_view key) const;
  /// Metadata keys in file order.
  const std::vector<std::string>& keys() const noexcept { return key_order_; }

  /// An integer of any width (hyperparameters are written as u32 or u64 by different tools).
  result<std::uint64_t> get_uint(std::string_view key) const;
  /// An integer with a default when the key is absent.
  result<std::uint64_t> get_uint(std::string_view key, std::uint64_t fallback) const;
  /// A float32/float64 (or an integer) as double, with a default when absent.
  result<double> get_float(std::string_view key, double fallback) const;
  /// A string value.
  result<std::string> get_string(std::string_view key) const;
  /// An array of strings (e.g. `tokenizer.ggml.tokens`).
  result<std::vector<std::string>> get_string_array(std::string_view key) const;
  /// An array of integers of any width (e.g. `tokenizer.ggml.token_type`, an int32 array).
  result<std::vector<std::int64_t>> get_int_array(std::string_view key) const;

  /// Tensor infos in file order.
  const std::vector<tensor_info>& tensors() const noexcept { return tensors_; }
  /// Tensor by name; null when absent.
  const tensor_info* tensor(std::string_view name) const;

private:
  file() = default;
  struct mapping;
  std::unique_ptr<mapping> map_;
  std::shared_ptr<const void> keep_; ///< an assembled file's tensor memory
  std::uint32_t version_ = 0;
  std::uint32_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::vector<std::string> key_order_;
  std::map<std::string, value, std::less<>> kv_;
  std::vector<tensor_info> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;

  friend class parser;
};

} // namespace aeg::models::gguf
