#pragma once

#include "actors/instance.hpp"
#include "actors/proxy.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace aeg::server {

/// One instance's stats for the metrics page (none when it did not answer).
struct instance_report {
  std::string name;
  std::optional<actors::instance_stats> stats;
};

/// A Prometheus histogram with fixed buckets.
struct histogram {
  std::vector<double> bounds;
  std::vector<std::size_t> counts; ///< per bucket, not cumulative; one more for +Inf
  double sum = 0;
  std::size_t count = 0;

  explicit histogram(std::vector<double> b = {});
  void observe(double v);
};

/// What the server counted of one model's requests.
struct model_counts {
  std::size_t started = 0;
  std::map<std::string, std::size_t> finished; ///< by finish reason
  std::size_t prompt_tokens = 0;               ///< of finished requests
  std::size_t completion_tokens = 0;           ///< of finished requests
  std::size_t tokens_received = 0;             ///< every token as it arrived, running requests too

  /// Requests finished, whatever the reason.
  std::size_t num_finished() const;
  /// Requests started and not finished: those this server is answering.
  std::size_t num_running() const { return started - std::min(num_finished(), started); }
};

/// What the server counts itself (per model, on its network thread), rendered with the pool's
/// and the instances' figures as Prometheus text (version 0.0.4).
class metrics_registry {
public:
  /// A served model: its series are rendered (as zeros) before its first request.
  void declare(const std::string& model);
  void started(const std::string& model);
  void first_token(const std::string& model, double seconds);
  void between_tokens(const std::string& model, double seconds);
  void finished(const std::string& model, const std::string& reason, std::size_t prompt_tokens,
                std::size_t completion_tokens);
  /// An error answer the server gave (a refusal under load, bad input), by HTTP status.
  void refused(int status);

  std::string render(const actors::pool_metrics& pool,
                     const std::vector<instance_report>& instances) const;
  /// Each model's counts (every declared model, by name).
  std::map<std::string, model_counts> counts() const;

private:
  void render_requests(std::string& out) const;
  void render_pool(std::string& out, const actors::pool_metrics& pool) const;
  static void render_instances(std::string& out, const std::vector<instance_report>& instances);

  struct per_model : model_counts {
    histogram ttft{{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40}};
    histogram tbt{{0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5}};
  };
  std::map<std::string, per_model> models_;
  std::map<int, std::size_t> refused_; // by HTTP status
};

} // namespace aeg::server
