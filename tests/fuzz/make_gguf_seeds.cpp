// Writes the GGUF fuzz seed corpus into a directory: make_gguf_seeds DIR

#include "tests/fuzz/gguf_seeds.hpp"

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_gguf_seeds DIR (an existing directory)\n");
    return 2;
  }
  for (const auto& seed : aeg::testing::gguf_seed_corpus()) {
    const std::string path = std::string(argv[1]) + "/" + seed.name;
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr ||
        std::fwrite(seed.bytes.data(), 1, seed.bytes.size(), f) != seed.bytes.size()) {
      std::fprintf(stderr, "make_gguf_seeds: cannot write %s\n", path.c_str());
      return 1;
    }
    std::fclose(f);
  }
  return 0;
}
