#pragma once

// The HTTP request path's fuzz entry point (the strict request parser, then the OpenAI body
// parser on what it reads), shared by the libFuzzer target (tests/fuzz, AEG_FUZZ=ON) and the
// replay test that runs seeds and mutations in every build.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace aeg::testing {

/// Reads `data[1..]` as the bytes a client sends on one connection, twice: all at once, and in
/// pieces whose sizes `data[0]` picks. Both reads must give the same requests and the same
/// refusal, every refusal an HTTP status the server knows with a reason, and every request read
/// must go through the OpenAI body parser without a fault. Aborts (a crash to the fuzzer) when
/// an invariant fails; returns 0 otherwise.
int http_fuzz_one(const std::uint8_t* data, std::size_t size);

/// Requests for the seed corpus: well-formed ones of every framing, and the refused framings.
std::vector<std::string> http_seed_corpus();

} // namespace aeg::testing
