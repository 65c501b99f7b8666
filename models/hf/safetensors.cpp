#include "models/hf/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace aeg::models::hf {

namespace {

// The reference implementation refuses headers over 100 MB; so do we, before reading one.
constexpr std::uint64_t max_header_bytes = 100'000'000;

struct mapping {
  void* addr = MAP_FAILED;
  std::size_t size = 0;
  mapping() = default;
  mapping(const mapping&) = delete;
  mapping& operator=(const mapping&) = delete;
  ~mapping() {
    if (addr != MAP_FAILED)
      munmap(addr, size);
  }
};

result<std::shared_ptr<mapping>> map_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fail(errc::not_found, "cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(errc::invalid_argument, "'" + path + "' is not a regular file");
  }
  auto m = std::make_shared<mapping>();
  m->size = static_cast<std::size_t>(st.st_size);
  if (m->size > 0)
    m->addr = mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);
  if (m->size > 0 && m->addr == MAP_FAILED)
    return fail(errc::internal, "cannot map '" + path + "': " + std::strerror(e));
  return m;
}

} // namespace

std::size_t safetensors_file::element_bytes(std::string_view dtype) noexcept {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64")
    return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32")
    return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16")
    return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2")
    return 1;
  return 0;
}

result<safetensors_file> safetensors_file::open(const std::string& path) {
  AEG_TRY_ASSIGN(auto map, map_file(path));
  const std::span bytes(static_cast<const std::byte*>(map->size ? map->addr : nullptr), map->size);
  return parse(bytes, std::move(map), path);
}

result<safetensors_file> safetensors_file::parse(std::span<const std::byte> bytes,
                                                 std::shared_ptr<const void> keep,
                                                 const std::string& path) {
  const auto bad = [&](const std::string& why) {
    return fail(errc::corrupt_data, path + ": " + why + "; the safetensors file is damaged");
  };
  const auto* base = bytes.data();
  std::uint64_t header_len = 0;
  if (bytes.size() < 8)
    return bad("shorter than its 8-byte header length");
  std::memcpy(&header_len, base, 8);
  if (header_len > max_header_bytes || header_len > bytes.size() - 8)
    return bad("header length " + std::to_string(header_len) + " exceeds the file or 100 MB");
  const auto* text = reinterpret_cast<const char*>(base + 8);
  auto header = nlohmann::json::parse(text, text + header_len, nullptr, false);
  if (header.is_discarded() || !header.is_object())
    return bad("header is not a JSON object");
  const std::uint64_t data_size = bytes.size() - 8 - header_len;
  const auto* data = base + 8 + header_len;

  safetensors_file f;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__")
      continue;
    const auto where = "tensor '" + name + "' ";
    if (!info.is_object() || !info.contains("dtype") || !info["dtype"].is_string() ||
        !info.contains("shape") || !info["shape"].is_array() || !info.contains("data_offsets") ||
        !info["data_offsets"].is_array() || info["data_offsets"].size() != 2)
      return bad(where + "lacks a dtype, shape or data_offsets");
    safetensor t;
    t.name = name;
    t.dtype = info["dtype"].get<std::string>();
    const std::size_t elem = element_bytes(t.dtype);
    if (elem == 0)
      return bad(where + "has unknown dtype '" + t.dtype + "'");
    std::uint64_t count = 1;
    for (const auto& d : info["shape"]) {
      if (!d.is_number_unsigned())
        return bad(where + "has a dim that is not a non-negative integer");
      const auto n = d.get<std::uint64_t>();
      if (n != 0 && count > std::numeric_limits<std::uint64_t>::max() / elem / n)
        return bad(where + "has a shape whose size overflows");
      count *= n;
      t.shape.push_back(n);
    }
    const auto& off = info["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      return bad(where + "has data_offsets that are not non-negative integers");
    const auto begin = off[0].get<std::uint64_t>(), end = off[1].get<std::uint64_t>();
    if (begin > end || end > data_size)
      return bad(where + "lies outside the file");
    if (end - begin != count * elem)
      return bad(where + "holds " + std::to_string(end - begin) + " bytes; its shape needs " +
                 std::to_string(count * elem));
    t.bytes = {data + begin, static_cast<std::size_t>(end - begin)};
    ranges.emplace_back(begin, end);
    f.tensors_.push_back(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      return bad("two tensors overlap");
  f.map_ = std::move(keep);
  return f;
}

} // namespace aeg::models::hf
