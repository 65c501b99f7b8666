#include "kernels/dtype.hpp"
#include "models/gguf/file.hpp"
#include "models/gguf/types.hpp"
#include "models/gguf/writer.hpp"
#include "tests/models/gguf_helpers.hpp"
#include "tests/support/gguf_bytes.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

using namespace aeg;
using namespace aeg::models;
using aeg::testing::gguf_bytes;
using gguf::value;
using gguf::value_type;
using namespace aeg::models::gguf::testing;

// ---- types ------------------------------------------------------------------------------------

TEST(GgufTypes, DtypeMappingRoundTripsWithTheSameBlockGeometry) {
  using kernels::dtype;
  for (auto t : {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0, dtype::q4_1,
                 dtype::q5_0, dtype::q2_k, dtype::q3_k, dtype::q4_k, dtype::q5_k, dtype::q6_k,
                 dtype::iq4_nl, dtype::iq4_xs}) {
    const auto tt = gguf::to_tensor_type(t);
    EXPECT_EQ(gguf::to_dtype(tt), t);
    auto g = gguf::traits_of(static_cast<std::uint32_t>(tt));
    ASSERT_TRUE(g) << g.error().message;
    EXPECT_EQ(g->name, kernels::traits(t).name);
    EXPECT_EQ(g->block_elems, kernels::traits(t).block_elems);
    EXPECT_EQ(g->block_bytes, kernels::traits(t).block_bytes);
  }
  EXPECT_EQ(gguf::to_tensor_type(dtype::q4_1), gguf::tensor_type::q4_1);
  EXPECT_EQ(static_cast<std::uint32_t>(gguf::to_tensor_type(dtype::bf16)), 30u);
}

TEST(GgufTypes, UnsupportedTypesAreNamed) {
  auto iq = gguf::traits_of(16);
  ASSERT_FALSE(iq);
  EXPECT_NE(iq.error().message.find("IQ2_XXS"), std::string::npos);
  auto q51 = gguf::traits_of(7);
  ASSERT_FALSE(q51);
  EXPECT_NE(q51.error().message.find("Q5_1"), std::string::npos);
  auto unknown = gguf::traits_of(1000);
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("1000"), std::string::npos);
}

// ---- metadata ---------------------------------------------------------------------------------

TEST(GgufFile, ReadsEveryScalarValueType) {
  gguf::writer w;
  w.add_value("u8", scalar(value_type::uint8, 200));
  w.add_value("i8", scalar(value_type::int8, 0, -100));
  w.add_value("u16", scalar(value_type::uint16, 60000));
  w.add_value("i16", scalar(value_type::int16, 0, -30000));
  w.add_uint32("u32", 4000000000u);
  w.add_int32("i32", -2000000000);
  w.add_float32("f32", 0.15625f);
  w.add_bool("yes", true);
  w.add_bool("no", false);
  w.add_string("str", "héllo, wörld");
  w.add_string("empty", "");
  w.add_uint64("u64", 0xfedcba9876543210ull);
  w.add_value("i64", scalar(value_type::int64, 0, -0x123456789abcdefll));
  w.add_value("f64", scalar(value_type::float64, 0, 0, 1.0 / 3.0));
  const auto bytes = w.bytes();
  auto f = parse(bytes);
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ(f->version(), 3u);

  auto check = [&](const char* key, value_type t) -> const value& {
    const value* v = f->find(key);
    EXPECT_NE(v, nullptr) << key;
    static const value none;
    if (v == nullptr)
      return none;
    EXPECT_EQ(v->type, t) << key;
    return *v;
  };
  EXPECT_EQ(check("u8", value_type::uint8).u, 200u);
  EXPECT_EQ(check("i8", value_type::int8).i, -100);
  EXPECT_EQ(check("u16", value_type::uint16).u, 60000u);
  EXPECT_EQ(check("i16", value_type::int16).i, -30000);
  EXPECT_EQ(check("u32", value_type::uint32).u, 4000000000u);
  EXPECT_EQ(check("i32", value_type::int32).i, -2000000000);
  EXPECT_EQ(check("f32", value_type::float32).f, 0.15625);
  EXPECT_EQ(check("yes", value_type::boolean).u, 1u);
  EXPECT_EQ(check("no", value_type::boolean).u, 0u);
  EXPECT_EQ(check("str", value_type::string).s, "héllo, wörld");
  EXPECT_EQ(check("empty", value_type::string).s, "");
  EXPECT_EQ(check("u64", value_type::uint64).u, 0xfedcba9876543210ull);
  EXPECT_EQ(check("i64", value_type::int64).i, -0x123456789abcdefll);
  EXPECT_EQ(check("f64", value_type::float64).f, 1.0 / 3.0);
  EXPECT_TRUE(check("u8", value_type::uint8).is_unsigned());
  EXPECT_TRUE(check("i64", value_type::int64).is_integer());
  EXPECT_FALSE(check("i64", value_type::int64).is_unsigned());
  EXPECT_FALSE(check("yes", value_type::boolean).is_integer());
  EXPECT_FALSE(check("f32", value_type::float32).is_integer());

  const std::vector<std::string> order = {"u8",  "i8", "u16", "i16",   "u32", "i32", "f32",
                                          "yes", "no", "str", "empty", "u64", "i64", "f64"};
  EXPECT_EQ(f->keys(), order);
  EXPECT_EQ(f->find("absent"), nullptr);
  EXPECT_TRUE(f->tensors().empty());
}

