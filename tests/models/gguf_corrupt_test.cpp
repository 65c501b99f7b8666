// The GGUF reader on broken files: each must be refused with a message that says what is wrong,
// never read out of bounds.

#include "models/gguf/file.hpp"
#include "models/gguf/types.hpp"
#include "models/gguf/writer.hpp"
#include "tests/models/gguf_helpers.hpp"
#include "tests/support/gguf_bytes.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace aeg;
using namespace aeg::models;
using aeg::testing::gguf_bytes;
using gguf::value;
using gguf::value_type;
using namespace aeg::models::gguf::testing;

// ---- corrupt files: each must be refused with a message that says what is wrong --------------

// A small valid file whose last tensor ends exactly at the end of the file, so that every
// strict prefix of it is broken.
std::vector<std::byte> small_valid_file() {
  gguf::writer w;
  w.add_string("general.architecture", "llama");
  w.add_uint32("llama.block_count", 1);
  w.add_float32("llama.rope.freq_base", 10000.0f);
  w.add_bool("tokenizer.ggml.add_bos_token", false);
  w.add_string_array("tokenizer.ggml.tokens", {"a", "b"});
  w.add_value("nested", array_of(value_type::array,
                                 {array_of(value_type::uint8, {scalar(value_type::uint8, 1)})}));
  std::vector<float> a(8, 1.0f), b(32, 2.0f);
  (void)w.add_tensor("a", {8}, gguf::tensor_type::f32, float_bytes(a));
  std::vector<std::byte> q8(34);
  (void)w.add_tensor("q", {32}, gguf::tensor_type::q8_0, q8);
  (void)w.add_tensor("b", {32}, gguf::tensor_type::f32, float_bytes(b));
  return w.bytes();
}

TEST(GgufCorrupt, SmallValidFileParses) {
  const auto b = small_valid_file();
  auto f = parse(b);
  ASSERT_TRUE(f) << f.error().message;
  const auto& last = f->tensors().back();
  EXPECT_EQ(f->data_offset() + last.offset + last.bytes, b.size());
}

TEST(GgufCorrupt, EveryTruncationIsRefused) {
  const auto b = small_valid_file();
  for (std::size_t n = 0; n < b.size(); ++n) {
    std::vector<std::byte> prefix(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n));
    auto f = parse(prefix);
    ASSERT_FALSE(f) << "a prefix of " << n << " of " << b.size() << " bytes was accepted";
    EXPECT_EQ(f.error().code, errc::corrupt_data);
  }
}

TEST(GgufCorrupt, BadMagic) {
  auto b = gguf_bytes().header(3, 0, 0).bytes();
  b[0] = std::byte{'g'};
  expect_refused(b, {"not a GGUF file"});
  expect_refused({}, {"too short"});
}

TEST(GgufCorrupt, UnsupportedVersions) {
  expect_refused(gguf_bytes().header(0, 0, 0).bytes(), {"version 0"});
  expect_refused(gguf_bytes().header(1, 0, 0).bytes(), {"version 1", "re-convert"});
  expect_refused(gguf_bytes().header(4, 0, 0).bytes(), {"version 4", "2 and 3"});
  EXPECT_TRUE(parse(gguf_bytes().header(2, 0, 0).bytes()));
  EXPECT_TRUE(parse(gguf_bytes().header(3, 0, 0).bytes()));
}

TEST(GgufCorrupt, ByteSwappedVersion) {
  expect_refused(gguf_bytes().header(0x03000000, 0, 0).bytes(), {"byte-swapped", "big-endian"});
}

TEST(GgufCorrupt, CountsLargerThanTheFile) {
  expect_refused(gguf_bytes().header(3, 0, 1000).bytes(), {"metadata count 1000"});
  expect_refused(gguf_bytes().header(3, 1ull << 60, 0).bytes(), {"tensor count"});
  expect_refused(gguf_bytes().header(3, 0, 1).key("a", 9).u32(4).u64(1ull << 40).bytes(),
                 {"'a'", "array of 1099511627776 elements exceeds the file"});
  // A count that only just does not fit: 3 uint32 elements in 8 bytes.
  expect_refused(gguf_bytes().header(3, 0, 1).key("a", 9).u32(4).u64(3).u64(0).bytes(),
                 {"'a'", "exceeds the file"});
}

