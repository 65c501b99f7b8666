// Hugging Face model folders: the tokenizer and chat template read from tokenizer.json and its
// configs against what Hugging Face's own tokenizer made of the same text (recorded by
// tests/models/family_fixtures.py), and the refusals of folders this runtime cannot run. The
// forward pass of each folder against transformers is ModelFamilies in llama_runner_test.
#include "models/hf/folder.hpp"
#include "models/hf/safetensors.hpp"
#include "models/llama/config.hpp"
#include "models/tokenizer/chat_template.hpp"
#include "models/tokenizer/tokenizer.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace aeg::models {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string fixtures = std::string(AEG_SOURCE_DIR) + "/tests/models/fixtures/";

json expected(const std::string& family) {
  std::ifstream in(fixtures + family + "-tiny.json");
  return json::parse(in);
}

class HfFolder : public ::testing::TestWithParam<std::string> {};

// Every corpus text (prose, code, whitespace runs, CJK, emoji, look-alikes of special tokens)
// gives the ids the folder's Hugging Face tokenizer gave, beginning-of-text token included.
TEST_P(HfFolder, TokenizesAsHuggingFaceDoes) {
  auto f = open_model(fixtures + GetParam() + "-tiny-hf");
  ASSERT_TRUE(f.has_value()) << f.error().to_string();
  auto tok = tokenizer::from_gguf(*f);
  ASSERT_TRUE(tok.has_value()) << tok.error().to_string();
  const auto want = expected(GetParam()).at("hf").at("tokenized");
  ASSERT_GT(want.size(), 100u);
  int wrong = 0;
  for (const auto& item : want) {
    const auto text = item.at(0).get<std::string>();
    const auto ids = item.at(1).get<std::vector<std::int32_t>>();
    auto got = tok->encode(text, true);
    if (tok->add_bos())
      got.insert(got.begin(), *tok->bos());
    if (got != ids && ++wrong <= 5)
      ADD_FAILURE() << "text " << json(text).dump() << ": got " << json(got).dump()
                    << ", Hugging Face " << json(ids).dump();
    if (got == ids)
      EXPECT_EQ(tok->decode(tok->add_bos() ? std::span(got).subspan(1) : std::span(got), true),
                text);
  }
  EXPECT_EQ(wrong, 0) << "of " << want.size();
}

// The chat template comes from chat_template.jinja and renders what transformers rendered.
TEST_P(HfFolder, RendersTheChatTemplateAsTransformersDoes) {
  auto f = open_model(fixtures + GetParam() + "-tiny-hf");
  ASSERT_TRUE(f.has_value()) << f.error().to_string();
  auto tmpl = chat_template::from_gguf(*f);
  ASSERT_TRUE(tmpl.has_value()) << tmpl.error().to_string();
  const auto chat = expected(GetParam()).at("hf").at("chat");
  std::vector<chat_message> messages;
  for (const auto& m : chat.at("messages"))
    messages.push_back({m.at("role"), m.at("content")});
  EXPECT_EQ(tmpl->render(messages, true), chat.at("text").get<std::string>());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfFolder, ::testing::Values("llama", "llama3", "qwen2", "qwen3"),
                         [](const auto& info) { return info.param; });

// A family's hyperparameters read from config.json are those of its GGUF.
TEST(HfFolder, ConfigMatchesTheGgufOfTheSameModel) {
  for (const std::string family : {"llama", "llama3", "qwen2", "qwen3"}) {
    auto folder = open_model(fixtures + family + "-tiny-hf");
    auto file = open_model(fixtures + family + "-tiny.gguf");
    ASSERT_TRUE(folder && file) << family;
    auto a = llama_config::from_gguf(*folder), b = llama_config::from_gguf(*file);
    ASSERT_TRUE(a.has_value()) << a.error().to_string();
    ASSERT_TRUE(b.has_value()) << b.error().to_string();
    EXPECT_EQ(a->family, b->family) << family;
    EXPECT_EQ(a->num_parameters(), b->num_parameters()) << family;
    EXPECT_EQ(a->head_dim, b->head_dim) << family;
    EXPECT_EQ(a->tied_output, b->tied_output) << family;
    EXPECT_EQ(a->rope_freq_factors, b->rope_freq_factors) << family;
    EXPECT_FLOAT_EQ(a->rope_base, b->rope_base) << family;
    EXPECT_EQ(a->name, family + "-tiny-hf");
    // Hugging Face keeps every family's q/k rows in halves order, reordered when the image is
    // built; the GGUF of a llama has them permuted already.
    EXPECT_TRUE(a->rope_halves()) << family;
    EXPECT_EQ(b->rope_halves(), family.starts_with("qwen")) << family;
  }
  // Llama 3.1 scaling: the per-pair factors computed from config.json are llama.cpp's.
  auto folder = open_model(fixtures + "llama3-tiny-hf");
  auto file = open_model(fixtures + "llama3-tiny.gguf");
  const auto* x = folder->tensor("rope_freqs.weight");
  const auto* y = file->tensor("rope_freqs.weight");
  ASSERT_TRUE(x && y);
  ASSERT_EQ(x->num_elements, y->num_elements);
  for (std::size_t i = 0; i < x->num_elements; ++i)
    EXPECT_NEAR(reinterpret_cast<const float*>(x->data)[i],
                reinterpret_cast<const float*>(y->data)[i], 1e-5f)
        << i;
}

