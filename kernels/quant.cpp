#include "kernels/quant.hpp"

#include "coro/assert.hpp"
#include "kernels/half.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace aeg::kernels {

namespace {

const dtype_traits table[] = {
    {"F32", 1, 4, false},       {"F16", 1, 2, false},       {"BF16", 1, 2, false},
    {"Q8_0", 32, 34, true},     {"Q4_0", 32, 18, true},     {"Q4_1", 32, 20, true},
    {"Q5_0", 32, 22, true},     {"Q4_K", 256, 144, true},   {"Q6_K", 256, 210, true},
    {"Q4_1x8", 32, 20, true},   {"Q8_0x8", 32, 34, true},   {"Q2_K", 256, 84, true},
    {"Q3_K", 256, 110, true},   {"Q5_K", 256, 176, true},   {"IQ4_NL", 32, 18, true},
    {"IQ4_XS", 256, 136, true}, {"Q5_1", 32, 24, true},     {"Q5_1x8", 32, 24, true},
    {"Q6_Kx8", 256, 210, true}, {"Q3_Kx8", 256, 114, true}, {"Q2_Kx8", 256, 84, true},
};

float h2f(std::uint16_t h) {
  return half_to_float(h);
}

void dequant_q4_k(const block_q4_k& b, float* y) {
  const float d = h2f(b.d), dmin = h2f(b.dmin);
  const std::uint8_t* q = b.qs;
  for (int c = 0; c < 4; ++c, q += 32, y += 64) {
    std::uint8_t sc0, m0, sc1, m1;
    scale_min_k4(2 * c, b.scales, sc0, m0);
    scale_min_k4(2 * c + 1, b.scales, sc1, m1);
    const float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
    for (int l = 0; l < 32; ++l) {
      y[l] = d0 * static_cast<float>(q[l] & 0xF) - mm0;
      y[32 + l] = d1 * static_cast<float>(q[l] >> 4) - mm1;
    }
  }
}

void dequant_q6_k(const block_q6_k& b, float* y) {
  const float d = h2f(b.d);
  const std::uint8_t* ql = b.ql;
  const std::uint8_t* qh = b.qh;
  const std::int8_t* sc = b.scales;
  for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, y += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is + 0] * static_cast<float>(q1);
      y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
      y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
      y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
    }
  }
}

void dequant_q2_k(const block_q2_k& b, float* y) {
  const float d = h2f(b.d), dmin = h2f(b.dmin);
  const std::uint8_t* q = b.qs;
  int is = 0;
  for (int half = 0; half < 2; ++half, q += 32)
    for (int shift = 0; shift < 8; shift += 2)
      for (int part = 0; part < 2; ++part) { // bytes 0..15, then 16..31 of the 32
        const std::uint8_t sc = b.scales[is++];
        const float dl = d * static_cast<float>(sc & 0xF), ml = dmin * static_cast<float>(sc >> 4);
        for (int l = 0; l < 16; ++l)
          *y++ = dl * static_cast<float>((q[16 * part + l] >> shift) & 3) - ml;
      }
}

void dequant_q3_k(const block_q3_k& b, float* y) {
  std::int8_t scales[16];
  q3_k_scales(b, scales);
  const float d = h2f(b.d);
  const std::uint8_t* q = b.qs;
  int is = 0;
  std::uint8_t m = 1;
  for (int half = 0; half < 2; ++half, q += 32)
    for (int shift = 0; shift < 8; shift += 2, m = static_cast<std::uint8_t>(m << 1))
      for (int part = 0; part < 2; ++part) {
        const float dl = d * static_cast<float>(scales[is++]);
        for (int l = 0; l < 16; ++l) {
          const int k = 16 * part + l;
          const int v = ((q[k] >> shift) & 3) - ((b.hmask[k] & m) ? 0 : 4);
          *y++ = dl * static_cast<float>(v);
        }
      }
}

