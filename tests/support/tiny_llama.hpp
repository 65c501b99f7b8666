#pragma once

// Tiny random-weight llama models in GGUF, laid out like SmolLM2-135M-Instruct's file (same keys,
// tokenizer kind, tensor names and shape conventions), so that loaders, tokenizers and runners can
// be tested without the real model.

#include "coro/error.hpp"
#include "kernels/dtype.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace aeg::testing {

/// The shape, types and seed of a tiny llama. head_dim = dim / heads.
struct tiny_llama_spec {
  std::size_t layers = 2, dim = 64, ffn = 128, heads = 4, kv_heads = 2, context = 512;
  float rope_base = 10000.0f, rms_eps = 1e-5f;
  /// token_embd (and output.weight when not tied): any dtype. K-quants need dim % 256 == 0.
  kernels::dtype embed_type = kernels::dtype::q8_0;
  /// attn_q/k/v/output and ffn_gate/up/down: any dtype. K-quants need dim and ffn % 256 == 0.
  kernels::dtype matrix_type = kernels::dtype::q4_1;
  bool tied_output = true;       ///< no output.weight, as in SmolLM2
  std::string pre = "smollm";    ///< tokenizer.ggml.pre
  std::uint32_t seed = 1;        ///< same seed, same bytes
  std::size_t extra_merges = 64; ///< merges beyond the byte tokens
};

/// Vocabulary size of a spec: 3 special tokens + 256 byte tokens + `extra_merges`.
std::size_t tiny_llama_vocab_size(const tiny_llama_spec& spec) noexcept;

/// The GGUF bytes of a tiny llama, or `errc::invalid_argument` saying which dimension does not
/// fit (heads not dividing dim, a row length not a multiple of a type's block size...).
///
/// Metadata: general.architecture "llama"; llama.{vocab_size, context_length, embedding_length,
/// block_count, feed_forward_length, attention.head_count, attention.head_count_kv,
/// attention.key_length, attention.value_length, rope.dimension_count (= head_dim),
/// rope.freq_base, attention.layer_norm_rms_epsilon}; tokenizer.ggml.{model "gpt2", pre, tokens,
/// token_type, merges, bos 1, eos 2, unknown 0, padding 2, add_bos_token false} and SmolLM2's
/// ChatML tokenizer.chat_template. Tokens: 0 `<|endoftext|>`, 1 `<|im_start|>`, 2 `<|im_end|>`
/// (type 3), then the 256 byte tokens in GPT-2's byte-to-unicode alphabet (type 1, code point
/// order), then one token per merge (type 1): SmolLM2's first merges ("Ġ t", "Ġ a", "i n", ...),
/// then made-up ones ("Ġthe a", ...) when more are asked for.
///
/// Tensors (dims ne0 first): token_embd.weight [dim, vocab]; blk.N.attn_norm/ffn_norm.weight
/// F32 [dim]; attn_q [dim, dim]; attn_k/attn_v [dim, kv_heads * head_dim]; attn_output
/// [dim, dim]; ffn_gate/ffn_up [dim, ffn]; ffn_down [ffn, dim]; output_norm.weight F32 [dim];
/// output.weight [dim, vocab] unless tied. Weights are deterministic in the seed: matrices about
/// normal with std 0.5 / sqrt(row length) (at most 0.1), embeddings std 0.05, norms 1 ± 0.05;
/// Q5_0/Q4_K/Q6_K blocks hold random quants with small positive scales of the same spread.
result<std::vector<std::byte>> build_tiny_llama(const tiny_llama_spec& spec);

/// `build_tiny_llama` for tests: aborts with the error's message on a bad spec.
std::vector<std::byte> make_tiny_llama(const tiny_llama_spec& spec);

/// Writes the tiny llama of `spec` to `path`.
result<void> write_tiny_llama(const tiny_llama_spec& spec, const std::string& path);

} // namespace aeg::testing
