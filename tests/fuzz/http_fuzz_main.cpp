// libFuzzer's entry point for the HTTP request path (built with -DAEG_FUZZ=ON).

#include "tests/fuzz/http_fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return aeg::testing::http_fuzz_one(data, size);
}
