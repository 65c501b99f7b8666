#include "kernels/quant.hpp"
#include "models/gguf/file.hpp"
#include "models/gguf/types.hpp"
#include "tests/support/tiny_llama.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

using namespace aeg;
using namespace aeg::models;
using aeg::testing::tiny_llama_spec;
using kernels::dtype;

using dims_t = std::vector<std::uint64_t>;

// The file points into `bytes`: keep them alive (no temporaries).
gguf::file parse_ok(std::vector<std::byte>&&) = delete;
gguf::file parse_ok(const std::vector<std::byte>& bytes) {
  auto f = gguf::file::parse(std::span<const std::byte>(bytes));
  EXPECT_TRUE(f) << f.error().message;
  if (!f)
    std::abort();
  return std::move(*f);
}

// Every tensor of a spec: name, dims, type.
void expect_layout(const gguf::file& f, const tiny_llama_spec& s) {
  const std::uint64_t vocab = aeg::testing::tiny_llama_vocab_size(s);
  const std::uint64_t head_dim = s.dim / s.heads, kv = s.kv_heads * head_dim;
  const auto mt = gguf::to_tensor_type(s.matrix_type), et = gguf::to_tensor_type(s.embed_type);
  auto expect = [&](const std::string& name, dims_t dims, gguf::tensor_type type) {
    const auto* t = f.tensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->dims, dims) << name;
    EXPECT_EQ(t->type, type) << name;
  };
  expect("token_embd.weight", {s.dim, vocab}, et);
  for (std::size_t l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    expect(p + "attn_norm.weight", {s.dim}, gguf::tensor_type::f32);
    expect(p + "ffn_norm.weight", {s.dim}, gguf::tensor_type::f32);
    expect(p + "attn_q.weight", {s.dim, s.heads * head_dim}, mt);
    expect(p + "attn_k.weight", {s.dim, kv}, mt);
    expect(p + "attn_v.weight", {s.dim, kv}, mt);
    expect(p + "attn_output.weight", {s.heads * head_dim, s.dim}, mt);
    expect(p + "ffn_gate.weight", {s.dim, s.ffn}, mt);
    expect(p + "ffn_up.weight", {s.dim, s.ffn}, mt);
    expect(p + "ffn_down.weight", {s.ffn, s.dim}, mt);
  }
  expect("output_norm.weight", {s.dim}, gguf::tensor_type::f32);
  if (s.tied_output)
    EXPECT_EQ(f.tensor("output.weight"), nullptr);
  else
    expect("output.weight", {s.dim, vocab}, et);
  EXPECT_EQ(f.tensors().size(), 2 + 9 * s.layers + (s.tied_output ? 0 : 1));
}

struct stats {
  double mean = 0, std = 0;
  bool finite = true;
};

stats stats_of(const gguf::tensor_info& t) {
  std::vector<float> x(t.num_elements);
  kernels::dequantize_row(gguf::to_dtype(t.type), t.data, x.data(), x.size());
  stats s;
  double sum = 0, sq = 0;
  for (float v : x) {
    s.finite = s.finite && std::isfinite(v);
    sum += v;
    sq += static_cast<double>(v) * v;
  }
  s.mean = sum / static_cast<double>(x.size());
  s.std = std::sqrt(sq / static_cast<double>(x.size()) - s.mean * s.mean);
  return s;
}

