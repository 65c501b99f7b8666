#pragma once

// Ctrl-C in a chat session, the same in process and over HTTP: mid-answer it stops that answer;
// at the prompt it ends the session.

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

} // namespace aeg::apps