TEST(GgufFile, ReadsArraysNestedArraysAndEmptyArrays) {
  gguf::writer w;
  w.add_string_array("tokens", {"a", "Ġthe", "", "<|im_end|>"});
  w.add_int32_array("types", {1, -3, 2147483647});
  w.add_value("bools", array_of(value_type::boolean,
                                {scalar(value_type::boolean, 1), scalar(value_type::boolean, 0)}));
  w.add_value("empty", array_of(value_type::uint64, {}));
  w.add_value("nested", array_of(value_type::array,
                                 {array_of(value_type::int16, {scalar(value_type::int16, 0, -7),
                                                               scalar(value_type::int16, 0, 9)}),
                                  array_of(value_type::string, {string_value("x")}),
                                  array_of(value_type::float64, {})}));
  const auto bytes = w.bytes();
  auto f = parse(bytes);
  ASSERT_TRUE(f) << f.error().message;

  auto tokens = f->get_string_array("tokens");
  ASSERT_TRUE(tokens) << tokens.error().message;
  EXPECT_EQ(*tokens, (std::vector<std::string>{"a", "Ġthe", "", "<|im_end|>"}));
  auto types = f->get_int_array("types");
  ASSERT_TRUE(types) << types.error().message;
  EXPECT_EQ(*types, (std::vector<std::int64_t>{1, -3, 2147483647}));

  const value* bools = f->find("bools");
  ASSERT_NE(bools, nullptr);
  EXPECT_EQ(bools->elem_type, value_type::boolean);
  ASSERT_EQ(bools->items.size(), 2u);
  EXPECT_EQ(bools->items[0].u, 1u);
  EXPECT_EQ(bools->items[1].u, 0u);

  const value* empty = f->find("empty");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(empty->type, value_type::array);
  EXPECT_EQ(empty->elem_type, value_type::uint64);
  EXPECT_TRUE(empty->items.empty());

  const value* nested = f->find("nested");
  ASSERT_NE(nested, nullptr);
  EXPECT_EQ(nested->elem_type, value_type::array);
  ASSERT_EQ(nested->items.size(), 3u);
  EXPECT_EQ(nested->items[0].elem_type, value_type::int16);
  ASSERT_EQ(nested->items[0].items.size(), 2u);
  EXPECT_EQ(nested->items[0].items[0].i, -7);
  EXPECT_EQ(nested->items[0].items[1].i, 9);
  ASSERT_EQ(nested->items[1].items.size(), 1u);
  EXPECT_EQ(nested->items[1].items[0].s, "x");
  EXPECT_TRUE(nested->items[2].items.empty());

  // Typed getters refuse the wrong shapes.
  EXPECT_FALSE(f->get_string_array("types"));
  EXPECT_FALSE(f->get_int_array("tokens"));
  EXPECT_EQ(f->get_string_array("absent").error().code, errc::not_found);
}

