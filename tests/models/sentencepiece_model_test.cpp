// Hugging Face folders whose tokenizer is a SentencePiece tokenizer.model (Llama 2, Mistral, Yi
// without tokenizer.json): the models in fixtures/spm, trained by Google's sentencepiece
// (tests/models/sentencepiece_fixtures.py), must tokenize as sentencepiece did, and damaged
// protobufs must be refused with the fault named, never read out of bounds.
#include "gpu/registry.hpp"
#include "models/hf/folder.hpp"
#include "models/hf/sentencepiece_proto.hpp"
#include "models/llama/config.hpp"
#include "models/model_cache.hpp"
#include "models/tokenizer/chat_template.hpp"
#include "models/tokenizer/tokenizer.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

namespace aeg::models {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string spm_fixtures = std::string(AEG_SOURCE_DIR) + "/tests/models/fixtures/spm/";

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A protobuf message written by hand: varints, keys and length-delimited fields.
std::string varint(std::uint64_t v) {
  std::string out;
  for (; v >= 0x80; v >>= 7)
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
  out.push_back(static_cast<char>(v));
  return out;
}
std::string key(std::uint32_t field, std::uint32_t wire) {
  return varint((std::uint64_t{field} << 3) | wire);
}
std::string field(std::uint32_t number, const std::string& bytes) {
  return key(number, 2) + varint(bytes.size()) + bytes;
}
std::string field(std::uint32_t number, std::uint64_t v) {
  return key(number, 0) + varint(v);
}
std::string score(float f) {
  const auto bits = std::bit_cast<std::uint32_t>(f);
  std::string out = key(2, 5);
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
  return out;
}
std::string piece(const std::string& text, float s, std::uint32_t type) {
  return field(1, field(1, text) + score(s) + field(3, type));
}
// A minimal ModelProto as Llama's is set up, with `normalizer` as its normalizer_spec.
std::string model_proto(const std::string& normalizer) {
  return piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3) +
         piece("\xE2\x96\x81", -1, 1) + piece("a", -2, 1) +
         field(2, field(3, std::uint64_t{2}) + field(35, std::uint64_t{1})) + field(3, normalizer);
}
const std::string identity_normalizer =
    field(1, "identity") + field(3, std::uint64_t{1}) + field(4, std::uint64_t{0});

std::string parse_error(const std::string& bytes) {
  auto m = hf::sentencepiece_proto::parse(std::as_bytes(std::span(bytes.data(), bytes.size())),
                                          "tokenizer.model");
  return m ? std::string("(parsed)") : m.error().message;
}

// A safetensors file of F32 tensors with small random values.
std::string safetensors(const std::vector<std::pair<std::string, std::vector<std::size_t>>>& ts) {
  json header = json::object();
  std::string data;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-0.1f, 0.1f);
  for (const auto& [name, shape] : ts) {
    std::size_t n = 1;
    for (auto d : shape)
      n *= d;
    header[name] = {
        {"dtype", "F32"}, {"shape", shape}, {"data_offsets", {data.size(), data.size() + 4 * n}}};
    for (std::size_t i = 0; i < n; ++i) {
      const float v = dist(rng);
      data.append(reinterpret_cast<const char*>(&v), 4);
    }
  }
  auto text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  std::string len(8, '\0');
  const std::uint64_t n = text.size();
  std::memcpy(len.data(), &n, 8);
  return len + text + data;
}

// A tiny llama folder (config.json and model.safetensors for `vocab` tokens) whose tokenizer is
// the fixture `model`.
class SentencePieceFolder : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("aeg-spm-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void make(const std::string& model, std::size_t vocab) {
    constexpr std::size_t dim = 64, kv_dim = 32, ffn = 64; // 2 heads of 32, 1 kv head
    const json config = {{"architectures", {"LlamaForCausalLM"}},
                         {"model_type", "llama"},
                         {"hidden_act", "silu"},
                         {"hidden_size", dim},
                         {"intermediate_size", ffn},
                         {"num_attention_heads", 2},
                         {"num_key_value_heads", 1},
                         {"num_hidden_layers", 1},
                         {"max_position_embeddings", 64},
                         {"rms_norm_eps", 1e-6},
                         {"tie_word_embeddings", true},
                         {"vocab_size", vocab}};
    write_file(dir_ / "config.json", config.dump());
    const std::string l = "model.layers.0.";
    write_file(dir_ / "model.safetensors",
               safetensors({{"model.embed_tokens.weight", {vocab, dim}},
                            {"model.norm.weight", {dim}},
                            {l + "input_layernorm.weight", {dim}},
                            {l + "post_attention_layernorm.weight", {dim}},
                            {l + "self_attn.q_proj.weight", {dim, dim}},
                            {l + "self_attn.k_proj.weight", {kv_dim, dim}},
                            {l + "self_attn.v_proj.weight", {kv_dim, dim}},
                            {l + "self_attn.o_proj.weight", {dim, dim}},
                            {l + "mlp.gate_proj.weight", {ffn, dim}},
                            {l + "mlp.up_proj.weight", {ffn, dim}},
                            {l + "mlp.down_proj.weight", {dim, ffn}}}));
    if (!model.empty())
      fs::copy_file(spm_fixtures + model + ".model", dir_ / "tokenizer.model");
  }

  result<gguf::file> open() { return open_model(dir_.string()); }
  std::string error() {
    auto f = open();
    return f ? std::string("(opened)") : f.error().message;
  }

  fs::path dir_;
};

