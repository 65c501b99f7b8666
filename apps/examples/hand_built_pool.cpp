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
#include "actors/runtime_config.hpp"
#include "gpu/kv_pool.hpp"
#include "gpu/registry.hpp"
#include "models/gguf/file.hpp"
#include "models/hf/folder.hpp"
#include "models/model_cache.hpp"
#include "models/tokenizer/text_model.hpp"

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

// [snippet collector]
// The client side of a request: a typed actor that takes what a generation sink is sent (so it
// can be a request's sink) and answers `get` with the text once the request is done.
using collector_actor =
    actors::generation_sink::extend<caf::replies_to<caf::get_atom>::with<std::string>>;

class collector final : public collector_actor::base {
public:
  collector(caf::actor_config& cfg, const models::text_model& text)
      : collector_actor::base(cfg), decoder_(text.decoder()) {}

  behavior_type make_behavior() override {
    return {
        [this](actors::token_atom, std::uint64_t, std::int32_t token,
               const aeg::models::token_logprobs&) { text_ += decoder_.feed(token); },
        [this](actors::tokens_atom, std::uint64_t, const actors::token_batch& b) {
          for (auto token : b.tokens)
            text_ += decoder_.feed(token);
        },
        [this](actors::done_atom, const actors::generation_result& r) {
          text_ += decoder_.finish();
          if (r.reason == actors::finish_reason::error)
            text_ += " [error: " + r.message + "]";
          done_ = true;
          for (auto& rp : waiting_)
            rp.deliver(text_);
          waiting_.clear();
        },
        [this](caf::get_atom) -> caf::result<std::string> {
          if (done_)
            return text_;
          waiting_.push_back(make_response_promise<std::string>());
          return waiting_.back();
        },
    };
  }

private:
  models::stream_decoder decoder_;
  std::string text_;
  bool done_ = false;
  std::vector<caf::typed_response_promise<std::string>> waiting_;
};
// [snippet end]

} // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (argc > 2 ||
      (argc == 2 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help"))) {
    fmt::print("usage: hand_built_pool [MODEL.gguf]\n"
               "Builds a two-device pool from the C++ API and asks two models a question each.\n");
    return argc > 2 ? 2 : 0;
  }

  // [snippet models]
  // 1. Devices: two CPU devices of 512 MiB each (a GPU pool names "cuda" and ordinals instead).
  std::vector<std::shared_ptr<gpu::device>> devices;
  for (int i = 0; i < 2; ++i) {
    auto dev = gpu::make_device({.backend = "cpu", .ordinal = i, .capacity_bytes = 512u << 20});
    if (!dev)
      die(dev.error().to_string());
    devices.push_back(*dev);
  }

  // 2. The host model cache: each model converted once into the backend's layout.
  auto file = models::open_model(path);
  if (!file)
    die(file.error().to_string() + " (scripts/fetch-model gets the reference model)");
  auto text = models::text_model::from_gguf(*file); // tokenizer, chat template, stop tokens
  if (!text)
    die(path + ": " + text.error().to_string());

  models::model_cache cache(devices.front(), {});
  const std::vector<std::string> names = {"assistant-a", "assistant-b"};
  std::vector<actors::served_model> served;
  std::vector<actors::catalog_entry> catalog;
  for (const auto& name : names) {
    auto image = cache.add(name, {.model_path = path},
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
  // [snippet end]

  // [snippet actors]
  // 3. The node's host KV pool: where KV travels from the prefill to the decode instance.
  auto host = devices.front()->allocate_pinned(std::size_t{128} << 20);
  if (!host)
    die(host.error().to_string());
  auto host_kv = std::make_shared<gpu::kv_pool>(std::move(*host), std::size_t{16} << 20);

  // 4. Instances and the proxy, all actors.
  caf::actor_system_config cfg;
  actors::configure_runtime(cfg); // CAF's scheduler as our processes run it
  caf::actor_system sys{cfg};
  actors::instance_options prefill_opts;
  prefill_opts.role = actors::instance_role::prefill;
  actors::instance_options decode_opts;
  decode_opts.role = actors::instance_role::decode;
  auto prefill = actors::spawn_instance(sys, devices[0], served, prefill_opts, host_kv);
  auto decode = actors::spawn_instance(sys, devices[1], served, decode_opts, host_kv);
  auto proxy = actors::spawn_proxy(sys,
                                   {{.actor = prefill,
                                     .role = actors::instance_role::prefill,
                                     .models = names,
                                     .name = "cpu0/prefill"},
                                    {.actor = decode,
                                     .role = actors::instance_role::decode,
                                     .models = names,
                                     .name = "cpu1/decode"}},
                                   catalog, {});
  // [snippet end]

  // 5. Requests: one per model, in flight together. The collectors receive the tokens.
  const std::vector<std::string> questions = {"What is the capital of France?",
                                              "Name three primary colors."};
  caf::scoped_actor self{sys}; // main waits here; no actor of the pool ever blocks
  std::vector<collector_actor> sinks;
  for (std::size_t i = 0; i < names.size(); ++i) {
    // [snippet request]
    actors::generation_request r;
    r.model = names[i];
    r.prompt = text->encode_chat(std::vector<models::chat_message>{{"user", questions[i]}});
    r.max_tokens = 48;
    r.stop_tokens = text->stop_tokens();
    sinks.push_back(sys.spawn<collector>(*text));
    r.sink = sinks.back(); // a collector takes what a sink is sent: checked when this compiles
    self->request(proxy, caf::infinite, actors::submit_atom::value, std::move(r))
        .receive([](std::uint64_t) {}, [&](caf::error& e) { die(sys.render(e)); });
    // [snippet end]
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
  caf::anon_send_exit(proxy, caf::exit_reason::user_shutdown);
  for (auto& a : {prefill, decode})
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (auto& s : sinks)
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  return status;
}
