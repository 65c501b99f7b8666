#include "apps/aegaeon/figure.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace aeg::apps {

namespace {

// Text as SVG character data.
std::string escaped(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else
      out += c;
  }
  return out;
}

// A round step giving about `n` ticks over `span`.
double tick_step(double span, int n) {
  const double raw = span / n;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag)
      return m * mag;
  return 10 * mag;
}

constexpr const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                   "#9467bd", "#8c564b", "#e377c2", "#17becf"};

} // namespace

std::string line_chart_svg(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<chart_series>& series,
                           double threshold) {
  constexpr double w = 640, h = 420, left = 64, right = 150, top = 40, bottom = 56;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& s : series)
    for (const auto& [x, y] : s.points) {
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
  if (!std::isfinite(lo)) {
    lo = 0;
    hi = 1;
  }
  if (hi == lo)
    hi = lo + 1;
  const double pw = w - left - right, ph = h - top - bottom;
  auto px = [&](double x) { return left + (x - lo) / (hi - lo) * pw; };
  auto py = [&](double y) { return top + (1 - std::clamp(y, 0.0, 100.0) / 100) * ph; };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n<text x=\"{}\" y=\"22\" font-size=\"14\">{}</text>\n",
      w, h, left, escaped(title));
  // Axes, ticks and grid.
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" "
                     "stroke=\"black\"/>\n",
                     left, top, pw, ph);
  for (int y = 0; y <= 100; y += 20)
    svg += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"#ddd\"/>"
                       "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5}</text>\n",
                       left, left + pw, py(y), left - 6, py(y) + 4, y);
  const double step = tick_step(hi - lo, 8);
  for (double x = std::ceil(lo / step) * step; x <= hi + step * 1e-9; x += step)
    svg += fmt::format("<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#ddd\"/>"
                       "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
                       px(x), top, top + ph, top + ph + 16, fmt::format("{:g}", x));
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + pw / 2,
                     h - 14, escaped(x_label));
  svg += fmt::format("<text transform=\"translate(18,{}) rotate(-90)\" "
                     "text-anchor=\"middle\">{}</text>\n",
                     top + ph / 2, escaped(y_label));
  svg += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"black\" "
                     "stroke-dasharray=\"6,4\"/><text x=\"{1}\" y=\"{3:.1f}\" "
                     "text-anchor=\"end\">{4:g}%</text>\n",
                     left, left + pw, py(threshold), py(threshold) - 4, threshold);
  for (std::size_t i = 0; i < series.size(); ++i) {
    const auto& s = series[i];
    const char* colour = palette[i % std::size(palette)];
    std::string points;
    for (const auto& [x, y] : s.points)
      points += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" "
                       "points=\"{}\"/>\n",
                       colour, points);
    for (const auto& [x, y] : s.points)
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", px(x),
                         py(y), colour);
    if (s.marker_x)
      svg += fmt::format("<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" "
                         "stroke=\"{3}\" stroke-dasharray=\"2,3\"/>\n",
                         px(*s.marker_x), top, top + ph, colour);
    const double ly = top + 14 + 18 * static_cast<double>(i);
    svg += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" stroke=\"{3}\" "
                       "stroke-width=\"2\"/><text x=\"{4}\" y=\"{5}\">{6}</text>\n",
                       left + pw + 10, left + pw + 30, ly, colour, left + pw + 36, ly + 4,
                       escaped(s.name));
  }
  svg += "</svg>\n";
  return svg;
}

} // namespace aeg::apps