void dequant_q5_k(const block_q5_k& b, float* y) {
  const float d = h2f(b.d), dmin = h2f(b.dmin);
  const std::uint8_t* ql = b.qs;
  for (int c = 0; c < 4; ++c, ql += 32, y += 64) {
    std::uint8_t sc0, m0, sc1, m1;
    scale_min_k4(2 * c, b.scales, sc0, m0);
    scale_min_k4(2 * c + 1, b.scales, sc1, m1);
    const float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
    const std::uint8_t u0 = static_cast<std::uint8_t>(1u << (2 * c)), u1 = u0 << 1;
    for (int l = 0; l < 32; ++l) {
      y[l] = d0 * static_cast<float>((ql[l] & 0xF) + (b.qh[l] & u0 ? 16 : 0)) - mm0;
      y[32 + l] = d1 * static_cast<float>((ql[l] >> 4) + (b.qh[l] & u1 ? 16 : 0)) - mm1;
    }
  }
}

// IQ4_NL's and IQ4_XS's values (ggml's kvalues_iq4nl).
constexpr std::int8_t iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

// 32 values from 16 bytes of table indices: low nibbles first, then high ones.
void dequant_iq4_32(const std::uint8_t* qs, float d, float* y) {
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(iq4nl_values[qs[j] & 0xF]);
    y[j + 16] = d * static_cast<float>(iq4nl_values[qs[j] >> 4]);
  }
}

void dequant_iq4_xs(const block_iq4_xs& b, float* y) {
  const float d = h2f(b.d);
  for (int ib = 0; ib < 8; ++ib, y += 32) {
    const int ls =
        ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b.scales_h >> (2 * ib)) & 3) << 4);
    dequant_iq4_32(b.qs + 16 * ib, d * static_cast<float>(ls - 32), y);
  }
}

// Q4_0/Q4_1/Q5_1/Q8_0 encoders follow ggml's reference quantizers, so rows we write look like rows
// llama.cpp would have written.
void quant_q8_0(const float* x, block_q8_0* y, std::size_t nb) {
  for (std::size_t i = 0; i < nb; ++i, x += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j)
      amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = float_to_half(d);
    for (int j = 0; j < 32; ++j)
      y[i].qs[j] = static_cast<std::int8_t>(std::lround(x[j] * id));
  }
}

void quant_q4_0(const float* x, block_q4_0* y, std::size_t nb) {
  for (std::size_t i = 0; i < nb; ++i, x += 32) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j)
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    const float d = max / -8.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = float_to_half(d);
    for (int j = 0; j < 16; ++j) {
      const int a = std::min(15, static_cast<int>(x[j] * id + 8.5f));
      const int b = std::min(15, static_cast<int>(x[j + 16] * id + 8.5f));
      y[i].qs[j] = static_cast<std::uint8_t>(a | (b << 4));
    }
  }
}

// An affine block's step and minimum over 32 values with `levels` steps: the minimum (`lo`)
// and the inverse step to quantize by; `d` and `m` as stored.
float affine_block(const float* x, float levels, std::uint16_t& d, std::uint16_t& m, float& lo) {
  lo = x[0];
  float hi = x[0];
  for (int j = 1; j < 32; ++j) {
    lo = std::min(lo, x[j]);
    hi = std::max(hi, x[j]);
  }
  const float step = (hi - lo) / levels;
  d = float_to_half(step);
  m = float_to_half(lo);
  return step != 0 ? 1.0f / step : 0.0f;
}

void quant_q4_1(const float* x, block_q4_1* y, std::size_t nb) {
  for (std::size_t i = 0; i < nb; ++i, x += 32) {
    float lo;
    const float id = affine_block(x, 15.0f, y[i].d, y[i].m, lo);
    for (int j = 0; j < 16; ++j) {
      const int a = std::min(15, static_cast<int>((x[j] - lo) * id + 0.5f));
      const int b = std::min(15, static_cast<int>((x[j + 16] - lo) * id + 0.5f));
      y[i].qs[j] = static_cast<std::uint8_t>(a | (b << 4));
    }
  }
}

