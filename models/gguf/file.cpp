#include "models/gguf/file.hpp"

#include "models/gguf/mapping.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace aeg::models::gguf {

namespace {

constexpr std::uint32_t magic = 0x46554747; // "GGUF" little-endian
constexpr std::size_t max_dims = 4;
constexpr int max_array_depth = 8;
constexpr std::uint64_t max_key_bytes = 65535; // the GGUF spec's limit
constexpr std::uint64_t max_name_bytes = 63;   // ggml: names shorter than GGML_MAX_NAME (64)
constexpr std::uint64_t max_string_bytes = std::uint64_t{1} << 30;
// Far above any real vocabulary (tokens + merges + types of a 256k vocabulary is under 1M), low
// enough that a hostile file cannot make us allocate gigabytes of metadata values.
constexpr std::uint64_t max_metadata_values = std::uint64_t{1} << 22;
// Fewest bytes of a key/value pair (u64 key length, u32 type, one byte of value) and of a tensor
// info (u64 name length, u32 n_dims, one u64 dim, u32 type, u64 offset).
constexpr std::uint64_t min_kv_bytes = 13;
constexpr std::uint64_t min_tensor_info_bytes = 32;

constexpr std::string_view damaged_hint =
    " (the file is damaged, truncated or not a GGUF model: download it again, or re-convert the "
    "model with llama.cpp's convert_hf_to_gguf.py)";

// Fewest bytes one value of `type` takes in the file.
std::uint64_t min_encoded_bytes(std::uint32_t type) {
  switch (static_cast<value_type>(type)) {
  case value_type::uint16:
  case value_type::int16:
    return 2;
  case value_type::uint32:
  case value_type::int32:
  case value_type::float32:
    return 4;
  case value_type::uint64:
  case value_type::int64:
  case value_type::float64:
  case value_type::string:
    return 8;
  case value_type::array:
    return 12;
  default:
    return 1;
  }
}

// A malformed file: `what` names the key or tensor and says what is wrong.
tl::unexpected<error> corrupt(const std::string& what) {
  return fail(errc::corrupt_data, "GGUF: " + what + std::string(damaged_hint));
}

// A well-formed file this reader does not support: `what` already says what to do.
tl::unexpected<error> unsupported(const std::string& what) {
  return fail(errc::corrupt_data, "GGUF: " + what);
}

// A failure inside a value, wrapped by the caller with the key it belongs to.
tl::unexpected<error> bad_value(const std::string& what) {
  return fail(errc::corrupt_data, what);
}

bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return __builtin_mul_overflow(a, b, &out);
}

std::uint64_t align_up(std::uint64_t x, std::uint64_t alignment) {
  return (x + alignment - 1) / alignment * alignment;
}

std::string shape_string(const std::vector<std::uint64_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i)
    s += (i == 0 ? "" : ", ") + std::to_string(dims[i]);
  return s + "]";
}

} // namespace

// Reads the file front to back; every read is bounds-checked against the buffer, every count is
// checked against the bytes left before anything is allocated for it.
class parser {
public:
  explicit parser(std::span<const std::byte> bytes) : bytes_(bytes) {}

  result<void> run(file& f) {
    if (auto r = read_header(f); !r)
      return r;
    if (auto r = read_metadata(f); !r)
      return r;
    if (auto r = read_tensor_infos(f); !r)
      return r;
    return place_tensors(f);
  }

private:
  result<void> read_header(file& f) {
    std::uint32_t m = 0;
    if (!read(m))
      return corrupt("file too short for a header (" + std::to_string(bytes_.size()) + " bytes)");
    if (m != magic)
      return corrupt("not a GGUF file (the first 4 bytes are not \"GGUF\")");
    if (!read(f.version_))
      return corrupt("truncated header (no version)");
    if (f.version_ == 0)
      return corrupt("bad version 0");
    if ((f.version_ & 0xffff) == 0)
      return unsupported("version " + std::to_string(f.version_) +
                         " looks byte-swapped: big-endian GGUF files are not supported; convert "
                         "the model on a little-endian machine");
    if (f.version_ == 1)
      return unsupported("version 1 is not supported (its counts are 32-bit); re-convert the "
                         "model with a current llama.cpp");
    if (f.version_ > 3)
      return unsupported("version " + std::to_string(f.version_) +
                         " is newer than this reader (it reads versions 2 and 3); update Aegaeon "
                         "or re-convert the model to GGUF v3");
    if (!read(num_tensors_) || !read(num_kv_))
      return corrupt("truncated header (no tensor or metadata count)");
    // A count the rest of the file cannot hold is a lie, refused before anything is allocated.
    if (num_kv_ > remaining() / min_kv_bytes)
      return corrupt("metadata count " + std::to_string(num_kv_) + " exceeds what the " +
                     std::to_string(bytes_.size()) + "-byte file can hold");
    if (num_tensors_ > remaining() / min_tensor_info_bytes)
      return corrupt("tensor count " + std::to_string(num_tensors_) + " exceeds what the " +
                     std::to_string(bytes_.size()) + "-byte file can hold");
    return {};
  }

