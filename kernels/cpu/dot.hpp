#pragma once

#include "kernels/dtype.hpp"
#include "kernels/quant.hpp"

#include <cstddef>

namespace aeg::kernels::cpu {

/// Dot product of one weight row of type `t` with one activation row, `n` values each.
/// Quantized rows (Q8_0, Q4_0, Q4_1, Q5_1) take the activation as Q8 blocks (`xq`), float rows
/// (F32, F16) take it as floats (`xf`). Uses AVX2 when the processor has it, else portable code.
float dot(dtype t, const void* w, const block_q8a* xq, const float* xf, std::size_t n) noexcept;

/// The portable version of `dot`, the reference the vectorized one is tested against.
float dot_reference(dtype t, const void* w, const block_q8a* xq, const float* xf,
                    std::size_t n) noexcept;

/// Whether `t` takes quantized activations in `dot`.
bool takes_quantized_activations(dtype t) noexcept;

/// Whether the CPU kernels compute with weights of type `t` directly (F32, F16, Q8_0, Q4_0,
/// Q4_1, Q5_1 and the interleaved Q4_1x8, Q5_1x8, Q8_0x8); other types are converted at load
/// time.
bool computes_in(dtype t) noexcept;

/// Whether `dot` runs the AVX2 code on this processor.
bool uses_avx2() noexcept;

} // namespace aeg::kernels::cpu
