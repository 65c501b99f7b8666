#include "apps/server/metrics.hpp"

#include <fmt/core.h>

#include <set>

namespace aeg::server {

histogram::histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1) {}

void histogram::observe(double v) {
  std::size_t i = 0;
  while (i < bounds.size() && v > bounds[i])
    ++i;
  ++counts[i];
  sum += v;
  ++count;
}

std::size_t model_counts::num_finished() const {
  std::size_t done = 0;
  for (const auto& [reason, n] : finished)
    done += n;
  return done;
}

void metrics_registry::declare(const std::string& model) {
  models_.try_emplace(model);
}

void metrics_registry::refused(int status) {
  ++refused_[status];
}

void metrics_registry::started(const std::string& model) {
  ++models_[model].started;
}

void metrics_registry::first_token(const std::string& model, double seconds) {
  auto& m = models_[model];
  m.ttft.observe(seconds);
  ++m.tokens_received;
}

void metrics_registry::between_tokens(const std::string& model, double seconds) {
  auto& m = models_[model];
  m.tbt.observe(seconds);
  ++m.tokens_received;
}

void metrics_registry::finished(const std::string& model, const std::string& reason,
                                std::size_t prompt_tokens, std::size_t completion_tokens) {
  auto& m = models_[model];
  ++m.finished[reason];
  m.prompt_tokens += prompt_tokens;
  m.completion_tokens += completion_tokens;
}

std::map<std::string, model_counts> metrics_registry::counts() const {
  std::map<std::string, model_counts> out;
  for (const auto& [model, m] : models_)
    out.emplace(model, static_cast<const model_counts&>(m));
  return out;
}

