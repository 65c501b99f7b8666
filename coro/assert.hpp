#pragma once

#include <cstdio>
#include <cstdlib>

/// Aborts with `msg` and the source location when `cond` is false. On in every build: use it for
/// cheap checks of invariants whose violation is a bug, never for expected failures.
#define AEG_ASSERT(cond, msg)                                                                      \
  do {                                                                                             \
    if (!(cond)) [[unlikely]] {                                                                    \
      std::fprintf(stderr, "%s:%d: assertion '%s' failed: %s\n", __FILE__, __LINE__, #cond, msg);  \
      std::abort();                                                                                \
    }                                                                                              \
  } while (false)
