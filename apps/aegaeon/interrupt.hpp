#pragma once

// Ctrl-C in a chat session, the same in process and over HTTP: mid-answer it stops that answer;
// at the prompt it ends the session. In a benchmark: the first stops it after reporting what it
// has finished, the second ends it at once.

#include <string_view>

namespace aeg::apps {

/// From now on SIGINT sets a flag instead of ending the process. No SA_RESTART: a read blocked
/// at the chat prompt fails with EINTR, which ends the session, and a blocking call of the
/// thread it lands on returns early. Call from the thread that reads the prompt, before the first
/// prompt: a SIGINT that lands on another thread is handed on to it.
void catch_interrupts();

/// Whether Ctrl-C was pressed since the last call; clears it. Safe from any thread.
[[nodiscard]] bool take_interrupt();

/// Forgets a Ctrl-C pressed before now (an answer that ended as it was pressed).
void clear_interrupt();

/// For a command that runs long without reading input (bench): from now on the first SIGINT
/// writes `notice` (a line) to stderr at once, over the progress line on a terminal, and sets a
/// flag that `stop_requested` reads; the second ends the process at once with exit code 130.
/// With SA_RESTART, so that no blocking call fails on the first one. Call once, from any thread;
/// the signal may land on any.
void stop_on_interrupt(std::string_view notice);

/// Whether SIGINT arrived since `stop_on_interrupt`; stays true. Safe from any thread.
[[nodiscard]] bool stop_requested();

} // namespace aeg::apps
