#pragma once

#include "coro/error.hpp"

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

namespace aeg::apps {

/// A figure to write: its file name (no directory) and its SVG document.
struct figure_file {
  std::string name;
  std::string svg;
};

/// The figures of a report that `aegaeon bench` (`--in-process` or `--url`) or `aegaeon
/// simulate` wrote as JSON:
/// - "attainment.svg": SLO attainment against the swept variable (model count, rate or SLO
///   scale; models when none varies), a line per policy, the 90% line and each one's goodput;
/// - per group of runs that differ only in policy ("G" = "4models", with "-rate0.5" or
///   "-slo0.5" where those vary too): "ttft-cdf-G.svg" and "tbt-cdf-G.svg", a CDF per policy
///   with the SLO marked, and "switch-cdf-G.svg", the CDF of scale-up times (when any switch was
///   timed);
/// - per run: "timeline-POLICY-G.svg", a lane per instance showing which model was active when.
/// Runs that carry no latency or timeline data (`bench --url`; reports written before those were
/// recorded) give only the attainment figure. errc::invalid_argument when `doc` is not such a
/// report, saying what it lacks.
result<std::vector<figure_file>> report_figures(const nlohmann::json& doc);

/// Where a report's figures go: a directory and a prefix of their file names.
struct figure_place {
  std::string dir, prefix;

  /// `figures_dir` when given (no prefix); else beside `json_path`, prefixed by its stem and "-"
  /// ("out/runs.json": "out/runs-attainment.svg"); else nowhere.
  static figure_place of(const std::string& json_path, const std::string& figures_dir);
  /// Whether figures are to be written at all.
  bool wanted() const { return !dir.empty(); }
  /// Makes the directory, so that a bad path fails before a long run; errc::unavailable names
  /// it and the system's reason.
  result<void> prepare() const;
};

/// Writes `figures` at `place`; the paths written, or errc::unavailable naming the first file
/// that could not be written.
result<std::vector<std::string>> write_figures(const std::vector<figure_file>& figures,
                                               const figure_place& place);

/// Draws `doc`'s figures at `place` and says on stdout where they went; on failure prints why
/// to stderr after `who` ("aegaeon bench") and returns 1 (0 otherwise, and when none are wanted).
int draw_report_figures(const nlohmann::json& doc, const figure_place& place,
                        const std::string& who);

} // namespace aeg::apps
