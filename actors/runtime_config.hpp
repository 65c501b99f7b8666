#pragma once

// How our processes configure CAF before their actor systems start: the settings that serving,
// benchmarks and tests share, in one place (only `actor_bench`, which measures CAF itself, keeps
// CAF's defaults).

namespace caf {
class actor_system_config;
}

namespace aeg::actors {

/// Sets `cfg` as our processes run: CAF's own log quiet, and scheduler workers that, once out of
/// work, poll briefly and then sleep until work arrives. CAF's default has an idle worker wake
/// every 50 µs for 25 ms (its "moderate" polling): on a host whose cores also run the CPU
/// backend's kernels, those wake-ups preempt the kernels' threads (on two cores: 8,000 context
/// switches a second, and 1.3 to 1.7 times the time between tokens). Work posted from outside
/// the scheduler (a device's completion, a timeout, a connection) wakes a sleeping worker. Work
/// an actor sends goes to its own worker's queue, behind the job it is running; a sleeping
/// worker steals it only at its 10 ms timeout, which costs little while handlers are short.
void configure_runtime(caf::actor_system_config& cfg);

} // namespace aeg::actors
