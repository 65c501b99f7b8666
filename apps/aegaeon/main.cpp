#include "apps/aegaeon/bench.hpp"
#include "apps/aegaeon/cli_number.hpp"
#include "apps/aegaeon/demo.hpp"
#include "apps/aegaeon/generate.hpp"
#include "apps/aegaeon/plot.hpp"
#include "apps/aegaeon/profile.hpp"
#include "apps/aegaeon/remote.hpp"
#include "apps/aegaeon/serve.hpp"
#include "apps/aegaeon/simulate.hpp"
#include "apps/aegaeon/worker.hpp"
#include "gpu/registry.hpp"
#include "models/tokenizer/chat_template.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

namespace {

// "a, b, c" as {"a", "b", "c"}.
std::vector<std::string> split_names(const std::string& list) {
  std::vector<std::string> out;
  for (std::size_t at = 0; at <= list.size();) {
    const auto comma = std::min(list.find(", ", at), list.size());
    out.push_back(list.substr(at, comma - at));
    at = comma + 2;
  }
  return out;
}

using aeg::apps::bounds;
using aeg::apps::default_model_path;
using aeg::apps::no_limit;
using aeg::apps::number;
// The flags `generate` and `chat` share; `chat` says what --model means with --url.
void add_generation_flags(CLI::App* cmd, aeg::apps::generate_options& o, bool chat) {
  cmd->add_option("--model", o.model_path,
                  chat ? "GGUF file or Hugging Face model folder (llama, mistral, qwen2, qwen3; "
                         "with --url: the server's model name, default its first)"
                       : "GGUF file or Hugging Face model folder (config.json, *.safetensors, "
                         "tokenizer.json or tokenizer.model) of a llama, mistral, qwen2 or "
                         "qwen3 model")
      ->capture_default_str();
  cmd->add_option("--max-tokens", o.max_tokens, "Most tokens to generate per answer")
      ->check(number({.lo = 1, .hi = 1 << 20, .integer = true}))
      ->capture_default_str();
  // The server's bounds, so that chat --url accepts exactly what the server does.
  cmd->add_option("--temperature", o.temperature, "Sampling temperature; 0 picks greedily")
      ->check(number({.lo = 0, .hi = 2}))
      ->capture_default_str();
  cmd->add_option("--top-p", o.top_p,
                  "Nucleus sampling: keep the smallest set of tokens "
                  "whose probability reaches this")
      ->check(number({.lo = 0, .hi = 1, .above = true}))
      ->capture_default_str();
  cmd->add_option("--top-k", o.top_k, "Keep only the k most likely tokens; 0 keeps all")
      ->check(number({.lo = 0, .hi = 1e6, .integer = true}))
      ->capture_default_str();
  cmd->add_option("--seed", o.seed,
                  "Seed of the sampler: the same seed gives the same output (default: a new one "
                  "each run)")
      ->check(number({.lo = 0, .integer = true}));
  cmd->add_option("--system", o.system_prompt,
                  chat ? "System prompt (default: the model's own)"
                       : "System prompt, with --chat (default: the model's own)");
  cmd->add_option("--chat-template", o.template_name,
                  "Chat format instead of the model's own: " + aeg::models::chat_template::names())
      ->check(CLI::IsMember(split_names(aeg::models::chat_template::names())));
  cmd->add_option("--backend", o.backend, "Device backend: cpu or cuda")
      ->check(CLI::IsMember(aeg::gpu::built_backends()))
      ->capture_default_str();
  cmd->add_option("--memory-mib", o.capacity_mib,
                  "Device memory to use in MiB: the model's weights plus the KV of one answer "
                  "(the default model needs about 160); 0: 1 GiB on cpu, all free memory on cuda")
      ->check(number({.lo = 0, .hi = 1 << 24, .integer = true}))
      ->capture_default_str();
  cmd->add_flag("-v,--verbose", o.verbose, "Print token counts and speed to stderr");
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Aegaeon-C++: many LLMs on a shared GPU pool, scheduled at token granularity"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "aegaeon 0.1.0");

  aeg::apps::generate_options gen;
  gen.model_path = default_model_path;
  gen.prompt = "The capital of France is";
  auto* gen_cmd = app.add_subcommand("generate", "Continue a prompt with a model and print the "
                                                 "tokens as they are generated");
  gen_cmd
      ->add_option("--prompt", gen.prompt,
                   "Text to continue; - reads it from standard input (all of it, UTF-8; one "
                   "final newline is dropped)")
      ->capture_default_str();
  gen_cmd->add_flag("--chat", gen.chat_template,
                    "Treat the prompt as a user message in the model's chat template");
  add_generation_flags(gen_cmd, gen, false);

  aeg::apps::generate_options chat;
  chat.model_path = default_model_path;
  chat.max_tokens = 512;
  chat.temperature = 0.7f;
  chat.top_p = 0.9f;
  auto* chat_cmd = app.add_subcommand(
      "chat", "Talk with a model in the terminal; each answer streams as it is generated. Each "
              "line is a message, blank lines are skipped, and lines starting with / are "
              "commands: /help, /reset (forget the conversation), /quit or /exit. The session "
              "ends there or at end of input (Ctrl-D), from a terminal or a pipe alike. Ctrl-C "
              "stops the answer being generated (the conversation goes on with what it said); "
              "at the prompt it ends the session.");
  add_generation_flags(chat_cmd, chat, true);
  chat_cmd->add_option("--url", chat.url,
                       "Chat with a running `aegaeon serve` instead, e.g. http://127.0.0.1:8000 "
                       "(an OpenAI base URL ending in /v1 works too)");
  chat_cmd->add_option("--api-key", chat.api_key, "API key of that server (or AEGAEON_API_KEY)")
      ->envname("AEGAEON_API_KEY");

  aeg::server::serve_options serve;
  auto* serve_cmd = app.add_subcommand(
      "serve", "Serve models over OpenAI-compatible HTTP (/v1/models, /v1/completions, "
               "/v1/chat/completions, /tokenize, /detokenize, /health, /metrics) until SIGINT "
               "or SIGTERM");
  auto* config_opt = serve_cmd
                         ->add_option("--config", serve.config,
                                      "Topology file (docs/operations.md); default: every .gguf "
                                      "and Hugging Face folder in --models-dir on one colocated "
                                      "instance")
                         ->check(CLI::ExistingFile);
  serve_cmd->add_option("--models-dir", serve.models_dir, "Where to find models without --config")
      ->capture_default_str();
  serve_cmd
      ->add_option("--backend", serve.backend,
                   "Without --config: cpu or cuda (default: cuda when a GPU is visible)")
      ->check(CLI::IsMember(aeg::gpu::built_backends()));
  serve_cmd
      ->add_option("--memory-mib", serve.memory_mib,
                   "Without --config: device memory to use in MiB, enough for the models' "
                   "weights plus KV; 0: the backend's default")
      ->check(number({.lo = 0, .hi = 1 << 24, .integer = true}))
      ->capture_default_str();
  serve_cmd->add_option("--host", serve.host, "Address to listen on")->capture_default_str();
  serve_cmd->add_option("--port", serve.port, "Port to listen on; 0 picks a free one")
      ->check(number({.lo = 0, .hi = 65535, .integer = true}))
      ->capture_default_str();
  serve_cmd
      ->add_option("--api-key", serve.api_key,
                   "Require 'Authorization: Bearer KEY' on /v1/* (or AEGAEON_API_KEY)")
      ->envname("AEGAEON_API_KEY");
  std::string api_key_file;
  serve_cmd->add_option("--api-key-file", api_key_file,
                        "Read the API key from this file (a key on the command line shows in "
                        "`ps`); its first line, without the line break");
  serve_cmd->add_flag("--metrics-need-key", serve.metrics_need_key,
                      "/metrics needs the API key too (default: only /v1/* does)");
  serve_cmd
      ->add_option("--allowed-hosts", serve.allowed_hosts,
                   "Host names the server answers to besides its address, comma-separated; '*' "
                   "any. A loopback server answers only to loopback names otherwise (no DNS "
                   "rebinding), a 0.0.0.0 one to any")
      ->delimiter(',');
  serve_cmd->add_option("--cors-origin", serve.cors_origin,
                        "Let web pages from this origin call the API (CORS), e.g. "
                        "http://localhost:3000; '*' allows any (default: none)");
  serve_cmd
      ->add_option("--grace", serve.grace_seconds,
                   "Seconds in-flight requests may finish after SIGINT/SIGTERM")
      ->check(number({.lo = 0}))
      ->capture_default_str();
  serve_cmd
      ->add_option("--max-connections", serve.max_connections,
                   "Open connections before new ones get 503")
      ->check(number({.lo = 1, .hi = 1 << 20, .integer = true}))
      ->capture_default_str();
  serve_cmd
      ->add_option("--max-in-flight", serve.max_in_flight,
                   "Generations at once before new ones get 429")
      ->check(number({.lo = 1, .hi = 1 << 20, .integer = true}))
      ->capture_default_str();
  serve_cmd
      ->add_option("--max-client-requests", serve.max_client_requests,
                   "Generations at once from one client address before its new ones get 429; "
                   "0: no cap")
      ->check(number({.lo = 0, .hi = 1 << 20, .integer = true}))
      ->capture_default_str();
  serve_cmd
      ->add_option("--max-prompt-tokens", serve.max_prompt_tokens,
                   "Longest prompt in tokens before 400; 0: the model's context (a model's "
                   "max_prompt_tokens in the topology caps it further)")
      ->check(number({.lo = 0, .hi = 1 << 24, .integer = true}))
      ->capture_default_str();
  serve_cmd
      ->add_option("--chat-template", serve.chat_template,
                   "Without --config: the chat format of every model instead of its own (" +
                       aeg::models::chat_template::names() +
                       "); a topology names it per model (chat_template)")
      ->check(CLI::IsMember(split_names(aeg::models::chat_template::names())))
      ->excludes(config_opt);
  serve_cmd
      ->add_option("--max-body-bytes", serve.limits.max_body_bytes,
                   "Largest request body in bytes (413 beyond)")
      ->check(number({.lo = 1, .hi = 17179869184.0, .integer = true}))
      ->capture_default_str();
  serve_cmd
      ->add_option("--header-timeout", serve.header_timeout_seconds,
                   "Seconds a request may take to arrive (408 beyond)")
      ->check(number({.lo = 0, .above = true}))
      ->capture_default_str();
  serve_cmd
      ->add_option("--write-timeout", serve.write_timeout_seconds,
                   "Seconds a client may read nothing of its answer before it is dropped and its "
                   "request cancelled")
      ->check(number({.lo = 0, .above = true}))
      ->capture_default_str();

  aeg::apps::worker_options worker;
  auto* worker_cmd = app.add_subcommand(
      "worker", "Run a node of a cluster: its devices and instances, published to front ends "
                "that present the cluster key, until SIGINT or SIGTERM");
  worker_cmd
      ->add_option("--config", worker.config,
                   "The node's topology file (devices, models, instances; docs/operations.md)")
      ->required()
      ->check(CLI::ExistingFile);
  worker_cmd
      ->add_option("--listen", worker.listen,
                   "HOST:PORT front ends connect to; port 0 picks a free one (printed)")
      ->capture_default_str();
  worker_cmd
      ->add_option("--cluster-key-file", worker.cluster_key_file,
                   "File whose first line is the key front ends must present")
      ->required();
  worker_cmd->add_option("--name", worker.name, "The node's name (default: the host name)");
  worker_cmd
      ->add_option("--tls-cert", worker.tls.certificate,
                   "This node's certificate (PEM), signed by --tls-ca: links to front ends use "
                   "TLS (scripts/cluster-certs makes a CA and certificates)")
      ->check(CLI::ExistingFile);
  worker_cmd->add_option("--tls-key", worker.tls.key, "The certificate's private key (PEM)")
      ->check(CLI::ExistingFile);
  worker_cmd
      ->add_option("--tls-ca", worker.tls.ca,
                   "The CA certificate (PEM): only front ends with a certificate it signed connect")
      ->check(CLI::ExistingFile);

  aeg::apps::demo_options demo;
  auto* demo_cmd = app.add_subcommand(
      "demo",
      "One actor interleaves many coroutines that enqueue device work and await its events");
  demo_cmd->add_option("--devices", demo.num_devices, "Devices to spread the work over")
      ->check(number({.lo = 1, .hi = 64, .integer = true}))
      ->capture_default_str();
  demo_cmd->add_option("--coroutines", demo.num_coroutines, "Coroutines the actor interleaves")
      ->check(number({.lo = 1, .hi = 1 << 20, .integer = true}))
      ->capture_default_str();
  demo_cmd->add_option("--steps", demo.steps, "Device round trips per coroutine")
      ->check(number({.lo = 1, .hi = 1 << 20, .integer = true}))
      ->capture_default_str();
  demo_cmd->add_option("--elements", demo.elements, "Floats each coroutine moves per step")
      ->check(number({.lo = 1, .hi = 1 << 24, .integer = true}))
      ->capture_default_str();
  demo_cmd->add_option("--backend", demo.backend, "Device backend: cpu or cuda")
      ->check(CLI::IsMember(aeg::gpu::built_backends()))
      ->capture_default_str();

  aeg::apps::bench_options bench;
  bool in_process = false;
  auto* bench_cmd = app.add_subcommand(
      "bench", "Replay per-model Poisson arrivals on pools under each policy with equal devices "
               "and report SLO attainment and goodput");
  auto* in_process_flag = bench_cmd->add_flag(
      "--in-process", in_process,
      "Build pools inside this process, one per policy and model count, and compare them");
  auto* url_opt = bench_cmd->add_option(
      "--url", bench.url, "Load a running `aegaeon serve` instead, e.g. http://127.0.0.1:8000");
  in_process_flag->excludes(url_opt);
  bench_cmd->add_option("--api-key", bench.api_key, "--url: the server's API key")
      ->envname("AEGAEON_API_KEY");
  bench_cmd
      ->add_option("--model-names", bench.model_names,
                   "--url: models to load (default: every model the server lists)")
      ->delimiter(',');
  bench_cmd
      ->add_option("--max-connections", bench.max_connections,
                   "--url: requests in flight at once; later arrivals wait")
      ->check(number({.lo = 1, .hi = 100000, .integer = true}))
      ->capture_default_str();
  bench_cmd->add_option("--models", bench.model_counts, "--in-process: model counts to try")
      ->delimiter(',')
      ->check(number({.lo = 1,
                      .hi = 64,
                      .integer = true,
                      .why = " (each model is a separate image in host memory)"}))
      ->capture_default_str();
  bench_cmd
      ->add_option("--policies", bench.policies,
                   "Policies: aegaeon, request_level, dedicated, fcfs")
      ->delimiter(',')
      ->check(CLI::IsMember({"aegaeon", "request_level", "dedicated", "fcfs"}))
      ->capture_default_str();
  bench_cmd->add_option("--devices", bench.devices, "Devices in every pool")
      ->check(number({.lo = 1, .hi = 64, .integer = true}))
      ->capture_default_str();
  bench_cmd
      ->add_option("--prefill-devices", bench.prefill_devices,
                   "Prefill-only devices for aegaeon and fcfs (the rest decode); 0: every "
                   "device colocated; -1: 3 in 8 from 3 devices up, else colocated")
      ->check(number({.lo = -1, .hi = 63, .integer = true}))
      ->capture_default_str();
  bench_cmd->add_option("--backend", bench.backend, "Device backend")
      ->check(CLI::IsMember(aeg::gpu::built_backends()))
      ->capture_default_str();
  bench_cmd
      ->add_option("--device-mib", bench.device_mib,
                   "Memory per device in MiB: at least one --shape model plus the KV of one "
                   "2048-token request (smollm2-135m: 150)")
      ->check(number({.lo = 1, .hi = 1 << 24, .integer = true}))
      ->capture_default_str();
  bench_cmd->add_option("--shape", bench.shape, "Synthetic model shape of every model")
      ->capture_default_str();
  bench_cmd
      ->add_option("--rate", bench.rates,
                   "Requests per second per model (default 0.1); --url takes several, one run "
                   "each, and reports the highest meeting 90% attainment")
      ->delimiter(',')
      ->check(number({.lo = 0, .above = true}));
  bench_cmd->add_option("--duration", bench.duration, "Seconds of arrivals")
      ->check(number({.lo = 0, .above = true}))
      ->capture_default_str();
  // Synthetic lengths are drawn up to 1024 tokens each; a mean beyond that is not a mean.
  constexpr const char* capped = " (synthetic lengths are capped at 1024 tokens)";
  bench_cmd->add_option("--prompt-mean", bench.prompt_mean, "Mean prompt tokens")
      ->check(number({.lo = 1, .hi = 1024, .why = capped}))
      ->capture_default_str();
  bench_cmd->add_option("--output-mean", bench.output_mean, "Mean output tokens")
      ->check(number({.lo = 1, .hi = 1024, .why = capped}))
      ->capture_default_str();
  bench_cmd->add_option("--ttft", bench.ttft, "TTFT SLO in seconds")
      ->check(number({.lo = 0, .above = true}))
      ->capture_default_str();
  bench_cmd->add_option("--tbt", bench.tbt, "TBT SLO in seconds")
      ->check(number({.lo = 0, .above = true}))
      ->capture_default_str();
  bench_cmd->add_option("--seed", bench.seed, "Seed of the arrivals")
      ->check(number({.lo = 0, .integer = true}))
      ->capture_default_str();
  bench_cmd->add_option("--trace", bench.trace_path,
                        "JSONL trace (arrival, model, prompt_tokens, output_tokens) instead of "
                        "synthetic arrivals");
  bench_cmd->add_option("--json", bench.json_path, "Write the results as JSON");
  bench_cmd->add_option("--csv", bench.csv_path, "Write the results as CSV");
  bench_cmd->add_option("--figures", bench.figures_dir,
                        "Draw the figures (SVG: attainment, TTFT/TBT and switch CDFs, a timeline "
                        "per run) into this directory; default: beside --json, named after it");
  bench_cmd
      ->add_option("--shared-dir", bench.shared_dir,
                   "Where model images are kept between runs (empty: private memory)")
      ->capture_default_str();

  aeg::apps::simulate_options simulate;
  auto* simulate_cmd = aeg::apps::add_simulate_command(app, simulate);
  aeg::apps::profile_options profile;
  auto* profile_cmd = aeg::apps::add_profile_command(app, profile);
  aeg::apps::plot_options plot;
  auto* plot_cmd = aeg::apps::add_plot_command(app, plot);

  // CLI11 says only "A subcommand is required" for a misspelt one.
  const auto known = [&](const std::string& name) {
    return !app.get_subcommands([&](CLI::App* c) { return c->check_name(name); }).empty();
  };
  if (argc > 1 && argv[1][0] != '-' && !known(argv[1])) {
    fmt::print(stderr, "aegaeon: unknown command '{}'; aegaeon --help lists them\n", argv[1]);
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end well; every other parse error is bad usage: exit code 2.
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (gen_cmd->parsed() && gen_cmd->count("--system") > 0 && !gen.chat_template) {
    fmt::print(stderr, "aegaeon generate: --system needs --chat (a system prompt is part of the "
                       "chat template)\n");
    return 2;
  }
  if (bench_cmd->parsed()) {
    // Its tables come a line at a time, minutes apart: show each as it comes, on a pipe too.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (!in_process && bench.url.empty()) {
      fmt::print(stderr, "aegaeon bench: give --in-process or --url (see --help)\n");
      return 2;
    }
    if (!bench.url.empty())
      return aeg::apps::run_remote_bench(bench);
    if (bench.rates.size() > 1) {
      fmt::print(stderr, "aegaeon bench --in-process: give one --rate\n");
      return 2;
    }
    if (!bench.rates.empty())
      bench.rate = bench.rates.front();
    return aeg::apps::run_bench(bench);
  }
  if (profile_cmd->parsed())
    return aeg::apps::run_profile(profile);
  if (plot_cmd->parsed())
    return aeg::apps::run_plot(plot);
  if (simulate_cmd->parsed()) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0); // rows come minutes apart: show each as it comes
    return aeg::apps::run_simulate(simulate);
  }
  if (serve_cmd->parsed()) {
    if (!api_key_file.empty()) {
      if (serve_cmd->count("--api-key") > 0) {
        fmt::print(stderr, "aegaeon serve: give the API key once: --api-key or --api-key-file\n");
        return 2;
      }
      auto key = aeg::apps::read_key_file(api_key_file);
      if (!key) {
        fmt::print(stderr, "aegaeon serve: --api-key-file {}: {}\n", api_key_file,
                   key.error().message);
        return 2;
      }
      serve.api_key = std::move(*key);
    }
    // An empty key would mean no authentication at all: say so rather than serve openly.
    const char* env = std::getenv("AEGAEON_API_KEY");
    const bool blank = serve.api_key.find_first_not_of(" \t") == std::string::npos;
    if (blank && (serve_cmd->count("--api-key") > 0 || (env && *env == '\0'))) {
      fmt::print(stderr, "aegaeon serve: the API key is empty or blank; give a key, or leave out "
                         "--api-key and AEGAEON_API_KEY to serve without one\n");
      return 2;
    }
    return aeg::apps::run_serve(serve);
  }
  if (gen_cmd->parsed())
    return aeg::apps::run_generate(gen);
  if (chat_cmd->parsed()) {
    if (!chat.url.empty()) {
      if (chat.model_path == default_model_path)
        chat.model_path.clear(); // the server's first model
      return aeg::apps::run_remote_chat(chat);
    }
    return aeg::apps::run_chat(chat);
  }
  if (worker_cmd->parsed())
    return aeg::apps::run_worker(worker);
  if (demo_cmd->parsed())
    return aeg::apps::run_demo(demo);
  return 0;
}
