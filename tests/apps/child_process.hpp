#pragma once

// The `aegaeon` binary run by a test as a user runs it: its stdin, stdout and stderr on pipes,
// signals sent to it as a terminal sends them.

#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <functional>
#include <poll.h>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace aeg::testing {

using child_clock = std::chrono::steady_clock;

// Generous: a deadline only ends a test that would otherwise hang; nothing is timed.
inline constexpr auto deadline = std::chrono::seconds(120);

/// A program (args[0], a path) with its stdin, stdout and stderr on pipes; killed if it is still
/// running when this goes. Used from one thread.
class child {
public:
  explicit child(const std::vector<std::string>& args) {
    int in[2], out[2], err[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0 || ::pipe(err) != 0)
      return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]})
      posix_spawn_file_actions_addclose(&fa, fd);
    std::vector<char*> argv;
    for (const auto& a : args)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0)
      pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    in_ = in[1];
    out_ = out[0];
    err_ = err[0];
  }
  ~child() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (int fd : {in_, out_, err_})
      if (fd >= 0)
        ::close(fd);
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;

  bool started() const { return pid_ > 0; }
  void send(const std::string& text) {
    for (std::size_t done = 0; done < text.size();) {
      const auto n = ::write(in_, text.data() + done, text.size() - done);
      if (n <= 0)
        return;
      done += static_cast<std::size_t>(n);
    }
  }
  void close_input() {
    ::close(in_);
    in_ = -1;
  }
  void signal(int sig) const { ::kill(pid_, sig); }

  // Reads its output until `done` holds or `limit` passes; whether it held.
  bool await(const std::function<bool()>& done, child_clock::duration limit = deadline) {
    const auto until = child_clock::now() + limit;
    while (!done()) {
      if (child_clock::now() > until || !read_some())
        return done();
    }
    return true;
  }
  // Whether it closed its output (it is exiting) within `limit`.
  bool await_exit(child_clock::duration limit) {
    return await([&] { return out_closed_ && err_closed_; }, limit);
  }
  // Waits for it to exit (reading what it still writes); its exit code, -1 for a signal or
  // the deadline.
  int wait() {
    await_exit(deadline);
    const auto until = child_clock::now() + deadline;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (child_clock::now() > until)
        return -1;
      ::poll(nullptr, 0, 20); // it has closed its output: exiting now
    }
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  const std::string& out() const { return stdout_; }
  const std::string& err() const { return stderr_; }

private:
  // Waits up to 100 ms for output and appends it; false once both streams are closed.
  bool read_some() {
    if (out_closed_ && err_closed_)
      return false;
    std::array<pollfd, 2> p{
        {{out_closed_ ? -1 : out_, POLLIN, 0}, {err_closed_ ? -1 : err_, POLLIN, 0}}};
    if (::poll(p.data(), p.size(), 100) < 0 && errno != EINTR)
      return false;
    std::array<char, 4096> buf{};
    const auto drain = [&](const pollfd& fd, std::string& to, bool& closed) {
      if (fd.fd < 0 || fd.revents == 0)
        return;
      const auto n = ::read(fd.fd, buf.data(), buf.size());
      if (n > 0)
        to.append(buf.data(), static_cast<std::size_t>(n));
      else
        closed = true;
    };
    drain(p[0], stdout_, out_closed_);
    drain(p[1], stderr_, err_closed_);
    return true;
  }

  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;
  bool out_closed_ = false, err_closed_ = false, exited_ = false;
  std::string stdout_, stderr_;
};

} // namespace aeg::testing
