// Short requests behind one long prompt, on the pool `aegaeon serve` starts by default (one CPU
// device, one colocated instance of the default sizes, the default SLOs):
//   alone    the long request by itself: how long its prompt takes to read;
//   shared   the long request again, and a short request every --every seconds while its prompt
//            is being read.
// Each short request's time to first token is held against its TTFT SLO, and the long one's
// against its time alone, measured in the same run.
//
//   fairness_bench [--model FILE] [--long 8000] [--every 2] [--shorts 8] [--json FILE]

#include "actors/generation.hpp"
#include "actors/pool.hpp"
#include "actors/runtime_config.hpp"
#include "actors/sched/deadlines.hpp"

#include <CLI/CLI.hpp>
#include <caf/all.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

namespace {

using namespace aeg;
using clock_type = std::chrono::steady_clock;

double seconds_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct timing {
  clock_type::time_point sent, first, done;
  std::size_t tokens = 0;
  std::vector<double> token_times; ///< seconds after `sent`
  actors::finish_reason reason = actors::finish_reason::error;
  std::string message;
};

struct settings {
  std::size_t long_prompt = 8000, short_prompt = 16, tokens = 8; // tokens: each request's
  std::size_t shorts = 8;
  double every = 2;
};

class driver {
public:
  driver(caf::actor_system& sys, actors::pool& p, std::string model, std::size_t vocab)
      : self_(sys), pool_(p), model_(std::move(model)), vocab_(vocab) {}

  // The long request, and with `s.shorts` > 0 short ones every `s.every` seconds until its first
  // token; returns every request's timing by id (0 is the long one) once all have ended.
  std::map<std::uint64_t, timing> run(const settings& s, bool with_shorts) {
    std::map<std::uint64_t, timing> t;
    submit(0, s.long_prompt, s.tokens, t);
    std::uint64_t next = 1;
    std::size_t ended = 0;
    auto next_short_at = t[0].sent + std::chrono::duration_cast<clock_type::duration>(
                                         std::chrono::duration<double>(s.every));
    while (ended < t.size()) {
      const bool reading = t[0].tokens == 0;
      if (with_shorts && reading && next <= s.shorts && clock_type::now() >= next_short_at) {
        submit(next++, s.short_prompt, s.tokens, t);
        next_short_at += std::chrono::duration_cast<clock_type::duration>(
            std::chrono::duration<double>(s.every));
        fmt::print("  short request {} sent {:.1f} s after the long one\n", next - 1,
                   seconds_between(t[0].sent, t[next - 1].sent));
      }
      self_->receive(
          [&](actors::token_atom, std::uint64_t id, std::int32_t,
              const aeg::models::token_logprobs&) {
            auto& r = t[id];
            const auto now = clock_type::now();
            if (r.tokens++ == 0)
              r.first = now;
            r.token_times.push_back(seconds_between(r.sent, now));
          },
          [&](actors::done_atom, const actors::generation_result& r) {
            t[r.id].done = clock_type::now();
            t[r.id].reason = r.reason;
            t[r.id].message = r.message;
            ++ended;
          },
          // Wakes up to send the next short request on time.
          caf::after(std::chrono::milliseconds(20)) >> [] {});
    }
    return t;
  }

  // The instance's counters (cumulative over both runs).
  actors::instance_stats stats() {
    actors::instance_stats out;
    self_->request(pool_.instances().front(), caf::infinite, actors::stats_atom::value)
        .receive([&](const actors::instance_stats& st) { out = st; }, [](caf::error&) {});
    return out;
  }

private:
  void submit(std::uint64_t id, std::size_t prompt, std::size_t max_tokens,
              std::map<std::uint64_t, timing>& t) {
    actors::generation_request r;
    r.id = id;
    r.model = model_;
    for (std::size_t k = 0; k < prompt; ++k) // ordinary tokens, never the low special ones
      r.prompt.push_back(
          static_cast<std::int32_t>(100 + (k * 7919 + id * 104729) % (vocab_ - 100)));
    r.max_tokens = max_tokens;
    r.sink = caf::actor_cast<actors::generation_sink>(self_);
    t[id].sent = clock_type::now();
    self_->request(pool_.proxy(), caf::infinite, actors::submit_atom::value, r)
        .receive([](std::uint64_t) {},
                 [&](caf::error& e) {
                   // No request ends without being taken: nothing is left to wait for.
                   fmt::print(stderr, "fairness_bench: request {} was refused: {}\n", id,
                              self_->system().render(e));
                   std::exit(1);
                 });
  }