void quant_q5_1(const float* x, block_q5_1* y, std::size_t nb) {
  for (std::size_t i = 0; i < nb; ++i, x += 32) {
    float lo;
    const float id = affine_block(x, 31.0f, y[i].d, y[i].m, lo);
    std::uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int a = std::min(31, static_cast<int>((x[j] - lo) * id + 0.5f));
      const int b = std::min(31, static_cast<int>((x[j + 16] - lo) * id + 0.5f));
      y[i].qs[j] = static_cast<std::uint8_t>((a & 0xF) | ((b & 0xF) << 4));
      qh |= static_cast<std::uint32_t>((a >> 4) & 1) << j;
      qh |= static_cast<std::uint32_t>((b >> 4) & 1) << (j + 16);
    }
    std::memcpy(y[i].qh, &qh, sizeof qh);
  }
}

} // namespace

const dtype_traits& traits(dtype t) noexcept {
  return table[static_cast<int>(t)];
}

void dequantize_row(dtype t, const void* src, float* y, std::size_t n) noexcept {
  const std::size_t nb = n / traits(t).block_elems;
  switch (t) {
  case dtype::f32:
    std::memcpy(y, src, n * sizeof(float));
    return;
  case dtype::f16: {
    const auto* h = static_cast<const std::uint16_t*>(src);
    for (std::size_t i = 0; i < n; ++i)
      y[i] = half_to_float(h[i]);
    return;
  }
  case dtype::bf16: {
    const auto* h = static_cast<const std::uint16_t*>(src);
    for (std::size_t i = 0; i < n; ++i)
      y[i] = bf16_to_float(h[i]);
    return;
  }
  case dtype::q8_0: {
    const auto* b = static_cast<const block_q8_0*>(src);
    for (std::size_t i = 0; i < nb; ++i, y += 32) {
      const float d = h2f(b[i].d);
      for (int j = 0; j < 32; ++j)
        y[j] = b[i].qs[j] * d;
    }
    return;
  }
  case dtype::q4_0: {
    const auto* b = static_cast<const block_q4_0*>(src);
    for (std::size_t i = 0; i < nb; ++i, y += 32) {
      const float d = h2f(b[i].d);
      for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>((b[i].qs[j] & 0xF) - 8) * d;
        y[j + 16] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
      }
    }
    return;
  }
  case dtype::q4_1: {
    const auto* b = static_cast<const block_q4_1*>(src);
    for (std::size_t i = 0; i < nb; ++i, y += 32) {
      const float d = h2f(b[i].d), m = h2f(b[i].m);
      for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>(b[i].qs[j] & 0xF) * d + m;
        y[j + 16] = static_cast<float>(b[i].qs[j] >> 4) * d + m;
      }
    }
    return;
  }
  case dtype::q5_1: {
    const auto* b = static_cast<const block_q5_1*>(src);
    for (std::size_t i = 0; i < nb; ++i, y += 32) {
      const float d = h2f(b[i].d), m = h2f(b[i].m);
      std::uint32_t h;
      std::memcpy(&h, b[i].qh, sizeof h);
      for (int j = 0; j < 16; ++j) {
        const int x0 = (b[i].qs[j] & 0xF) | (((h >> j) << 4) & 0x10);
        const int x1 = (b[i].qs[j] >> 4) | ((h >> (j + 12)) & 0x10);
        y[j] = static_cast<float>(x0) * d + m;
        y[j + 16] = static_cast<float>(x1) * d + m;
      }
    }
    return;
  }
  case dtype::q5_0: {
    const auto* b = static_cast<const block_q5_0*>(src);
    for (std::size_t i = 0; i < nb; ++i, y += 32) {
      const float d = h2f(b[i].d);
      std::uint32_t h;
      std::memcpy(&h, b[i].qh, sizeof h);
      for (int j = 0; j < 16; ++j) {
        const int x0 = ((b[i].qs[j] & 0xF) | (((h >> j) << 4) & 0x10)) - 16;
        const int x1 = ((b[i].qs[j] >> 4) | ((h >> (j + 12)) & 0x10)) - 16;
        y[j] = static_cast<float>(x0) * d;
        y[j + 16] = static_cast<float>(x1) * d;
      }
    }
    return;
  }
  case dtype::q4_k: {
    const auto* b = static_cast<const block_q4_k*>(src);
    for (std::size_t i = 0; i < nb; ++i, y += 256)
      dequant_q4_k(b[i], y);
    return;
  }
  case dtype::q6_k: {
    const auto* b = static_cast<const block_q6_k*>(src);
    for (std::size_t i = 0; i < nb; ++i, y += 256)
      dequant_q6_k(b[i], y);
    return;
  }
  case dtype::q2_k: {
    const auto* b = static_cast<const block_q2_k*>(src);
    for (std::size_t i = 0; i < nb; ++i, y += 256)
      dequant_q2_k(b[i], y);
    return;
  }
  case dtype::q3_k: {
    const auto* b = static_cast<const block_q3_k*>(src);
    for (std::size_t i = 0; i < nb; ++i, y += 256)
      dequant_q3_k(b[i], y);
    return;
  }
  case dtype::q5_k: {
    const auto* b = static_cast<const block_q5_k*>(src);
    for (std::size_t i = 0; i < nb; ++i, y += 256)
      dequant_q5_k(b[i], y);
    return;
  }
  case dtype::iq4_nl: {
    const auto* b = static_cast<const block_iq4_nl*>(src);
    for (std::size_t i = 0; i < nb; ++i, y += 32)
      dequant_iq4_32(b[i].qs, h2f(b[i].d), y);
    return;
  }
  case dtype::iq4_xs: {
    const auto* b = static_cast<const block_iq4_xs*>(src);
    for (std::size_t i = 0; i < nb; ++i, y += 256)
      dequant_iq4_xs(b[i], y);
    return;
  }
  case dtype::q4_1x8:
  case dtype::q5_1x8:
  case dtype::q6_kx8:
  case dtype::q3_kx8:
  case dtype::q2_kx8:
  case dtype::q8_0x8:
    AEG_ASSERT(false, "dequantize_row: interleaved rows are read with dequantize_interleaved_row");
  }
}

