#pragma once

// The real SmolLM2-135M-Instruct tokenizer for tests, loaded once per test binary. Tests call
// AEG_REQUIRE_SMOLLM2() first: it skips them, saying how to get the file, when it is absent.

#include "models/gguf/file.hpp"
#include "models/tokenizer/tokenizer.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <optional>
#include <string>

namespace aeg::models::testing {

/// Where scripts/fetch-model puts the model.
inline std::string smollm2_path() {
  return std::string(AEG_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

/// The mapped model file; null when it is not there. (Held in place: gguf::file is not moved.)
inline const gguf::file* smollm2_file() {
  static const result<gguf::file> file =
      std::filesystem::exists(smollm2_path())
          ? gguf::file::open(smollm2_path())
          : result<gguf::file>(fail(errc::not_found, smollm2_path() + " is missing"));
  if (!file && file.error().code != errc::not_found)
    ADD_FAILURE() << "cannot open " << smollm2_path() << ": " << file.error().to_string();
  return file ? &*file : nullptr;
}

/// The model's tokenizer; null when the file is not there.
inline const tokenizer* smollm2() {
  static const std::optional<tokenizer> tok = []() -> std::optional<tokenizer> {
    const gguf::file* f = smollm2_file();
    if (f == nullptr)
      return std::nullopt;
    auto t = tokenizer::from_gguf(*f);
    if (!t)
      ADD_FAILURE() << "cannot load the tokenizer: " << t.error().to_string();
    return t ? std::optional<tokenizer>(std::move(*t)) : std::nullopt;
  }();
  return tok ? &*tok : nullptr;
}

} // namespace aeg::models::testing

/// Skips the calling test when the model file is absent; else binds `tok` to its tokenizer.
#define AEG_REQUIRE_SMOLLM2(tok)                                                                   \
  const ::aeg::models::tokenizer* tok##_ptr = ::aeg::models::testing::smollm2();                   \
  if (tok##_ptr == nullptr)                                                                        \
    GTEST_SKIP() << ::aeg::models::testing::smollm2_path()                                         \
                 << " is missing; run scripts/fetch-model to download it";                         \
  const ::aeg::models::tokenizer& tok = *tok##_ptr
