#include "actors/simulation.hpp"

#include "actors/atoms.hpp"
#include "actors/pool.hpp"
#include "actors/proxy.hpp"
#include "gpu/sim/sim_device.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/detail/test_actor_clock.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>

namespace aeg::actors {

namespace {

using arrive_atom = caf::atom_constant<caf::atom("arrive")>;
using collect_atom = caf::atom_constant<caf::atom("collect")>;

// What the client learns, read by the driver between runs of the scheduler (one thread).
struct client_state {
  std::size_t ended = 0, rejected = 0;
  std::string first_rejection;
  bool collected = false;
  std::size_t pending_answers = 0;
  pool_metrics metrics;
  std::vector<instance_stats> instances;
  std::vector<std::string> events;
};

// Submits each arrival when the driver says it is due, counts the ends, and once told collects
// the proxy's metrics and every instance's stats.
class sim_client final : public caf::event_based_actor {
public:
  sim_client(caf::actor_config& cfg, proxy_actor proxy, std::vector<instance_actor> instances,
             const std::vector<trace_request>* arrivals, std::shared_ptr<client_state> state,
             bool log)
      : caf::event_based_actor(cfg), proxy_(std::move(proxy)), instances_(std::move(instances)),
        arrivals_(arrivals), state_(std::move(state)), log_(log) {}

  caf::behavior make_behavior() override {
    return {
        [this](arrive_atom, std::size_t i) { submit(i); },
        [this](token_atom, std::uint64_t id, std::int32_t, const aeg::models::token_logprobs&) {
          if (log_)
            note("token " + std::to_string(id) + " #" + std::to_string(++tokens_[id]));
        },
        [this](done_atom, const generation_result& r) {
          if (log_)
            note("done " + std::to_string(r.id) + " " + std::string(to_string(r.reason)));
          ++state_->ended;
        },
        [this](collect_atom) { collect(); },
    };
  }

private:
  void note(std::string what) {
    char t[32];
    std::snprintf(t, sizeof t, "%.6f ",
                  std::chrono::duration<double>(clock().now().time_since_epoch()).count());
    state_->events.push_back(t + what);
  }

  void submit(std::size_t i) {
    const auto& a = (*arrivals_)[i];
    generation_request r;
    r.id = i;
    r.model = a.model;
    // A simulated device reads no token: any ids inside every vocabulary will do.
    r.prompt.assign(std::max<std::size_t>(a.prompt_tokens, 1), 100);
    r.max_tokens = std::max<std::size_t>(a.output_tokens, 1);
    r.sink = caf::actor_cast<generation_sink>(this);
    // The log shows tokens; the results come from the pool's metrics.
    r.delivery = log_ ? token_delivery::each : token_delivery::none;
    request(proxy_, caf::infinite, submit_atom::value, std::move(r))
        .then([](std::uint64_t) {},
              [this](caf::error& e) {
                if (state_->rejected++ == 0) {
                  const auto& ctx = e.context();
                  state_->first_rejection = ctx.match_elements<std::string>()
                                                ? ctx.get_as<std::string>(0)
                                                : system().render(e);
                }
                ++state_->ended;
              });
  }

  void collect() {
    state_->pending_answers = 1 + instances_.size();
    state_->instances.resize(instances_.size());
    request(proxy_, caf::infinite, metrics_atom::value)
        .then(
            [this](const pool_metrics& m) {
              state_->metrics = m;
              answered();
            },
            [this](caf::error&) { answered(); });
    for (std::size_t i = 0; i < instances_.size(); ++i)
      request(instances_[i], caf::infinite, stats_atom::value)
          .then(
              [this, i](const instance_stats& s) {
                state_->instances[i] = s;
                answered();
              },
              [this](caf::error&) { answered(); });
  }

  void answered() {
    if (--state_->pending_answers == 0)
      state_->collected = true;
  }