TEST(GgufFile, GetUintAcceptsAnyUnsignedWidthAndNonNegativeSigned) {
  gguf::writer w;
  w.add_uint32("llama.block_count", 30);
  w.add_uint64("llama.embedding_length", 576);
  w.add_value("small", scalar(value_type::uint8, 9));
  w.add_int32("signed", 3);
  w.add_int32("negative", -1);
  w.add_float32("float", 1.0f);
  w.add_string("text", "30");
  w.add_bool("flag", true);
  w.add_uint64("huge", 0xffffffffffffffffull);
  const auto bytes = w.bytes();
  auto f = parse(bytes);
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ(f->get_uint("llama.block_count").value(), 30u);
  EXPECT_EQ(f->get_uint("llama.embedding_length").value(), 576u);
  EXPECT_EQ(f->get_uint("small").value(), 9u);
  EXPECT_EQ(f->get_uint("signed").value(), 3u);
  EXPECT_EQ(f->get_uint("huge").value(), 0xffffffffffffffffull);
  EXPECT_EQ(f->get_uint("absent", 7).value(), 7u);
  EXPECT_EQ(f->get_uint("llama.block_count", 7).value(), 30u);
  EXPECT_EQ(f->get_uint("absent").error().code, errc::not_found);
  EXPECT_EQ(f->get_uint("negative").error().code, errc::corrupt_data);
  EXPECT_EQ(f->get_uint("float").error().code, errc::corrupt_data);
  EXPECT_EQ(f->get_uint("text").error().code, errc::corrupt_data);
  EXPECT_EQ(f->get_uint("flag").error().code, errc::corrupt_data);
  EXPECT_NE(f->get_uint("negative").error().message.find("negative"), std::string::npos);
}

TEST(GgufFile, GetFloatAndGetString) {
  gguf::writer w;
  w.add_float32("llama.rope.freq_base", 100000.0f);
  w.add_value("f64", scalar(value_type::float64, 0, 0, 2.5));
  w.add_uint32("int", 4);
  w.add_int32("neg", -4);
  w.add_string("name", "llama");
  const auto bytes = w.bytes();
  auto f = parse(bytes);
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ(f->get_float("llama.rope.freq_base", 10000).value(), 100000.0);
  EXPECT_EQ(f->get_float("f64", 0).value(), 2.5);
  EXPECT_EQ(f->get_float("int", 0).value(), 4.0);
  EXPECT_EQ(f->get_float("neg", 0).value(), -4.0);
  EXPECT_EQ(f->get_float("absent", 10000).value(), 10000.0);
  EXPECT_EQ(f->get_float("name", 0).error().code, errc::corrupt_data);
  EXPECT_EQ(f->get_string("name").value(), "llama");
  EXPECT_EQ(f->get_string("int").error().code, errc::corrupt_data);
  EXPECT_EQ(f->get_string("absent").error().code, errc::not_found);
}

TEST(GgufFile, GetIntArrayRefusesValuesBeyondInt64) {
  gguf::writer w;
  w.add_value("a", array_of(value_type::uint64, {scalar(value_type::uint64, 1ull << 63)}));
  const auto bytes = w.bytes();
  auto f = parse(bytes);
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ(f->get_int_array("a").error().code, errc::corrupt_data);
}

// ---- tensors ----------------------------------------------------------------------------------

