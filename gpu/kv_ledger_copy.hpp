#pragma once

#include "gpu/kv_ledger.hpp"

#include <memory>
#include <utility>

namespace aeg::gpu {

/// A planner's copy of a pool's ledger, copied only when changed: it starts as a shared,
/// read-only snapshot (`kv_pool::snapshot`, which many planners may read at once) and becomes
/// its own ledger at the first `edit`. Most steps change nothing in a pool, and a ledger copy
/// costs the slabs in use. Plain value, not thread-safe; the snapshot it shares never changes.
class kv_ledger_copy {
public:
  /// An empty ledger of no bytes (shared: making one allocates nothing).
  kv_ledger_copy() : kv_ledger_copy(empty()) {}
  /// A ledger of its own (nothing shared). Implicit: a view built by hand holds plain ledgers.
  kv_ledger_copy(kv_ledger ledger)
      : ledger_(std::make_shared<kv_ledger>(std::move(ledger))), own_(true) {}
  /// Shares `snapshot` until the first `edit`.
  explicit kv_ledger_copy(std::shared_ptr<const kv_ledger> snapshot)
      : ledger_(std::const_pointer_cast<kv_ledger>(std::move(snapshot))), own_(false) {}

  /// A copy of a ledger of its own is its own too; a shared snapshot stays shared.
  kv_ledger_copy(const kv_ledger_copy& other)
      : ledger_(other.own_ ? std::make_shared<kv_ledger>(*other.ledger_) : other.ledger_),
        own_(other.own_) {}
  kv_ledger_copy& operator=(const kv_ledger_copy& other) {
    if (this != &other)
      *this = kv_ledger_copy(other);
    return *this;
  }
  kv_ledger_copy(kv_ledger_copy&&) noexcept = default;
  kv_ledger_copy& operator=(kv_ledger_copy&&) noexcept = default;

  const kv_ledger& operator*() const noexcept { return *ledger_; }
  const kv_ledger* operator->() const noexcept { return ledger_.get(); }
  /// The ledger to change: the snapshot is copied first when it is still shared.
  kv_ledger& edit() {
    if (!own_) {
      ledger_ = std::make_shared<kv_ledger>(*ledger_);
      own_ = true;
    }
    return *ledger_;
  }

private:
  static const std::shared_ptr<const kv_ledger>& empty() {
    static const std::shared_ptr<const kv_ledger> none = std::make_shared<kv_ledger>(nullptr, 0, 1);
    return none;
  }

  // Never written through while `own_` is false: the snapshot is const to everyone.
  std::shared_ptr<kv_ledger> ledger_;
  bool own_;
};

} // namespace aeg::gpu
