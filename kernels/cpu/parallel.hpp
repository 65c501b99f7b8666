#pragma once

#include <cstddef>
#include <functional>

namespace aeg::kernels::cpu {

/// Runs `fn(begin, end)` over `[0, n)` split into chunks of at least `grain` items, on the
/// calling thread and the process's compute helpers (one per extra core). Returns when every
/// chunk has run. Chunks never split an item, so per-item arithmetic does not depend on how the
/// work was divided. When another caller holds the helpers, the work runs on the calling thread
/// alone (no waiting on each other, no deadlock between streams of different devices).
void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& fn);

/// Threads `parallel_for` may use, the caller included.
std::size_t num_compute_threads() noexcept;

} // namespace aeg::kernels::cpu
