#pragma once

#include "kernels/sampling_row.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace aeg::models {

/// How a request wants its tokens picked. temperature 0 is greedy.
struct sampling_params {
  float temperature = 0;
  std::int32_t top_k = 0; ///< 0: no limit
  float top_p = 1;
  std::uint64_t seed = 0;
};

/// Serialisation (CAF's inspectors): sampling parameters travel inside requests between nodes.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sampling_params& x) {
  return f(x.temperature, x.top_k, x.top_p, x.seed);
}

/// The sampling rule for the token at index `step` of a request's output: the request's
/// parameters with a uniform number drawn from (seed, step) alone, so that a request picks the
/// same tokens however it is batched, preempted or moved.
kernels::sampling_row sampling_row_for(const sampling_params& p, std::size_t step) noexcept;

/// The most alternatives `logprobs_of` reports (OpenAI's and vLLM's limit).
inline constexpr std::size_t max_top_logprobs = 20;

/// A picked token's log-probability and its most likely alternatives, under the distribution it
/// was drawn from. Empty `top` and `asked` false when its request did not ask.
struct token_logprobs {
  bool asked = false;
  float logprob = 0;                    ///< of the picked token
  std::vector<std::int32_t> top_tokens; ///< the most likely tokens, most likely first
  std::vector<float> top_logprobs;      ///< theirs; -infinity for a token the rule could not pick
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_logprobs& x) {
  return f(x.asked, x.logprob, x.top_tokens, x.top_logprobs);
}

/// The log-probabilities of `token` and of the `top` most likely tokens (at most
/// max_top_logprobs) under the distribution `rule` draws from over `logits`, as vLLM reports
/// them: greedy, the softmax of the logits; otherwise the softmax of logits / temperature over
/// the candidates top-k and top-p leave (the same cut as the sampling kernels), every other
/// token at -infinity.
token_logprobs logprobs_of(std::span<const float> logits, const kernels::sampling_row& rule,
                           std::int32_t token, std::size_t top);

} // namespace aeg::models
