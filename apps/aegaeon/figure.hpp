#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

// Figures as standalone SVG documents (no scripts, fonts or files outside them): axes with ticks,
// labels with units and a legend. Every text is escaped, so any name makes valid XML.

namespace aeg::apps {

/// One line of a chart: its name and its (x, y) points in x order.
struct chart_series {
  std::string name;
  std::vector<std::pair<double, double>> points;
  std::optional<double> marker_x; ///< a vertical mark in the series' colour (its goodput)
};

/// A line chart: axes with ticks, one coloured line per series with a legend, y from 0 to 100,
/// and a dashed horizontal line at `threshold` (the 90% SLO line).
std::string line_chart_svg(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<chart_series>& series,
                           double threshold = 90);

/// One distribution of a CDF chart.
struct cdf_series {
  std::string name;
  std::vector<double> samples; ///< any order
  std::string note;            ///< after the name in the legend ("n=36")
};

/// Empirical CDFs: for each series a step line with one rise per sample (a `<path
/// class="cdf">` whose every `V` is one sample), x from 0 to the largest sample, y the share of
/// samples at or below x in percent; a dashed vertical line at `slo_x` (labelled "SLO") if
/// given. `y_label` names what the share is of ("share of requests (%)").
std::string cdf_chart_svg(const std::string& title, const std::string& x_label,
                          const std::string& y_label, const std::vector<cdf_series>& series,
                          std::optional<double> slo_x = std::nullopt);

/// One bar of a stacked bar chart: its label and the heights of its parts, bottom first.
struct stacked_bar {
  std::string label;
  std::vector<double> parts;
};

/// Stacked bars, y from 0 to 100: one `<g class="bar">` per entry of `bars` with its label under
/// it and a `<rect>` per part (its value in a tooltip), coloured and named by `parts` in a legend.
std::string stacked_bar_svg(const std::string& title, const std::string& y_label,
                            const std::vector<std::string>& parts,
                            const std::vector<stacked_bar>& bars);

/// A labelled horizontal line of a step chart.
struct level_mark {
  double y = 0;
  std::string label;
};

/// Quantities over time as step lines (a `<path class="steps">` per series, holding each value
/// until the next point), x from 0 to the last point, y from 0 to 100, and a dashed `<line
/// class="level">` with its label for each of `marks`.
std::string step_chart_svg(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<chart_series>& series,
                           const std::vector<level_mark>& marks);

/// A period of a timeline lane: which model was active, from when to when.
struct timeline_bar {
  double start = 0, end = 0;  ///< seconds
  std::string model;          ///< empty: not known (switches not seen)
  double loading_seconds = 0; ///< drawn lighter at the start: the model's weights coming in
};

/// One lane of a timeline: an instance (or device) and its periods, in time order.
struct timeline_lane {
  std::string name;
  std::vector<timeline_bar> bars;
};

/// A timeline: one lane per entry of `lanes` (a `<g class="lane">` each) from 0 to
/// `end_seconds`, a bar per period coloured by model, and a legend of the models in order of
/// first appearance (grey: not known).
std::string timeline_svg(const std::string& title, const std::vector<timeline_lane>& lanes,
                         double end_seconds);

} // namespace aeg::apps
