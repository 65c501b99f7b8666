#include "models/gguf/file.hpp"
#include "models/gguf/mapping.hpp"

#include <cstdint>
#include <limits>

// A GGUF file's contents once read: metadata values (read, and built in code), lookups of keys
// and tensors, and files assembled from parts (a model of another format seen as GGUF), checked
// as a parsed file is. The reading itself is file.cpp.
namespace aeg::models::gguf {

namespace {

constexpr std::size_t max_dims = 4; // as the parser allows

} // namespace

value value::of_string(std::string s) {
  value v;
  v.type = value_type::string;
  v.s = std::move(s);
  return v;
}

value value::of_uint32(std::uint32_t x) {
  value v;
  v.type = value_type::uint32;
  v.u = x;
  return v;
}

value value::of_float32(float x) {
  value v;
  v.type = value_type::float32;
  v.f = x;
  return v;
}

value value::of_bool(bool x) {
  value v;
  v.type = value_type::boolean;
  v.u = x ? 1 : 0;
  return v;
}

value value::of_strings(std::vector<std::string> items) {
  value v;
  v.type = value_type::array;
  v.elem_type = value_type::string;
  v.items.reserve(items.size());
  for (auto& s : items)
    v.items.push_back(of_string(std::move(s)));
  return v;
}

value value::of_int32s(const std::vector<std::int32_t>& items) {
  value v;
  v.type = value_type::array;
  v.elem_type = value_type::int32;
  v.items.resize(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    v.items[i].type = value_type::int32;
    v.items[i].i = items[i];
  }
  return v;
}

value value::of_float32s(const std::vector<float>& items) {
  value v;
  v.type = value_type::array;
  v.elem_type = value_type::float32;
  v.items.reserve(items.size());
  for (float x : items)
    v.items.push_back(of_float32(x));
  return v;
}

result<file> file::assemble(std::vector<std::pair<std::string, value>> metadata,
                            std::vector<tensor_info> tensors, std::shared_ptr<const void> keep) {
  file f;
  for (auto& [key, v] : metadata) {
    if (!f.kv_.emplace(key, std::move(v)).second)
      return fail(errc::corrupt_data, "duplicate metadata key '" + key + "'");
    f.key_order_.push_back(key);
  }
  for (auto& t : tensors) {
    const auto bad = [&](const std::string& why) {
      return fail(errc::corrupt_data, "tensor '" + t.name + "': " + why);
    };
    AEG_TRY_ASSIGN(auto traits, traits_of(static_cast<std::uint32_t>(t.type)));
    if (t.dims.empty() || t.dims.size() > max_dims)
      return bad("has " + std::to_string(t.dims.size()) + " dims (1 to 4 load)");
    t.num_elements = 1;
    for (auto d : t.dims) {
      if (d == 0 || t.num_elements > std::numeric_limits<std::uint64_t>::max() / d)
        return bad("has a zero or overflowing dim");
      t.num_elements *= d;
    }
    if (t.dims[0] % traits.block_elems != 0 ||
        t.bytes != t.num_elements / traits.block_elems * traits.block_bytes)
      return bad("holds " + std::to_string(t.bytes) + " bytes, not what its shape needs");
    const std::size_t align = t.type == tensor_type::f32 ? 4 : 2;
    if (reinterpret_cast<std::uintptr_t>(t.data) % align != 0)
      return bad("data is not aligned for its type");
    if (!f.tensor_index_.emplace(t.name, f.tensors_.size()).second)
      return bad("appears twice");
    f.tensors_.push_back(std::move(t));
  }
  f.keep_ = std::move(keep);
  return f;
}

bool value::is_integer() const noexcept {
  switch (type) {
  case value_type::uint8:
  case value_type::int8:
  case value_type::uint16:
  case value_type::int16:
  case value_type::uint32:
  case value_type::int32:
  case value_type::uint64:
  case value_type::int64:
    return true;
  default:
    return false;
  }
}

bool value::is_unsigned() const noexcept {
  return type == value_type::uint8 || type == value_type::uint16 || type == value_type::uint32 ||
         type == value_type::uint64;
}

const value* file::find(std::string_view key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

result<std::uint64_t> file::get_uint(std::string_view key) const {
  const value* v = find(key);
  if (v == nullptr)
    return fail(errc::not_found, "GGUF metadata '" + std::string(key) + "' is missing");
  if (!v->is_integer())
    return fail(errc::corrupt_data, "GGUF metadata '" + std::string(key) + "' is not an integer");
  if (!v->is_unsigned() && v->i < 0)
    return fail(errc::corrupt_data, "GGUF metadata '" + std::string(key) + "' is negative");
  return v->is_unsigned() ? v->u : static_cast<std::uint64_t>(v->i);
}

result<std::uint64_t> file::get_uint(std::string_view key, std::uint64_t fallback) const {
  return find(key) == nullptr ? result<std::uint64_t>(fallback) : get_uint(key);
}

result<double> file::get_float(std::string_view key, double fallback) const {
  const value* v = find(key);
  if (v == nullptr)
    return fallback;
  if (v->type == value_type::float32 || v->type == value_type::float64)
    return v->f;
  if (v->is_integer())
    return v->is_unsigned() ? static_cast<double>(v->u) : static_cast<double>(v->i);
  return fail(errc::corrupt_data, "GGUF metadata '" + std::string(key) + "' is not a number");
}

result<std::string> file::get_string(std::string_view key) const {
  const value* v = find(key);
  if (v == nullptr)
    return fail(errc::not_found, "GGUF metadata '" + std::string(key) + "' is missing");
  if (v->type != value_type::string)
    return fail(errc::corrupt_data, "GGUF metadata '" + std::string(key) + "' is not a string");
  return v->s;
}

result<std::vector<std::string>> file::get_string_array(std::string_view key) const {
  const value* v = find(key);
  if (v == nullptr)
    return fail(errc::not_found, "GGUF metadata '" + std::string(key) + "' is missing");
  if (v->type != value_type::array || v->elem_type != value_type::string)
    return fail(errc::corrupt_data,
                "GGUF metadata '" + std::string(key) + "' is not an array of strings");
  std::vector<std::string> out;
  out.reserve(v->items.size());
  for (const auto& item : v->items)
    out.push_back(item.s);
  return out;
}

result<std::vector<std::int64_t>> file::get_int_array(std::string_view key) const {
  const value* v = find(key);
  if (v == nullptr)
    return fail(errc::not_found, "GGUF metadata '" + std::string(key) + "' is missing");
  if (v->type != value_type::array)
    return fail(errc::corrupt_data, "GGUF metadata '" + std::string(key) + "' is not an array");
  std::vector<std::int64_t> out;
  out.reserve(v->items.size());
  for (const auto& item : v->items) {
    if (!item.is_integer())
      return fail(errc::corrupt_data,
                  "GGUF metadata '" + std::string(key) + "' is not an array of integers");
    if (item.is_unsigned() && item.u > static_cast<std::uint64_t>(INT64_MAX))
      return fail(errc::corrupt_data, "GGUF metadata '" + std::string(key) + "' holds " +
                                          std::to_string(item.u) + ", too large for an int64");
    out.push_back(item.is_unsigned() ? static_cast<std::int64_t>(item.u) : item.i);
  }
  return out;
}

const tensor_info* file::tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

} // namespace aeg::models::gguf
