// Builds a pool by hand from the public API instead of a topology file: two CPU devices, one
// host model cache, a prefill instance and a decode instance that both serve two models, and a
// proxy in front. Then it asks each model a question and streams the answers.
//
//   hand_built_pool [MODEL.gguf]     (default: models/SmolLM2-135M-Instruct.Q4_1.gguf)
//
// Both "models" are the same file under two names, as two fine-tunes of one base would be; the
// point is the topology, which `aegaeon serve --config` builds the same way from JSON.

#include "actors/generation.hpp"
#include "actors/instance.hpp"
#include "actors/proxy.hpp"
#include "gpu/kv_pool.hpp"
#include "gpu/registry.hpp"
#include "models/gguf/file.hpp"
#include "models/model_cache.hpp"
#include "models/tokenizer/chat_template.hpp"
#include "models/tokenizer/stream_decoder.hpp"
#include "models/tokenizer/tokenizer.hpp"

#include <caf/all.hpp>
#include <fmt/core.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace aeg;

namespace {

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "hand_built_pool: {}\n", what);
  std::exit(1);
}

// The client side of a request: decodes the streamed tokens and collects the text. Replies to
// `get` with the text once the request is done.
caf::behavior collector(caf::stateful_actor<std::string>* self,
                        std::shared_ptr<const models::tokenizer> tok) {
  auto decoder = std::make_shared<models::stream_decoder>(*tok);
  auto done = std::make_shared<std::optional<actors::generation_result>>();
  auto waiting = std::make_shared<std::vector<caf::response_promise>>();
  auto finish = [=](const std::string& text) {
    for (auto& rp : *waiting)
      rp.deliver(text);
    waiting->clear();
  };
  return {
      [=](actors::token_atom, std::uint64_t, std::int32_t token) {
        self->state += decoder->feed(token);
      },
      [=](actors::done_atom, const actors::generation_result& r) {
        self->state += decoder->finish();
        if (r.reason == actors::finish_reason::error)
          self->state += " [error: " + r.message + "]";
        *done = r;
        finish(self->state);
      },
      [=](caf::get_atom) -> caf::result<std::string> {
        if (done->has_value())
          return self->state;
        waiting->push_back(self->make_response_promise());
        return waiting->back();
      },
  };
}

} // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (argc > 2 ||
      (argc == 2 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help"))) {
    fmt::print("usage: hand_built_pool [MODEL.gguf]\n"
               "Builds a two-device pool from the C++ API and asks two models a question each.\n");
    return argc > 2 ? 2 : 0;
  }

  // 1. Devices: two CPU devices of 512 MiB each (a GPU pool names "cuda" and ordinals instead).
  std::vector<std::shared_ptr<gpu::device>> devices;
  for (int i = 0; i < 2; ++i) {
    auto dev = gpu::make_device({.backend = "cpu", .ordinal = i, .capacity_bytes = 512u << 20});
    if (!dev)
      die(dev.error().to_string());
    devices.push_back(*dev);
  }

  // 2. The host model cache: each model converted once into the backend's layout.
  auto file = models::gguf::file::open(path);
  if (!file)
    die(file.error().to_string() + " (scripts/fetch-model gets the reference model)");
  auto tok = models::tokenizer::from_gguf(*file);
  if (!tok)
    die(path + ": " + tok.error().to_string());
  auto tmpl = models::chat_template::from_gguf(*file);
  if (!tmpl)
    tmpl = models::chat_template::chatml();
  auto shared_tok = std::make_shared<const models::tokenizer>(std::move(*tok));

  models::model_cache cache(devices.front(), {});
  const std::vector<std::string> names = {"assistant-a", "assistant-b"};
  std::vector<actors::served_model> served;
  std::vector<actors::catalog_entry> catalog;
  for (const auto& name : names) {
    auto image = cache.add(name, {.gguf_path = path},
                           models::compute_format::for_backend(devices.front()->kind()));
    if (!image)
      die(name + ": " + image.error().to_string());
    const double tbt = 0.25;
    served.push_back({name, *image, tbt, 5});
    catalog.push_back({.name = name,
                       .ttft_seconds = 5,
                       .tbt_seconds = tbt,
                       .context_length = (*image)->config().context_length,
                       .vocab_size = (*image)->config().vocab_size,
                       .image_bytes = (*image)->bytes().size()});
  }

  // 3. The node's host KV pool: where KV travels from the prefill to the decode instance.
  auto host = devices.front()->allocate_pinned(std::size_t{128} << 20);
  if (!host)
    die(host.error().to_string());
  auto host_kv = std::make_shared<gpu::kv_pool>(std::move(*host), std::size_t{16} << 20);

  // 4. Instances and the proxy, all actors.
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  actors::instance_options prefill_opts;
  prefill_opts.role = actors::instance_role::prefill;
  actors::instance_options decode_opts;
  decode_opts.role = actors::instance_role::decode;
  auto prefill = actors::spawn_instance(sys, devices[0], served, prefill_opts, host_kv);
  auto decode = actors::spawn_instance(sys, devices[1], served, decode_opts, host_kv);
  auto proxy =
      actors::spawn_proxy(sys,
                          {{prefill, actors::instance_role::prefill, names, "cpu0/prefill"},
                           {decode, actors::instance_role::decode, names, "cpu1/decode"}},
                          catalog, {});

  // 5. Requests: one per model, in flight together. The collectors receive the tokens.
  const std::vector<std::string> questions = {"What is the capital of France?",
                                              "Name three primary colors."};
  std::vector<std::int32_t> stops;
  for (std::size_t i = 0; i < shared_tok->num_tokens(); ++i)
    if (shared_tok->is_end_of_generation(static_cast<std::int32_t>(i)))
      stops.push_back(static_cast<std::int32_t>(i));
  caf::scoped_actor self{sys}; // main waits here; no actor of the pool ever blocks
  std::vector<caf::actor> sinks;
  for (std::size_t i = 0; i < names.size(); ++i) {
    actors::generation_request r;
    r.model = names[i];
    r.prompt = shared_tok->encode(
        tmpl->render(std::vector<models::chat_message>{{"user", questions[i]}}, true), true);
    r.max_tokens = 48;
    r.stop_tokens = stops;
    r.sink = sys.spawn(collector, shared_tok);
    sinks.push_back(r.sink);
    self->request(proxy, caf::infinite, actors::submit_atom::value, std::move(r))
        .receive([](std::uint64_t) {}, [&](caf::error& e) { die(sys.render(e)); });
  }
  int status = 0;
  for (std::size_t i = 0; i < names.size(); ++i)
    self->request(sinks[i], caf::infinite, caf::get_atom::value)
        .receive(
            [&](const std::string& text) {
              fmt::print("{} <- {}\n{} -> {}\n\n", names[i], questions[i], names[i], text);
              if (text.empty())
                status = 1;
            },
            [&](caf::error& e) { die(sys.render(e)); });

  self->request(proxy, caf::infinite, actors::metrics_atom::value)
      .receive(
          [&](const actors::pool_metrics& m) {
            for (const auto& f : m.finished)
              fmt::print("{}: {} tokens, TTFT {:.2f}s, SLO attainment {:.0f}%\n", f.model,
                         f.token_times.size(), f.ttft(), 100 * f.time_attainment());
          },
          [&](caf::error& e) { die(sys.render(e)); });
  for (auto& a : {proxy, prefill, decode})
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (auto& s : sinks)
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  return status;
}
