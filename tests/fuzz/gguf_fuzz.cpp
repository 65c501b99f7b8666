#include "tests/fuzz/gguf_fuzz.hpp"

#include "coro/assert.hpp"
#include "kernels/quant.hpp"
#include "models/gguf/file.hpp"
#include "models/gguf/types.hpp"
#include "models/gguf/writer.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <span>
#include <vector>

namespace {

using namespace aeg::models;

// Folds every field of `v` (recursively) into `sink`, so that nothing is left unread.
void touch(const gguf::value& v, std::uint64_t& sink) {
  sink += static_cast<std::uint64_t>(v.type) + v.u + static_cast<std::uint64_t>(v.i) +
          std::bit_cast<std::uint64_t>(v.f) + v.s.size();
  for (unsigned char c : v.s)
    sink += c;
  for (const auto& item : v.items) {
    AEG_ASSERT(item.type == v.elem_type, "an array element of the wrong type");
    touch(item, sink);
  }
}

bool same(const gguf::value& a, const gguf::value& b) {
  if (a.type != b.type || a.u != b.u || a.i != b.i || a.s != b.s || a.elem_type != b.elem_type ||
      a.items.size() != b.items.size())
    return false;
  if (!(a.f == b.f || (std::isnan(a.f) && std::isnan(b.f))))
    return false;
  for (std::size_t k = 0; k < a.items.size(); ++k)
    if (!same(a.items[k], b.items[k]))
      return false;
  return true;
}

// Writes `f` again with gguf::writer and checks that reading it back gives the same file.
void check_round_trip(const gguf::file& f) {
  gguf::writer w;
  for (const auto& key : f.keys()) {
    const gguf::value* v = f.find(key);
    if (key == "general.alignment")
      AEG_ASSERT(w.set_alignment(static_cast<std::uint32_t>(v->u)), "alignment refused");
    else
      w.add_value(key, *v);
  }
  for (const auto& t : f.tensors())
    AEG_ASSERT(w.add_tensor(t.name, t.dims, t.type, std::span(t.data, t.bytes)),
               "the writer refused a tensor the reader accepted");
  const auto bytes = w.bytes();
  auto again = gguf::file::parse(std::span<const std::byte>(bytes));
  AEG_ASSERT(again.has_value(), "a rewritten file does not parse");
  AEG_ASSERT(again->keys() == f.keys(), "keys changed in a round trip");
  for (const auto& key : f.keys())
    AEG_ASSERT(same(*again->find(key), *f.find(key)), "a value changed in a round trip");
  AEG_ASSERT(again->tensors().size() == f.tensors().size(), "tensor count changed");
  for (const auto& t : f.tensors()) {
    const auto* u = again->tensor(t.name);
    AEG_ASSERT(u != nullptr && u->dims == t.dims && u->type == t.type && u->bytes == t.bytes,
               "a tensor info changed in a round trip");
    AEG_ASSERT(std::memcmp(u->data, t.data, t.bytes) == 0, "tensor bytes changed");
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto bytes = std::span(reinterpret_cast<const std::byte*>(data), size);
  auto f = gguf::file::parse(bytes);
  if (!f) {
    AEG_ASSERT(f.error().code == aeg::errc::corrupt_data && !f.error().message.empty(),
               "a refused file must say why, as corrupt_data");
    return 0;
  }
  std::uint64_t sink = 0;
  for (const auto& key : f->keys()) {
    const gguf::value* v = f->find(key);
    AEG_ASSERT(v != nullptr, "a listed key cannot be found");
    touch(*v, sink);
    // The typed getters must answer (value or error) for every key.
    sink += f->get_uint(key).value_or(1) + f->get_string(key).value_or("").size();
    sink += std::bit_cast<std::uint64_t>(f->get_float(key, 0).value_or(0));
    sink += f->get_string_array(key).value_or(std::vector<std::string>{}).size();
    sink += f->get_int_array(key).value_or(std::vector<std::int64_t>{}).size();
  }
  const std::uint32_t a = f->alignment();
  AEG_ASSERT(a != 0 && (a & (a - 1)) == 0, "alignment is not a power of two");
  AEG_ASSERT(f->data_offset() % a == 0, "data section not aligned");
  std::vector<float> row;
  for (const auto& t : f->tensors()) {
    AEG_ASSERT(f->tensor(t.name) == &t, "tensor lookup by name fails");
    AEG_ASSERT(t.data >= bytes.data() &&
                   t.bytes <= static_cast<std::size_t>(bytes.data() + size - t.data),
               "tensor data outside the input");
    AEG_ASSERT(t.offset % a == 0, "unaligned tensor offset");
    for (std::uint64_t k = 0; k < t.bytes; ++k)
      sink += std::to_integer<std::uint8_t>(t.data[k]);
    // One row through the kernels: every block layout meets arbitrary bytes.
    const auto dt = gguf::to_dtype(t.type);
    AEG_ASSERT(aeg::kernels::row_bytes(dt, t.dims[0]) * t.rows() == t.bytes,
               "tensor byte size disagrees with the kernels' row size");
    row.resize(t.dims[0]);
    aeg::kernels::dequantize_row(dt, t.data, row.data(), row.size());
    for (float x : row)
      sink += std::bit_cast<std::uint32_t>(x);
  }
  check_round_trip(*f);
  volatile std::uint64_t keep = sink;
  (void)keep;
  return 0;
}
