#pragma once

#include "coro/error.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace aeg::models::hf {

/// One tensor of a safetensors file: its dtype as the file names it ("BF16", "F16", "F32", ...),
/// its shape (outermost first, row-major) and its bytes inside the mapped file.
struct safetensor {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::span<const std::byte> bytes;
};

/// A memory-mapped safetensors file: an 8-byte little-endian header length, a JSON header naming
/// each tensor's dtype, shape and byte range, then the data. Every range is checked against the
/// file and against its shape and dtype, and no two tensors may overlap, so a damaged or hostile
/// file yields `errc::corrupt_data` naming the fault, never a read out of bounds.
class safetensors_file {
public:
  static result<safetensors_file> open(const std::string& path);
  /// Parses a safetensors file already in memory; `keep` owns `bytes` (errors begin with
  /// `name`).
  static result<safetensors_file> parse(std::span<const std::byte> bytes,
                                        std::shared_ptr<const void> keep, const std::string& name);

  const std::vector<safetensor>& tensors() const noexcept { return tensors_; }
  /// The mapping: tensor bytes stay valid while any copy of it lives.
  std::shared_ptr<const void> memory() const noexcept { return map_; }

  /// Bytes of one element of a safetensors dtype; 0 for a name it does not define.
  static std::size_t element_bytes(std::string_view dtype) noexcept;

private:
  std::shared_ptr<const void> map_;
  std::vector<safetensor> tensors_;
};

} // namespace aeg::models::hf
