#pragma once

// Quantized blocks as GGUF files hold them, for the transcoding and interleaving tests, and the
// instruction sets the CPU matmul can be held to.
#include "kernels/cpu/dot.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/half.hpp"
#include "kernels/quant.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace aeg::kernels::testing {

// Every instruction set this processor runs, the portable one first.
inline std::vector<cpu::cpu_isa> available_isas() {
  std::vector<cpu::cpu_isa> isas = {cpu::cpu_isa::portable};
  if (cpu::uses_avx2())
    isas.push_back(cpu::cpu_isa::avx2);
  if (cpu::best_isa() == cpu::cpu_isa::avx512_vnni)
    isas.push_back(cpu::cpu_isa::avx512_vnni);
  return isas;
}

// Q4_K's eight 6-bit scales and mins in its 12 bytes (the inverse of ggml's get_scale_min_k4).
inline void pack_scales_mins(const std::uint8_t* sc, const std::uint8_t* m, std::uint8_t* out) {
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<std::uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<std::uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<std::uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

// Q4_K blocks as a quantizer writes them: positive d and dmin of a weight's size (about 1e-3),
// every scale and min from 0 to 63, random 4-bit values.
inline std::vector<block_q4_k> typical_blocks(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  std::vector<block_q4_k> out(n);
  for (auto& b : out) {
    b.d = float_to_half(1e-3f * u(rng));
    b.dmin = float_to_half(1e-3f * u(rng));
    std::uint8_t sc[8], m[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = static_cast<std::uint8_t>(rng() % 64);
      m[j] = static_cast<std::uint8_t>(rng() % 64);
    }
    pack_scales_mins(sc, m, b.scales);
    for (auto& q : b.qs)
      q = static_cast<std::uint8_t>(rng());
  }
  return out;
}

inline std::vector<float> dequantized(dtype t, const void* src, std::size_t n) {
  std::vector<float> y(n);
  dequantize_row(t, src, y.data(), n);
  return y;
}

inline std::vector<block_q4_1> transcoded(const std::vector<block_q4_k>& k) {
  EXPECT_EQ(transcoded_type(dtype::q4_k), dtype::q4_1);
  std::vector<block_q4_1> out(k.size() * 8);
  transcode_row(dtype::q4_k, k.data(), out.data(), k.size() * 256);
  return out;
}

// Q5_K blocks as a quantizer writes them: Q4_K's scales and mins, random 5-bit values.
inline std::vector<block_q5_k> typical_q5_k(std::size_t n, std::uint32_t seed) {
  const auto q4 = typical_blocks(n, seed);
  std::mt19937 rng(seed + 1000);
  std::vector<block_q5_k> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i].d = q4[i].d;
    out[i].dmin = q4[i].dmin;
    std::memcpy(out[i].scales, q4[i].scales, sizeof out[i].scales);
    std::memcpy(out[i].qs, q4[i].qs, sizeof out[i].qs);
    for (auto& h : out[i].qh)
      h = static_cast<std::uint8_t>(rng());
  }
  return out;
}

inline std::vector<block_q5_1> transcoded(const std::vector<block_q5_k>& k) {
  EXPECT_EQ(transcoded_type(dtype::q5_k), dtype::q5_1);
  std::vector<block_q5_1> out(k.size() * 8);
  transcode_row(dtype::q5_k, k.data(), out.data(), k.size() * 256);
  return out;
}

// Q6_K, Q3_K and Q2_K blocks from random bytes (every scale, min and value) with a d (and Q2_K's
// dmin) of a weight's size; Q6_K and Q3_K keep d in their last two bytes, Q2_K d and dmin in its
// last four.
inline std::vector<std::byte> random_split_blocks(dtype t, std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  const std::size_t size = traits(t).block_bytes;
  std::vector<std::byte> out(n * size);
  for (auto& b : out)
    b = static_cast<std::byte>(rng());
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t k = 0; k < (t == dtype::q2_k ? 2 : 1); ++k) {
      const auto d = float_to_half(1e-4f * (0.5f + static_cast<float>(rng() % 1024) / 1024.0f));
      std::memcpy(out.data() + (i + 1) * size - 2 * (k + 1), &d, 2);
    }
  }
  return out;
}

// Σ w·x in float64, the reference of a product over 8-bit activations, and Σ |w·x|, the scale
// of their rounding.
struct float_product {
  double exact = 0, norm = 0;
};
inline float_product product_of(const float* w, const float* x, std::size_t n) {
  float_product p;
  for (std::size_t k = 0; k < n; ++k) {
    const double wx = static_cast<double>(w[k]) * x[k];
    p.exact += wx;
    p.norm += std::fabs(wx);
  }
  return p;
}

// `got` against w·x: only the activations' 8-bit rounding (under 1% of Σ |w·x|) may part them.
inline ::testing::AssertionResult near_product(float got, const float* w, const float* x,
                                               std::size_t n) {
  const auto p = product_of(w, x, n);
  if (std::fabs(got - p.exact) <= 0.01 * p.norm)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << got << " against " << p.exact << " (sum of magnitudes " << p.norm << ")";
}

} // namespace aeg::kernels::testing