  proxy_actor proxy_;
  std::vector<instance_actor> instances_;
  const std::vector<trace_request>* arrivals_; // the caller's, alive for the whole simulation
  std::shared_ptr<client_state> state_;
  bool log_;
  std::map<std::uint64_t, std::size_t> tokens_;
};

// On every way out of a simulation, before its actor system goes: stops the client, lets the
// pool's actors finish their exits (on CAF's test scheduler nothing runs unless driven, and the
// system waits for every actor when it is destroyed) and runs what their devices' timelines
// still hold. Declared after the system and before the pool, so it runs after the pool's stop.
class wind_down {
public:
  wind_down(caf::scheduler::test_coordinator& sched, caf::detail::test_actor_clock& caf_clock,
            gpu::sim_clock& clock)
      : sched_(sched), caf_clock_(caf_clock), clock_(clock) {}
  wind_down(const wind_down&) = delete;
  wind_down& operator=(const wind_down&) = delete;
  ~wind_down() {
    if (client_)
      caf::anon_send_exit(client_, caf::exit_reason::user_shutdown);
    // Until nothing is left to run: messages, device completions, CAF timeouts. Bounded, so
    // that actors which never stop cannot hang the way out.
    constexpr std::size_t most = 10'000'000;
    for (std::size_t ran = 0; ran < most;) {
      if (sched_.try_run_once()) {
        ++ran;
      } else if (auto next = clock_.next()) {
        clock_.advance_to(*next);
      } else if (caf_clock_.trigger_timeouts() == 0) {
        break;
      }
    }
  }
  void stop_too(caf::actor client) { client_ = std::move(client); }

private:
  caf::scheduler::test_coordinator& sched_;
  caf::detail::test_actor_clock& caf_clock_;
  gpu::sim_clock& clock_;
  caf::actor client_;
};

// What a simulation cannot run: no profile, devices that are not simulated, arrivals outside
// the clock's range.
result<void> check_inputs(const pool_spec& spec, const std::vector<trace_request>& arrivals) {
  if (!spec.sim_profile)
    return fail(errc::invalid_argument, "a simulation needs a device profile");
  if (spec.devices.empty() || !spec.nodes.empty())
    return fail(errc::invalid_argument, "a simulation runs a pool of sim devices, not nodes");
  for (const auto& d : spec.devices)
    if (d.backend != "sim")
      return fail(errc::invalid_argument, "device '" + d.name + "' is '" + d.backend +
                                              "': a simulation's devices are all 'sim'");
  constexpr double latest_arrival = 1e9; // seconds: about 32 years, well inside the clock's range
  for (const auto& a : arrivals)
    if (!(a.arrival >= 0 && a.arrival <= latest_arrival))
      return fail(errc::invalid_argument,
                  "an arrival at " + std::to_string(a.arrival) + " s: arrivals are 0 to " +
                      std::to_string(static_cast<long long>(latest_arrival)) + " s from the start");
  return {};
}

// The arrivals in the order they are due (by time, then by index), fed to the client one point
// of time at a time. They stay out of the clock's heap, which then holds only the devices' few
// pending completions rather than every request of the run.
class arrival_feed {
public:
  arrival_feed(const std::vector<trace_request>& arrivals, gpu::sim_clock::time_point start) {
    due_.reserve(arrivals.size());
    for (std::size_t i = 0; i < arrivals.size(); ++i)
      due_.push_back({start + gpu::sim_seconds(std::max(arrivals[i].arrival, 0.0)), i});
    std::sort(due_.begin(), due_.end(), [](const entry& a, const entry& b) {
      return a.at != b.at ? a.at < b.at : a.index < b.index;
    });
  }

  std::optional<gpu::sim_clock::time_point> next() const {
    if (next_ == due_.size())
      return std::nullopt;
    return due_[next_].at;
  }

