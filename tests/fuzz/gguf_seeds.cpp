#include "tests/fuzz/gguf_seeds.hpp"

#include "kernels/quant.hpp"
#include "models/gguf/file.hpp"
#include "models/gguf/types.hpp"
#include "models/gguf/writer.hpp"
#include "tests/support/gguf_bytes.hpp"
#include "tests/support/tiny_llama.hpp"

namespace aeg::testing {

namespace {

using namespace aeg::models;
using gguf::value;
using gguf::value_type;

value number(value_type t, std::uint64_t u, std::int64_t i, double f) {
  value v;
  v.type = t;
  v.u = u;
  v.i = i;
  v.f = f;
  return v;
}

value array_of(value_type elem, std::vector<value> items) {
  value v;
  v.type = value_type::array;
  v.elem_type = elem;
  v.items = std::move(items);
  return v;
}

std::vector<std::byte> every_value_type() {
  gguf::writer w;
  w.add_value("u8", number(value_type::uint8, 7, 0, 0));
  w.add_value("i8", number(value_type::int8, 0, -7, 0));
  w.add_value("u16", number(value_type::uint16, 700, 0, 0));
  w.add_value("i16", number(value_type::int16, 0, -700, 0));
  w.add_uint32("llama.block_count", 2);
  w.add_int32("i32", -70000);
  w.add_float32("llama.rope.freq_base", 10000.0f);
  w.add_bool("tokenizer.ggml.add_bos_token", true);
  w.add_string("general.architecture", "llama");
  w.add_uint64("u64", 1ull << 40);
  w.add_value("i64", number(value_type::int64, 0, -(1ll << 40), 0));
  w.add_value("f64", number(value_type::float64, 0, 0, 0.1));
  w.add_string_array("tokenizer.ggml.tokens", {"a", "b", "ab"});
  w.add_int32_array("tokenizer.ggml.token_type", {1, 1, 1});
  w.add_value("nested",
              array_of(value_type::array,
                       {array_of(value_type::uint16, {number(value_type::uint16, 1, 0, 0)}),
                        array_of(value_type::boolean, {number(value_type::boolean, 1, 0, 0)})}));
  return w.bytes();
}

std::vector<std::byte> one_tensor_per_type(std::uint32_t alignment) {
  gguf::writer w;
  w.add_string("general.architecture", "llama");
  if (alignment != 32)
    (void)w.set_alignment(alignment);
  using kernels::dtype;
  int k = 0;
  for (auto t : {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0, dtype::q4_1,
                 dtype::q5_0, dtype::q4_k, dtype::q6_k}) {
    const auto& tr = kernels::traits(t);
    std::vector<std::byte> block(tr.block_bytes * (tr.block_elems == 1 ? 32 : 1));
    for (std::size_t i = 0; i < block.size(); ++i)
      block[i] = static_cast<std::byte>((i * 37 + static_cast<std::size_t>(k)) & 0x3b);
    const std::uint64_t n = tr.block_elems == 1 ? 32 : tr.block_elems;
    (void)w.add_tensor("t" + std::to_string(k++) + "." + std::string(tr.name), {n},
                       gguf::to_tensor_type(t), block);
  }
  return w.bytes();
}

} // namespace

std::vector<gguf_seed> gguf_seed_corpus() {
  std::vector<gguf_seed> seeds;
  seeds.push_back({"header_v3.gguf", gguf_bytes().header(3, 0, 0).bytes()});
  seeds.push_back({"header_v2.gguf", gguf_bytes().header(2, 0, 0).bytes()});
  seeds.push_back({"every_value_type.gguf", every_value_type()});
  seeds.push_back({"one_tensor_per_type.gguf", one_tensor_per_type(32)});
  seeds.push_back({"aligned_64.gguf", one_tensor_per_type(64)});
  seeds.push_back({"unsorted_offsets.gguf", gguf_bytes()
                                                .header(3, 3, 1)
                                                .kv_u32("general.alignment", 16)
                                                .tensor("late", {8}, 0, 64)
                                                .tensor("early", {2, 4}, 1, 0)
                                                .tensor("gap", {32}, 8, 128)
                                                .pad(16)
                                                .fill(128 + 34, 0x3c)
                                                .bytes()});

  tiny_llama_spec tied;
  tied.layers = 1;
  tied.dim = 32;
  tied.ffn = 64;
  tied.heads = 2;
  tied.kv_heads = 1;
  tied.extra_merges = 8;
  tied.embed_type = kernels::dtype::q4_0;
  tied.matrix_type = kernels::dtype::q4_0;
  seeds.push_back({"tiny_llama_q4_0.gguf", make_tiny_llama(tied)});
  tiny_llama_spec untied = tied;
  untied.tied_output = false;
  untied.embed_type = kernels::dtype::q8_0;
  untied.matrix_type = kernels::dtype::q5_0;
  untied.seed = 2;
  seeds.push_back({"tiny_llama_q5_0.gguf", make_tiny_llama(untied)});
  return seeds;
}

} // namespace aeg::testing
