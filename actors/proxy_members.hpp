#pragma once

// The proxy's records of its instances and requests (proxy.cpp), apart so that the proxy's
// logic reads on its own.

#include "actors/generation.hpp"
#include "actors/pool_protocol.hpp"
#include "actors/request.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace aeg::actors::proxy_detail {

/// No index (no member, no lane).
inline constexpr std::size_t none = std::numeric_limits<std::size_t>::max();

/// What the proxy knows of one of its instances.
struct proxy_member {
  pool_member m;
  bool alive = true;
  std::size_t lane = none;        // prefill lane of this instance (aegaeon routing)
  std::size_t prefills = 0;       // requests it holds from its lane
  double switch_rate = 0;         // bytes/s it scales models up at (0: unknown)
  std::size_t kv_promised = 0;    // KV its decode requests may grow to (decode placement)
  std::string last_model;         // the model of the request started on it last
  std::uint64_t last_started = 0; // when, counted in requests started on the pool
  std::size_t holds(const std::string& model) const {
    const auto it = active_.find(model);
    return it == active_.end() ? 0 : it->second;
  }
  /// Requests placed on it, by model, for the models it holds any of (changed through place,
  /// leave and clear_active, which keep the total that every placement asks of every member).
  const std::map<std::string, std::size_t>& active() const { return active_; }
  std::size_t total() const { return total_; }
  void place(const std::string& model) {
    ++active_[model];
    ++total_;
  }
  void leave(const std::string& model) {
    if (auto a = active_.find(model); a != active_.end() && a->second > 0) {
      if (--a->second == 0)
        active_.erase(a); // only models it holds: placements walk them
      --total_;
    }
  }
  void clear_active() {
    active_.clear();
    total_ = 0;
  }
  bool serves(const std::string& model) const {
    if (sorted_models_.size() != m.models.size()) { // first asked: a member keeps its models
      sorted_models_ = m.models;
      std::sort(sorted_models_.begin(), sorted_models_.end());
    }
    return std::binary_search(sorted_models_.begin(), sorted_models_.end(), model);
  }

private:
  std::map<std::string, std::size_t> active_;
  std::size_t total_ = 0;
  mutable std::vector<std::string> sorted_models_; // m.models, for lookups
};
/// What the proxy knows of one of its requests.
struct proxy_request {
  request_actor actor;
  std::string model;
  std::size_t member = none;                // where it runs (or ran last)
  std::optional<generation_request> queued; // waiting in a prefill lane
  std::size_t lane = none;
  bool holds_lane = false;     // occupies a prefill slot of its lane
  std::size_t kv_promised = 0; // its share of its decode instance's kv_promised
  std::size_t kv_need = 0;     // KV bytes of its whole context (prompt and every token)
};

/// A node's decode instances as a prefill lane there sees them.
struct decode_load {
  double held = 0;         ///< requests on its live decode instances
  double decoders = 0;     ///< its live decode instances
  std::size_t serving = 0; ///< of those, the ones that serve the model
  bool batch = false;      ///< one of them holds a batch of the model
};

/// The live decode instances of `node` among `members`, for `model`.
inline decode_load decode_side(const std::vector<proxy_member>& members, const std::string& node,
                               const std::string& model) {
  decode_load d;
  for (const auto& m : members)
    if (m.alive && m.m.role == instance_role::decode && m.m.node == node) {
      d.held += static_cast<double>(m.total());
      d.batch |= m.holds(model) > 0;
      d.serving += m.serves(model) ? 1 : 0;
      ++d.decoders;
    }
  return d;
}

/// `decode_side`'s answers, each computed once while the members stay as they are: a placement
/// asks for every prefill lane, and the lanes of one node share one answer. Cleared whenever
/// the members may have changed (before each placement).
class decode_sides {
public:
  void clear() { memo_.clear(); }
  decode_load of(const std::vector<proxy_member>& members, const std::string& node,
                 const std::string& model) {
    for (const auto& [n, m, d] : memo_)
      if (n == node && m == model)
        return d;
    return std::get<2>(memo_.emplace_back(node, model, decode_side(members, node, model)));
  }

private:
  std::vector<std::tuple<std::string, std::string, decode_load>> memo_;
};

} // namespace aeg::actors::proxy_detail
