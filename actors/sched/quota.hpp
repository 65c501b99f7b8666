#pragma once

#include "actors/sched/switch_policy.hpp"

#include <optional>
#include <span>
#include <vector>

namespace aeg::sched {

/// One batch of a decode round: how long its steps take and the time between tokens it owes.
struct batch_load {
  seconds step_time;
  seconds tbt;
};

/// Time quotas of one round of batched weighted round-robin (Aegaeon, Algorithm 2, Eq. 2 and 3).
/// Batch i decodes steps of t_i against a target time between tokens d_i, so it earns
/// n_i = d_i / t_i steps of slack per step; the round also pays `switch_cost` c (the summed
/// scale-up times of its models). Then
///   α   = max(c / (min_k n_k · max_quota) + Σ_k 1/n_k, 0.5)
///   q_i = c / (n_i · (α − Σ_k 1/n_k))
/// so every batch emits enough tokens in its turn to cover 1/α of the round (1/α is the round's
/// expected SLO attainment), no quota exceeds `max_quota`, and α ≥ 0.5 bounds how short turns get.
/// `alpha`, when given, replaces Eq. 3 (the paper's illustration fixes α = 1).
struct quota_round {
  std::vector<seconds> quotas;
  double alpha = 0;
};
quota_round assign_quotas(std::span<const batch_load> batches, seconds switch_cost,
                          seconds max_quota = seconds{4.0},
                          std::optional<double> alpha = std::nullopt);

} // namespace aeg::sched