json expected() {
  std::ifstream in(spm_fixtures + "expected.json");
  return json::parse(in);
}

// Every corpus string gives the ids sentencepiece gave and decodes to what it decoded; the
// folder is a model the runner accepts, its vocabulary padded to config.json's vocab_size.
TEST_F(SentencePieceFolder, TokenizesAsSentencePieceDoes) {
  const auto all = expected().at("models");
  ASSERT_EQ(all.size(), 2u);
  for (const auto& [name, want] : all.items()) {
    SCOPED_TRACE(name);
    const auto pieces = want.at("num_pieces").get<std::size_t>();
    make(name, pieces + 5);
    auto f = open();
    ASSERT_TRUE(f.has_value()) << f.error().to_string();
    auto config = llama_config::from_gguf(*f);
    ASSERT_TRUE(config.has_value()) << config.error().to_string();
    auto tok = tokenizer::from_gguf(*f);
    ASSERT_TRUE(tok.has_value()) << tok.error().to_string();
    EXPECT_EQ(tok->model_name(), "llama");
    EXPECT_EQ(tok->num_tokens(), pieces + 5);
    EXPECT_EQ(tok->kind(static_cast<std::int32_t>(pieces)), token_kind::unused);
    EXPECT_EQ(tok->add_space_prefix(), want.at("settings").at("add_dummy_prefix").get<bool>());
    // No tokenizer_config.json: the special ids are tokenizer.model's own.
    EXPECT_EQ(tok->bos(), want.at("bos_id").get<std::int32_t>());
    EXPECT_EQ(tok->eos(), want.at("eos_id").get<std::int32_t>());
    EXPECT_EQ(tok->unknown(), want.at("unk_id").get<std::int32_t>());
    EXPECT_TRUE(tok->add_bos());
    const auto& rows = want.at("tokenized");
    ASSERT_GT(rows.size(), 100u);
    int wrong = 0;
    for (const auto& row : rows) {
      const auto text = row.at(0).get<std::string>();
      const auto ids = row.at(1).get<std::vector<std::int32_t>>();
      const auto got = tok->encode(text, false);
      if (got != ids && ++wrong <= 5)
        ADD_FAILURE() << "text " << json(text).dump() << ": got " << json(got).dump()
                      << ", sentencepiece " << json(ids).dump();
      EXPECT_EQ(tok->decode(ids), row.at(2).get<std::string>()) << json(text).dump();
      if (text.find("\xE2\x96\x81") == std::string::npos) // a "▁" in the text reads back as " "
        EXPECT_EQ(tok->decode(got), text);
    }
    EXPECT_EQ(wrong, 0) << "of " << rows.size();
    fs::remove(dir_ / "tokenizer.model");
  }
}

// A topology's `models[].hf` folder loads through the model cache like any other.
TEST_F(SentencePieceFolder, LoadsThroughTheModelCache) {
  make("bpe", 1000);
  model_cache cache(*gpu::make_device({.backend = "cpu"}), {});
  auto image =
      cache.add("spm", {dir_.string(), {}, 1}, compute_format::for_backend(gpu::backend_kind::cpu));
  ASSERT_TRUE(image.has_value()) << image.error().to_string();
  EXPECT_EQ(footprint_of(**image).config.vocab_size, 1000u);
}