TEST(GgufFile, ReadsTensorInfosAndPointsAtTheirBytes) {
  gguf::writer w;
  w.add_string("general.architecture", "llama");
  std::vector<float> norm(48);
  for (std::size_t i = 0; i < norm.size(); ++i)
    norm[i] = 0.5f + static_cast<float>(i);
  std::vector<std::byte> q(2 * 3 * 20); // Q4_1 [64, 3]: 2 blocks per row
  for (std::size_t i = 0; i < q.size(); ++i)
    q[i] = static_cast<std::byte>(i * 7 + 1);
  std::vector<std::byte> cube(2 * 3 * 5 * 2 * 2); // F16 [2, 3, 5, 2]
  for (std::size_t i = 0; i < cube.size(); ++i)
    cube[i] = static_cast<std::byte>(255 - i);
  ASSERT_TRUE(w.add_tensor("norm", {48}, gguf::tensor_type::f32, float_bytes(norm)));
  ASSERT_TRUE(w.add_tensor("blk.0.attn_q.weight", {64, 3}, gguf::tensor_type::q4_1, q));
  ASSERT_TRUE(w.add_tensor("cube", {2, 3, 5, 2}, gguf::tensor_type::f16, cube));
  const auto bytes = w.bytes();
  auto f = parse(bytes);
  ASSERT_TRUE(f) << f.error().message;
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->data_offset() % 32, 0u);

  const auto* n = f->tensor("norm");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->name, "norm");
  EXPECT_EQ(n->dims, (std::vector<std::uint64_t>{48}));
  EXPECT_EQ(n->type, gguf::tensor_type::f32);
  EXPECT_EQ(n->offset, 0u);
  EXPECT_EQ(n->num_elements, 48u);
  EXPECT_EQ(n->bytes, 192u);
  EXPECT_EQ(n->rows(), 1u);
  EXPECT_EQ(n->data, bytes.data() + f->data_offset());
  std::vector<float> back(48);
  std::memcpy(back.data(), n->data, 192);
  EXPECT_EQ(back, norm);

  const auto* m = f->tensor("blk.0.attn_q.weight");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->dims, (std::vector<std::uint64_t>{64, 3}));
  EXPECT_EQ(m->type, gguf::tensor_type::q4_1);
  EXPECT_EQ(m->offset, 192u); // 192 is a multiple of 32: no padding after "norm"
  EXPECT_EQ(m->num_elements, 192u);
  EXPECT_EQ(m->bytes, 120u);
  EXPECT_EQ(m->rows(), 3u);
  EXPECT_EQ(std::memcmp(m->data, q.data(), q.size()), 0);

  const auto* c = f->tensor("cube");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->dims, (std::vector<std::uint64_t>{2, 3, 5, 2}));
  EXPECT_EQ(c->offset, 320u); // 192 + align_up(120) = 192 + 128
  EXPECT_EQ(c->rows(), 30u);
  EXPECT_EQ(c->bytes, 120u);
  EXPECT_EQ(std::memcmp(c->data, cube.data(), c->bytes), 0);

  EXPECT_EQ(f->tensor("output.weight"), nullptr);
  EXPECT_EQ(&f->tensors()[1], m); // file order
}

TEST(GgufFile, AlignmentComesFromGeneralAlignment) {
  for (std::uint32_t alignment : {4u, 8u, 64u, 4096u}) {
    gguf::writer w;
    w.add_string("general.architecture", "llama");
    ASSERT_TRUE(w.set_alignment(alignment));
    std::vector<float> a(3, 1.0f), b(5, 2.0f);
    ASSERT_TRUE(w.add_tensor("a", {3}, gguf::tensor_type::f32, float_bytes(a)));
    ASSERT_TRUE(w.add_tensor("b", {5}, gguf::tensor_type::f32, float_bytes(b)));
    const auto bytes = w.bytes();
    auto f = parse(bytes);
    ASSERT_TRUE(f) << alignment << ": " << f.error().message;
    EXPECT_EQ(f->alignment(), alignment);
    EXPECT_EQ(f->data_offset() % alignment, 0u);
    for (const auto& t : f->tensors()) {
      EXPECT_EQ(t.offset % alignment, 0u);
      EXPECT_EQ(static_cast<std::size_t>(t.data - bytes.data()) % alignment, 0u);
    }
    float b0 = 0;
    std::memcpy(&b0, f->tensor("b")->data, 4);
    EXPECT_EQ(b0, 2.0f);
  }
  gguf::writer w;
  EXPECT_FALSE(w.set_alignment(48));
}

TEST(GgufFile, OpenMapsAFileAndReportsMissingOnes) {
  gguf::writer w;
  w.add_uint32("llama.block_count", 2);
  std::vector<float> a(8, 3.0f);
  ASSERT_TRUE(w.add_tensor("a", {8}, gguf::tensor_type::f32, float_bytes(a)));
  const auto path = std::filesystem::temp_directory_path() /
                    ("aeg_gguf_test_" + std::to_string(::getpid()) + ".gguf");
  ASSERT_TRUE(w.write(path.string()));
  {
    auto f = gguf::file::open(path.string());
    ASSERT_TRUE(f) << f.error().message;
    EXPECT_EQ(f->get_uint("llama.block_count").value(), 2u);
    gguf::file moved = std::move(*f); // tensor pointers survive a move
    float x = 0;
    std::memcpy(&x, moved.tensor("a")->data, 4);
    EXPECT_EQ(x, 3.0f);
  }
  std::filesystem::remove(path);
  auto missing = gguf::file::open(path.string());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::not_found);
  EXPECT_NE(missing.error().message.find(path.string()), std::string::npos);
  auto dir = gguf::file::open(std::filesystem::temp_directory_path().string());
  ASSERT_FALSE(dir);
  EXPECT_EQ(dir.error().code, errc::invalid_argument);
}

