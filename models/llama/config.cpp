#include "models/llama/config.hpp"

#include "models/gguf/file.hpp"

#include <algorithm>
#include <array>

namespace aeg::models {

namespace {

struct named_shape {
  std::string_view name;
  llama_config config;
};

llama_config shape(std::string_view name, std::size_t layers, std::size_t dim, std::size_t ffn,
                   std::size_t heads, std::size_t kv_heads, std::size_t vocab, std::size_t ctx,
                   float rope_base, bool tied, model_family family = model_family::llama,
                   float rms_eps = 1e-5f) {
  llama_config c;
  c.name = std::string(name);
  c.family = family;
  c.num_layers = layers;
  c.dim = dim;
  c.ffn_dim = ffn;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = dim / heads;
  c.n_rot = c.head_dim;
  c.vocab_size = vocab;
  c.context_length = ctx;
  c.rope_base = rope_base;
  c.rms_eps = rms_eps;
  c.tied_output = tied;
  return c;
}

const std::array<named_shape, 8>& shapes() {
  constexpr auto qwen2 = model_family::qwen2;
  static const std::array<named_shape, 8> s = {{
      {"smollm2-135m", shape("smollm2-135m", 30, 576, 1536, 9, 3, 49152, 8192, 100000, true)},
      {"llama-3.2-1b", shape("llama-3.2-1b", 16, 2048, 8192, 32, 8, 128256, 8192, 500000, true)},
      {"llama-2-7b", shape("llama-2-7b", 32, 4096, 11008, 32, 32, 32000, 4096, 10000, false)},
      {"llama-2-13b", shape("llama-2-13b", 40, 5120, 13824, 40, 40, 32000, 4096, 10000, false)},
      {"llama-3-8b", shape("llama-3-8b", 32, 4096, 14336, 32, 8, 128256, 8192, 500000, false)},
      {"yi-9b", shape("yi-9b", 48, 4096, 11008, 32, 4, 64000, 4096, 10000, false)},
      {"qwen2.5-7b",
       shape("qwen2.5-7b", 28, 3584, 18944, 28, 4, 152064, 32768, 1000000, false, qwen2, 1e-6f)},
      {"qwen2.5-72b",
       shape("qwen2.5-72b", 80, 8192, 29568, 64, 8, 152064, 32768, 1000000, false, qwen2, 1e-6f)},
  }};
  return s;
}

tl::unexpected<error> bad(const std::string& field, const std::string& why) {
  return fail(errc::corrupt_data, "llama model: " + field + " " + why);
}

} // namespace

std::vector<std::string> llama_config::synthetic_shapes() {
  std::vector<std::string> names;
  for (const auto& s : shapes())
    names.emplace_back(s.name);
  return names;
}

result<llama_config> llama_config::synthetic(std::string_view name) {
  for (const auto& s : shapes())
    if (s.name == name)
      return s.config;
  std::string known;
  for (const auto& s : shapes())
    known += (known.empty() ? "" : ", ") + std::string(s.name);
  return fail(errc::not_found,
              "unknown synthetic model shape '" + std::string(name) + "'; known: " + known);
}

std::string_view to_string(model_family f) noexcept {
  switch (f) {
  case model_family::qwen2:
    return "qwen2";
  case model_family::qwen3:
    return "qwen3";
  case model_family::llama:
    break;
  }
  return "llama";
}

result<llama_config> llama_config::from_gguf(const gguf::file& f) {
  AEG_TRY_ASSIGN(auto arch, f.get_string("general.architecture"));
  llama_config c;
  constexpr model_family families[] = {model_family::llama, model_family::qwen2,
                                       model_family::qwen3};
  const auto* family = std::find_if(std::begin(families), std::end(families),
                                    [&](model_family m) { return to_string(m) == arch; });
  if (family == std::end(families))
    return fail(errc::invalid_argument, "model architecture '" + arch +
                                            "' is not supported; these run here: llama (Llama, "
                                            "Mistral, Yi, SmolLM), qwen2, qwen3");
  c.family = *family;
  c.name = f.get_string("general.name").value_or(arch);
  // Every family names its hyperparameters under its architecture's prefix.
  const std::string prefix = arch + ".";
  auto key = [&](const char* k) { return prefix + k; };
  auto u = [&](const char* k) { return f.get_uint(key(k)); };
  auto layers = u("block_count");
  auto dim = u("embedding_length");
  auto ffn = u("feed_forward_length");
  auto heads = u("attention.head_count");
  if (!layers || !dim || !ffn || !heads) {
    for (auto* r : {&layers, &dim, &ffn, &heads})
      if (!*r)
        return tl::unexpected(r->error());
  }
  c.num_layers = *layers;
  c.dim = *dim;
  c.ffn_dim = *ffn;
  c.num_heads = *heads;
  AEG_TRY_ASSIGN(auto kv_heads, f.get_uint(key("attention.head_count_kv"), *heads));
  c.num_kv_heads = kv_heads;
  if (c.num_heads == 0)
    return bad(key("attention.head_count"), "is 0");
  AEG_TRY_ASSIGN(auto head_dim, f.get_uint(key("attention.key_length"), c.dim / c.num_heads));
  c.head_dim = head_dim;
  AEG_TRY_ASSIGN(auto n_rot, f.get_uint(key("rope.dimension_count"), c.head_dim));
  c.n_rot = n_rot;
  AEG_TRY_ASSIGN(auto ctx, f.get_uint(key("context_length"), 2048));
  c.context_length = ctx;
  AEG_TRY_ASSIGN(auto window, f.get_uint(key("attention.sliding_window"), 0));
  if (window != 0 && window < c.context_length) {
    c.sliding_window = window;
    c.context_length = window;
  }
  auto base = f.get_float(key("rope.freq_base"), 10000.0);
  auto eps = f.get_float(key("attention.layer_norm_rms_epsilon"), 1e-5);
  if (!base)
    return tl::unexpected(base.error());
  if (!eps)
    return tl::unexpected(eps.error());
  c.rope_base = static_cast<float>(*base);
  c.rms_eps = static_cast<float>(*eps);
  if (f.find(key("rope.scaling.type")) != nullptr) {
    auto type = f.get_string(key("rope.scaling.type"));
    if (type && *type != "none")
      return fail(errc::invalid_argument,
                  "RoPE scaling '" + *type + "' is not supported yet; use a model without it");
  }
  const auto* embd = f.tensor("token_embd.weight");
  if (embd == nullptr)
    return bad("tensor token_embd.weight", "is missing");
  if (embd->dims.size() != 2 || embd->dims[0] != c.dim)
    return bad("tensor token_embd.weight", "does not have shape [embedding_length, vocab]");
  c.vocab_size = embd->dims[1];
  if (auto v = f.get_uint(key("vocab_size"), c.vocab_size); !v || *v != c.vocab_size)
    return bad(key("vocab_size"), "disagrees with token_embd.weight");
  c.tied_output = f.tensor("output.weight") == nullptr;
  c.rope_freq_factors = f.tensor("rope_freqs.weight") != nullptr;
  if (const auto* halves = f.find(halves_key))
    c.llama_rows_in_halves = halves->type == gguf::value_type::boolean && halves->u != 0;
  AEG_TRY(c.validate());
  return c;
}

result<void> llama_config::validate() const {
  if (num_layers == 0 || num_layers > 1024)
    return bad("block_count", std::to_string(num_layers) + " is out of range (1..1024)");
  if (dim == 0 || dim % 32 != 0)
    return bad("embedding_length", std::to_string(dim) + " must be a positive multiple of 32");
  if (ffn_dim == 0 || ffn_dim % 32 != 0)
    return bad("feed_forward_length",
               std::to_string(ffn_dim) + " must be a positive multiple of 32");
  if (num_kv_heads == 0 || num_heads % num_kv_heads != 0)
    return bad("attention.head_count_kv", std::to_string(num_kv_heads) +
                                              " must divide head_count " +
                                              std::to_string(num_heads));
  if (head_dim == 0 || head_dim % 2 != 0 || head_dim > 256)
    return bad("attention.key_length", std::to_string(head_dim) + " must be even and <= 256");
  if ((num_heads * head_dim) % 32 != 0 || (num_kv_heads * head_dim) % 32 != 0)
    return bad("attention.key_length", "head widths must be multiples of 32");
  if (n_rot == 0 || n_rot > head_dim || n_rot % 2 != 0)
    return bad("rope.dimension_count", std::to_string(n_rot) + " must be even and <= head_dim");
  if (vocab_size == 0 || vocab_size > (std::size_t{1} << 31))
    return bad("vocab_size", "is out of range");
  if (context_length == 0)
    return bad("context_length", "is 0");
  if (!(rope_base > 0))
    return bad("rope.freq_base", "must be positive");
  if (!(rms_eps > 0))
    return bad("attention.layer_norm_rms_epsilon", "must be positive");
  return {};
}

std::size_t llama_config::num_parameters() const noexcept {
  const std::size_t attn = dim * num_heads * head_dim * 2 + dim * num_kv_heads * head_dim * 2;
  const std::size_t mlp = 3 * dim * ffn_dim;
  const std::size_t extras = (attention_bias() ? (num_heads + 2 * num_kv_heads) * head_dim : 0) +
                             (qk_norm() ? 2 * head_dim : 0);
  const std::size_t per_layer = attn + mlp + 2 * dim + extras;
  return num_layers * per_layer + vocab_size * dim * (tied_output ? 1 : 2) + dim;
}

} // namespace aeg::models
