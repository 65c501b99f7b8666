#include "actors/step_plan.hpp"

#include <type_traits>

namespace aeg::actors {

namespace {

std::string seq_name(std::uint64_t id) {
  return "#" + std::to_string(id);
}

std::string model_name(const step_view& v, std::size_t i) {
  return i < v.models.size() ? std::string(v.models[i].name) : "model " + std::to_string(i);
}

} // namespace

std::string describe(const plan_action& a, const step_view& v) {
  return std::visit(
      [&](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, activate_model>)
          return "activate " + model_name(v, x.model) + (x.prefetched ? " (prefetched)" : "");
        else if constexpr (std::is_same_v<T, prefetch_model>)
          return "prefetch " + model_name(v, x.model);
        else if constexpr (std::is_same_v<T, swap_out_kv>)
          return "swap out " + seq_name(x.seq);
        else if constexpr (std::is_same_v<T, swap_in_kv>)
          return "swap in " + seq_name(x.seq);
        else if constexpr (std::is_same_v<T, preempt_seq>)
          return "preempt " + seq_name(x.seq);
        else if constexpr (std::is_same_v<T, split_seq>)
          return "split " + seq_name(x.seq) + " to batch " + std::to_string(x.batch);
        else if constexpr (std::is_same_v<T, admit_seq>)
          return "admit " + seq_name(x.seq) + " to batch " + std::to_string(x.batch);
        else if constexpr (std::is_same_v<T, reserve_kv>)
          return "reserve " + seq_name(x.seq) + " to " + std::to_string(x.tokens) + " tokens";
        else
          return "fail " + seq_name(x.seq) + ": " + x.message;
      },
      a);
}

std::vector<std::string> describe(const step_plan& p, const step_view& v) {
  std::vector<std::string> out;
  for (const auto& a : p.actions)
    out.push_back(describe(a, v));
  if (!p.step.empty()) {
    std::string line = "step";
    for (const auto& e : p.step)
      line += " " + seq_name(e.seq) + "+" + std::to_string(e.feed);
    out.push_back(std::move(line));
  } else {
    out.push_back(p.idle == idle_kind::await_room ? "idle: await room" : "idle: yield");
  }
  return out;
}

} // namespace aeg::actors
