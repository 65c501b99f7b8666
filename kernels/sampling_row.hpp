#pragma once

#include <cstdint>

namespace aeg::kernels {

/// How to pick the next token from one row of logits. The same rule on every backend, so that
/// CPU and CUDA pick the same token from the same logits and the same `u`:
/// - `temperature <= 0`: greedy, the highest logit (the lowest index among equals);
/// - otherwise the candidates are the `top_k` highest logits (all when `top_k <= 0`), cut to the
///   smallest highest-first prefix whose probability mass (softmax of logit / temperature) reaches
///   `top_p`; the token is where `u` times their total mass falls when their masses are laid
///   end to end in vocabulary order.
struct sampling_row {
  float temperature = 0;
  std::int32_t top_k = 0;
  float top_p = 1;
  float u = 0; ///< uniform in [0, 1), drawn by the caller from the request's seed and step
};

} // namespace aeg::kernels
