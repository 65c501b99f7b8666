#pragma once

#include "actors/sched/switch_policy.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace aeg::sched {

/// Grouped FCFS for prefill instances (Aegaeon, Algorithm 1). Each instance has a queue of
/// groups; a group holds requests of one model. An arriving request joins a queued group of its
/// model on any instance whose cumulative size (requests ever added, not the ones left) is below
/// `max_group`; otherwise it starts a new group at the back of the instance with the least
/// estimated work: the prefill time of everything queued there or handed to it and not finished,
/// plus a switch wherever two neighbouring requests (or the model now active there) differ. An
/// instance takes one request at a time from its front group. With `max_group` 1 this is plain
/// FCFS with no grouping. Plain, deterministic code.
class prefill_queue {
public:
  /// Estimated prefill time of a request.
  struct estimate {
    seconds prefill{0};
  };
  /// Estimated switch time to a model.
  using switch_time_fn = std::function<seconds(const std::string& model)>;

  /// Whether instance `i` serves `model` (unset: every instance serves every model).
  using serves_fn = std::function<bool(std::size_t instance, const std::string& model)>;
  /// What `add` returns when no open instance serves the model.
  static constexpr std::size_t no_instance = static_cast<std::size_t>(-1);

  prefill_queue(std::size_t num_instances, std::size_t max_group, switch_time_fn switch_time);

  /// Limits each instance to the models `serves` says (instances of nodes serving different
  /// models); a request only joins or starts groups on instances that serve its model.
  void set_serves(serves_fn serves) { serves_ = std::move(serves); }
  /// What sending `model`'s next group to instance `i` costs after its prefill (on its node's
  /// decode instances), in seconds: a new group goes where the instance's work plus this is
  /// least (unset: nothing; the lowest index among equals).
  using after_fn = std::function<seconds(std::size_t instance, const std::string& model)>;
  void set_after(after_fn after) { after_ = std::move(after); }
  /// Queues request `id` of `model`; returns the instance it will run on, or `no_instance`
  /// when no open (not drained) instance serves the model (nothing is queued then).
  std::size_t add(std::uint64_t id, const std::string& model, estimate e);
  /// The next request instance `i` should prefill, taken off its queue (null when none). It
  /// counts in the instance's work until `finish`.
  std::optional<std::uint64_t> next(std::size_t instance);
  /// Request `id`, handed out by `next`, no longer occupies its instance (prefilled, cancelled):
  /// its work leaves the instance's, and its model becomes the one active there.
  void finish(std::uint64_t id);
  /// Takes `id` off whatever queue holds it (a cancel). True when it was queued.
  bool remove(std::uint64_t id);
  /// Tells the queue which model instance `i` has active (its next switch is counted from it).
  void set_active(std::size_t instance, const std::string& model);
  /// Every queued request of instance `i`, in order (when an instance goes away); the ones it
  /// was handed are forgotten, and `add` never chooses it again.
  std::vector<std::uint64_t> drain(std::size_t instance);
  /// Instance `i`, drained, is back (a node joined again): `add` may choose it again.
  void reopen(std::size_t instance) { lanes_[instance].open = true; }

  /// Estimated time to run everything queued on instance `i` or handed to it and not finished,
  /// switches included.
  seconds work(std::size_t instance) const;
  /// Requests queued on instance `i`.
  std::size_t size(std::size_t instance) const;
  /// The models of instance `i`'s groups, front first (for tests and reports).
  std::vector<std::string> groups(std::size_t instance) const;

private:
  struct entry {
    std::uint64_t id;
    estimate e;
  };
  struct group {
    std::string model;
    std::size_t cumulative = 0; // requests ever added: the size rule of Algorithm 1
    std::deque<entry> pending;
  };
  struct started {
    std::uint64_t id;
    std::string model;
    estimate e;
  };
  struct lane {
    std::deque<group> groups;
    std::vector<started> handed; // handed out by `next`, not finished, in order
    std::string active;
    bool open = true; // false once drained: its instance is gone
  };
  std::vector<lane> lanes_;
  std::size_t max_group_;
  switch_time_fn switch_time_;
  serves_fn serves_;
  after_fn after_;
};

/// Where a prefilled request decodes: an instance that already has a batch of its model with
/// room for its KV, else the one with the fewest batches (then the most free KV). `batches[i]`
/// lists instance i's models; `kv_room[i]` whether it can take the request's KV.
std::size_t place_decode(const std::string& model,
                         const std::vector<std::vector<std::string>>& batches,
                         const std::vector<bool>& kv_room, const std::vector<double>& free_kv);

} // namespace aeg::sched