// ---- the real model ---------------------------------------------------------------------------

TEST(GgufRealModel, SmolLM2MetadataAndTensors) {
  const std::string path = std::string(AEG_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path))
    GTEST_SKIP() << path << " is missing: run scripts/fetch-model to test against the real model";
  auto f = gguf::file::open(path);
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->get_string("general.architecture").value(), "llama");
  EXPECT_EQ(f->get_uint("llama.block_count").value(), 30u);
  EXPECT_EQ(f->get_uint("llama.context_length").value(), 8192u);
  EXPECT_EQ(f->get_uint("llama.embedding_length").value(), 576u);
  EXPECT_EQ(f->get_uint("llama.feed_forward_length").value(), 1536u);
  EXPECT_EQ(f->get_uint("llama.attention.head_count").value(), 9u);
  EXPECT_EQ(f->get_uint("llama.attention.head_count_kv").value(), 3u);
  EXPECT_EQ(f->get_uint("llama.rope.dimension_count").value(), 64u);
  EXPECT_EQ(f->get_uint("llama.vocab_size").value(), 49152u);
  EXPECT_EQ(f->get_uint("general.file_type").value(), 3u);
  EXPECT_EQ(f->get_float("llama.rope.freq_base", 0).value(), 100000.0);
  EXPECT_NEAR(f->get_float("llama.attention.layer_norm_rms_epsilon", 0).value(), 1e-5, 1e-12);
  EXPECT_EQ(f->get_string("tokenizer.ggml.model").value(), "gpt2");
  EXPECT_EQ(f->get_string("tokenizer.ggml.pre").value(), "smollm");
  EXPECT_EQ(f->get_uint("tokenizer.ggml.bos_token_id").value(), 1u);
  EXPECT_EQ(f->get_uint("tokenizer.ggml.eos_token_id").value(), 2u);
  EXPECT_EQ(f->get_uint("tokenizer.ggml.unknown_token_id").value(), 0u);
  EXPECT_EQ(f->get_uint("tokenizer.ggml.padding_token_id").value(), 2u);
  EXPECT_EQ(f->get_string_array("tokenizer.ggml.tokens").value().size(), 49152u);
  EXPECT_EQ(f->get_int_array("tokenizer.ggml.token_type").value().size(), 49152u);
  EXPECT_NE(f->get_string("tokenizer.chat_template").value().find("<|im_start|>"),
            std::string::npos);

  EXPECT_EQ(f->tensors().size(), 272u);
  const auto* embd = f->tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->type, gguf::tensor_type::q8_0);
  EXPECT_EQ(embd->dims, (std::vector<std::uint64_t>{576, 49152}));
  EXPECT_EQ(embd->bytes, 30081024u);
  for (int l = 0; l < 30; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const auto* q = f->tensor(p + "attn_q.weight");
    ASSERT_NE(q, nullptr) << p;
    EXPECT_EQ(q->type, gguf::tensor_type::q4_1);
    EXPECT_EQ(q->dims, (std::vector<std::uint64_t>{576, 576}));
    EXPECT_EQ(q->bytes, 207360u);
    EXPECT_EQ(f->tensor(p + "attn_k.weight")->dims, (std::vector<std::uint64_t>{576, 192}));
    EXPECT_EQ(f->tensor(p + "ffn_down.weight")->dims, (std::vector<std::uint64_t>{1536, 576}));
    EXPECT_EQ(f->tensor(p + "attn_norm.weight")->type, gguf::tensor_type::f32);
  }
  EXPECT_EQ(f->tensor("output.weight"), nullptr); // tied embeddings
  ASSERT_NE(f->tensor("output_norm.weight"), nullptr);
}

} // namespace