TEST(GgufCorrupt, StringLengthOverflow) {
  expect_refused(gguf_bytes().header(3, 0, 1).key("s", 8).u64(~0ull).bytes(),
                 {"'s'", "runs past the end"});
  expect_refused(gguf_bytes().header(3, 0, 1).u64(~0ull).fill(16).bytes(),
                 {"key #0", "bytes long"});
  expect_refused(gguf_bytes().header(3, 0, 1).u64(70000).fill(70000, 'k').u32(4).u32(1).bytes(),
                 {"key #0", "70000 bytes long"});
  expect_refused(gguf_bytes().header(3, 1, 0).u64(~0ull - 3).fill(64).bytes(),
                 {"tensor #0", "bytes long"});
  expect_refused(gguf_bytes().header(3, 0, 1).key("t", 9).u32(8).u64(1).u64(1ull << 62).bytes(),
                 {"'t'", "element 0", "runs past the end"});
}

TEST(GgufCorrupt, BadBool) {
  expect_refused(gguf_bytes().header(3, 0, 1).key("flag", 7).u8(2).bytes(),
                 {"'flag'", "bool value 2"});
  expect_refused(gguf_bytes().header(3, 0, 1).key("flags", 9).u32(7).u64(2).u8(1).u8(255).bytes(),
                 {"'flags'", "element 1", "bool value 255"});
}

TEST(GgufCorrupt, UnknownValueType) {
  expect_refused(gguf_bytes().header(3, 0, 1).key("odd", 13).u64(0).bytes(),
                 {"'odd'", "unknown value type 13"});
  expect_refused(gguf_bytes().header(3, 0, 1).key("odd", 9).u32(99).u64(0).bytes(),
                 {"'odd'", "unknown value type 99"});
}

TEST(GgufCorrupt, TooDeeplyNestedArrays) {
  auto nested = [](int depth) {
    gguf_bytes b;
    b.header(3, 0, 1).str("deep").u32(9);
    for (int d = 1; d < depth; ++d)
      b.u32(9).u64(1);       // an array holding one array
    b.u32(4).u64(1).u32(42); // innermost: one uint32
    return b.bytes();
  };
  EXPECT_TRUE(parse(nested(8)));
  expect_refused(nested(9), {"'deep'", "nested deeper than 8"});
  expect_refused(nested(10000), {"'deep'", "nested deeper than 8"});
}

TEST(GgufCorrupt, DuplicateKey) {
  expect_refused(gguf_bytes()
                     .header(3, 0, 2)
                     .kv_u32("llama.block_count", 1)
                     .kv_u32("llama.block_count", 2)
                     .bytes(),
                 {"duplicate metadata key 'llama.block_count'"});
}

// One F32 tensor of 8 values with `dims`/`type`/`offset`, followed by enough data.
std::vector<std::byte> one_tensor(std::initializer_list<std::uint64_t> dims, std::uint32_t type,
                                  std::uint64_t offset = 0, std::size_t data_bytes = 64) {
  return gguf_bytes()
      .header(3, 1, 0)
      .tensor("t", dims, type, offset)
      .pad(32)
      .fill(data_bytes)
      .bytes();
}

TEST(GgufCorrupt, DuplicateTensor) {
  expect_refused(gguf_bytes()
                     .header(3, 2, 0)
                     .tensor("w", {8}, 0, 0)
                     .tensor("w", {8}, 0, 32)
                     .pad(32)
                     .fill(64)
                     .bytes(),
                 {"duplicate tensor 'w'"});
}

TEST(GgufCorrupt, BadDimensionCounts) {
  expect_refused(one_tensor({1, 1, 1, 1, 8}, 0), {"'t'", "5 dimensions"});
  expect_refused(one_tensor({}, 0), {"'t'", "0 dimensions"});
  EXPECT_TRUE(parse(one_tensor({8, 1, 1, 1}, 0)));
}

TEST(GgufCorrupt, EmptyDimension) {
  expect_refused(one_tensor({8, 0}, 0), {"'t'", "[8, 0]", "empty dimension 1"});
}

TEST(GgufCorrupt, ShapeOverflow) {
  expect_refused(one_tensor({1ull << 32, 1ull << 32, 1ull << 32}, 0), {"'t'", "overflows"});
  expect_refused(one_tensor({1ull << 31, 1ull << 31, 2}, 0), {"'t'", "overflows"});
  // Fits in elements, not in bytes: past the file, then.
  expect_refused(one_tensor({1ull << 40, 1ull << 20}, 0), {"'t'"});
}

TEST(GgufCorrupt, RowLengthNotAMultipleOfTheBlockSize) {
  expect_refused(one_tensor({48, 2}, 3), {"'t'", "Q4_1", "row length 48", "block size 32"});
  expect_refused(one_tensor({576, 2}, 14), {"'t'", "Q6_K", "block size 256"});
}

TEST(GgufCorrupt, UnsupportedTensorTypeIsNamed) {
  expect_refused(one_tensor({256}, 16), {"'t'", "IQ2_XXS", "re-quantize"});
  expect_refused(one_tensor({256}, 7), {"'t'", "Q5_1"});
  expect_refused(one_tensor({256}, 4000), {"'t'", "4000"});
}