  caf::scoped_actor self_;
  actors::pool& pool_;
  std::string model_;
  std::size_t vocab_;
};

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Short requests behind one long prompt: their TTFT against the SLO, the long "
               "request against its time alone"};
  std::string model_path = "models/SmolLM2-135M-Instruct.Q4_1.gguf", json_path;
  settings s;
  app.add_option("--model", model_path, "GGUF model (relative to the current directory)")
      ->capture_default_str();
  app.add_option("--long", s.long_prompt, "Prompt tokens of the long request")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--every", s.every, "Seconds between short requests while the long one is read")
      ->check(CLI::Range(0.05, 60.0))
      ->capture_default_str();
  app.add_option("--shorts", s.shorts, "Most short requests sent")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--short-prompt", s.short_prompt, "Prompt tokens of a short request")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--tokens", s.tokens, "Tokens each request generates")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--json", json_path, "Also write the results here");
  CLI11_PARSE(app, argc, argv);

  if (!std::filesystem::exists(model_path)) {
    fmt::print(stderr, "fairness_bench: {} does not exist (scripts/fetch-model fetches it)\n",
               model_path);
    return 2;
  }
  // The pool `aegaeon serve` starts with no topology: one CPU device, one colocated instance.
  actors::pool_spec spec;
  spec.devices.push_back({"cpu0", "cpu", 0, 0});
  actors::model_spec m;
  m.name = std::filesystem::path(model_path).stem().string();
  m.source.model_path = model_path;
  spec.models.push_back(m);
  actors::instance_spec is;
  is.device = "cpu0";
  spec.instances.push_back(is);

  caf::actor_system_config cfg;
  actors::configure_runtime(cfg);
  caf::actor_system sys{cfg};
  auto p = actors::pool::start(sys, spec);
  if (!p) {
    fmt::print(stderr, "fairness_bench: {}\n", p.error().to_string());
    return 1;
  }
  if (auto started = (*p)->wait_started(sys); !started) {
    fmt::print(stderr, "fairness_bench: {}\n", started.error().to_string());
    return 1;
  }
  const auto image = (*p)->cache().find(m.name);
  const auto& config = image->config();
  if (s.long_prompt + s.tokens > config.context_length) {
    fmt::print(stderr, "fairness_bench: --long {} and {} tokens exceed the context of {} ({})\n",
               s.long_prompt, s.tokens, config.context_length, m.name);
    return 2;
  }
  driver d(sys, **p, m.name, config.vocab_size);
  const double ttft_slo = m.ttft_seconds;

  fmt::print("{}: a {}-token prompt alone, then with a {}-token request every {} s while it is "
             "read (TTFT SLO {} s, step budget {} tokens)\n",
             m.name, s.long_prompt, s.short_prompt, s.every, ttft_slo, is.max_batch_tokens);
  const auto alone = d.run(s, false);
  const auto before = d.stats();
  const auto shared = d.run(s, true);
  const auto after = d.stats();
  fmt::print("steps {} (alone {}), batch splits {}, preemptions {}, KV swaps out {} in {}\n",
             after.steps - before.steps, before.steps, after.batch_splits - before.batch_splits,
             after.preemptions - before.preemptions, after.swaps_out - before.swaps_out,
             after.swaps_in - before.swaps_in);
  for (const auto* run : {&alone, &shared})
    for (const auto& [id, t] : *run)
      if (t.reason != actors::finish_reason::length) {
        fmt::print(stderr, "fairness_bench: request {} ended with {}: {}\n", id,
                   actors::to_string(t.reason), t.message);
        return 1;
      }

  const auto& la = alone.at(0);
  const auto& ls = shared.at(0);
  const double long_alone = seconds_between(la.sent, la.first);
  const double long_shared = seconds_between(ls.sent, ls.first);
  nlohmann::json out = {{"model", m.name},
                        {"long_prompt", s.long_prompt},
                        {"short_prompt", s.short_prompt},
                        {"ttft_slo", ttft_slo},
                        {"long_ttft_alone", long_alone},
                        {"long_ttft_shared", long_shared},
                        {"long_total_alone", seconds_between(la.sent, la.done)},
                        {"long_total_shared", seconds_between(ls.sent, ls.done)}};
  fmt::print("\n{:>8} {:>10} {:>10} {:>10} {:>12} {:>15}\n", "request", "sent at s", "TTFT s",
             "vs SLO", "done at s", "tokens on time");
  double worst = 0;
  std::size_t on_time = 0, tokens = 0;
  for (const auto& [id, t] : shared) {
    if (id == 0)
      continue;
    const double ttft = seconds_between(t.sent, t.first);
    worst = std::max(worst, ttft / ttft_slo);
    // The pool's deadline rule: the first token within the TTFT, each next one a TBT after
    // the later of its own deadline and the token before it.
    const auto met = sched::tokens_on_time(t.token_times, ttft_slo, m.tbt_seconds);
    on_time += met;
    tokens += t.tokens;
    fmt::print("{:>8} {:>10.1f} {:>10.2f} {:>9.2f}x {:>12.1f} {:>11} of {}\n", id,
               seconds_between(ls.sent, t.sent), ttft, ttft / ttft_slo,
               seconds_between(ls.sent, t.done), met, t.tokens);
    out["shorts"].push_back({{"sent_at", seconds_between(ls.sent, t.sent)},
                             {"ttft", ttft},
                             {"done_at", seconds_between(ls.sent, t.done)},
                             {"tokens_on_time", met}});
  }
  fmt::print("\nlong prompt read: {:.1f} s alone, {:.1f} s beside the short requests ({:.2f}x); "
             "worst short TTFT {:.2f}x its SLO; {} of the short requests' {} tokens on time\n",
             long_alone, long_shared, long_shared / long_alone, worst, on_time, tokens);
  out["worst_short_ttft_vs_slo"] = worst;
  out["short_tokens_on_time"] = on_time;
  out["short_tokens"] = tokens;
  if (!json_path.empty())
    std::ofstream(json_path) << out.dump(2) << '\n';
  return 0;
}
