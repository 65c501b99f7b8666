// Writes the HTTP fuzz target's seed corpus into a directory: make_http_seeds DIR

#include "tests/fuzz/http_fuzz.hpp"

#include <cstdio>
#include <fstream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_http_seeds DIR\n");
    return 2;
  }
  const auto seeds = aeg::testing::http_seed_corpus();
  for (std::size_t i = 0; i < seeds.size(); ++i) {
    // The first byte picks how the target splits the rest: 0, reads it whole first.
    std::ofstream out(std::string(argv[1]) + "/seed-" + std::to_string(i), std::ios::binary);
    out << '\0' << seeds[i];
    if (!out) {
      std::fprintf(stderr, "make_http_seeds: cannot write into %s\n", argv[1]);
      return 1;
    }
  }
  return 0;
}