// tokenizer_config.json names the special tokens and the chat template, and adds tokens, as it
// does for a tokenizer.json folder.
TEST_F(SentencePieceFolder, TokenizerConfigAddsTokensAndTemplate) {
  make("bpe", 1004);
  const json cfg = {{"bos_token", {{"content", "<s>"}, {"special", true}}},
                    {"eos_token", "<|im_end|>"},
                    {"add_bos_token", false},
                    {"chat_template",
                     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                     "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"},
                    {"added_tokens_decoder",
                     {{"1", {{"content", "<s>"}, {"special", true}}},
                      {"1000", {{"content", "<|im_start|>"}, {"special", true}}},
                      {"1001", {{"content", "<|im_end|>"}, {"special", true}}},
                      {"1002", {{"content", "<tool>"}, {"special", false}}}}}};
  write_file(dir_ / "tokenizer_config.json", cfg.dump());
  auto f = open();
  ASSERT_TRUE(f.has_value()) << f.error().to_string();
  auto tok = tokenizer::from_gguf(*f);
  ASSERT_TRUE(tok.has_value()) << tok.error().to_string();
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_EQ(tok->eos(), 1001);
  EXPECT_FALSE(tok->add_bos());
  EXPECT_EQ(tok->kind(1000), token_kind::control);
  EXPECT_EQ(tok->kind(1002), token_kind::user_defined);
  EXPECT_TRUE(tok->is_end_of_generation(1001));
  EXPECT_EQ(tok->encode("<|im_start|>", true), std::vector<std::int32_t>{1000});
  const auto with_tool = tok->encode("a<tool>", false);
  ASSERT_FALSE(with_tool.empty());
  EXPECT_EQ(with_tool.back(), 1002); // user-defined: matched whole even as plain text
  auto tmpl = chat_template::from_gguf(*f);
  ASSERT_TRUE(tmpl.has_value()) << tmpl.error().to_string();
  const std::vector<chat_message> messages{{"user", "hi"}};
  EXPECT_EQ(tmpl->render(messages, false), "<|im_start|>user\nhi<|im_end|>\n");
}

// With both files, tokenizer.json is read (what transformers loads): a damaged tokenizer.model
// beside it does not matter; without tokenizer.json it is read, and its damage named.
TEST_F(SentencePieceFolder, TokenizerJsonIsPreferred) {
  fs::remove_all(dir_);
  fs::copy(std::string(AEG_SOURCE_DIR) + "/tests/models/fixtures/llama-tiny-hf", dir_);
  write_file(dir_ / "tokenizer.model", "\x0a\xff");
  EXPECT_EQ(error(), "(opened)");
  fs::remove(dir_ / "tokenizer.json");
  EXPECT_NE(error().find("tokenizer.model is not a valid SentencePiece model"), std::string::npos)
      << error();
  fs::remove(dir_ / "tokenizer.model");
  EXPECT_NE(error().find("no tokenizer.json and no tokenizer.model"), std::string::npos) << error();
}

TEST_F(SentencePieceFolder, AUnigramModelIsRefusedByName) {
  make("unigram", 700);
  EXPECT_NE(error().find("model type is 'unigram'"), std::string::npos) << error();
  EXPECT_NE(error().find("tokenizer.model"), std::string::npos) << error();
}

TEST_F(SentencePieceFolder, TooManyPiecesForTheModelIsRefused) {
  make("bpe", 999);
  EXPECT_NE(error().find("1000 pieces, more than config.json's vocab_size 999"), std::string::npos)
      << error();
}

// What the tokenizer cannot follow is refused, naming the normalizer setting.
TEST_F(SentencePieceFolder, NormalizersItCannotFollowAreRefusedByName) {
  make("", 8);
  write_file(dir_ / "tokenizer.model", model_proto(identity_normalizer));
  EXPECT_EQ(error(), "(opened)");
  write_file(dir_ / "tokenizer.model",
             model_proto(field(1, "nmt_nfkc") + field(2, std::string(64, 'x')) +
                         field(4, std::uint64_t{0})));
  EXPECT_NE(error().find("normalizer 'nmt_nfkc'"), std::string::npos) << error();
  write_file(dir_ / "tokenizer.model", model_proto(field(1, "identity"))); // folding by default
  EXPECT_NE(error().find("remove_extra_whitespaces"), std::string::npos) << error();
  write_file(dir_ / "tokenizer.model",
             model_proto(identity_normalizer + field(5, std::uint64_t{0})));
  EXPECT_NE(error().find("escape_whitespaces"), std::string::npos) << error();
}

