#include "gpu/sim/sim_cores.hpp"

#include <algorithm>

namespace aeg::gpu {

namespace {

double seconds_of(sim_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// A step this close to its end has ended: its end was rounded up to the clock's nanosecond, so
// what is left is the rounding of the arithmetic.
constexpr double ended_within = 1e-12;

} // namespace

void sim_cores::run(sim_clock::duration work, std::function<void()> done) {
  progress();
  jobs_.push_back({seconds_of(work), std::move(done)});
  plan();
}

void sim_cores::hold(double weight, sim_clock::time_point from, sim_clock::time_point until) {
  if (weight <= 0 || until <= std::max(from, clock_->now()))
    return;
  progress();
  holds_.push_back({from, until, weight});
  plan();
}

double sim_cores::load(sim_clock::time_point at) const noexcept {
  double w = static_cast<double>(jobs_.size());
  for (const auto& h : holds_)
    if (h.from <= at && at < h.until)
      w += h.share;
  return w;
}

// Charges each step its share of the time since the last charge. Nothing changed in between:
// every arrival, end and edge of a hold charges first.
void sim_cores::progress() {
  const auto now = clock_->now();
  if (now > since_ && !jobs_.empty()) {
    const double each = seconds_of(now - since_) / load(since_);
    for (auto& j : jobs_)
      j.left -= each;
  }
  since_ = now;
  std::erase_if(holds_, [&](const weight& h) { return h.until <= now; });
}

// Asks the clock for the next point the shares change at: the first step's end at today's
// shares, or a hold's edge. Points asked for before are void.
void sim_cores::plan() {
  ++plan_;
  if (jobs_.empty())
    return; // holds weigh only beside steps; the next step's arrival charges from then
  const auto now = clock_->now();
  double least = jobs_.front().left;
  for (const auto& j : jobs_)
    least = std::min(least, j.left);
  if (least <= ended_within) // ends now, not a nanosecond on
    least = 0;
  auto next = now + std::chrono::ceil<sim_clock::duration>(
                        std::chrono::duration<double>(std::max(least, 0.0) * load(now)));
  for (const auto& h : holds_)
    next = std::min(next, h.from > now ? h.from : h.until);
  clock_->at(next, [self = weak_from_this(), p = plan_] {
    if (auto cores = self.lock())
      cores->fire(p);
  });
}

void sim_cores::fire(std::uint64_t which) {
  if (which != plan_)
    return;
  progress();
  std::vector<std::function<void()>> ended;
  std::vector<job> going;
  for (auto& j : jobs_)
    if (j.left > ended_within)
      going.push_back(std::move(j));
    else
      ended.push_back(std::move(j.done));
  jobs_ = std::move(going);
  plan();
  for (auto& done : ended) // may start more work, which plans again
    done();
}

} // namespace aeg::gpu
