#pragma once

// Running the `aegaeon` binary as a user does, for the CLI tests: a command through the shell,
// a directory with a tiny model, a server of it on a free port.

#include "tests/apps/child_process.hpp"
#include "tests/support/tiny_llama.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <sys/wait.h>
#include <vector>

namespace aeg::testing {

struct outcome {
  int rc = -1;
  std::string output; // stdout and stderr together
};

// Runs `command` through the shell, its stderr with its stdout.
inline outcome run_shell(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  outcome out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr)
    return out;
  std::array<char, 4096> buf{};
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p))
    out.output.append(buf.data(), n);
  const int status = ::pclose(p);
  out.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// Runs `aegaeon ARGS` through the shell; `before` goes ahead of it ("cd DIR && ", "printf x | ").
inline outcome run(const std::string& args, const std::string& before = {}) {
  return run_shell(before + std::string(AEG_BINARY) + " " + args);
}

// Bad usage: exit code 2 and a message with `fragment`.
inline void expect_refused(const std::string& args, const std::string& fragment) {
  const auto r = run(args);
  EXPECT_EQ(r.rc, 2) << args << "\n" << r.output;
  EXPECT_NE(r.output.find(fragment), std::string::npos)
      << args << ": expected '" << fragment << "' in:\n"
      << r.output;
}

// A directory of the test's own, with one tiny model in it; removed when the test ends.
class tiny_model_dir {
public:
  explicit tiny_model_dir(const std::string& name)
      : dir_(std::filesystem::path(::testing::TempDir()) / name) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    ok_ = aeg::testing::write_tiny_llama({}, model()).has_value();
  }
  ~tiny_model_dir() { std::filesystem::remove_all(dir_); }
  tiny_model_dir(const tiny_model_dir&) = delete;
  tiny_model_dir& operator=(const tiny_model_dir&) = delete;

  bool ok() const { return ok_; }
  std::string dir() const { return dir_.string(); }
  std::string model() const { return (dir_ / "tiny.gguf").string(); }

private:
  std::filesystem::path dir_;
  bool ok_ = false;
};

// `aegaeon serve` of a tiny model on a free port, until it is sent SIGINT.
class serving {
public:
  explicit serving(const tiny_model_dir& models, std::vector<std::string> flags = {})
      : proc_(args(models, std::move(flags))) {
    proc_.await([&] {
      return proc_.err().find("listening on") != std::string::npos ||
             proc_.err().find("aegaeon serve:") != std::string::npos;
    });
  }
  // The port from "listening on http://HOST:PORT"; 0 when it is not listening.
  int port() const {
    const auto& e = proc_.err();
    const auto at = e.find("listening on http://");
    if (at == std::string::npos)
      return 0;
    const auto colon = e.find(' ', at + 20);
    const auto port_at = e.rfind(':', colon);
    return std::atoi(e.c_str() + port_at + 1);
  }
  aeg::testing::child& process() { return proc_; }

private:
  static std::vector<std::string> args(const tiny_model_dir& models,
                                       std::vector<std::string> flags) {
    std::vector<std::string> a = {AEG_BINARY, "serve", "--port", "0", "--models-dir", models.dir()};
    a.insert(a.end(), flags.begin(), flags.end());
    return a;
  }
  aeg::testing::child proc_;
};

} // namespace aeg::testing