TEST(GgufCorrupt, TensorNameTooLong) {
  const std::string name63(63, 'n'), name64(64, 'n');
  EXPECT_TRUE(
      parse(gguf_bytes().header(3, 1, 0).tensor(name63, {8}, 0, 0).pad(32).fill(32).bytes()));
  expect_refused(gguf_bytes().header(3, 1, 0).tensor(name64, {8}, 0, 0).pad(32).fill(32).bytes(),
                 {"tensor #0", "64 bytes long"});
}

TEST(GgufCorrupt, UnalignedOffset) {
  expect_refused(one_tensor({8}, 0, 16), {"'t'", "offset 16", "alignment 32"});
}

TEST(GgufCorrupt, DataPastTheEnd) {
  expect_refused(one_tensor({8}, 0, 0, 31), {"'t'", "past the end"});
  expect_refused(one_tensor({8}, 0, 64, 64), {"'t'", "past the end"});
  expect_refused(one_tensor({8}, 0, 1ull << 63, 64), {"'t'", "past the end"});
  // Tensor infos that end where the data should start, with no data at all.
  expect_refused(gguf_bytes().header(3, 1, 0).tensor("t", {8}, 0, 0).bytes(), {"ends"});
  EXPECT_TRUE(parse(one_tensor({8}, 0, 0, 32)));
}

TEST(GgufCorrupt, OverlappingTensors) {
  auto two = [](std::uint64_t offset_a, std::uint64_t offset_b) {
    return gguf_bytes()
        .header(3, 2, 0)
        .tensor("a", {16}, 0, offset_a) // 64 bytes
        .tensor("b", {8}, 0, offset_b)  // 32 bytes
        .pad(32)
        .fill(256)
        .bytes();
  };
  expect_refused(two(0, 32), {"'a'", "'b'", "overlap"});
  expect_refused(two(64, 64), {"overlap"});
}

TEST(GgufCorrupt, OffsetsNeedNotBeSortedOrDense) {
  auto two = [](std::uint64_t offset_a, std::uint64_t offset_b) {
    return gguf_bytes()
        .header(3, 2, 0)
        .tensor("a", {16}, 0, offset_a)
        .tensor("b", {8}, 0, offset_b)
        .pad(32)
        .fill(256)
        .bytes();
  };
  EXPECT_TRUE(parse(two(32, 0)));  // b first in the data section, a right after it
  EXPECT_TRUE(parse(two(64, 0)));  // the same with a gap
  EXPECT_TRUE(parse(two(0, 128))); // a gap between them
}

TEST(GgufCorrupt, BadAlignment) {
  auto with = [](gguf_bytes kv) { return kv.bytes(); };
  expect_refused(with(gguf_bytes().header(3, 0, 1).key("general.alignment", 10).u64(64)),
                 {"'general.alignment'", "uint32"});
  expect_refused(with(gguf_bytes().header(3, 0, 1).kv_u32("general.alignment", 0)),
                 {"'general.alignment'", "power of two"});
  expect_refused(with(gguf_bytes().header(3, 0, 1).kv_u32("general.alignment", 48)),
                 {"'general.alignment'", "48"});
}

TEST(GgufCorrupt, AlignmentTooSmallForInPlaceReads) {
  // general.alignment 1 is legal GGUF, but must not leave a tensor at an odd byte.
  int refused = 0, accepted = 0;
  for (std::size_t name_length = 1; name_length <= 4; ++name_length) {
    gguf_bytes b;
    b.header(3, 1, 1).kv_u32("general.alignment", 1);
    b.tensor(std::string(name_length, 'h'), {4}, 1, 0); // F16, read through 2-byte loads
    const bool odd = b.size() % 2 != 0;                 // data starts right after the infos
    const auto bytes = b.fill(8).bytes();
    if (odd) {
      expect_refused(bytes, {"'hh", "general.alignment 1", "too small"});
      ++refused;
    } else {
      EXPECT_TRUE(parse(bytes));
      ++accepted;
    }
  }
  EXPECT_EQ(refused, 2);
  EXPECT_EQ(accepted, 2);
}

TEST(GgufCorrupt, MisalignedBufferIsRefusedNotReadOutOfLine) {
  gguf::writer w;
  std::vector<float> a(8, 1.0f);
  ASSERT_TRUE(w.add_tensor("a", {8}, gguf::tensor_type::f32, float_bytes(a)));
  const auto bytes = w.bytes();
  std::vector<std::byte> shifted(bytes.size() + 1);
  std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
  auto f = gguf::file::parse(std::span<const std::byte>(shifted).subspan(1));
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().message.find("not 4-byte aligned"), std::string::npos) << f.error().message;
}

} // namespace