  // Sends every arrival due at `t` or before, in order.
  void send_due(gpu::sim_clock::time_point t, const caf::actor& client) {
    for (; next_ < due_.size() && due_[next_].at <= t; ++next_)
      caf::anon_send(client, arrive_atom::value, due_[next_].index);
  }

private:
  struct entry {
    gpu::sim_clock::time_point at;
    std::size_t index;
  };
  std::vector<entry> due_;
  std::size_t next_ = 0;
};

// The next point anything waits for: an arrival, a device's work or a CAF timeout (none: nothing
// does).
std::optional<gpu::sim_clock::time_point> next_event(const gpu::sim_clock& clock,
                                                     const caf::detail::test_actor_clock& caf,
                                                     const arrival_feed& arrivals) {
  auto next = clock.next();
  if (const auto a = arrivals.next(); a && (!next || *a < *next))
    next = a;
  const auto& timeouts = caf.schedule();
  if (!timeouts.empty() && (!next || timeouts.begin()->first < *next))
    next = timeouts.begin()->first;
  return next;
}

tl::unexpected<error> stalled(gpu::sim_clock::duration at, const std::string& why) {
  return fail(errc::internal, "the simulation stopped advancing at " +
                                  std::to_string(std::chrono::duration<double>(at).count()) +
                                  " s " + why);
}

} // namespace

result<simulation_report> simulate(pool_spec spec, const std::vector<trace_request>& arrivals,
                                   const simulation_options& options) {
  AEG_TRY(check_inputs(spec, arrivals));
  caf::actor_system_config cfg;
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{cfg};
  auto& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  auto& caf_clock = dynamic_cast<caf::detail::test_actor_clock&>(sys.clock());
  // One clock: the actors read CAF's, the devices complete on ours; both move together.
  auto clock = std::make_shared<gpu::sim_clock>(caf_clock.now());
  spec.sim_clock = clock;
  const auto start = clock->now();
  simulation_report report;
  wind_down cleanup(sched, caf_clock, *clock);
  {
    AEG_TRY_ASSIGN(auto p, pool::start(sys, spec));
    auto state = std::make_shared<client_state>();
    auto client =
        sys.spawn<sim_client>(p->proxy(), p->instances(), &arrivals, state, options.log_events);
    cleanup.stop_too(client);
    arrival_feed feed(arrivals, start);
    bool asked = false;
    std::size_t rounds = 0;
    // Actors that keep messaging one another while no time passes (a policy that waits for
    // time by yielding) would never let the clock move: past this many messages at one point
    // of virtual time the run is stopped with an error rather than hanging.
    constexpr std::size_t most_at_one_point = 50'000'000;
    while (!state->collected) {
      std::size_t at_this_point = 0;
      while (sched.try_run_once()) {
        ++report.messages;
        if (++at_this_point > most_at_one_point)
          return stalled(clock->now() - start,
                         "(its actors keep exchanging messages while no time passes)");
      }
      if (state->collected)
        break;
      if (!asked && state->ended == arrivals.size()) {
        caf::anon_send(client, collect_atom::value);
        asked = true;
        continue;
      }
      // Nothing can run now: time jumps to whatever comes next, a device's work or a timeout.
      const auto next = next_event(*clock, caf_clock, feed);
      if (!next)
        return stalled(clock->now() - start,
                       "with " + std::to_string(arrivals.size() - state->ended) + " of " +
                           std::to_string(arrivals.size()) + " requests unfinished");
      // A timeout already due fires too (advancing by nothing dispatches what is due).
      caf_clock.advance_time(*next > caf_clock.current_time ? *next - caf_clock.current_time
                                                            : gpu::sim_clock::duration{0});
      // Arrivals due now go first, as if scheduled on the clock before any device's work.
      feed.send_due(*next, client);
      clock->advance_to(*next);
      if (options.progress && ++rounds % 4096 == 0)
        options.progress(std::chrono::duration<double>(clock->now() - start).count(), state->ended,
                         arrivals.size());
    }
    report.metrics = std::move(state->metrics);
    report.instances = std::move(state->instances);
    report.rejected = state->rejected;
    report.first_rejection = std::move(state->first_rejection);
    report.events = std::move(state->events);
    report.simulated_seconds = std::chrono::duration<double>(clock->now() - start).count();
  } // the pool stops its actors; `cleanup` lets them finish
  return report;
}

} // namespace aeg::actors
