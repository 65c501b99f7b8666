#pragma once

// Seed inputs for fuzzing the GGUF reader: small valid files that reach every part of it.

#include <cstddef>
#include <string>
#include <vector>

namespace aeg::testing {

/// One seed: a file name (no directory) and its bytes.
struct gguf_seed {
  std::string name;
  std::vector<std::byte> bytes;
};

/// Valid GGUF files, each at most a few tens of KiB: bare headers (v2, v3), every metadata type
/// with nested arrays, one tensor of each supported type, a 64-byte alignment, tensors stored out
/// of order, and two tiny llamas (a tied Q4_0 one and an untied Q5_0/Q8_0 one).
std::vector<gguf_seed> gguf_seed_corpus();

} // namespace aeg::testing
