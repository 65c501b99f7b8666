#pragma once

// The GGUF reader's fuzz entry point, shared by the libFuzzer target (tests/fuzz, AEG_FUZZ=ON)
// and the replay test that runs the seed corpus and hand-made mutations in every build.

#include <cstddef>
#include <cstdint>

/// Parses `data` with gguf::file::parse; on success touches every metadata value, reads every
/// byte of every tensor, dequantizes each tensor's first row and checks that writing the file
/// again and re-reading it gives the same values. Aborts (a crash to the fuzzer) when an
/// invariant fails; returns 0 otherwise.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
