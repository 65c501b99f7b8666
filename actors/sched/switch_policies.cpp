#include "actors/sched/switch_policy.hpp"

#include <functional>
#include <utility>

namespace aeg::sched {

namespace {

using factory =
    std::function<std::unique_ptr<switch_policy>(seconds max_quota, std::size_t turn_steps)>;

// Every switch policy a topology or `aegaeon simulate` can name. A new policy is a file of its
// own with a `make_...` function, and a line here.
const std::vector<std::pair<std::string, factory>>& policies() {
  static const std::vector<std::pair<std::string, factory>> all = {
      {"weighted_round_robin", [](seconds q, std::size_t) { return make_weighted_round_robin(q); }},
      {"round_robin", [](seconds, std::size_t steps) { return make_round_robin(steps); }},
      {"drain_first", [](seconds, std::size_t) { return make_drain_first(); }},
      {"serverless_llm", [](seconds, std::size_t) { return make_serverless_llm(); }},
      {"serverless_llm_plus", [](seconds, std::size_t) { return make_serverless_llm_plus(); }},
      {"muxserve", [](seconds, std::size_t) { return make_muxserve(); }},
  };
  return all;
}

} // namespace

std::unique_ptr<switch_policy> make_switch_policy(const std::string& name, seconds max_quota,
                                                  std::size_t turn_steps) {
  for (const auto& [n, make] : policies())
    if (n == name)
      return make(max_quota, turn_steps);
  return nullptr;
}

std::vector<std::string> switch_policy_names() {
  std::vector<std::string> names;
  for (const auto& p : policies())
    names.push_back(p.first);
  return names;
}

} // namespace aeg::sched
