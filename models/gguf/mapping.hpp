#pragma once

// The memory map a GGUF file read from disk keeps (private to models/gguf: complete wherever a
// `file` is made or destroyed).

#include "models/gguf/file.hpp"

#include <cstddef>
#include <sys/mman.h>

namespace aeg::models::gguf {

struct file::mapping {
  void* addr = nullptr;
  std::size_t size = 0;
  ~mapping() {
    if (addr != nullptr && addr != MAP_FAILED)
      munmap(addr, size);
  }
};

} // namespace aeg::models::gguf
