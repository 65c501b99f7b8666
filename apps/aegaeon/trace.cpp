#include "apps/aegaeon/trace.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <tuple>

namespace aeg::apps {

namespace {

// Ties broken by model so the order is total and repeatable (std::stable_sort's buffer API is
// deprecated in libc++).
void sort_by_arrival(std::vector<trace_request>& v) {
  std::sort(v.begin(), v.end(), [](const trace_request& a, const trace_request& b) {
    return std::tie(a.arrival, a.model) < std::tie(b.arrival, b.model);
  });
}

} // namespace

std::vector<trace_request> make_trace(const trace_options& o) {
  std::mt19937_64 rng(o.seed);
  std::vector<trace_request> out;
  // Log-normal with mean m: μ = ln m - σ²/2.
  auto lognormal = [&](double mean, double sigma) {
    std::lognormal_distribution<double> d(std::log(mean) - sigma * sigma / 2, sigma);
    return d(rng);
  };
  for (std::size_t i = 0; i < o.models.size(); ++i) {
    const auto& model = o.models[i];
    std::exponential_distribution<double> gap(i < o.rates.size() ? o.rates[i] : o.rate_per_model);
    for (double t = gap(rng); t < o.duration; t += gap(rng)) {
      trace_request r;
      r.arrival = t;
      r.model = model;
      r.prompt_tokens = std::clamp<std::size_t>(
          static_cast<std::size_t>(lognormal(o.prompt_mean, 1.0)), 4, o.max_prompt);
      r.output_tokens = std::clamp<std::size_t>(
          static_cast<std::size_t>(lognormal(o.output_mean, 0.8)), 16, o.max_output);
      out.push_back(std::move(r));
    }
  }
  sort_by_arrival(out);
  return out;
}

result<std::vector<double>> market_rates(std::size_t models, double min_rate, double mean_rate,
                                         double max_rate) {
  if (models == 0 || !(min_rate > 0) || !(min_rate <= mean_rate) || !(mean_rate <= max_rate))
    return fail(errc::invalid_argument,
                fmt::format("market rates need 0 < min <= mean <= max; they are {}, {}, {}",
                            min_rate, mean_rate, max_rate));
  if (models == 1)
    return std::vector<double>{mean_rate};
  const auto n = static_cast<double>(models);
  double harmonic = 0;
  for (std::size_t i = 1; i < models; ++i)
    harmonic += 1.0 / static_cast<double>(i);
  const double c = (n * mean_rate - max_rate - (n - 1) * min_rate) / harmonic;
  if (c < 0 || min_rate + c > max_rate)
    return fail(
        errc::invalid_argument,
        fmt::format("no market of {} models has rates from {} to {} with mean {}: the "
                    "mean must be between {:.4g} and {:.4g}",
                    models, min_rate, max_rate, mean_rate, (max_rate + (n - 1) * min_rate) / n,
                    (max_rate + (n - 1) * min_rate + (max_rate - min_rate) * harmonic) / n));
  std::vector<double> rates = {max_rate};
  for (std::size_t i = 1; i < models; ++i)
    rates.push_back(min_rate + c / static_cast<double>(i));
  return rates;
}

result<std::vector<trace_request>> load_trace(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return fail(errc::not_found, "cannot read trace '" + path + "'");
  std::vector<trace_request> out;
  std::string line;
  for (std::size_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    try {
      const auto j = nlohmann::json::parse(line);
      trace_request r;
      r.arrival = j.at("arrival").get<double>();
      r.model = j.at("model").get<std::string>();
      r.prompt_tokens = j.at("prompt_tokens").get<std::size_t>();
      r.output_tokens = j.at("output_tokens").get<std::size_t>();
      if (r.arrival < 0 || r.prompt_tokens == 0 || r.output_tokens == 0)
        return fail(errc::invalid_argument,
                    path + ":" + std::to_string(n) + ": arrival must be >= 0 and lengths > 0");
      out.push_back(std::move(r));
    } catch (const std::exception& e) {
      return fail(errc::invalid_argument, path + ":" + std::to_string(n) +
                                              ": expected {\"arrival\", \"model\", "
                                              "\"prompt_tokens\", \"output_tokens\"}: " +
                                              e.what());
    }
  }
  if (out.empty())
    return fail(errc::invalid_argument, "the trace " + path + " has no requests");
  sort_by_arrival(out);
  return out;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  // The element a sort would put there, without sorting (an hour's token gaps are millions).
  const auto k =
      std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

result<void> save_trace(const std::vector<trace_request>& trace, const std::string& path) {
  AEG_TRY_ASSIGN(auto out, open_output(path));
  for (const auto& r : trace)
    out << nlohmann::json{{"arrival", r.arrival},
                          {"model", r.model},
                          {"prompt_tokens", r.prompt_tokens},
                          {"output_tokens", r.output_tokens}}
               .dump()
        << "\n";
  return close_output(out, path);
}

result<std::ofstream> open_output(const std::string& path) {
  errno = 0;
  std::ofstream out(path);
  if (!out)
    return fail(errc::unavailable,
                "cannot write '" + path + "'" +
                    (errno != 0 ? std::string(": ") + std::strerror(errno) : "") +
                    "; give a file in a writable directory");
  return out;
}

result<void> close_output(std::ofstream& out, const std::string& path) {
  errno = 0;
  out.flush();
  const bool flushed = out.good();
  out.close();
  if (!flushed || out.fail())
    return fail(errc::unavailable,
                "writing '" + path + "' failed" +
                    (errno != 0 ? std::string(": ") + std::strerror(errno) : "") +
                    "; the results there are incomplete");
  return {};
}

result<report_files> report_files::open(std::string json_path, std::string csv_path) {
  report_files r{std::move(json_path), std::move(csv_path), {}, {}};
  for (auto [path, out] : {std::pair{&r.json_path, &r.json}, std::pair{&r.csv_path, &r.csv}}) {
    if (path->empty())
      continue;
    AEG_TRY_ASSIGN(auto f, open_output(*path));
    *out = std::move(f);
  }
  return r;
}

result<bench_files> bench_files::open(std::string json_path, std::string csv_path,
                                      const std::string& trace_path) {
  AEG_TRY_ASSIGN(auto reports, report_files::open(std::move(json_path), std::move(csv_path)));
  bench_files f{std::move(reports), {}};
  if (!trace_path.empty()) {
    AEG_TRY_ASSIGN(auto t, load_trace(trace_path));
    f.trace = std::move(t);
  }
  return f;
}

result<void> report_files::close() {
  result<void> first;
  for (auto [path, out] : {std::pair{&json_path, &json}, std::pair{&csv_path, &csv}})
    if (*out)
      if (auto closed = close_output(**out, *path); !closed && first)
        first = closed;
  return first;
}

} // namespace aeg::apps
