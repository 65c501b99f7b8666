#include "tests/support/tiny_llama.hpp"

#include "coro/assert.hpp"
#include "kernels/half.hpp"
#include "kernels/quant.hpp"
#include "models/gguf/types.hpp"
#include "models/gguf/writer.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string_view>

namespace aeg::testing {

namespace {

using kernels::dtype;
namespace gguf = models::gguf;

constexpr std::string_view chat_template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}";

// SmolLM2's first merges, in rank order: each one joins tokens that exist before it.
constexpr std::array<std::string_view, 150> english_merges = {
    "Ġ t",  "Ġ a",       "i n",   "h e",   "Ġ Ġ",   "r e",   "o n",    "e r",    "Ġt he", "a t",
    "Ġ s",  "Ġ o",       "e n",   "Ġ c",   "e s",   "Ġ w",   "n d",    "i t",    "o r",   "i s",
    "a l",  "Ġ p",       "in g",  "Ġ f",   "a n",   "e d",   "Ġ b",    "o u",    "a r",   "Ġ in",
    "Ġo f", "Ġ m",       "Ġa nd", "i on",  "i c",   "Ġ d",   "Ġt o",   "ĠĠ ĠĠ",  "l e",   "r o",
    "a s",  "en t",      "Ġ h",   "Ġt h",  "c t",   "Ġ e",   "Ġ re",   "e l",    "o m",   "i l",
    "s t",  "Ġ l",       "Ġ n",   "e t",   "i m",   "v e",   "o l",    "at ion", "Ġ g",   "i d",
    "Ġ T",  "s e",       "Ġ is",  "u r",   "u t",   "r a",   "l y",    "c e",    "o t",   "â Ģ",
    "c h",  "o w",       "i g",   "Ġb e",  "Ġ u",   "Ġf or", "Ġs t",   "Ġ y",    "Ġ A",   "v er",
    "a m",  "ĠĠ Ġ",      "Ġ S",   "Ġ on",  "u l",   "i r",   "Ġth at", "Ġ I",    "Ġ C",   "a y",
    "i f",  "it h",      "a d",   "Ġc on", "Ġy ou", "Ġa s",  "Ġp ro",  "he r",   "o d",   "Ġw ith",
    "t er", "ĠĠĠĠ ĠĠĠĠ", "Ġa n",  "Ġo r",  "Ġw h",  "Ġ it",  "m ent",  "Ġa re",  "Ġa l",  "g e",
    "es s", "is t",      "Ġe x",  "Ġ (",   "er s",  "Ġd e",  "at e",   "a b",    "i es",  "o p",
    "Ġ M",  "t h",       "e ct",  "re s",  "u s",   "Ġ P",   "ĠT he",  "Ġc om",  "i v",   "es t",
    "u m",  "it y",      "Ġ he",  "q u",   "Ġ v",   "a c",   "il l",   "Ġ B",    "o re",  "e m",
    "Ġw e", "Ġs u",      "p p",   "o s",   "k e",   "a nd",  "ro m",   "n t",    "l d",   "or t",
};

// GPT-2's printable stand-in for each byte: printable Latin-1 bytes stand for themselves, the
// others (controls, space, 0x7f-0xa0, 0xad) map to U+0100 upwards in byte order.
std::array<std::uint32_t, 256> byte_to_code_point() {
  std::array<std::uint32_t, 256> cp{};
  std::uint32_t next = 256;
  for (std::uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    cp[b] = printable ? b : next++;
  }
  return cp;
}

std::string utf8(std::uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else { // the alphabet stays below U+0800: two bytes
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

struct vocabulary {
  std::vector<std::string> tokens;
  std::vector<std::int32_t> types;
  std::vector<std::string> merges;
};

vocabulary make_vocabulary(std::size_t extra_merges) {
  vocabulary v;
  for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    v.tokens.emplace_back(special);
    v.types.push_back(3);
  }
  // Byte tokens in code point order, as GPT-2 and SmolLM2 list them.
  auto cp = byte_to_code_point();
  std::sort(cp.begin(), cp.end());
  for (auto c : cp) {
    v.tokens.push_back(utf8(c));
    v.types.push_back(1);
  }
  std::set<std::string> known(v.tokens.begin(), v.tokens.end());
  std::vector<std::string> merged;
  auto add = [&](const std::string& left, const std::string& right) {
    AEG_ASSERT(known.count(left) != 0 && known.count(right) != 0,
               "tiny_llama: a merge joins a token that does not exist yet");
    const std::string token = left + right;
    if (known.count(token) != 0)
      return;
    known.insert(token);
    merged.push_back(token);
    v.tokens.push_back(token);
    v.types.push_back(1);
    v.merges.push_back(left + " " + right);
  };
  for (std::size_t i = 0; i < english_merges.size() && v.merges.size() < extra_merges; ++i) {
    const std::string_view m = english_merges[i];
    const auto space = m.find(' ', 1);
    add(std::string(m.substr(0, space)), std::string(m.substr(space + 1)));
  }
  // Beyond SmolLM2's list: extend each merged token by each letter ("Ġthe" + "a"). Almost every
  // pair is new, so `merged` grows faster than k / 26 and the loop ends.
  for (std::size_t k = 0; v.merges.size() < extra_merges; ++k) {
    const std::string left = merged[k / 26];
    add(left, std::string(1, static_cast<char>('a' + k % 26)));
  }
  return v;
}

// splitmix64: a tiny generator whose output is the same on every platform (the std
// distributions are not), so a seed names the same bytes everywhere.
class rng {
public:
  explicit rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [-1, 1).
  float uniform() { return static_cast<float>(next() >> 40) / static_cast<float>(1 << 23) - 1.0f; }
  /// About normal with mean 0 and deviation 1 (a sum of three uniforms: no libm involved).
  float normal() { return uniform() + uniform() + uniform(); }
  std::uint8_t byte() { return static_cast<std::uint8_t>(next() >> 56); }
  /// Uniform in [lo, hi].
  int between(int lo, int hi) {
    return lo + static_cast<int>(next() % static_cast<std::uint64_t>(hi - lo + 1));
  }

private:
  std::uint64_t state_;
};

// One generator per tensor, keyed by its name, so tensors do not depend on each other's sizes.
rng tensor_rng(std::uint32_t seed, const std::string& name) {
  std::uint64_t h = 0xcbf29ce484222325ull; // FNV-1a
  for (char c : name)
    h = (h ^ static_cast<std::uint8_t>(c)) * 0x100000001b3ull;
  return rng(h ^ (static_cast<std::uint64_t>(seed) << 32) ^ seed);
}

template <class Block>
std::vector<std::byte> random_blocks(std::size_t num_blocks, auto fill) {
  std::vector<Block> blocks(num_blocks);
  for (auto& b : blocks)
    fill(b);
  std::vector<std::byte> out(blocks.size() * sizeof(Block));
  std::memcpy(out.data(), blocks.data(), out.size());
  return out;
}

// Q4_K's and Q5_K's 12 bytes of eight 6-bit scales and mins (each min equal to its scale, from
// 32..63): the inverse of ggml's get_scale_min_k4.
void pack_scales_mins_k4(std::uint8_t* scales, rng& r) {
  std::uint8_t sc[8], m[8];
  for (int j = 0; j < 8; ++j)
    sc[j] = m[j] = static_cast<std::uint8_t>(r.between(32, 63));
  for (int j = 0; j < 4; ++j) {
    scales[j] = static_cast<std::uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    scales[j + 4] = static_cast<std::uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    scales[j + 8] = static_cast<std::uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

// `n` values of deviation `std` encoded as `t`: quantized from floats where kernels can encode
// the type, otherwise random quants with positive scales chosen for that deviation.
std::vector<std::byte> encode(dtype t, std::size_t n, float std, float mean, rng& r) {
  if (kernels::can_quantize(t)) {
    std::vector<float> x(n);
    for (auto& v : x)
      v = mean + std * r.normal();
    std::vector<std::byte> out(kernels::row_bytes(t, n));
    kernels::quantize_row(t, x.data(), out.data(), n);
    return out;
  }
  auto half = [](float f) { return kernels::float_to_half(f); };
  switch (t) {
  case dtype::q5_0: // y = d * (q - 16), q uniform in 0..31: deviation 9.2 d
    return random_blocks<kernels::block_q5_0>(n / 32, [&](kernels::block_q5_0& b) {
      b.d = half(std / 9.2f * (1.0f + 0.25f * r.uniform()));
      for (auto& q : b.qh)
        q = r.byte();
      for (auto& q : b.qs)
        q = r.byte();
    });
  case dtype::q4_k: // y = d * sc * q - dmin * m with m = sc, dmin = 7.5 d: d * sc * (q - 7.5)
    return random_blocks<kernels::block_q4_k>(n / 256, [&](kernels::block_q4_k& b) {
      const float d = std / (47.5f * 4.6f) * (1.0f + 0.25f * r.uniform());
      b.d = half(d);
      b.dmin = half(7.5f * d);
      pack_scales_mins_k4(b.scales, r);
      for (auto& q : b.qs)
        q = r.byte();
    });
  case dtype::q5_k: // as Q4_K with 5-bit q: d * sc * (q - 15.5), deviation 9.2 d sc
    return random_blocks<kernels::block_q5_k>(n / 256, [&](kernels::block_q5_k& b) {
      const float d = std / (47.5f * 9.2f) * (1.0f + 0.25f * r.uniform());
      b.d = half(d);
      b.dmin = half(15.5f * d);
      pack_scales_mins_k4(b.scales, r);
      for (auto& q : b.qh)
        q = r.byte();
      for (auto& q : b.qs)
        q = r.byte();
    });
  case dtype::q2_k: // y = d * s * q - dmin * m with m = s, dmin = 1.5 d: d * s * (q - 1.5)
    return random_blocks<kernels::block_q2_k>(n / 256, [&](kernels::block_q2_k& b) {
      const float d = std / (11.5f * 1.12f) * (1.0f + 0.25f * r.uniform());
      b.d = half(d);
      b.dmin = half(1.5f * d);
      for (auto& sc : b.scales) {
        const auto v = static_cast<std::uint8_t>(r.between(8, 15));
        sc = static_cast<std::uint8_t>(v | (v << 4));
      }
      for (auto& q : b.qs)
        q = r.byte();
    });
  case dtype::iq4_nl: // table values of deviation about 68: d = std / 68
    return random_blocks<kernels::block_iq4_nl>(n / 32, [&](kernels::block_iq4_nl& b) {
      b.d = half(std / 68.0f * (1.0f + 0.25f * r.uniform()));
      for (auto& q : b.qs)
        q = r.byte();
    });
  case dtype::iq4_xs: // as IQ4_NL with sub-block scales s - 32 in 8..31
    return random_blocks<kernels::block_iq4_xs>(n / 256, [&](kernels::block_iq4_xs& b) {
      b.d = half(std / (68.0f * 19.5f) * (1.0f + 0.25f * r.uniform()));
      b.scales_h = 0;
      for (int ib = 0; ib < 8; ++ib) {
        const int ls = r.between(40, 63);
        b.scales_l[ib / 2] =
            static_cast<std::uint8_t>(b.scales_l[ib / 2] | ((ls & 0xF) << (4 * (ib % 2))));
        b.scales_h = static_cast<std::uint16_t>(b.scales_h | ((ls >> 4) << (2 * ib)));
      }
      for (auto& q : b.qs)
        q = r.byte();
    });
  case dtype::q3_k: // y = d * (s - 32) * v, v uniform in -4..3: deviation 2.3 d (s - 32)
    return random_blocks<kernels::block_q3_k>(n / 256, [&](kernels::block_q3_k& b) {
      std::uint8_t raw[16]; // 6-bit scales, stored minus 32
      for (auto& v : raw)
        v = static_cast<std::uint8_t>(r.between(40, 63));
      // The inverse of the unpacking: low nibbles of 0..7 and 8..15 share bytes 0..7, the high
      // two bits of scales k, k + 4, k + 8, k + 12 fill byte 8 + k.
      for (int j = 0; j < 8; ++j)
        b.scales[j] = static_cast<std::uint8_t>((raw[j] & 0xF) | ((raw[j + 8] & 0xF) << 4));
      for (int k = 0; k < 4; ++k) {
        int high = 0;
        for (int g = 0; g < 4; ++g)
          high |= ((raw[k + 4 * g] >> 4) & 3) << (2 * g);
        b.scales[8 + k] = static_cast<std::uint8_t>(high);
      }
      b.d = half(std / (19.5f * 2.3f) * (1.0f + 0.25f * r.uniform()));
      for (auto& q : b.hmask)
        q = r.byte();
      for (auto& q : b.qs)
        q = r.byte();
    });
  case dtype::q6_k: // y = d * sc * (q - 32), q uniform in 0..63: deviation 18.5 d sc
    return random_blocks<kernels::block_q6_k>(n / 256, [&](kernels::block_q6_k& b) {
      for (auto& q : b.ql)
        q = r.byte();
      for (auto& q : b.qh)
        q = r.byte();
      for (auto& s : b.scales)
        s = static_cast<std::int8_t>(r.between(48, 96));
      b.d = half(std / (72.0f * 18.5f) * (1.0f + 0.25f * r.uniform()));
    });
  default:
    AEG_ASSERT(false, "tiny_llama: a dtype neither quantizable nor generated");
    return {};
  }
}

result<void> check_rows(const std::string& what, dtype t, std::size_t row_length) {
  const auto& tr = kernels::traits(t);
  if (row_length % tr.block_elems == 0)
    return {};
  return fail(
      errc::invalid_argument,
      "tiny_llama: " + what + " = " + std::to_string(row_length) + " is not a multiple of " +
          std::to_string(tr.block_elems) + ", the block size of " + std::string(tr.name) +
          (tr.block_elems == 256 ? " (K-quants need row lengths that are multiples of 256)" : "") +
          "; pick another size or type");
}

std::uint32_t file_type_of(dtype t) {
  switch (t) { // llama_ftype numbers
  case dtype::f32:
    return 0;
  case dtype::f16:
    return 1;
  case dtype::q4_0:
    return 2;
  case dtype::q4_1:
    return 3;
  case dtype::q8_0:
    return 7;
  case dtype::q5_0:
    return 8;
  case dtype::q4_k:
    return 15; // MOSTLY_Q4_K_M
  case dtype::q6_k:
    return 18;
  case dtype::q2_k:
    return 10;
  case dtype::q3_k:
    return 12; // MOSTLY_Q3_K_M
  case dtype::q5_k:
    return 17; // MOSTLY_Q5_K_M
  case dtype::iq4_nl:
    return 25;
  case dtype::iq4_xs:
    return 30;
  case dtype::bf16:
    return 32;
  case dtype::q4_1x8:
  case dtype::q8_0x8:
  case dtype::q5_1:
  case dtype::q5_1x8:
  case dtype::q6_kx8:
  case dtype::q3_kx8:
  case dtype::q2_kx8:
    break; // compute layouts, never in a file
  }
  return 0;
}

} // namespace

std::size_t tiny_llama_vocab_size(const tiny_llama_spec& spec) noexcept {
  return 3 + 256 + spec.extra_merges;
}

result<std::vector<std::byte>> build_tiny_llama(const tiny_llama_spec& s) {
  if (s.layers == 0 || s.dim == 0 || s.ffn == 0 || s.heads == 0 || s.kv_heads == 0 ||
      s.context == 0)
    return fail(errc::invalid_argument, "tiny_llama: layers, dim, ffn, heads, kv_heads and "
                                        "context must all be positive");
  if (s.dim % s.heads != 0 || (s.dim / s.heads) % 2 != 0)
    return fail(errc::invalid_argument, "tiny_llama: dim " + std::to_string(s.dim) +
                                            " must split into " + std::to_string(s.heads) +
                                            " heads of an even head_dim (RoPE rotates pairs)");
  if (s.heads % s.kv_heads != 0)
    return fail(errc::invalid_argument, "tiny_llama: heads " + std::to_string(s.heads) +
                                            " must be a multiple of kv_heads " +
                                            std::to_string(s.kv_heads));
  for (auto r :
       {check_rows("dim (the row length of attn_*, ffn_gate, ffn_up)", s.matrix_type, s.dim),
        check_rows("ffn (the row length of ffn_down)", s.matrix_type, s.ffn),
        check_rows("dim (the row length of token_embd)", s.embed_type, s.dim)})
    if (!r)
      return tl::unexpected(r.error());

  const std::size_t head_dim = s.dim / s.heads;
  const std::size_t kv_dim = s.kv_heads * head_dim;
  const vocabulary vocab = make_vocabulary(s.extra_merges);
  const std::size_t n_vocab = vocab.tokens.size();
  const auto u32 = [](std::size_t v) { return static_cast<std::uint32_t>(v); };

  gguf::writer w;
  w.add_string("general.architecture", "llama");
  w.add_string("general.type", "model");
  w.add_string("general.name", "tiny-llama");
  w.add_uint32("llama.block_count", u32(s.layers));
  w.add_uint32("llama.context_length", u32(s.context));
  w.add_uint32("llama.embedding_length", u32(s.dim));
  w.add_uint32("llama.feed_forward_length", u32(s.ffn));
  w.add_uint32("llama.attention.head_count", u32(s.heads));
  w.add_uint32("llama.attention.head_count_kv", u32(s.kv_heads));
  w.add_uint32("llama.attention.key_length", u32(head_dim));
  w.add_uint32("llama.attention.value_length", u32(head_dim));
  w.add_float32("llama.rope.freq_base", s.rope_base);
  w.add_float32("llama.attention.layer_norm_rms_epsilon", s.rms_eps);
  w.add_uint32("general.file_type", file_type_of(s.matrix_type));
  w.add_uint32("llama.vocab_size", u32(n_vocab));
  w.add_uint32("llama.rope.dimension_count", u32(head_dim));
  w.add_bool("tokenizer.ggml.add_space_prefix", false);
  w.add_bool("tokenizer.ggml.add_bos_token", false);
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", s.pre);
  w.add_string_array("tokenizer.ggml.tokens", vocab.tokens);
  w.add_int32_array("tokenizer.ggml.token_type", vocab.types);
  w.add_string_array("tokenizer.ggml.merges", vocab.merges);
  w.add_uint32("tokenizer.ggml.bos_token_id", 1);
  w.add_uint32("tokenizer.ggml.eos_token_id", 2);
  w.add_uint32("tokenizer.ggml.unknown_token_id", 0);
  w.add_uint32("tokenizer.ggml.padding_token_id", 2);
  w.add_string("tokenizer.chat_template", std::string(chat_template));
  w.add_uint32("general.quantization_version", 2);

  // dims ne0 first: a matrix [n_in, n_out] stores n_out rows of n_in values.
  auto add = [&](const std::string& name, std::vector<std::uint64_t> dims, dtype t, float std,
                 float mean) -> result<void> {
    std::size_t n = 1;
    for (auto d : dims)
      n *= d;
    rng r = tensor_rng(s.seed, name);
    const auto data = encode(t, n, std, mean, r);
    return w.add_tensor(name, std::move(dims), gguf::to_tensor_type(t), data);
  };
  auto matrix_std = [](std::size_t n_in) {
    return std::min(0.1f, 0.5f / std::sqrt(static_cast<float>(n_in)));
  };
  const float embed_std = 0.05f, norm_std = 0.05f;

  std::vector<result<void>> added;
  added.push_back(add("token_embd.weight", {s.dim, n_vocab}, s.embed_type, embed_std, 0));
  for (std::size_t l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const dtype m = s.matrix_type;
    added.push_back(add(p + "attn_norm.weight", {s.dim}, dtype::f32, norm_std, 1));
    added.push_back(add(p + "ffn_down.weight", {s.ffn, s.dim}, m, matrix_std(s.ffn), 0));
    added.push_back(add(p + "ffn_gate.weight", {s.dim, s.ffn}, m, matrix_std(s.dim), 0));
    added.push_back(add(p + "ffn_up.weight", {s.dim, s.ffn}, m, matrix_std(s.dim), 0));
    added.push_back(add(p + "ffn_norm.weight", {s.dim}, dtype::f32, norm_std, 1));
    added.push_back(add(p + "attn_k.weight", {s.dim, kv_dim}, m, matrix_std(s.dim), 0));
    added.push_back(add(p + "attn_output.weight", {s.dim, s.dim}, m, matrix_std(s.dim), 0));
    added.push_back(add(p + "attn_q.weight", {s.dim, s.dim}, m, matrix_std(s.dim), 0));
    added.push_back(add(p + "attn_v.weight", {s.dim, kv_dim}, m, matrix_std(s.dim), 0));
  }
  added.push_back(add("output_norm.weight", {s.dim}, dtype::f32, norm_std, 1));
  if (!s.tied_output)
    added.push_back(add("output.weight", {s.dim, n_vocab}, s.embed_type, embed_std, 0));
  for (auto& r : added)
    if (!r)
      return tl::unexpected(r.error());
  return w.bytes();
}

std::vector<std::byte> make_tiny_llama(const tiny_llama_spec& spec) {
  auto bytes = build_tiny_llama(spec);
  if (!bytes) {
    std::fprintf(stderr, "make_tiny_llama: %s\n", bytes.error().message.c_str());
    std::abort();
  }
  return std::move(*bytes);
}

result<void> write_tiny_llama(const tiny_llama_spec& spec, const std::string& path) {
  auto bytes = build_tiny_llama(spec);
  if (!bytes)
    return tl::unexpected(bytes.error());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr)
    return fail(errc::not_found, "tiny_llama: cannot create '" + path + "'");
  const bool ok = std::fwrite(bytes->data(), 1, bytes->size(), f) == bytes->size();
  if (std::fclose(f) != 0 || !ok)
    return fail(errc::internal, "tiny_llama: could not write all of '" + path + "'");
  return {};
}

} // namespace aeg::testing