TEST(TinyLlama, HasSmolLM2sMetadata) {
  const tiny_llama_spec spec;
  const auto bytes = aeg::testing::make_tiny_llama(spec);
  const auto f = parse_ok(bytes);
  EXPECT_EQ(f.get_string("general.architecture").value(), "llama");
  EXPECT_EQ(f.get_uint("llama.block_count").value(), 2u);
  EXPECT_EQ(f.get_uint("llama.context_length").value(), 512u);
  EXPECT_EQ(f.get_uint("llama.embedding_length").value(), 64u);
  EXPECT_EQ(f.get_uint("llama.feed_forward_length").value(), 128u);
  EXPECT_EQ(f.get_uint("llama.attention.head_count").value(), 4u);
  EXPECT_EQ(f.get_uint("llama.attention.head_count_kv").value(), 2u);
  EXPECT_EQ(f.get_uint("llama.attention.key_length").value(), 16u);
  EXPECT_EQ(f.get_uint("llama.attention.value_length").value(), 16u);
  EXPECT_EQ(f.get_uint("llama.rope.dimension_count").value(), 16u);
  EXPECT_EQ(f.get_uint("llama.vocab_size").value(), 3u + 256u + 64u);
  EXPECT_EQ(f.get_float("llama.rope.freq_base", 0).value(), 10000.0);
  EXPECT_FLOAT_EQ(
      static_cast<float>(f.get_float("llama.attention.layer_norm_rms_epsilon", 0).value()), 1e-5f);
  EXPECT_EQ(f.find("llama.rope.freq_base")->type, gguf::value_type::float32);
  EXPECT_EQ(f.find("llama.block_count")->type, gguf::value_type::uint32);

  EXPECT_EQ(f.get_string("tokenizer.ggml.model").value(), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre").value(), "smollm");
  EXPECT_EQ(f.get_uint("tokenizer.ggml.bos_token_id").value(), 1u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.eos_token_id").value(), 2u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.unknown_token_id").value(), 0u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.padding_token_id").value(), 2u);
  const auto* add_bos = f.find("tokenizer.ggml.add_bos_token");
  ASSERT_NE(add_bos, nullptr);
  EXPECT_EQ(add_bos->type, gguf::value_type::boolean);
  EXPECT_EQ(add_bos->u, 0u);
  const auto tmpl = f.get_string("tokenizer.chat_template").value();
  EXPECT_EQ(tmpl.rfind("{% for message in messages %}", 0), 0u);
  EXPECT_NE(tmpl.find("You are a helpful AI assistant named SmolLM, trained by Hugging Face"
                      "<|im_end|>\n"),
            std::string::npos);
  EXPECT_NE(tmpl.find("{{ '<|im_start|>assistant\n' }}{% endif %}"), std::string::npos);
}

TEST(TinyLlama, VocabularyIsAValidByteLevelBpe) {
  tiny_llama_spec spec;
  spec.extra_merges = 400; // past SmolLM2's list, into the made-up merges
  const auto bytes = aeg::testing::make_tiny_llama(spec);
  const auto f = parse_ok(bytes);
  const auto tokens = f.get_string_array("tokenizer.ggml.tokens").value();
  const auto types = f.get_int_array("tokenizer.ggml.token_type").value();
  const auto merges = f.get_string_array("tokenizer.ggml.merges").value();
  ASSERT_EQ(tokens.size(), 3u + 256u + 400u);
  ASSERT_EQ(types.size(), tokens.size());
  ASSERT_EQ(merges.size(), 400u);
  EXPECT_EQ(tokens[0], "<|endoftext|>");
  EXPECT_EQ(tokens[1], "<|im_start|>");
  EXPECT_EQ(tokens[2], "<|im_end|>");
  EXPECT_EQ(types[0], 3);
  EXPECT_EQ(types[2], 3);
  EXPECT_EQ(tokens[3], "!");       // byte 0x21, the first printable one
  EXPECT_EQ(tokens[3 + 255], "Ń"); // U+0143, the last stand-in (byte 0xad)
  for (std::size_t i = 3; i < tokens.size(); ++i)
    EXPECT_EQ(types[i], 1) << tokens[i];
  EXPECT_EQ(merges[0], "Ġ t");
  EXPECT_EQ(merges[8], "Ġt he");
  EXPECT_EQ(tokens[3 + 256], "Ġt");
  EXPECT_EQ(tokens[3 + 256 + 8], "Ġthe");

  const std::set<std::string> unique(tokens.begin(), tokens.end());
  EXPECT_EQ(unique.size(), tokens.size()) << "duplicate tokens";
  std::set<std::string> before(tokens.begin(), tokens.begin() + 3 + 256);
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const auto space = merges[i].find(' ', 1);
    ASSERT_NE(space, std::string::npos) << merges[i];
    const std::string left = merges[i].substr(0, space), right = merges[i].substr(space + 1);
    EXPECT_TRUE(before.count(left) && before.count(right)) << "merge " << i << " " << merges[i];
    EXPECT_EQ(tokens[3 + 256 + i], left + right); // token of merge i follows the bytes in order
    before.insert(left + right);
  }
}

TEST(TinyLlama, DefaultSpecHasSmolLM2sTensorLayout) {
  const tiny_llama_spec spec;
  const auto bytes = aeg::testing::make_tiny_llama(spec);
  const auto f = parse_ok(bytes);
  expect_layout(f, spec);
  EXPECT_EQ(f.tensor("token_embd.weight")->type, gguf::tensor_type::q8_0);
  EXPECT_EQ(f.tensor("blk.0.attn_q.weight")->type, gguf::tensor_type::q4_1);
}

