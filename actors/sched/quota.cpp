#include "actors/sched/quota.hpp"

#include <algorithm>
#include <limits>

namespace aeg::sched {

quota_round assign_quotas(std::span<const batch_load> batches, seconds switch_cost,
                          seconds max_quota, std::optional<double> alpha) {
  quota_round r;
  if (batches.empty())
    return r;
  // A round whose switches cost nothing would divide 0 by 0: a millisecond keeps the quotas
  // proportional (and short: switching is then nearly free).
  const double c = std::max(switch_cost.count(), 1e-3);
  std::vector<double> n;
  double inv_sum = 0, n_min = std::numeric_limits<double>::max();
  for (const auto& b : batches) {
    const double ni = b.tbt.count() / std::max(b.step_time.count(), 1e-9);
    n.push_back(ni);
    inv_sum += 1 / ni;
    n_min = std::min(n_min, ni);
  }
  r.alpha = alpha.value_or(std::max(c / (n_min * max_quota.count()) + inv_sum, 0.5));
  const double slack = r.alpha - inv_sum;
  for (const double ni : n) {
    // α ≤ Σ 1/n (only with a fixed α) means the round cannot keep up: run each batch the most.
    const double q = slack > 0 ? c / (ni * slack) : max_quota.count();
    r.quotas.emplace_back(std::min(q, max_quota.count()));
  }
  return r;
}

} // namespace aeg::sched
