#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace aeg::apps {

/// One line of a chart: its name and its (x, y) points in x order.
struct chart_series {
  std::string name;
  std::vector<std::pair<double, double>> points;
  std::optional<double> marker_x; ///< a vertical mark in the series' colour (its goodput)
};

/// A line chart as a standalone SVG: axes with ticks, one coloured line per series with a
/// legend, y from 0 to 100, and a dashed horizontal line at `threshold` (the 90% SLO line).
std::string line_chart_svg(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<chart_series>& series,
                           double threshold = 90);

} // namespace aeg::apps