TEST(TinyLlama, UntiedOutputAddsOutputWeight) {
  tiny_llama_spec spec;
  spec.tied_output = false;
  spec.layers = 1;
  const auto bytes = aeg::testing::make_tiny_llama(spec);
  expect_layout(parse_ok(bytes), spec);
}

TEST(TinyLlama, EveryTypeMakesWellConditionedWeights) {
  for (auto t : {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0, dtype::q4_1,
                 dtype::q5_0, dtype::q4_k, dtype::q6_k}) {
    SCOPED_TRACE(std::string(kernels::traits(t).name));
    tiny_llama_spec spec;
    spec.layers = 1;
    spec.dim = 256; // K-quant rows are multiples of 256
    spec.ffn = 512;
    spec.heads = 4;
    spec.kv_heads = 1;
    spec.embed_type = t;
    spec.matrix_type = t;
    spec.tied_output = false;
    const auto bytes = aeg::testing::make_tiny_llama(spec);
    const auto f = parse_ok(bytes);
    expect_layout(f, spec);
    for (const auto& ti : f.tensors()) {
      const auto st = stats_of(ti);
      EXPECT_TRUE(st.finite) << ti.name;
      if (ti.name.find("norm") != std::string::npos) {
        EXPECT_NEAR(st.mean, 1.0, 0.02) << ti.name;
        EXPECT_LT(st.std, 0.1) << ti.name;
      } else {
        EXPECT_NEAR(st.mean, 0.0, 0.01) << ti.name;
        EXPECT_GT(st.std, 0.01) << ti.name;
        EXPECT_LT(st.std, 0.1) << ti.name;
      }
    }
  }
}

TEST(TinyLlama, SameSeedSameBytesDifferentSeedsDiffer) {
  tiny_llama_spec a;
  const auto first = aeg::testing::make_tiny_llama(a);
  EXPECT_EQ(first, aeg::testing::make_tiny_llama(a));
  tiny_llama_spec b = a;
  b.seed = 2;
  const auto other = aeg::testing::make_tiny_llama(b);
  ASSERT_EQ(other.size(), first.size()); // same layout...
  EXPECT_NE(other, first);               // ...other weights
  const auto fa = parse_ok(first), fb = parse_ok(other);
  for (const auto& ta : fa.tensors()) {
    const auto* tb = fb.tensor(ta.name);
    ASSERT_NE(tb, nullptr);
    EXPECT_NE(std::memcmp(ta.data, tb->data, ta.bytes), 0) << ta.name << " did not change";
  }
}

TEST(TinyLlama, BadSpecsSayWhatIsWrong) {
  auto message = [](tiny_llama_spec s) {
    auto r = aeg::testing::build_tiny_llama(s);
    EXPECT_FALSE(r);
    return r ? std::string() : r.error().message;
  };
  tiny_llama_spec k;
  k.matrix_type = dtype::q4_k;
  EXPECT_NE(message(k).find("multiples of 256"), std::string::npos);
  tiny_llama_spec e;
  e.embed_type = dtype::q6_k;
  EXPECT_NE(message(e).find("token_embd"), std::string::npos);
  tiny_llama_spec h;
  h.heads = 5;
  EXPECT_NE(message(h).find("heads"), std::string::npos);
  tiny_llama_spec g;
  g.kv_heads = 3;
  EXPECT_NE(message(g).find("kv_heads"), std::string::npos);
  tiny_llama_spec f;
  f.ffn = 100;
  EXPECT_NE(message(f).find("ffn"), std::string::npos);
}

TEST(TinyLlama, WriteTinyLlamaWritesAFileThatOpens) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("aeg_tiny_llama_" + std::to_string(::getpid()) + ".gguf");
  tiny_llama_spec spec;
  spec.pre = "gpt-2";
  ASSERT_TRUE(aeg::testing::write_tiny_llama(spec, path.string()));
  {
    auto f = gguf::file::open(path.string());
    ASSERT_TRUE(f) << f.error().message;
    EXPECT_EQ(f->get_string("tokenizer.ggml.pre").value(), "gpt-2");
    expect_layout(*f, spec);
  }
  std::filesystem::remove(path);
  EXPECT_FALSE(aeg::testing::write_tiny_llama(spec, "/nonexistent-dir/x.gguf"));
}

} // namespace
