#include "apps/aegaeon/generate.hpp"

#include "actors/generation.hpp"
#include "actors/instance.hpp"
#include "actors/runtime_config.hpp"
#include "apps/aegaeon/interrupt.hpp"
#include "gpu/registry.hpp"
#include "models/gguf/file.hpp"
#include "models/hf/folder.hpp"
#include "models/llama/weights.hpp"
#include "models/tokenizer/text_model.hpp"

#include <caf/all.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <unistd.h>

namespace aeg::apps {

namespace {

using clock_type = std::chrono::steady_clock;

// Everything one local model needs: its text side, its device and its weights.
struct local_model {
  models::text_model text;
  std::shared_ptr<gpu::device> dev;
  std::shared_ptr<const models::model_image> image;
};

// What to do about a model file that is not there, when there is more to say than its path:
// the default path is relative, and a command run outside the project root misses it.
std::string missing_model_hint(const std::string& path) {
  if (path != default_model_path)
    return {};
  std::error_code ec;
  if (std::filesystem::is_directory(std::filesystem::path(path).parent_path(), ec))
    return "; run scripts/fetch-model to get the reference model into models/";
  const auto here = std::filesystem::current_path(ec);
  return fmt::format("; the path is relative to the current directory ({}): run from the project "
                     "root or give --model",
                     ec ? std::string(".") : here.string());
}

// The model of `o`, or the exit code: 2 when the file named cannot be used at all, 1 when
// loading it failed.
tl::expected<local_model, int> load(const generate_options& o) {
  auto file = models::open_model(o.model_path);
  if (!file) {
    fmt::print(stderr, "aegaeon: {}{}\n", file.error().to_string(),
               file.error().code == errc::not_found ? missing_model_hint(o.model_path) : "");
    return tl::unexpected(2);
  }
  auto text = models::text_model::from_gguf(*file, o.template_name);
  if (!text) {
    fmt::print(stderr, "aegaeon: {}: {}\n", o.model_path, text.error().to_string());
    return tl::unexpected(1);
  }
  if (!text->template_note().empty())
    fmt::print(stderr, "aegaeon: warning: {}\n", text->template_note());
  auto dev = gpu::make_device(
      {.backend = o.backend, .ordinal = 0, .capacity_bytes = o.capacity_mib << 20});
  if (!dev) {
    fmt::print(stderr, "aegaeon: {}\n", dev.error().to_string());
    return tl::unexpected(1);
  }
  const bool tty = isatty(STDERR_FILENO) != 0;
  int last_percent = -1;
  auto image = models::load_llama(
      *file, models::compute_format::for_backend((*dev)->kind()), **dev,
      [&](std::size_t done, std::size_t total) {
        const int percent = static_cast<int>(100.0 * static_cast<double>(done) /
                                             static_cast<double>(std::max<std::size_t>(total, 1)));
        if (tty && percent != last_percent)
          fmt::print(stderr, "\rloading {}: {:3d}% of {} MiB", o.model_path, percent, total >> 20);
        last_percent = percent;
      });
  if (tty)
    fmt::print(stderr, "\r\033[K");
  if (!image) {
    fmt::print(stderr, "aegaeon: {}: {}\n", o.model_path, image.error().to_string());
    return tl::unexpected(1);
  }
  return local_model{std::move(*text), std::move(*dev), std::move(*image)};
}

// Says plainly, before anything is printed, when the device budget cannot hold the model and
// the KV of `tokens` tokens (the instance would otherwise fail with an allocator's message).
bool check_fits(const local_model& m, const generate_options& o, std::size_t tokens,
                const char* cmd) {
  tokens = std::min(tokens, m.image->config().context_length);
  // Exactly what the instance will take: weights, step buffers and the KV in whole slabs.
  const auto need =
      models::device_bytes_needed(actors::sizing_of({models::footprint_of(*m.image)}, {}), tokens);
  const std::size_t have = m.dev->capacity_bytes();
  if (need.total() <= have)
    return true;
  const auto e = models::does_not_fit(
      fmt::format("the device of --memory-mib {}", have >> 20), have, need,
      fmt::format("the KV is for {} tokens, in whole slabs; raise --memory-mib to {} or more (0: "
                  "the backend's default)",
                  tokens, models::mib_ceil(need.total())));
  fmt::print(stderr, "aegaeon {}: {}\n", cmd, e.message);
  return false;
}

// The reason an instance stopped, without CAF's wrapping ("system_error(runtime_error, ...)")
// or the actor's id.
std::string stop_reason(caf::actor_system& sys, const caf::error& e) {
  const auto& ctx = e.context();
  std::string text = ctx.match_elements<std::string>() ? ctx.get_as<std::string>(0) : sys.render(e);
  if (const auto at = text.find(" failed: ");
      text.rfind("a coroutine of actor", 0) == 0 && at != std::string::npos)
    text.erase(0, at + 9);
  return text;
}

struct answer {
  std::string text;
  actors::generation_result result;
  double seconds = 0;
  double first_token_seconds = 0;
};

// Sends one request to `inst` and prints `prefix`, then its text as it streams; returns what it
// said. The prefix waits for the first piece so that a failure does not follow a lone prompt.
answer stream_one(caf::scoped_actor& self, const actors::instance_actor& inst, const local_model& m,
                  const generate_options& o, std::vector<std::int32_t> prompt, std::uint64_t id,
                  std::string prefix = {}) {
  actors::generation_request req;
  req.id = id;
  req.prompt = std::move(prompt);
  req.sampling = {o.temperature, o.top_k, o.top_p, o.seed ? *o.seed : std::random_device{}()};
  req.max_tokens = o.max_tokens;
  req.stop_tokens = m.text.stop_tokens();
  req.sink = caf::actor_cast<actors::generation_sink>(self);
  auto decoder = m.text.decoder();
  answer a;
  const auto start = clock_type::now();
  self->send(inst, actors::generate_atom::value, std::move(req));
  bool done = false, cancelled = false;
  // Checked per token and when none comes for a while: tokens can arrive faster than a timeout.
  const auto stop_if_interrupted = [&] {
    if (take_interrupt() && !cancelled) {
      self->send(inst, actors::cancel_atom::value, id);
      cancelled = true;
    }
  };
  while (!done) {
    self->receive(
        [&](actors::token_atom, std::uint64_t, std::int32_t token,
            const aeg::models::token_logprobs&) {
          if (a.first_token_seconds == 0)
            a.first_token_seconds =
                std::chrono::duration<double>(clock_type::now() - start).count();
          const auto piece = decoder.feed(token);
          a.text += piece;
          fmt::print("{}{}", prefix, piece);
          prefix.clear();
          stop_if_interrupted();
          std::fflush(stdout);
        },
        [&](actors::done_atom, const actors::generation_result& r) {
          const auto rest = decoder.finish();
          a.text += rest;
          if (r.reason != actors::finish_reason::error &&
              r.reason != actors::finish_reason::unavailable)
            fmt::print("{}{}", prefix, rest);
          a.result = r;
          done = true;
        },
        [&](caf::down_msg& d) {
          a.result.reason = actors::finish_reason::error;
          a.result.message = "the instance stopped: " + stop_reason(self->system(), d.reason);
          done = true;
        },
        caf::after(std::chrono::milliseconds(100)) >> stop_if_interrupted);
  }
  a.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  return a;
}

bool failed(const answer& a) {
  return a.result.reason == actors::finish_reason::error ||
         a.result.reason == actors::finish_reason::unavailable;
}

} // namespace

chat_turn read_chat_turn(bool tty, std::string& line) {
  for (;;) {
    if (tty)
      fmt::print("> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line))
      return chat_turn::quit;
    std::string_view l(line);
    const auto first = l.find_first_not_of(" \t\r");
    if (first == std::string_view::npos)
      continue; // blank
    if (l[first] != '/')
      return chat_turn::message;
    l = l.substr(first, l.find_last_not_of(" \t\r") + 1 - first);
    if (l == "/quit" || l == "/exit")
      return chat_turn::quit;
    if (l == "/reset")
      return chat_turn::reset;
    fmt::print(stderr, "{}\n", l == "/help" ? chat_help : "unknown command, /help lists them");
  }
}

void print_answer_stats(std::size_t prompt_tokens, std::size_t completion_tokens,
                        std::string_view finish, double first_token_seconds, double seconds) {
  const double decode = seconds - first_token_seconds;
  fmt::print(stderr,
             "[{} prompt tokens, {} generated, finish: {}; first token {:.3f} s, "
             "{:.1f} tokens/s after it]\n",
             prompt_tokens, completion_tokens, finish, first_token_seconds,
             completion_tokens > 1 && decode > 0 ? (completion_tokens - 1) / decode : 0.0);
}

namespace {

void report(const answer& a, const generate_options& o) {
  if (failed(a)) {
    fmt::print(stderr, "aegaeon: {}\n", a.result.message);
    const auto& why = a.result.message;
    if (why.find("out_of_memory") != std::string::npos || why.find("KV cache") != std::string::npos)
      fmt::print(stderr, "  (the device memory is too small: raise --memory-mib)\n");
    return;
  }
  if (o.verbose)
    print_answer_stats(a.result.prompt_tokens, a.result.completion_tokens,
                       actors::to_string(a.result.reason), a.first_token_seconds, a.seconds);
}

caf::actor_system_config runtime_config() {
  caf::actor_system_config cfg;
  actors::configure_runtime(cfg);
  return cfg;
}

} // namespace

int run_generate(generate_options o) {
  if (o.prompt == "-") { // read before loading: a mistake there is said at once
    std::ostringstream text;
    text << std::cin.rdbuf();
    o.prompt = std::move(text).str();
    if (o.prompt.ends_with('\n'))
      o.prompt.pop_back();
    if (o.prompt.ends_with('\r'))
      o.prompt.pop_back();
    if (o.prompt.empty()) {
      fmt::print(stderr, "aegaeon generate: --prompt -: standard input was empty; give the "
                         "prompt there, or as --prompt TEXT\n");
      return 2;
    }
  }
  auto m = load(o);
  if (!m)
    return m.error();
  std::vector<std::int32_t> prompt;
  if (o.chat_template) {
    std::vector<models::chat_message> msgs;
    if (!o.system_prompt.empty())
      msgs.push_back({"system", o.system_prompt});
    msgs.push_back({"user", o.prompt});
    prompt = m->text.encode_chat(msgs);
  } else {
    prompt = m->text.encode_prompt(o.prompt);
  }
  if (prompt.empty()) {
    fmt::print(stderr, "aegaeon generate: the prompt is empty\n");
    return 2;
  }
  if (!check_fits(*m, o, prompt.size() + o.max_tokens, "generate"))
    return 2;
  auto cfg = runtime_config();
  caf::actor_system sys{cfg};
  auto inst = actors::spawn_instance(sys, m->dev, m->image);
  caf::scoped_actor self{sys}; // main waits here; the instance never blocks
  self->monitor(inst);
  auto a = stream_one(self, inst, *m, o, std::move(prompt), 1, o.chat_template ? "" : o.prompt);
  if (!failed(a) || a.result.completion_tokens > 0)
    fmt::print("\n");
  report(a, o);
  self->send_exit(inst, caf::exit_reason::user_shutdown);
  return failed(a) ? 1 : 0;
}

int run_chat(const generate_options& o) {
  auto m = load(o);
  if (!m)
    return m.error();
  // A conversation grows; room for one answer and a few hundred tokens of it is the least.
  if (!check_fits(*m, o, o.max_tokens + 512, "chat"))
    return 2;
  auto cfg = runtime_config();
  caf::actor_system sys{cfg};
  auto inst = actors::spawn_instance(sys, m->dev, m->image);
  caf::scoped_actor self{sys};
  self->monitor(inst);
  std::vector<models::chat_message> history;
  if (!o.system_prompt.empty())
    history.push_back({"system", o.system_prompt});
  const bool tty = isatty(STDIN_FILENO) != 0;
  catch_interrupts();
  if (tty)
    fmt::print(stderr, "chatting with {}\n{}; Ctrl-C stops an answer\n", o.model_path, chat_help);
  std::uint64_t id = 0;
  int rc = 0;
  for (;;) {
    std::string line;
    clear_interrupt();
    const auto turn = read_chat_turn(tty, line);
    if (turn == chat_turn::quit)
      break;
    if (turn == chat_turn::reset) {
      history.resize(o.system_prompt.empty() ? 0 : 1);
      continue;
    }
    history.push_back({"user", line});
    auto prompt = m->text.encode_chat(history);
    auto a = stream_one(self, inst, *m, o, std::move(prompt), ++id);
    fmt::print("\n");
    report(a, o);
    if (failed(a)) {
      // A failed turn is reported and the session goes on; only one that ends it fails `chat`.
      history.pop_back();
      if (a.result.message.rfind("the instance stopped", 0) == 0) {
        rc = 1;
        break;
      }
      continue;
    }
    if (a.result.reason == actors::finish_reason::cancelled)
      fmt::print(stderr, "[stopped]\n");
    history.push_back({"assistant", a.text});
  }
  self->send_exit(inst, caf::exit_reason::user_shutdown);
  return rc;
}

} // namespace aeg::apps
