#include "models/hf/folder.hpp"

#include "models/hf/json_file.hpp"
#include "models/hf/safetensors.hpp"
#include "models/llama/config.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <numbers>
#include <set>

namespace aeg::models {

namespace hf {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using gguf::value;

// The families' tensor names inside a layer ("model.layers.N." + HF name → "blk.N." + GGUF).
constexpr std::pair<std::string_view, std::string_view> layer_tensors[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

// The GGUF name of a Hugging Face tensor; empty for one the families do not have.
std::string gguf_name(const std::string& name) {
  if (name == "model.embed_tokens.weight")
    return "token_embd.weight";
  if (name == "model.norm.weight")
    return "output_norm.weight";
  if (name == "lm_head.weight")
    return "output.weight";
  constexpr std::string_view prefix = "model.layers.";
  if (!name.starts_with(prefix))
    return {};
  const auto dot = name.find('.', prefix.size());
  const auto layer = name.substr(prefix.size(), dot - prefix.size());
  if (dot == std::string::npos || layer.empty() ||
      !std::all_of(layer.begin(), layer.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return {};
  const auto rest = std::string_view(name).substr(dot + 1);
  for (const auto& [from, to] : layer_tensors)
    if (rest == from)
      return "blk." + layer + "." + std::string(to);
  return {};
}

// Whether a family's forward pass uses the tensor: q/k/v biases are qwen2's, q/k norms qwen3's.
bool family_has(std::string_view arch, std::string_view name) {
  if (name.ends_with(".bias"))
    return arch == "qwen2";
  if (name.ends_with("attn_q_norm.weight") || name.ends_with("attn_k_norm.weight"))
    return arch == "qwen3";
  return true;
}

struct architecture {
  std::string_view model_type, gguf_arch;
};
constexpr architecture architectures[] = {
    {"llama", "llama"}, {"mistral", "llama"}, {"qwen2", "qwen2"}, {"qwen3", "qwen3"}};

// What the tensors of one folder rest on: the mapped shards and the converted copies.
struct folder_memory {
  std::vector<std::shared_ptr<const void>> maps;
  std::vector<std::vector<std::byte>> owned;
};

// The hyperparameters `llama_config::from_gguf` reads, from config.json.
struct hyperparameters {
  std::string arch;
  std::uint64_t heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  bool tied = false;
  double rope_base = 10000;
  std::optional<json> llama3_scaling; ///< rope_type "llama3": its parameters
};

// A config.json flag; null (as transformers writes unset fields) and absent are false.
bool flag(const json& cfg, const char* key) {
  return cfg.contains(key) && cfg[key].is_boolean() && cfg[key].get<bool>();
}

// A config.json number, or `fallback` when absent or null.
double number_or(const json& cfg, const char* key, double fallback) {
  return cfg.contains(key) && cfg[key].is_number() ? cfg[key].get<double>() : fallback;
}

result<std::uint64_t> positive(const json& cfg, const char* key, const std::string& file) {
  if (!cfg.contains(key) || !cfg[key].is_number_unsigned() || cfg[key].get<std::uint64_t>() == 0)
    return fail(errc::corrupt_data, file + ": '" + key + "' is missing or not a positive integer");
  return cfg[key].get<std::uint64_t>();
}

// config.json's RoPE settings: transformers 5 keeps them in rope_parameters, older versions in
// rope_theta and rope_scaling.
result<void> read_rope(const json& cfg, const std::string& file, hyperparameters& h) {
  const json* params = nullptr;
  for (const char* key : {"rope_parameters", "rope_scaling"})
    if (cfg.contains(key) && cfg[key].is_object())
      params = &cfg[key];
  auto number = [](const json& j, const char* key) -> std::optional<double> {
    if (j.contains(key) && j[key].is_number())
      return j[key].get<double>();
    return std::nullopt;
  };
  h.rope_base = number(cfg, "rope_theta").value_or(10000.0);
  if (params == nullptr)
    return {};
  h.rope_base = number(*params, "rope_theta").value_or(h.rope_base);
  std::string type = "default";
  for (const char* key : {"rope_type", "type"})
    if (params->contains(key) && (*params)[key].is_string())
      type = (*params)[key].get<std::string>();
  if (type == "llama3") {
    h.llama3_scaling = *params;
    return {};
  }
  if (type != "default")
    return fail(errc::invalid_argument, file + ": RoPE scaling '" + type +
                                            "' is not supported; llama3 scaling and none load");
  return {};
}

result<hyperparameters> read_config(const json& cfg, const std::string& file, metadata& out) {
  hyperparameters h;
  const auto model_type = cfg.value("model_type", std::string{});
  const auto* arch =
      std::find_if(std::begin(architectures), std::end(architectures),
                   [&](const architecture& a) { return a.model_type == model_type; });
  if (arch == std::end(architectures)) {
    std::string named = cfg.contains("architectures") ? cfg["architectures"].dump() : "";
    return fail(errc::invalid_argument, file + ": model_type '" + model_type + "' " + named +
                                            " is not supported; these load: llama, mistral, "
                                            "qwen2, qwen3");
  }
  h.arch = std::string(arch->gguf_arch);
  if (cfg.contains("hidden_act") && cfg["hidden_act"] != "silu")
    return fail(errc::invalid_argument, file + ": hidden_act '" + cfg["hidden_act"].dump() +
                                            "' is not supported; the families use silu");
  if (h.arch == "llama" && (flag(cfg, "attention_bias") || flag(cfg, "mlp_bias")))
    return fail(errc::invalid_argument,
                file + ": attention_bias / mlp_bias are not supported for llama models");
  if (flag(cfg, "use_sliding_window"))
    return fail(errc::invalid_argument, file + ": use_sliding_window is not supported");
  if (cfg.contains("layer_types") && cfg["layer_types"].is_array())
    for (const auto& t : cfg["layer_types"])
      if (t != "full_attention")
        return fail(errc::invalid_argument,
                    file + ": layer type " + t.dump() + " is not supported (full_attention is)");

  AEG_TRY_ASSIGN(auto layers, positive(cfg, "num_hidden_layers", file));
  AEG_TRY_ASSIGN(auto dim, positive(cfg, "hidden_size", file));
  AEG_TRY_ASSIGN(auto ffn, positive(cfg, "intermediate_size", file));
  AEG_TRY_ASSIGN(h.heads, positive(cfg, "num_attention_heads", file));
  AEG_TRY_ASSIGN(h.vocab, positive(cfg, "vocab_size", file));
  h.kv_heads = h.heads;
  if (cfg.contains("num_key_value_heads") && !cfg["num_key_value_heads"].is_null()) {
    AEG_TRY_ASSIGN(h.kv_heads, positive(cfg, "num_key_value_heads", file));
  }
  h.head_dim = dim / h.heads;
  if (cfg.contains("head_dim") && !cfg["head_dim"].is_null()) {
    AEG_TRY_ASSIGN(h.head_dim, positive(cfg, "head_dim", file));
  }
  h.tied = flag(cfg, "tie_word_embeddings");
  AEG_TRY(read_rope(cfg, file, h));

  const std::string p = h.arch + ".";
  auto u32 = [](std::uint64_t x) { return value::of_uint32(static_cast<std::uint32_t>(x)); };
  out.emplace_back("general.architecture", value::of_string(h.arch));
  out.emplace_back(p + "block_count", u32(layers));
  out.emplace_back(p + "embedding_length", u32(dim));
  out.emplace_back(p + "feed_forward_length", u32(ffn));
  out.emplace_back(p + "attention.head_count", u32(h.heads));
  out.emplace_back(p + "attention.head_count_kv", u32(h.kv_heads));
  out.emplace_back(p + "attention.key_length", u32(h.head_dim));
  out.emplace_back(p + "attention.value_length", u32(h.head_dim));
  out.emplace_back(p + "rope.dimension_count", u32(h.head_dim));
  out.emplace_back(p + "context_length", u32(static_cast<std::uint64_t>(
                                             number_or(cfg, "max_position_embeddings", 2048))));
  out.emplace_back(p + "rope.freq_base", value::of_float32(static_cast<float>(h.rope_base)));
  out.emplace_back(p + "attention.layer_norm_rms_epsilon",
                   value::of_float32(static_cast<float>(number_or(cfg, "rms_norm_eps", 1e-6))));
  out.emplace_back(p + "vocab_size", u32(h.vocab));
  if (h.arch == "llama") // q/k rows as Hugging Face keeps them; the image loader reorders them
    out.emplace_back(std::string(llama_config::halves_key), value::of_bool(true));
  if (cfg.contains("sliding_window") && cfg["sliding_window"].is_number_unsigned())
    out.emplace_back(p + "attention.sliding_window",
                     u32(cfg["sliding_window"].get<std::uint64_t>()));
  return h;
}

// Llama 3.1's RoPE scaling as llama.cpp's converter stores it (rope_freqs.weight): per pair of
// dims, the factor its frequency is divided by. Long wavelengths are scaled by `factor`, short
// ones kept, and those between blended.
std::vector<float> llama3_factors(const json& s, const hyperparameters& h) {
  const double factor = number_or(s, "factor", 8.0), low = number_or(s, "low_freq_factor", 1.0),
               high = number_or(s, "high_freq_factor", 4.0),
               old_ctx = number_or(s, "original_max_position_embeddings", 8192.0);
  const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
  std::vector<float> out;
  for (std::size_t i = 0; i < h.head_dim; i += 2) {
    const double freq =
        1.0 / std::pow(h.rope_base, static_cast<double>(i) / static_cast<double>(h.head_dim));
    const double wavelen = 2 * std::numbers::pi / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(static_cast<float>(factor));
    } else {
      const double smooth = (old_ctx / wavelen - low) / (high - low);
      out.push_back(static_cast<float>(1.0 / ((1 - smooth) / factor + smooth)));
    }
  }
  return out;
}

// The safetensors files of the folder: the index's shards, or the one model.safetensors.
result<std::vector<std::string>> weight_files(const std::string& dir) {
  const auto index = dir + "/model.safetensors.index.json";
  if (fs::exists(index)) {
    AEG_TRY_ASSIGN(auto j, read_json(index));
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      return fail(errc::corrupt_data, index + ": 'weight_map' is missing");
    std::set<std::string> files;
    for (const auto& [name, shard] : j["weight_map"].items()) {
      const auto file = shard.is_string() ? shard.get<std::string>() : std::string{};
      if (file.empty() || file.find('/') != std::string::npos)
        return fail(errc::corrupt_data,
                    index + ": tensor '" + name + "' names no shard file in the folder");
      files.insert(file);
    }
    std::vector<std::string> out;
    for (const auto& f : files)
      out.push_back(dir + "/" + f);
    return out;
  }
  if (fs::exists(dir + "/model.safetensors"))
    return std::vector<std::string>{dir + "/model.safetensors"};
  return fail(errc::not_found,
              "'" + dir +
                  "' has neither model.safetensors nor model.safetensors.index.json; "
                  "only safetensors weights load (convert pytorch_model.bin first)");
}

result<gguf::tensor_type> tensor_type_of(const safetensor& t, const std::string& file) {
  if (t.dtype == "F32")
    return gguf::tensor_type::f32;
  if (t.dtype == "F16")
    return gguf::tensor_type::f16;
  if (t.dtype == "BF16")
    return gguf::tensor_type::bf16;
  return fail(errc::invalid_argument, file + ": tensor '" + t.name + "' is " + t.dtype +
                                          "; F32, F16 and BF16 weights load (use a GGUF for "
                                          "quantized models)");
}

result<std::vector<gguf::tensor_info>>
read_weights(const std::string& dir, const hyperparameters& h, folder_memory& memory) {
  AEG_TRY_ASSIGN(auto files, weight_files(dir));
  std::vector<gguf::tensor_info> out;
  for (const auto& path : files) {
    AEG_TRY_ASSIGN(auto st, safetensors_file::open(path));
    memory.maps.push_back(st.memory());
    for (const auto& t : st.tensors()) {
      if (t.name.ends_with("rotary_emb.inv_freq")) // older checkpoints; recomputed
        continue;
      auto name = gguf_name(t.name);
      if (name.empty())
        return fail(errc::invalid_argument,
                    path + ": tensor '" + t.name +
                        "' is not part of a llama, mistral, qwen2 or qwen3 model");
      if (!family_has(h.arch, name))
        return fail(errc::invalid_argument, path + ": tensor '" + t.name + "' is not part of a " +
                                                h.arch + " model (config.json's model_type)");
      if (name == "output.weight" && h.tied)
        continue; // tie_word_embeddings: the embedding is the output, as transformers ties it
      AEG_TRY_ASSIGN(auto type, tensor_type_of(t, path));
      gguf::tensor_info info;
      info.name = name;
      info.type = type;
      info.dims.assign(t.shape.rbegin(), t.shape.rend()); // GGUF: innermost first
      info.bytes = t.bytes.size();
      info.data = t.bytes.data();
      if (reinterpret_cast<std::uintptr_t>(info.data) % safetensors_file::element_bytes(t.dtype) !=
          0) { // a file whose tensors are not aligned: read from an aligned copy
        memory.owned.emplace_back(t.bytes.begin(), t.bytes.end());
        info.data = memory.owned.back().data();
      }
      out.push_back(std::move(info));
    }
  }
  if (h.llama3_scaling) {
    const auto factors = llama3_factors(*h.llama3_scaling, h);
    auto& bytes = memory.owned.emplace_back(factors.size() * sizeof(float));
    std::memcpy(bytes.data(), factors.data(), bytes.size());
    gguf::tensor_info info;
    info.name = "rope_freqs.weight";
    info.type = gguf::tensor_type::f32;
    info.dims = {factors.size()};
    info.bytes = bytes.size();
    info.data = bytes.data();
    out.push_back(std::move(info));
  }
  return out;
}

} // namespace

namespace {

result<gguf::file> assemble_folder(const std::string& dir) {
  const auto config_path = dir + "/config.json";
  if (!fs::exists(config_path))
    return fail(errc::not_found,
                "'" + dir +
                    "' is a directory without config.json; a model is a .gguf file or a "
                    "Hugging Face model folder (config.json, *.safetensors, "
                    "tokenizer.json)");
  AEG_TRY_ASSIGN(auto cfg, read_json(config_path));
  metadata kv;
  AEG_TRY_ASSIGN(auto h, read_config(cfg, config_path, kv));
  auto name = fs::path(dir).lexically_normal().filename().string();
  if (name.empty())
    name = fs::path(dir).lexically_normal().parent_path().filename().string();
  kv.emplace_back("general.name", value::of_string(name));
  AEG_TRY(read_tokenizer(dir, h.vocab, kv));
  auto memory = std::make_shared<folder_memory>();
  AEG_TRY_ASSIGN(auto tensors, read_weights(dir, h, *memory));
  auto f = gguf::file::assemble(std::move(kv), std::move(tensors), memory);
  if (!f)
    return fail(f.error().code, dir + ": " + f.error().message);
  return f;
}

} // namespace

result<gguf::file> open_folder(const std::string& dir) {
  try {
    return assemble_folder(dir);
  } catch (const nlohmann::json::exception& e) {
    return fail(errc::corrupt_data, dir +
                                        ": config.json or the safetensors index holds an "
                                        "unexpected value: " +
                                        std::string(e.what()));
  }
}

} // namespace hf

result<gguf::file> open_model(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return hf::open_folder(path);
  return gguf::file::open(path);
}

} // namespace aeg::models