  result<void> read_metadata(file& f) {
    for (std::uint64_t k = 0; k < num_kv_; ++k) {
      std::string key;
      std::uint64_t len = 0;
      if (!read(len))
        return corrupt("truncated metadata key #" + std::to_string(k));
      if (len > max_key_bytes)
        return corrupt("metadata key #" + std::to_string(k) + " is " + std::to_string(len) +
                       " bytes long (keys are at most " + std::to_string(max_key_bytes) + ")");
      if (!read_chars(len, key))
        return corrupt("truncated metadata key #" + std::to_string(k));
      if (f.kv_.count(key) != 0)
        return corrupt("duplicate metadata key '" + key + "'");
      std::uint32_t type = 0;
      if (!read(type))
        return corrupt("truncated type of metadata '" + key + "'");
      value v;
      if (auto r = read_value(type, v, 0); !r)
        return corrupt("metadata '" + key + "': " + r.error().message);
      f.key_order_.push_back(key);
      f.kv_.emplace(std::move(key), std::move(v));
    }
    if (const value* a = f.find("general.alignment")) {
      if (a->type != value_type::uint32)
        return corrupt("metadata 'general.alignment' must be a uint32");
      if (a->u == 0 || (a->u & (a->u - 1)) != 0)
        return corrupt("metadata 'general.alignment' is " + std::to_string(a->u) +
                       ", not a power of two");
      f.alignment_ = static_cast<std::uint32_t>(a->u);
    }
    return {};
  }

