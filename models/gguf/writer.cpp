#include "models/gguf/writer.hpp"

#include <cstring>
#include <fstream>

namespace aeg::models::gguf {

template <class T>
void writer::put(std::vector<std::byte>& out, T v) const {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

void writer::put_string(std::vector<std::byte>& out, const std::string& s) const {
  put<std::uint64_t>(out, s.size());
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  out.insert(out.end(), p, p + s.size());
}

void writer::begin_kv(const std::string& key, value_type type) {
  put_string(kv_, key);
  put<std::uint32_t>(kv_, static_cast<std::uint32_t>(type));
  ++num_kv_;
}

void writer::add_uint32(const std::string& key, std::uint32_t v) {
  begin_kv(key, value_type::uint32);
  put(kv_, v);
}
void writer::add_uint64(const std::string& key, std::uint64_t v) {
  begin_kv(key, value_type::uint64);
  put(kv_, v);
}
void writer::add_int32(const std::string& key, std::int32_t v) {
  begin_kv(key, value_type::int32);
  put(kv_, v);
}
void writer::add_float32(const std::string& key, float v) {
  begin_kv(key, value_type::float32);
  put(kv_, v);
}
void writer::add_bool(const std::string& key, bool v) {
  begin_kv(key, value_type::boolean);
  put<std::uint8_t>(kv_, v ? 1 : 0);
}
void writer::add_string(const std::string& key, const std::string& v) {
  begin_kv(key, value_type::string);
  put_string(kv_, v);
}
void writer::add_string_array(const std::string& key, const std::vector<std::string>& v) {
  begin_kv(key, value_type::array);
  put<std::uint32_t>(kv_, static_cast<std::uint32_t>(value_type::string));
  put<std::uint64_t>(kv_, v.size());
  for (const auto& s : v)
    put_string(kv_, s);
}
void writer::add_int32_array(const std::string& key, const std::vector<std::int32_t>& v) {
  begin_kv(key, value_type::array);
  put<std::uint32_t>(kv_, static_cast<std::uint32_t>(value_type::int32));
  put<std::uint64_t>(kv_, v.size());
  for (auto x : v)
    put(kv_, x);
}

void writer::put_value(const value& v) {
  switch (v.type) {
  case value_type::uint8:
  case value_type::boolean:
    put(kv_, static_cast<std::uint8_t>(v.u));
    return;
  case value_type::int8:
    put(kv_, static_cast<std::int8_t>(v.i));
    return;
  case value_type::uint16:
    put(kv_, static_cast<std::uint16_t>(v.u));
    return;
  case value_type::int16:
    put(kv_, static_cast<std::int16_t>(v.i));
    return;
  case value_type::uint32:
    put(kv_, static_cast<std::uint32_t>(v.u));
    return;
  case value_type::int32:
    put(kv_, static_cast<std::int32_t>(v.i));
    return;
  case value_type::uint64:
    put(kv_, v.u);
    return;
  case value_type::int64:
    put(kv_, v.i);
    return;
  case value_type::float32:
    put(kv_, static_cast<float>(v.f));
    return;
  case value_type::float64:
    put(kv_, v.f);
    return;
  case value_type::string:
    put_string(kv_, v.s);
    return;
  case value_type::array:
    put<std::uint32_t>(kv_, static_cast<std::uint32_t>(v.elem_type));
    put<std::uint64_t>(kv_, v.items.size());
    for (const auto& item : v.items)
      put_value(item);
    return;
  }
}

void writer::add_value(const std::string& key, const value& v) {
  begin_kv(key, v.type);
  put_value(v);
}

result<void> writer::set_alignment(std::uint32_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    return fail(errc::invalid_argument,
                "GGUF alignment " + std::to_string(alignment) + " is not a power of two");
  alignment_ = alignment;
  add_uint32("general.alignment", alignment);
  return {};
}

result<void> writer::add_tensor(const std::string& name, std::vector<std::uint64_t> dims,
                                tensor_type type, std::span<const std::byte> data) {
  AEG_TRY_ASSIGN(auto traits, traits_of(static_cast<std::uint32_t>(type)));
  if (dims.empty() || dims.size() > 4 || dims[0] % traits.block_elems != 0)
    return fail(errc::invalid_argument, "tensor '" + name + "': bad shape for its type");
  std::uint64_t n = 1;
  for (auto d : dims)
    n *= d;
  if (n / traits.block_elems * traits.block_bytes != data.size())
    return fail(errc::invalid_argument, "tensor '" + name + "': " + std::to_string(data.size()) +
                                            " bytes do not match its shape and type");
  tensors_.push_back({name, std::move(dims), type, {data.begin(), data.end()}});
  return {};
}

std::vector<std::byte> writer::bytes() const {
  std::vector<std::byte> out;
  put<std::uint32_t>(out, 0x46554747);
  put<std::uint32_t>(out, 3);
  put<std::uint64_t>(out, tensors_.size());
  put<std::uint64_t>(out, num_kv_);
  out.insert(out.end(), kv_.begin(), kv_.end());
  std::uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(out, t.name);
    put<std::uint32_t>(out, static_cast<std::uint32_t>(t.dims.size()));
    for (auto d : t.dims)
      put(out, d);
    put<std::uint32_t>(out, static_cast<std::uint32_t>(t.type));
    put(out, offset);
    offset += align_up(t.data.size());
  }
  out.resize(align_up(out.size()));
  for (const auto& t : tensors_) {
    out.insert(out.end(), t.data.begin(), t.data.end());
    out.resize(align_up(out.size()));
  }
  return out;
}

result<void> writer::write(const std::string& path) const {
  auto b = bytes();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f)
    return fail(errc::not_found, "cannot create '" + path + "'");
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!f)
    return fail(errc::internal, "could not write all of '" + path + "'");
  return {};
}

} // namespace aeg::models::gguf