// A copy of a fixture folder that a test may damage.
class DamagedFolder : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("aeg-hf-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::copy(fixtures + "qwen2-tiny-hf", dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  json read(const std::string& name) {
    std::ifstream in(dir_ / name);
    return json::parse(in);
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary | std::ios::trunc) << text;
  }
  std::string error() {
    auto f = open_model(dir_.string());
    return f ? std::string("(opened)") : f.error().message;
  }

  fs::path dir_;
};

TEST_F(DamagedFolder, TheUndamagedCopyOpens) {
  EXPECT_EQ(error(), "(opened)");
}

TEST_F(DamagedFolder, AFolderWithoutConfigIsNotAModel) {
  fs::remove(dir_ / "config.json");
  EXPECT_NE(error().find("without config.json"), std::string::npos) << error();
}

// Mistral 7B v0.1 attends over a sliding window of 4096 keys: served with the window as its
// context length, inside which full attention is the same thing.
TEST_F(DamagedFolder, AMistralSlidingWindowBoundsTheContext) {
  fs::remove_all(dir_);
  fs::copy(fixtures + "llama-tiny-hf", dir_);
  auto cfg = read("config.json");
  cfg["model_type"] = "mistral";
  cfg["architectures"] = {"MistralForCausalLM"};
  cfg["use_sliding_window"] = nullptr;
  cfg["sliding_window"] = 128;
  cfg["attention_bias"] = false;
  write("config.json", cfg.dump());
  auto f = open_model(dir_.string());
  ASSERT_TRUE(f.has_value()) << f.error().to_string();
  auto c = llama_config::from_gguf(*f);
  ASSERT_TRUE(c.has_value()) << c.error().to_string();
  EXPECT_EQ(c->sliding_window, 128u);
  EXPECT_EQ(c->context_length, 128u);
}

TEST_F(DamagedFolder, AnotherArchitectureIsRefusedByName) {
  auto cfg = read("config.json");
  cfg["model_type"] = "gemma2";
  cfg["architectures"] = {"Gemma2ForCausalLM"};
  write("config.json", cfg.dump());
  EXPECT_NE(error().find("'gemma2'"), std::string::npos) << error();
  EXPECT_NE(error().find("qwen2"), std::string::npos) << error();
}

