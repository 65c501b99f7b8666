#include "apps/aegaeon/interrupt.hpp"

#include <atomic>
#include <csignal>
#include <pthread.h>

namespace aeg::apps {

namespace {

// Lock-free, so the handler may touch it.
std::atomic<bool> interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

// The thread that reads the prompt. The kernel gives a process's SIGINT to any thread that does
// not block it (a CAF worker, a stream's worker); only on this one does it break off the read.
pthread_t prompt_thread;

extern "C" void on_interrupt(int) {
  interrupted = true;
  if (!pthread_equal(pthread_self(), prompt_thread))
    pthread_kill(prompt_thread, SIGINT); // async-signal-safe: hand the signal on
}

} // namespace

void catch_interrupts() {
  prompt_thread = pthread_self();
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