bool can_quantize(dtype t) noexcept {
  switch (t) {
  case dtype::f32:
  case dtype::f16:
  case dtype::bf16:
  case dtype::q8_0:
  case dtype::q4_0:
  case dtype::q4_1:
  case dtype::q5_1:
    return true;
  default:
    return false;
  }
}

bool quantize_row(dtype t, const float* x, void* dst, std::size_t n) noexcept {
  const std::size_t nb = n / traits(t).block_elems;
  switch (t) {
  case dtype::f32:
    std::memcpy(dst, x, n * sizeof(float));
    return true;
  case dtype::f16: {
    auto* h = static_cast<std::uint16_t*>(dst);
    for (std::size_t i = 0; i < n; ++i)
      h[i] = float_to_half(x[i]);
    return true;
  }
  case dtype::bf16: {
    auto* h = static_cast<std::uint16_t*>(dst);
    for (std::size_t i = 0; i < n; ++i)
      h[i] = float_to_bf16(x[i]);
    return true;
  }
  case dtype::q8_0:
    quant_q8_0(x, static_cast<block_q8_0*>(dst), nb);
    return true;
  case dtype::q4_0:
    quant_q4_0(x, static_cast<block_q4_0*>(dst), nb);
    return true;
  case dtype::q4_1:
    quant_q4_1(x, static_cast<block_q4_1*>(dst), nb);
    return true;
  case dtype::q5_1:
    quant_q5_1(x, static_cast<block_q5_1*>(dst), nb);
    return true;
  default:
    return false;
  }
}

void quantize_activations(const float* x, block_q8a* y, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n / 32; ++i, x += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j)
      amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int q = static_cast<int>(std::nearbyint(x[j] * id));
      y[i].qs[j] = static_cast<std::int8_t>(q);
      sum += q;
    }
    y[i].d = d;
    y[i].s = d * static_cast<float>(sum);
  }
}

} // namespace aeg::kernels
