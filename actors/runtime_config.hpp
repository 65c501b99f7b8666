#pragma once

// How every process of ours configures CAF before its actor system starts: the settings that
// serving, benchmarks and tests share, in one place.

namespace caf {
class actor_system_config;
}

namespace aeg::actors {

/// Sets `cfg` as our processes run: CAF's own log quiet, and scheduler workers that, once out of
/// work, poll briefly and then sleep until work arrives. CAF's default has an idle worker wake
/// every 50 µs for 25 ms (its "moderate" polling): on a host whose cores also run the CPU
/// backend's kernels, those wake-ups (20,000 a second from two workers) preempt the kernels'
/// threads and slowed each decode step by a quarter. No message waits for a poll: one sent from
/// outside the scheduler (a device's completion, a connection) wakes a sleeping worker, and one
/// an actor sends runs on its own worker next.
void configure_runtime(caf::actor_system_config& cfg);

} // namespace aeg::actors
