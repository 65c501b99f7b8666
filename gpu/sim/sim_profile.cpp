#include "gpu/sim/sim_profile.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>

namespace aeg::gpu {

namespace {

using json = nlohmann::json;

enum class sign { any, non_negative, positive };

// Reads `key` of `obj` into `out` when present: a finite number of the sign wanted.
result<void> number(const json& obj, const std::string& where, const char* key, double& out,
                    sign want = sign::non_negative) {
  const auto it = obj.find(key);
  if (it == obj.end())
    return {};
  const bool finite = it->is_number() && std::isfinite(it->get<double>());
  if (!finite || (want != sign::any && it->get<double>() < 0) ||
      (want == sign::positive && it->get<double>() == 0))
    return fail(errc::invalid_argument, where + "." + key + ": must be a" +
                                            (want == sign::any        ? " finite number"
                                             : want == sign::positive ? " number > 0"
                                                                      : " number >= 0") +
                                            ", got " + it->dump());
  out = it->get<double>();
  return {};
}

result<void> fit(const json& obj, const std::string& where, linear_cost& out) {
  if (!obj.is_object())
    return fail(errc::invalid_argument, where + ": must be an object {\"a\", \"b\", \"c\"}");
  // A profile written by hand or before fits kept every term >= 0 may have a negative term (an
  // intercept below zero for a line through long steps); the step's total is what must not be.
  AEG_TRY(number(obj, where, "a", out.a, sign::any));
  AEG_TRY(number(obj, where, "b", out.b, sign::any));
  return number(obj, where, "c", out.c, sign::any);
}

json to_json(const linear_cost& c) {
  return {{"a", c.a}, {"b", c.b}, {"c", c.c}};
}

// The least squares of relative error over the terms in `free` (the others held at zero), or
// nothing when those terms cannot be told apart over the samples. Each term's column is scaled
// to unit length first: token pairs run to millions where the intercept's column is ones.
std::optional<std::array<double, 3>> relative_least_squares(std::span<const cost_sample> samples,
                                                            std::array<bool, 3> free) {
  const auto row = [](const cost_sample& s) {
    return std::array<double, 3>{1 / s.seconds, s.x / s.seconds, s.y / s.seconds};
  };
  std::array<double, 3> scale{};
  for (const auto& s : samples) {
    const auto r = row(s);
    for (std::size_t k = 0; k < 3; ++k)
      scale[k] += r[k] * r[k];
  }
  // Normal equations of the free columns: A·w = b, with the target 1 for every sample.
  std::array<std::size_t, 3> cols{};
  std::size_t n = 0;
  for (std::size_t k = 0; k < 3; ++k)
    if (free[k]) {
      if (scale[k] == 0)
        return std::nullopt;
      scale[k] = std::sqrt(scale[k]);
      cols[n++] = k;
    }
  std::array<std::array<double, 4>, 3> m{}; // rows of [A | b]
  for (const auto& s : samples) {
    const auto r = row(s);
    for (std::size_t i = 0; i < n; ++i) {
      const double ri = r[cols[i]] / scale[cols[i]];
      for (std::size_t j = 0; j < n; ++j)
        m[i][j] += ri * r[cols[j]] / scale[cols[j]];
      m[i][3] += ri;
    }
  }
  for (std::size_t i = 0; i < n; ++i) { // Gauss-Jordan with partial pivoting
    std::size_t pivot = i;
    for (std::size_t r = i + 1; r < n; ++r)
      if (std::abs(m[r][i]) > std::abs(m[pivot][i]))
        pivot = r;
    if (std::abs(m[pivot][i]) < 1e-12) // unit columns: this is collinearity, not small numbers
      return std::nullopt;
    std::swap(m[i], m[pivot]);
    for (std::size_t r = 0; r < n; ++r)
      if (r != i) {
        const double f = m[r][i] / m[i][i];
        for (std::size_t c = i; c < n; ++c)
          m[r][c] -= f * m[i][c];
        m[r][3] -= f * m[i][3];
      }
  }
  std::array<double, 3> w{};
  for (std::size_t i = 0; i < n; ++i)
    w[cols[i]] = m[i][3] / m[i][i] / scale[cols[i]];
  return w;
}

double squared_relative_error(const linear_cost& c, std::span<const cost_sample> samples) {
  double sum = 0;
  for (const auto& s : samples) {
    const double e = c.at(s.x, s.y) / s.seconds - 1;
    sum += e * e;
  }
  return sum;
}

} // namespace

result<linear_cost> fit_relative(std::span<const cost_sample> samples) {
  if (samples.size() < 3)
    return fail(errc::invalid_argument, "a step-time fit needs three measured steps or more, got " +
                                            std::to_string(samples.size()));
  for (const auto& s : samples)
    if (!(s.seconds > 0) || !std::isfinite(s.seconds) || !std::isfinite(s.x) || !std::isfinite(s.y))
      return fail(errc::invalid_argument, "a measured step must take a finite time > 0, got " +
                                              std::to_string(s.seconds) + " s at " +
                                              std::to_string(s.x) + ", " + std::to_string(s.y));
  // Non-negative least squares over three terms: the best of the fits over every subset of
  // them whose terms all came out >= 0 (the optimum is one of these).
  std::optional<linear_cost> best;
  double best_error = 0;
  for (unsigned subset = 1; subset < 8; ++subset) {
    const auto w =
        relative_least_squares(samples, {(subset & 1) != 0, (subset & 2) != 0, (subset & 4) != 0});
    if (!w || std::any_of(w->begin(), w->end(), [](double v) { return v < 0; }))
      continue;
    const linear_cost c{(*w)[0], (*w)[1], (*w)[2]};
    const double e = squared_relative_error(c, samples);
    if (!best || e < best_error) {
      best = c;
      best_error = e;
    }
  }
  if (!best)
    return fail(errc::invalid_argument, "the measured steps fit no step time with terms >= 0");
  return *best;
}

double worst_relative_error(const linear_cost& c, std::span<const cost_sample> samples) {
  double worst = 0;
  for (const auto& s : samples)
    worst = std::max(worst, std::abs(c.at(s.x, s.y) / s.seconds - 1));
  return worst;
}

result<sim_profile> parse_sim_profile(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return fail(errc::invalid_argument, origin + ": not JSON: " + e.what());
  }
  if (!j.is_object())
    return fail(errc::invalid_argument, origin + ": a profile is a JSON object");
  sim_profile p;
  const auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get<std::string>().empty())
    return fail(errc::invalid_argument, origin + ": \"name\" (the GPU, e.g. \"H800\") is missing");
  p.name = name->get<std::string>();
  if (auto s = j.find("source"); s != j.end() && s->is_string())
    p.source = s->get<std::string>();
  if (auto l = j.find("weight_layout"); l != j.end()) {
    if (!l->is_string() || (*l != "half" && *l != "cpu"))
      return fail(errc::invalid_argument,
                  origin + ".weight_layout: must be \"half\" or \"cpu\", got " + l->dump());
    p.weight_layout = l->get<std::string>();
  }
  if (auto sc = j.find("shared_compute"); sc != j.end()) {
    if (!sc->is_boolean())
      return fail(errc::invalid_argument,
                  origin + ".shared_compute: must be true or false, got " + sc->dump());
    p.shared_compute = sc->get<bool>();
  }
  double gib = static_cast<double>(p.memory_bytes) / static_cast<double>(1 << 30);
  AEG_TRY(number(j, origin, "memory_gib", gib, sign::positive));
  if (gib > 1 << 20)
    return fail(errc::invalid_argument,
                origin + ".memory_gib: at most 1048576 (a PiB), got " + std::to_string(gib));
  p.memory_bytes = static_cast<std::size_t>(gib * static_cast<double>(1 << 30));
  AEG_TRY(number(j, origin, "h2d_bytes_per_second", p.h2d_bytes_per_second, sign::positive));
  AEG_TRY(number(j, origin, "d2h_bytes_per_second", p.d2h_bytes_per_second, sign::positive));
  AEG_TRY(number(j, origin, "d2d_bytes_per_second", p.d2d_bytes_per_second, sign::positive));
  AEG_TRY(number(j, origin, "copy_seconds", p.copy_seconds));
  AEG_TRY(number(j, origin, "switch_seconds", p.switch_seconds));
  AEG_TRY(number(j, origin, "copy_compute_share", p.copy_compute_share, sign::positive));
  if (p.copy_compute_share > 1)
    return fail(errc::invalid_argument, origin +
                                            ".copy_compute_share: at most 1 (a step's "
                                            "weight), got " +
                                            std::to_string(p.copy_compute_share));
  AEG_TRY(number(j, origin, "step_scale", p.step_scale, sign::positive));
  AEG_TRY(number(j, origin, "hbm_bytes_per_second", p.hbm_bytes_per_second, sign::positive));
  AEG_TRY(number(j, origin, "flops", p.flops, sign::positive));
  AEG_TRY(number(j, origin, "bandwidth_efficiency", p.bandwidth_efficiency, sign::positive));
  AEG_TRY(number(j, origin, "flops_efficiency", p.flops_efficiency, sign::positive));
  AEG_TRY(number(j, origin, "step_seconds", p.step_seconds));
  if (auto m = j.find("models"); m != j.end()) {
    if (!m->is_object())
      return fail(errc::invalid_argument,
                  origin + ".models: must be an object of shape name to fits");
    for (const auto& [shape, v] : m->items()) {
      const std::string where = origin + ".models." + shape;
      if (!v.is_object() || !v.contains("prefill") || !v.contains("decode"))
        return fail(errc::invalid_argument, where + ": needs \"prefill\" and \"decode\" fits");
      sim_model_fit f;
      AEG_TRY(fit(v.at("prefill"), where + ".prefill", f.prefill));
      AEG_TRY(fit(v.at("decode"), where + ".decode", f.decode));
      if (auto s = v.find("source"); s != v.end() && s->is_string())
        f.source = s->get<std::string>();
      p.models.emplace(shape, std::move(f));
    }
  }
  return p;
}