  result<void> read_tensor_infos(file& f) {
    f.tensors_.reserve(num_tensors_);
    for (std::uint64_t t = 0; t < num_tensors_; ++t) {
      tensor_info ti;
      std::uint64_t len = 0;
      if (!read(len))
        return corrupt("truncated name of tensor #" + std::to_string(t));
      if (len > max_name_bytes)
        return corrupt("the name of tensor #" + std::to_string(t) + " is " + std::to_string(len) +
                       " bytes long (ggml allows at most " + std::to_string(max_name_bytes) + ")");
      if (!read_chars(len, ti.name))
        return corrupt("truncated name of tensor #" + std::to_string(t));
      if (f.tensor_index_.count(ti.name) != 0)
        return corrupt("duplicate tensor '" + ti.name + "'");
      const std::string what = "tensor '" + ti.name + "'";
      std::uint32_t n_dims = 0;
      if (!read(n_dims))
        return corrupt("truncated " + what);
      if (n_dims == 0 || n_dims > max_dims)
        return corrupt(what + " has " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
      ti.dims.resize(n_dims);
      for (auto& d : ti.dims)
        if (!read(d))
          return corrupt("truncated dimensions of " + what);
      std::uint32_t type = 0;
      if (!read(type) || !read(ti.offset))
        return corrupt("truncated " + what);
      std::uint64_t n = 1;
      for (std::size_t i = 0; i < ti.dims.size(); ++i) {
        if (ti.dims[i] == 0)
          return corrupt(what + " has shape " + shape_string(ti.dims) +
                         " with an empty dimension " + std::to_string(i));
        // ggml keeps element counts in int64; 2^62 leaves room for byte sizes of f32 tensors.
        if (mul_overflows(n, ti.dims[i], n) || n > (std::uint64_t{1} << 62))
          return corrupt(what + " has shape " + shape_string(ti.dims) +
                         ", whose element count overflows");
      }
      auto traits = traits_of(type);
      if (!traits)
        return unsupported(what + ": " + traits.error().message);
      ti.type = static_cast<tensor_type>(type);
      if (ti.dims[0] % traits->block_elems != 0)
        return corrupt(what + " of type " + std::string(traits->name) + ": row length " +
                       std::to_string(ti.dims[0]) + " is not a multiple of the block size " +
                       std::to_string(traits->block_elems));
      ti.num_elements = n;
      if (mul_overflows(n / traits->block_elems, traits->block_bytes, ti.bytes))
        return corrupt(what + " byte size overflows");
      if (ti.offset % f.alignment_ != 0)
        return corrupt(what + " offset " + std::to_string(ti.offset) +
                       " is not a multiple of the alignment " + std::to_string(f.alignment_));
      f.tensor_index_.emplace(ti.name, f.tensors_.size());
      f.tensors_.push_back(std::move(ti));
    }
    return {};
  }

  // Points every tensor into the data section after checking that its bytes lie inside the file
  // and that no two tensors share bytes.
  result<void> place_tensors(file& f) {
    const std::uint64_t data_start = align_up(pos_, f.alignment_);
    f.data_offset_ = data_start;
    if (f.tensors_.empty())
      return {};
    if (data_start > bytes_.size())
      return corrupt("the file ends at byte " + std::to_string(bytes_.size()) +
                     ", before its tensor data (which starts at byte " +
                     std::to_string(data_start) + ")");
    const std::uint64_t data_size = bytes_.size() - data_start;
    for (auto& ti : f.tensors_) {
      if (ti.offset > data_size || ti.bytes > data_size - ti.offset)
        return corrupt("tensor '" + ti.name + "' (" + std::to_string(ti.bytes) +
                       " bytes at data offset " + std::to_string(ti.offset) +
                       ") ends past the end of the file (the data section holds " +
                       std::to_string(data_size) + " bytes)");
      ti.data = bytes_.data() + data_start + ti.offset;
      // Kernels read tensors in place: F32 as floats, every other type through 2-byte fields.
      // ggml accepts `general.alignment` 1 or 2, which can leave a tensor at an odd byte.
      const std::size_t need =
          ti.type == tensor_type::f32 ? alignof(float) : alignof(std::uint16_t);
      if (reinterpret_cast<std::uintptr_t>(ti.data) % need != 0) {
        if (reinterpret_cast<std::uintptr_t>(bytes_.data()) % alignof(float) != 0) {
          const std::string fix = "the buffer given to gguf::file::parse is not 4-byte aligned; "
                                  "parse an aligned copy";
          return fail(errc::corrupt_data,
                      "GGUF: cannot read tensor '" + ti.name + "' in place: " + fix);
        }
        return unsupported("tensor '" + ti.name + "' (" + std::string(name_of(ti.type)) +
                           ") starts at file byte " + std::to_string(data_start + ti.offset) +
                           ", not a multiple of " + std::to_string(need) + ": general.alignment " +
                           std::to_string(f.alignment_) +
                           " is too small to read it in place; re-convert the model with the "
                           "default alignment (32)");
      }
    }
    // As ggml: tensors may be stored in any order, but sorted by offset each one starts at or
    // after the aligned end of the one before it.
    std::vector<const tensor_info*> by_offset;
    by_offset.reserve(f.tensors_.size());
    for (const auto& ti : f.tensors_)
      by_offset.push_back(&ti);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const tensor_info* a, const tensor_info* b) { return a->offset < b->offset; });
    for (std::size_t i = 1; i < by_offset.size(); ++i) {
      const tensor_info& prev = *by_offset[i - 1];
      const tensor_info& cur = *by_offset[i];
      // Cannot overflow: prev's bytes lie inside the file (checked above).
      const std::uint64_t prev_end = align_up(prev.offset + prev.bytes, f.alignment_);
      if (cur.offset < prev_end)
        return corrupt("tensors '" + prev.name + "' (data offsets " + std::to_string(prev.offset) +
                       " to " + std::to_string(prev.offset + prev.bytes) + ") and '" + cur.name +
                       "' (from " + std::to_string(cur.offset) + ") overlap");
    }
    return {};
  }

  std::uint64_t remaining() const noexcept { return bytes_.size() - pos_; }

  template <class T>
  bool read(T& out) {
    if (remaining() < sizeof(T))
      return false;
    std::memcpy(&out, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }

  bool read_chars(std::uint64_t len, std::string& out) {
    if (len > remaining())
      return false;
    out.assign(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return true;
  }

  result<void> read_value(std::uint32_t type, value& v, int depth) {
    v.type = static_cast<value_type>(type);
    auto scalar = [&](auto tag, auto store) -> result<void> {
      decltype(tag) x{};
      if (!read(x))
        return bad_value("truncated value");
      store(x);
      return {};
    };
    switch (v.type) {
    case value_type::uint8:
      return scalar(std::uint8_t{}, [&](auto x) { v.u = x; });
    case value_type::int8:
      return scalar(std::int8_t{}, [&](auto x) { v.i = x; });
    case value_type::uint16:
      return scalar(std::uint16_t{}, [&](auto x) { v.u = x; });
    case value_type::int16:
      return scalar(std::int16_t{}, [&](auto x) { v.i = x; });
    case value_type::uint32:
      return scalar(std::uint32_t{}, [&](auto x) { v.u = x; });
    case value_type::int32:
      return scalar(std::int32_t{}, [&](auto x) { v.i = x; });
    case value_type::uint64:
      return scalar(std::uint64_t{}, [&](auto x) { v.u = x; });
    case value_type::int64:
      return scalar(std::int64_t{}, [&](auto x) { v.i = x; });
    case value_type::float32:
      return scalar(float{}, [&](auto x) { v.f = x; });
    case value_type::float64:
      return scalar(double{}, [&](auto x) { v.f = x; });
    case value_type::boolean: {
      std::uint8_t b = 0;
      if (!read(b))
        return bad_value("truncated value");
      if (b > 1)
        return bad_value("bool value " + std::to_string(b) + " is neither 0 nor 1");
      v.u = b;
      return {};
    }
    case value_type::string: {
      std::uint64_t len = 0;
      if (!read(len))
        return bad_value("truncated string length");
      if (len > remaining())
        return bad_value("string of " + std::to_string(len) + " bytes runs past the end of the " +
                         "file (" + std::to_string(remaining()) + " bytes left)");
      if (len > max_string_bytes)
        return bad_value("string of " + std::to_string(len) + " bytes exceeds the limit of " +
                         std::to_string(max_string_bytes));
      read_chars(len, v.s);
      return {};
    }
    case value_type::array: {
      if (depth >= max_array_depth)
        return bad_value("arrays nested deeper than " + std::to_string(max_array_depth) +
                         " levels");
      std::uint32_t elem = 0;
      std::uint64_t count = 0;
      if (!read(elem) || !read(count))
        return bad_value("truncated array header");
      if (elem > static_cast<std::uint32_t>(value_type::float64))
        return bad_value("array of unknown value type " + std::to_string(elem));
      // Refuse counts the rest of the file cannot hold before allocating for them.
      if (count > remaining() / min_encoded_bytes(elem))
        return bad_value("array of " + std::to_string(count) + " elements exceeds the file (" +
                         std::to_string(remaining()) + " bytes left)");
      values_ += count;
      if (values_ > max_metadata_values)
        return bad_value("more than " + std::to_string(max_metadata_values) +
                         " metadata values in total");
      v.elem_type = static_cast<value_type>(elem);
      v.items.resize(count);
      for (std::size_t i = 0; i < v.items.size(); ++i)
        if (auto r = read_value(elem, v.items[i], depth + 1); !r)
          return bad_value("element " + std::to_string(i) + ": " + r.error().message);
      return {};
    }
    }
    return bad_value("unknown value type " + std::to_string(type));
  }

  std::span<const std::byte> bytes_;
  std::uint64_t pos_ = 0;
  std::uint64_t num_tensors_ = 0;
  std::uint64_t num_kv_ = 0;
  std::uint64_t values_ = 0;
};

// Defined here, where `mapping` is complete.
file::file(file&&) noexcept = default;
file& file::operator=(file&&) noexcept = default;
file::~file() = default;

result<file> file::parse(std::span<const std::byte> bytes) {
  file f;
  parser p(bytes);
  AEG_TRY(p.run(f));
  return f;
}

result<file> file::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fail(errc::not_found, "cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return fail(errc::not_found, "cannot stat '" + path + "': " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(errc::invalid_argument,
                "'" + path + "' is not a regular file; pass the path of a .gguf model file");
  }
  auto map = std::make_unique<mapping>();
  map->size = static_cast<std::size_t>(st.st_size);
  if (map->size > 0) {
    map->addr = mmap(nullptr, map->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map->addr == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      return fail(errc::internal, "cannot map '" + path + "': " + std::strerror(e));
    }
  }
  ::close(fd);
  auto bytes = std::span<const std::byte>(static_cast<const std::byte*>(map->addr), map->size);
  auto f = parse(bytes);
  if (!f)
    return fail(f.error().code, path + ": " + f.error().message);
  f->map_ = std::move(map);
  return f;
}

} // namespace aeg::models::gguf
