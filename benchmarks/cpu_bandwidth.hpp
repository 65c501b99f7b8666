#pragma once

// The memory bandwidth the CPU compute threads reach together: the bound that a kernel reading
// a buffer once is measured against.

#include "kernels/cpu/parallel.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace aeg::bench {

using clock_type = std::chrono::steady_clock;

inline double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) inline float sum_avx2(const float* p, std::size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
         a3 = _mm256_setzero_ps();
  for (std::size_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  alignas(32) float out[8];
  _mm256_store_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  return std::accumulate(out, out + 8, 0.0f);
}
#endif

// Bytes per second the compute threads read from memory together (best of `passes` reads of a
// buffer of `bytes`, which should be far larger than the caches; 256 MiB by default).
// Written after each pass, so that the reads are not optimized away.
inline volatile float bandwidth_sink = 0.0f;

inline double cpu_read_bandwidth(int passes, std::size_t bytes = std::size_t{256} << 20) {
  const std::size_t chunk = 1 << 20; // floats a job reads
  const std::size_t n = std::max<std::size_t>(bytes / 4 / chunk, 1) * chunk;
  // One buffer for the process, grown when a caller asks for more.
  static std::size_t held = 0;
  static float* data = nullptr;
  if (held < n) {
    std::free(data);
    data = static_cast<float*>(std::aligned_alloc(64, n * 4));
    std::fill(data, data + n, 1.0f);
    held = n;
  }
  double best = 0;
  for (int pass = 0; pass < passes; ++pass) {
    std::vector<float> partial(1024);
    const auto t = clock_type::now();
    kernels::cpu::parallel_for(n / chunk, 1, [&](std::size_t b, std::size_t e) {
      for (std::size_t c = b; c < e; ++c)
#if defined(__x86_64__)
        partial[c % 1024] += sum_avx2(data + c * chunk, chunk);
#else
        partial[c % 1024] += std::accumulate(data + c * chunk, data + (c + 1) * chunk, 0.0f);
#endif
    });
    best = std::max(best, static_cast<double>(n) * 4 / seconds_since(t));
    bandwidth_sink = std::accumulate(partial.begin(), partial.end(), 0.0f);
  }
  return best;
}

} // namespace aeg::bench
