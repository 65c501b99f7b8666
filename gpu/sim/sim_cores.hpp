#pragma once

#include "gpu/sim/sim_clock.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace aeg::gpu {

/// Compute that several simulated devices share, as CPU devices share the host's cores. The
/// steps in progress share it equally (processor sharing: two at once each go at half speed,
/// as two devices' kernels do on the same cores), and a copy running beside them weighs as a
/// share of a step. So when a step ends is known only as the others come and go: it is told
/// when it ends. For the simulation's single thread only (see sim_clock).
class sim_cores : public std::enable_shared_from_this<sim_cores> {
public:
  explicit sim_cores(std::shared_ptr<sim_clock> clock) : clock_(std::move(clock)) {}

  /// Starts `work` now (how long it takes with the cores to itself); `done` runs from the clock
  /// once it has had that much of them.
  void run(sim_clock::duration work, std::function<void()> done);
  /// Weighs `weight` among the steps from `from` until `until` (a copy's thread beside the
  /// kernels' threads: a step weighs 1).
  void hold(double weight, sim_clock::time_point from, sim_clock::time_point until);

private:
  struct job {
    double left; // seconds of the cores to itself still to have
    std::function<void()> done;
  };
  struct weight {
    sim_clock::time_point from, until;
    double share;
  };
  void progress();
  double load(sim_clock::time_point at) const noexcept;
  void plan();
  void fire(std::uint64_t which);

  std::shared_ptr<sim_clock> clock_;
  std::vector<job> jobs_;
  std::vector<weight> holds_;
  sim_clock::time_point since_{}; // progress is charged up to here
  std::uint64_t plan_ = 0;        // the plan in force: callbacks of earlier ones do nothing
};

} // namespace aeg::gpu