// Faults of the wire format are named with where they are.
TEST(SentencePieceProto, MalformedWireFormatIsNamed) {
  const std::string good = model_proto(identity_normalizer);
  EXPECT_EQ(parse_error(good), "(parsed)");
  auto contains = [](const std::string& error, const std::string& what) {
    EXPECT_NE(error.find(what), std::string::npos) << error;
    EXPECT_NE(error.find("tokenizer.model is not a valid SentencePiece model"), std::string::npos);
  };
  contains(parse_error("\x0a\x85"), "varint is cut short");
  contains(parse_error(good + "\x0a"), "varint is cut short");
  contains(parse_error(std::string(11, '\xff')), "over 10 bytes");
  contains(parse_error(field(1, std::uint64_t{5})), "field 1 (pieces) has wire type 0, not 2");
  contains(parse_error(field(1, key(2, 0) + varint(3))), "field 2 (score) has wire type 0");
  contains(parse_error(field(1, key(2, 0) + varint(3))), "(in pieces[0])");
  contains(parse_error(good + key(1, 2) + varint(40) + "abc"), "runs past the end");
  contains(parse_error(field(1, key(1, 2) + varint(9) + "ab")), "runs past the end");
  contains(parse_error(key(7, 3)), "wire type 3");
  contains(parse_error(good + key(9, 5) + "ab"), "4-byte field is cut short");
  contains(parse_error(good + key(9, 1) + "abcd"), "8-byte field is cut short");
  contains(parse_error(piece("a", 0, 9)), "piece type 9");
  contains(parse_error(""), "no vocabulary pieces");
  contains(parse_error(piece("a", 0, 1) + field(2, field(3, std::uint64_t{7}))), "model_type 7");
  // Fields the runtime does not read are skipped whatever their wire type.
  EXPECT_EQ(parse_error(good + field(4, "self test") + key(200, 1) + "12345678" +
                        field(2, field(7, "text") + key(10, 5) + "abcd")),
            "(parsed)");
}

// Negative int32s (pad_id -1) come as 10-byte varints; unset fields take the .proto defaults.
TEST(SentencePieceProto, ReadsTheFieldsAndDefaults) {
  const auto bytes =
      piece("a", 0.5f, 1) + field(2, field(43, ~std::uint64_t{0}) + field(41, std::uint64_t{7}) +
                                         field(3, std::uint64_t{2}));
  auto m =
      hf::sentencepiece_proto::parse(std::as_bytes(std::span(bytes.data(), bytes.size())), "x");
  ASSERT_TRUE(m.has_value()) << m.error().message;
  ASSERT_EQ(m->pieces.size(), 1u);
  EXPECT_EQ(m->pieces[0].text, "a");
  EXPECT_EQ(m->pieces[0].score, 0.5f);
  EXPECT_EQ(m->pad_id, -1);
  EXPECT_EQ(m->bos_id, 7);
  EXPECT_EQ(m->eos_id, 2);
  EXPECT_EQ(m->model_type, hf::sentencepiece_proto::model_kind::bpe);
  EXPECT_TRUE(m->add_dummy_prefix);
  EXPECT_TRUE(m->remove_extra_whitespaces);
  EXPECT_FALSE(m->byte_fallback);
}

// Every truncation and many single-byte changes of a real tokenizer.model are parsed or refused
// without reading outside the bytes (the sanitizer builds check); cut inside a piece, refused.
TEST(SentencePieceProto, DamagedFilesAreRefusedNotRead) {
  const auto file = read_file(spm_fixtures + "bpe.model");
  ASSERT_GT(file.size(), 1000u);
  std::size_t refused = 0, parsed = 0;
  auto check = [&](const std::string& bytes) {
    auto m =
        hf::sentencepiece_proto::parse(std::as_bytes(std::span(bytes.data(), bytes.size())), "x");
    if (m) {
      ++parsed;
      for (const auto& p : m->pieces)
        EXPECT_LE(p.text.size(), bytes.size());
    } else {
      ++refused;
      EXPECT_NE(m.error().message.find(" at byte "), std::string::npos) << m.error().message;
    }
  };
  for (std::size_t n = 0; n < file.size(); n += 3)
    check(file.substr(0, n));
  for (std::size_t i = 0; i < file.size(); i += 11)
    for (const char c : {'\x00', '\x02', '\x05', '\x7f', '\x80', '\xff'}) {
      auto bytes = file;
      bytes[i] = c;
      check(bytes);
    }
  EXPECT_GT(refused, file.size() / 6);
  EXPECT_GT(parsed, 0u);
}

} // namespace
} // namespace aeg::models