namespace {

// Label values escape backslash, double quote and newline.
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"')
      out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// Appends Prometheus text to a string.
class writer {
public:
  explicit writer(std::string& out) : out_(out) {}
  void family(const char* name, const char* type, const char* help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void sample(const std::string& name, const std::string& labels, double v) {
    out_ += labels.empty() ? fmt::format("{} {}\n", name, v)
                           : fmt::format("{}{{{}}} {}\n", name, labels, v);
  }
  void hist(const char* name, const std::string& labels, const histogram& h) {
    std::size_t cumulative = 0;
    for (std::size_t i = 0; i <= h.bounds.size(); ++i) {
      cumulative += h.counts[i];
      const std::string le = i < h.bounds.size() ? fmt::format("{}", h.bounds[i]) : "+Inf";
      sample(std::string(name) + "_bucket", labels + ",le=\"" + le + "\"",
             static_cast<double>(cumulative));
    }
    sample(std::string(name) + "_sum", labels, h.sum);
    sample(std::string(name) + "_count", labels, static_cast<double>(h.count));
  }

private:
  std::string& out_;
};

std::string model_label(const std::string& m) {
  return "model=\"" + label(m) + "\"";
}

} // namespace

std::string metrics_registry::render(const actors::pool_metrics& pool,
                                     const std::vector<instance_report>& instances) const {
  std::string out;
  render_requests(out);
  render_pool(out, pool);
  render_instances(out, instances);
  return out;
}

// What this server counted of the requests it answered.
void metrics_registry::render_requests(std::string& out) const {
  writer w(out);
  w.family("aegaeon_requests_total", "counter", "Requests finished, by model and finish reason.");
  for (const auto& [model, m] : models_)
    for (const auto& [reason, n] : m.finished)
      w.sample("aegaeon_requests_total",
               model_label(model) + ",finish_reason=\"" + label(reason) + "\"",
               static_cast<double>(n));
  w.family("aegaeon_requests_running", "gauge", "Requests this server is answering now.");
  for (const auto& [model, m] : models_)
    w.sample("aegaeon_requests_running", model_label(model), static_cast<double>(m.num_running()));
  w.family("aegaeon_prompt_tokens_total", "counter", "Prompt tokens of finished requests.");
  for (const auto& [model, m] : models_)
    w.sample("aegaeon_prompt_tokens_total", model_label(model),
             static_cast<double>(m.prompt_tokens));
  w.family("aegaeon_generation_tokens_total", "counter", "Tokens generated for finished requests.");
  for (const auto& [model, m] : models_)
    w.sample("aegaeon_generation_tokens_total", model_label(model),
             static_cast<double>(m.completion_tokens));
  w.family("aegaeon_time_to_first_token_seconds", "histogram",
           "From a request's arrival to its first token.");
  for (const auto& [model, m] : models_)
    w.hist("aegaeon_time_to_first_token_seconds", model_label(model), m.ttft);
  w.family("aegaeon_time_between_tokens_seconds", "histogram",
           "Between consecutive tokens of a request.");
  for (const auto& [model, m] : models_)
    w.hist("aegaeon_time_between_tokens_seconds", model_label(model), m.tbt);
}

// What the pool's proxy knows: attainment, queues, refusals.
void metrics_registry::render_pool(std::string& out, const actors::pool_metrics& pool) const {
  writer w(out);
  w.family("aegaeon_slo_attainment_ratio", "gauge",
           "Mean share of each finished request's time on schedule (TTFT and TBT deadlines).");
  for (const auto& [model, t] : pool.totals)
    if (t.requests > 0)
      w.sample("aegaeon_slo_attainment_ratio", model_label(model),
               t.attainment_sum / static_cast<double>(t.requests));
  w.family("aegaeon_slo_tokens_on_time_total", "counter", "Tokens that met their deadline.");
  for (const auto& [model, t] : pool.totals)
    w.sample("aegaeon_slo_tokens_on_time_total", model_label(model),
             static_cast<double>(t.tokens_on_time));
  w.family("aegaeon_queue_length", "gauge", "Requests waiting for a prefill instance.");
  // Gauges of every served model, 0 when the pool has none of its requests.
  auto of = [](const std::map<std::string, std::size_t>& by_model, const std::string& model) {
    const auto it = by_model.find(model);
    return static_cast<double>(it == by_model.end() ? 0 : it->second);
  };
  for (const auto& [model, m] : models_)
    w.sample("aegaeon_queue_length", model_label(model), of(pool.queued_by_model, model));
  w.family("aegaeon_pool_requests_in_flight", "gauge",
           "Requests the pool holds, queued or running.");
  for (const auto& [model, m] : models_)
    w.sample("aegaeon_pool_requests_in_flight", model_label(model),
             of(pool.in_flight_by_model, model));
  w.family("aegaeon_http_errors_total", "counter",
           "Error answers, by HTTP status: 429 and 503 under load, 4xx for bad requests.");
  for (const auto& [status, n] : refused_)
    w.sample("aegaeon_http_errors_total", "status=\"" + std::to_string(status) + "\"",
             static_cast<double>(n));
  w.family("aegaeon_pool_rejected_total", "counter", "Requests the pool refused (full).");
  w.sample("aegaeon_pool_rejected_total", "", static_cast<double>(pool.rejected));
  w.family("aegaeon_instances_alive", "gauge", "Instances serving.");
  w.sample("aegaeon_instances_alive", "", static_cast<double>(pool.instances_alive));
}

// Each instance's figures, as it reported them.
void metrics_registry::render_instances(std::string& out,
                                        const std::vector<instance_report>& instances) {
  writer w(out);
  auto each = [&](const char* name, const char* type, const char* help, auto value) {
    w.family(name, type, help);
    for (const auto& i : instances)
      if (i.stats)
        w.sample(name, "instance=\"" + label(i.name) + "\"", static_cast<double>(value(*i.stats)));
  };
  w.family("aegaeon_instance_up", "gauge", "Whether the instance answered.");
  for (const auto& i : instances)
    w.sample("aegaeon_instance_up", "instance=\"" + label(i.name) + "\"", i.stats ? 1 : 0);
  each("aegaeon_instance_switches_total", "counter", "Times the active model changed.",
       [](const actors::instance_stats& s) { return s.switches; });
  each("aegaeon_instance_switch_seconds_total", "counter",
       "Time from each switch to its model being all in device memory.",
       [](const actors::instance_stats& s) { return s.scale_up_seconds; });
  each("aegaeon_instance_prefetches_total", "counter", "Switches to a model already prefetched.",
       [](const actors::instance_stats& s) { return s.prefetches; });
  each("aegaeon_instance_weight_bytes_copied_total", "counter", "Weight bytes copied in.",
       [](const actors::instance_stats& s) { return s.weight_bytes_copied; });
  each("aegaeon_instance_kv_swapped_bytes_total", "counter", "KV bytes swapped out and in.",
       [](const actors::instance_stats& s) { return s.kv_bytes_swapped; });
  each("aegaeon_instance_kv_bytes_used", "gauge", "Device KV bytes in allocated blocks.",
       [](const actors::instance_stats& s) { return s.kv_bytes_used; });
  each("aegaeon_instance_running_sequences", "gauge", "Sequences holding KV.",
       [](const actors::instance_stats& s) { return s.running; });
  each("aegaeon_instance_waiting_sequences", "gauge", "Sequences admitted, not yet holding KV.",
       [](const actors::instance_stats& s) { return s.waiting; });
  each("aegaeon_instance_steps_total", "counter", "Forward steps run.",
       [](const actors::instance_stats& s) { return s.steps; });
  each("aegaeon_instance_step_seconds_total", "counter",
       "Time of the steps, each from its enqueueing to the instance hearing it ended (waits "
       "for weights and KV coming in included).",
       [](const actors::instance_stats& s) { return s.step_seconds; });
  each("aegaeon_instance_steps_repeated_total", "counter",
       "Of the steps, decode steps run again without planning while the policy's decision stood.",
       [](const actors::instance_stats& s) { return s.steps_repeated; });
  each("aegaeon_instance_host_kv_bytes_used", "gauge",
       "Host KV bytes in allocated blocks (the pool this instance shares with its node).",
       [](const actors::instance_stats& s) { return s.host_kv_bytes_used; });
  each("aegaeon_instance_prompts_shared_total", "counter",
       "Requests that copied their prompt group leader's KV instead of reading the prompt.",
       [](const actors::instance_stats& s) { return s.prompts_shared; });
  w.family("aegaeon_model_resident", "gauge", "The model active on each instance.");
  for (const auto& i : instances)
    if (i.stats && !i.stats->active.empty())
      w.sample("aegaeon_model_resident",
               "instance=\"" + label(i.name) + "\"," + model_label(i.stats->active), 1);
}

} // namespace aeg::server
