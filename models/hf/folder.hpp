#pragma once

#include "coro/error.hpp"
#include "models/gguf/file.hpp"

#include <string>
#include <utility>
#include <vector>

namespace aeg::models {

/// A model from `path`: a GGUF file, or a Hugging Face model folder (a directory) seen as the
/// GGUF llama.cpp's converter would write from it. Everything downstream reads the result alike.
result<gguf::file> open_model(const std::string& path);

namespace hf {

/// GGUF metadata being assembled, in order.
using metadata = std::vector<std::pair<std::string, gguf::value>>;

/// A Hugging Face model folder as a GGUF: `config.json` gives the architecture and
/// hyperparameters (llama, mistral, qwen2, qwen3), `model.safetensors` or the shards a
/// `model.safetensors.index.json` names give the weights (F32, F16 or BF16, used in place from
/// the mapped files, nothing copied: a llama's q and k rows stay in Hugging Face's order, which
/// `llama_config::halves_key` tells the image loader to reorder as it does a Qwen's), and
/// `tokenizer.json` (else a SentencePiece `tokenizer.model`), `tokenizer_config.json`,
/// `generation_config.json` and `chat_template.jinja` give the vocabulary, special tokens and
/// chat template. Anything it cannot represent is refused with a message naming the file and
/// field.
result<gguf::file> open_folder(const std::string& dir);

/// The tokenizer of a Hugging Face folder as GGUF `tokenizer.*` metadata, appended to `out`:
/// from tokenizer.json when the folder has one, else from tokenizer.model; the vocabulary is
/// padded with unused tokens to the model's `vocab_size`.
result<void> read_tokenizer(const std::string& dir, std::size_t vocab_size, metadata& out);

} // namespace hf
} // namespace aeg::models
