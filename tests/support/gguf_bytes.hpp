#pragma once

// Hand-made GGUF bytes for tests of the reader: unlike gguf::writer, it writes whatever it is
// told (wrong counts, odd offsets, unknown types), so that each way a file can be broken can be
// built in a line or two.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string_view>
#include <vector>

namespace aeg::testing {

/// A little-endian byte builder with GGUF's primitive encodings.
class gguf_bytes {
public:
  /// Appends the raw bytes of `v` (little-endian on the machines we run on).
  template <class T>
  gguf_bytes& put(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
    return *this;
  }
  gguf_bytes& u8(std::uint8_t v) { return put(v); }
  gguf_bytes& u32(std::uint32_t v) { return put(v); }
  gguf_bytes& u64(std::uint64_t v) { return put(v); }
  /// A gguf_string: u64 length, then the bytes.
  gguf_bytes& str(std::string_view s) {
    u64(s.size());
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    bytes_.insert(bytes_.end(), p, p + s.size());
    return *this;
  }
  /// Magic "GGUF", version, tensor count, metadata count.
  gguf_bytes& header(std::uint32_t version, std::uint64_t num_tensors, std::uint64_t num_kv) {
    return u32(0x46554747).u32(version).u64(num_tensors).u64(num_kv);
  }
  /// A key and its value type; the value follows with the other calls.
  gguf_bytes& key(std::string_view k, std::uint32_t type) { return str(k).u32(type); }
  /// A uint32 key/value pair.
  gguf_bytes& kv_u32(std::string_view k, std::uint32_t v) { return key(k, 4).u32(v); }
  /// A string key/value pair.
  gguf_bytes& kv_str(std::string_view k, std::string_view v) { return key(k, 8).str(v); }
  /// A tensor info: name, n_dims, dims, ggml type id, data offset.
  gguf_bytes& tensor(std::string_view name, std::initializer_list<std::uint64_t> dims,
                     std::uint32_t type, std::uint64_t offset) {
    str(name).u32(static_cast<std::uint32_t>(dims.size()));
    for (auto d : dims)
      u64(d);
    return u32(type).u64(offset);
  }
  /// Zero bytes up to the next multiple of `alignment`.
  gguf_bytes& pad(std::size_t alignment) {
    bytes_.resize((bytes_.size() + alignment - 1) / alignment * alignment);
    return *this;
  }
  /// `n` bytes of `fill`.
  gguf_bytes& fill(std::size_t n, std::uint8_t v = 0) {
    bytes_.insert(bytes_.end(), n, std::byte{v});
    return *this;
  }

  std::size_t size() const noexcept { return bytes_.size(); }
  const std::vector<std::byte>& bytes() const noexcept { return bytes_; }

private:
  std::vector<std::byte> bytes_;
};

} // namespace aeg::testing
