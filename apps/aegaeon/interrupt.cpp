#include "apps/aegaeon/interrupt.hpp"

#include <atomic>
#include <csignal>

namespace aeg::apps {

namespace {

// Lock-free, so the handler may touch it.
std::atomic<bool> interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_interrupt(int) {
  interrupted = true;
}

} // namespace

void catch_interrupts() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt; // no SA_RESTART: Ctrl-C at the prompt ends the read
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}

bool take_interrupt() {
  return interrupted.exchange(false);
}

void clear_interrupt() {
  interrupted = false;
}

} // namespace aeg::apps
