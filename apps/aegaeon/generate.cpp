#include "apps/aegaeon/generate.hpp"

#include "actors/generation.hpp"
#include "actors/instance.hpp"
#include "gpu/registry.hpp"
#include "models/gguf/file.hpp"
#include "models/llama/weights.hpp"
#include "models/tokenizer/chat_template.hpp"
#include "models/tokenizer/stream_decoder.hpp"
#include "models/tokenizer/tokenizer.hpp"

#include <caf/all.hpp>
#include <fmt/core.h>

#include <chrono>
#include <iostream>
#include <optional>
#include <unistd.h>

namespace aeg::apps {

namespace {

using clock_type = std::chrono::steady_clock;

// Everything one local model needs: the file, its tokenizer and template, and an instance.
struct local_model {
  models::tokenizer tok;
  models::chat_template tmpl;
  std::shared_ptr<gpu::device> dev;
  std::shared_ptr<const models::model_image> image;
};

std::optional<local_model> load(const generate_options& o) {
  auto file = models::gguf::file::open(o.model_path);
  if (!file) {
    fmt::print(stderr, "aegaeon: {}\n", file.error().to_string());
    if (file.error().code == errc::not_found)
      fmt::print(stderr, "  (run scripts/fetch-model to get the reference model into models/)\n");
    return std::nullopt;
  }
  auto tok = models::tokenizer::from_gguf(*file);
  if (!tok) {
    fmt::print(stderr, "aegaeon: {}: {}\n", o.model_path, tok.error().to_string());
    return std::nullopt;
  }
  auto tmpl = models::chat_template::from_gguf(*file);
  if (!tmpl) {
    fmt::print(stderr, "aegaeon: warning: {}; using ChatML\n", tmpl.error().message);
    tmpl = models::chat_template::chatml();
  }
  auto dev = gpu::make_device(
      {.backend = o.backend, .ordinal = 0, .capacity_bytes = o.capacity_mib << 20});
  if (!dev) {
    fmt::print(stderr, "aegaeon: {}\n", dev.error().to_string());
    return std::nullopt;
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
    return std::nullopt;
  }
  return local_model{std::move(*tok), std::move(*tmpl), std::move(*dev), std::move(*image)};
}

std::vector<std::int32_t> stop_tokens(const models::tokenizer& tok) {
  std::vector<std::int32_t> ids;
  for (std::size_t i = 0; i < tok.num_tokens(); ++i)
    if (tok.is_end_of_generation(static_cast<std::int32_t>(i)))
      ids.push_back(static_cast<std::int32_t>(i));
  return ids;
}

struct answer {
  std::string text;
  actors::generation_result result;
  double seconds = 0;
  double first_token_seconds = 0;
};

// Sends one request to `inst` and prints its text as it streams; returns what it said.
answer stream_one(caf::scoped_actor& self, const caf::actor& inst, const local_model& m,
                  const generate_options& o, std::vector<std::int32_t> prompt, std::uint64_t id) {
  actors::generation_request req;
  req.id = id;
  req.prompt = std::move(prompt);
  req.sampling = {o.temperature, o.top_k, o.top_p, o.seed};
  req.max_tokens = o.max_tokens;
  req.stop_tokens = stop_tokens(m.tok);
  req.sink = caf::actor_cast<caf::actor>(self);
  models::stream_decoder decoder(m.tok);
  answer a;
  const auto start = clock_type::now();
  self->send(inst, actors::generate_atom::value, std::move(req));
  bool done = false;
  while (!done) {
    self->receive(
        [&](actors::token_atom, std::uint64_t, std::int32_t token) {
          if (a.first_token_seconds == 0)
            a.first_token_seconds =
                std::chrono::duration<double>(clock_type::now() - start).count();
          const auto piece = decoder.feed(token);
          a.text += piece;
          fmt::print("{}", piece);
          std::fflush(stdout);
        },
        [&](actors::done_atom, const actors::generation_result& r) {
          const auto rest = decoder.finish();
          a.text += rest;
          fmt::print("{}", rest);
          a.result = r;
          done = true;
        },
        [&](caf::down_msg& d) {
          a.result.reason = actors::finish_reason::error;
          a.result.message = "the instance stopped: " + self->system().render(d.reason);
          done = true;
        });
  }
  a.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  return a;
}

bool failed(const answer& a) {
  return a.result.reason == actors::finish_reason::error ||
         a.result.reason == actors::finish_reason::unavailable;
}

void report(const answer& a, const generate_options& o) {
  if (failed(a)) {
    fmt::print(stderr, "\naegaeon: {}\n", a.result.message);
    return;
  }
  if (o.verbose) {
    const double decode = a.seconds - a.first_token_seconds;
    fmt::print(stderr,
               "\n[{} prompt tokens, {} generated, finish: {}; first token {:.3f} s, "
               "{:.1f} tokens/s after it]\n",
               a.result.prompt_tokens, a.result.completion_tokens,
               actors::to_string(a.result.reason), a.first_token_seconds,
               a.result.completion_tokens > 1 ? (a.result.completion_tokens - 1) / decode : 0.0);
  }
}

caf::actor_system_config quiet_config() {
  caf::actor_system_config cfg;
  cfg.set("logger.verbosity", caf::atom("quiet"));
  return cfg;
}

} // namespace

int run_generate(const generate_options& o) {
  auto m = load(o);
  if (!m)
    return 1;
  std::vector<std::int32_t> prompt;
  if (o.chat_template) {
    std::vector<models::chat_message> msgs;
    if (!o.system_prompt.empty())
      msgs.push_back({"system", o.system_prompt});
    msgs.push_back({"user", o.prompt});
    prompt = m->tok.encode(m->tmpl.render(msgs, true), true);
  } else {
    prompt = m->tok.encode(o.prompt, true); // special tokens written out are the tokens
    if (m->tok.add_bos() && m->tok.bos())
      prompt.insert(prompt.begin(), *m->tok.bos());
  }
  if (prompt.empty()) {
    fmt::print(stderr, "aegaeon generate: the prompt is empty\n");
    return 2;
  }
  auto cfg = quiet_config();
  caf::actor_system sys{cfg};
  auto inst = actors::spawn_instance(sys, m->dev, m->image);
  caf::scoped_actor self{sys}; // main waits here; the instance never blocks
  self->monitor(inst);
  if (!o.chat_template)
    fmt::print("{}", o.prompt);
  auto a = stream_one(self, inst, *m, o, std::move(prompt), 1);
  fmt::print("\n");
  report(a, o);
  self->send_exit(inst, caf::exit_reason::user_shutdown);
  return failed(a) ? 1 : 0;
}

int run_chat(const generate_options& o) {
  auto m = load(o);
  if (!m)
    return 1;
  auto cfg = quiet_config();
  caf::actor_system sys{cfg};
  auto inst = actors::spawn_instance(sys, m->dev, m->image);
  caf::scoped_actor self{sys};
  self->monitor(inst);
  std::vector<models::chat_message> history;
  if (!o.system_prompt.empty())
    history.push_back({"system", o.system_prompt});
  const bool tty = isatty(STDIN_FILENO) != 0;
  if (tty)
    fmt::print(stderr, "chatting with {} (empty line or Ctrl-D to quit, /reset to forget)\n",
               o.model_path);
  std::uint64_t id = 0;
  int rc = 0;
  for (;;) {
    if (tty)
      fmt::print("> ");
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line) || line.empty())
      break;
    if (line == "/reset") {
      history.resize(o.system_prompt.empty() ? 0 : 1);
      continue;
    }
    history.push_back({"user", line});
    auto prompt = m->tok.encode(m->tmpl.render(history, true), true);
    auto a = stream_one(self, inst, *m, o, std::move(prompt), ++id);
    fmt::print("\n");
    report(a, o);
    if (failed(a)) {
      rc = 1;
      history.pop_back();
      if (a.result.message.rfind("the instance stopped", 0) == 0)
        break;
      continue;
    }
    history.push_back({"assistant", a.text});
  }
  self->send_exit(inst, caf::exit_reason::user_shutdown);
  return rc;
}

} // namespace aeg::apps
