#include "apps/aegaeon/interrupt.hpp"

#include <atomic>
#include <csignal>
#include <cstring>
#include <pthread.h>
#include <string>
#include <unistd.h>

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

// SIGINTs since `stop_on_interrupt`, and what the first one says.
std::atomic<int> stops{0};
static_assert(std::atomic<int>::is_always_lock_free);
std::string stop_notice; // set before the handler is, never changed after

extern "C" void on_stop(int) {
  // Only async-signal-safe calls here: write and _exit.
  if (stops.fetch_add(1) > 0)
    _exit(130); // the second Ctrl-C does not wait for anything
  const auto ignored = ::write(STDERR_FILENO, stop_notice.data(), stop_notice.size());
  (void)ignored; // nothing to do about a stderr that cannot be written
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

void stop_on_interrupt(std::string_view notice) {
  stop_notice = (isatty(STDERR_FILENO) != 0 ? "\r\033[K" : "") + std::string(notice) + "\n";
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}

bool stop_requested() {
  return stops.load() > 0;
}

} // namespace aeg::apps