result<sim_profile> read_sim_profile(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return fail(errc::not_found, "cannot read the device profile '" + path +
                                     "'; profiles/ holds the published ones (h800.json, ...)");
  std::stringstream text;
  text << in.rdbuf();
  return parse_sim_profile(text.str(), path);
}

std::string to_json(const sim_profile& p) {
  json j = {{"name", p.name},
            {"source", p.source},
            {"memory_gib", static_cast<double>(p.memory_bytes) / static_cast<double>(1 << 30)},
            {"weight_layout", p.weight_layout},
            {"shared_compute", p.shared_compute},
            {"copy_compute_share", p.copy_compute_share},
            {"h2d_bytes_per_second", p.h2d_bytes_per_second},
            {"d2h_bytes_per_second", p.d2h_bytes_per_second},
            {"d2d_bytes_per_second", p.d2d_bytes_per_second},
            {"copy_seconds", p.copy_seconds},
            {"switch_seconds", p.switch_seconds},
            {"step_scale", p.step_scale},
            {"hbm_bytes_per_second", p.hbm_bytes_per_second},
            {"flops", p.flops},
            {"bandwidth_efficiency", p.bandwidth_efficiency},
            {"flops_efficiency", p.flops_efficiency},
            {"step_seconds", p.step_seconds}};
  json models = json::object();
  for (const auto& [shape, f] : p.models)
    models[shape] = {
        {"prefill", to_json(f.prefill)}, {"decode", to_json(f.decode)}, {"source", f.source}};
  j["models"] = std::move(models);
  return j.dump(2) + "\n";
}

} // namespace aeg::gpu