TEST_F(DamagedFolder, UnsupportedRopeScalingAndMissingFieldsAreNamed) {
  auto cfg = read("config.json");
  cfg["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  write("config.json", cfg.dump());
  EXPECT_NE(error().find("'yarn'"), std::string::npos) << error();
  cfg = read("config.json");
  cfg.erase("rope_parameters");
  cfg["hidden_size"] = "64";
  write("config.json", cfg.dump());
  EXPECT_NE(error().find("'hidden_size'"), std::string::npos) << error();
  write("config.json", "{not json");
  EXPECT_NE(error().find("not valid JSON"), std::string::npos) << error();
}

TEST_F(DamagedFolder, WeightsMustBeSafetensorsOfFloatTypes) {
  fs::rename(dir_ / "model.safetensors", dir_ / "pytorch_model.bin");
  EXPECT_NE(error().find("safetensors"), std::string::npos) << error();
  fs::rename(dir_ / "pytorch_model.bin", dir_ / "model.safetensors");

  // The header says F8_E4M3 for a tensor of one-byte elements: refused by name.
  std::ifstream in(dir_ / "model.safetensors", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::uint64_t len = 0;
  std::memcpy(&len, bytes.data(), 8);
  auto header = json::parse(bytes.substr(8, len));
  auto& t = header["model.norm.weight"];
  const auto begin = t["data_offsets"][0].get<std::uint64_t>();
  t["dtype"] = "F8_E4M3"; // the same bytes, as twice as many one-byte elements
  t["shape"] = {64 * 2};
  t["data_offsets"] = {begin, begin + 64 * 2};
  header.erase("__metadata__");
  auto text = header.dump();
  ASSERT_LE(text.size(), len);
  text.resize(len, ' '); // same length, so the data stays where it was
  write("model.safetensors", bytes.substr(0, 8) + text + bytes.substr(8 + len));
  EXPECT_NE(error().find("F8_E4M3"), std::string::npos) << error();
}

TEST_F(DamagedFolder, ADamagedSafetensorsFileIsRefusedNotRead) {
  std::ifstream in(dir_ / "model.safetensors", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  for (const std::uint64_t bad_len : {std::uint64_t{1} << 40, bytes.size() - 7, std::uint64_t{3}}) {
    auto copy = bytes;
    std::memcpy(copy.data(), &bad_len, 8);
    write("model.safetensors", copy);
    EXPECT_NE(error().find("damaged"), std::string::npos) << bad_len << ": " << error();
  }
  write("model.safetensors", bytes.substr(0, bytes.size() - 100)); // data cut short
  EXPECT_NE(error().find("outside the file"), std::string::npos) << error();
  write("model.safetensors", "");
  EXPECT_NE(error().find("damaged"), std::string::npos) << error();
}

// A tensor the family does not have would be ignored by the forward pass: refused instead.
TEST_F(DamagedFolder, ATensorTheFamilyLacksIsRefused) {
  auto cfg = read("config.json");
  cfg["model_type"] = "qwen3"; // qwen2's q/k/v biases are not part of a qwen3
  write("config.json", cfg.dump());
  EXPECT_NE(error().find("_proj.bias' is not part of a qwen3 model"), std::string::npos) << error();
  EXPECT_NE(error().find("qwen3"), std::string::npos) << error();
}

// Every single-byte change to a header, and every truncation, is parsed without reading outside
// the file (the sanitizer builds check) and is either refused or describes tensors inside it.
TEST(Safetensors, DamagedHeadersNeverReadOutsideTheFile) {
  std::ifstream in(fixtures + "qwen2-tiny-hf/model.safetensors", std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), {});
  std::uint64_t len = 0;
  std::memcpy(&len, file.data(), 8);
  const std::string tweaks = "\"{}[],:0123456789 \x00\xff";
  std::size_t parsed = 0, refused = 0;
  auto check = [&](const std::string& bytes) {
    std::vector<std::byte> copy(bytes.size());
    if (!bytes.empty())
      std::memcpy(copy.data(), bytes.data(), bytes.size());
    auto f = hf::safetensors_file::parse(copy, nullptr, "x");
    if (!f) {
      ++refused;
      EXPECT_NE(f.error().message.find("damaged"), std::string::npos) << f.error().message;
      return;
    }
    ++parsed;
    for (const auto& t : f->tensors()) {
      EXPECT_GE(t.bytes.data(), copy.data() + 8);
      EXPECT_LE(t.bytes.data() + t.bytes.size(), copy.data() + copy.size());
    }
  };
  for (std::size_t i = 0; i < 8 + len; i += 7)
    for (char c : tweaks) {
      auto bytes = file;
      bytes[i] = c;
      check(bytes);
    }
  for (std::size_t n = 0; n < 8 + len + 64; n += 5)
    check(file.substr(0, n));
  EXPECT_GT(parsed, 0u);
  EXPECT_GT(refused, 0u);
}

TEST_F(DamagedFolder, AnUnknownTensorOrTokenizerIsRefusedByName) {
  auto tj = read("tokenizer.json");
  tj["model"]["type"] = "Unigram";
  write("tokenizer.json", tj.dump());
  EXPECT_NE(error().find("'Unigram'"), std::string::npos) << error();
  tj["model"]["type"] = "BPE";
  tj["pre_tokenizer"] = {{"type", "Whitespace"}};
  write("tokenizer.json", tj.dump());
  EXPECT_NE(error().find("Whitespace"), std::string::npos) << error();
  fs::remove(dir_ / "tokenizer.json");
  EXPECT_NE(error().find("no tokenizer.json"), std::string::npos) << error();
}

} // namespace
} // namespace aeg::models
