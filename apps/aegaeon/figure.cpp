#include "apps/aegaeon/figure.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>

namespace aeg::apps {

namespace {

// Text as SVG character data or an attribute's value.
std::string escaped(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else if (c == '"')
      out += "&quot;";
    else if (static_cast<unsigned char>(c) < 0x20 && c != '\t')
      out += ' '; // control characters are not allowed in XML 1.0
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

// Distinct colours: the usual ten, then hues a golden angle apart.
std::string colour(std::size_t i) {
  constexpr const char* ten[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                 "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};
  if (i < std::size(ten))
    return ten[i];
  const double h = std::fmod(static_cast<double>(i) * 137.508, 360.0) / 60, s = 0.6, l = 0.5;
  const double c = (1 - std::abs(2 * l - 1)) * s, x = c * (1 - std::abs(std::fmod(h, 2.0) - 1));
  double rgb[3] = {0, 0, 0};
  const int sector = static_cast<int>(h) % 6;
  const int big[] = {0, 1, 1, 2, 2, 0}, small[] = {1, 0, 2, 1, 0, 2};
  rgb[big[sector]] = c;
  rgb[small[sector]] = x;
  auto byte = [&](double v) { return static_cast<int>(std::lround((v + l - c / 2) * 255)); };
  return fmt::format("#{:02x}{:02x}{:02x}", byte(rgb[0]), byte(rgb[1]), byte(rgb[2]));
}

// Where a chart's data goes inside the picture, and its ranges.
struct plot_area {
  double left, top, width, height;
  double x_lo, x_hi, y_lo = 0, y_hi = 100;
  bool whole_x = false; // x ticks on whole numbers only (model counts)

  double px(double x) const { return left + (x - x_lo) / (x_hi - x_lo) * width; }
  double py(double y) const {
    return top + (1 - (std::clamp(y, y_lo, y_hi) - y_lo) / (y_hi - y_lo)) * height;
  }
};

std::string open_svg(double w, double h, const std::string& title) {
  return fmt::format("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
                     "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n"
                     "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
                     "<text x=\"16\" y=\"22\" font-size=\"14\">{2}</text>\n",
                     w, h, escaped(title));
}

// The frame, the x ticks and grid, the x label below; y ticks every 20 and the y label when
// `y_label` is not empty.
std::string axes(const plot_area& a, const std::string& x_label, const std::string& y_label) {
  std::string svg = fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" "
                                "stroke=\"black\"/>\n",
                                a.left, a.top, a.width, a.height);
  if (!y_label.empty()) {
    for (int y = 0; y <= 100; y += 20)
      svg += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" "
                         "stroke=\"#ddd\"/><text x=\"{3}\" y=\"{4:.1f}\" "
                         "text-anchor=\"end\">{5}</text>\n",
                         a.left, a.left + a.width, a.py(y), a.left - 6, a.py(y) + 4, y);
    svg += fmt::format("<text transform=\"translate(18,{}) rotate(-90)\" "
                       "text-anchor=\"middle\">{}</text>\n",
                       a.top + a.height / 2, escaped(y_label));
  }
  const double step = std::max(tick_step(a.x_hi - a.x_lo, 8), a.whole_x ? 1.0 : 0.0);
  for (double x = std::ceil(a.x_lo / step) * step; x <= a.x_hi + step * 1e-9; x += step)
    svg += fmt::format("<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#ddd\"/>"
                       "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
                       a.px(x), a.top, a.top + a.height, a.top + a.height + 16,
                       fmt::format("{:g}", std::abs(x) < step * 1e-9 ? 0.0 : x));
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                     a.left + a.width / 2, a.top + a.height + 38, escaped(x_label));
  return svg;
}

// A legend row: a short line (or a box) in `fill` and the name.
std::string legend_entry(double x, double y, const std::string& fill, const std::string& name,
                         bool box = false) {
  const std::string mark =
      box ? fmt::format("<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"10\" fill=\"{}\"/>", x,
                        y - 5, fill)
          : fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" stroke=\"{3}\" "
                        "stroke-width=\"2\"/>",
                        x, x + 20, y, fill);
  return fmt::format("{}<text x=\"{}\" y=\"{}\">{}</text>\n", mark, x + (box ? 20 : 26), y + 4,
                     escaped(name));
}

// A step line up 1/n at each sample: "V" rises at a sample, "H" runs on to the next one.
std::string cdf_path(const plot_area& a, std::vector<double> samples, const std::string& c) {
  std::sort(samples.begin(), samples.end());
  std::string d = fmt::format("M{:.1f},{:.1f}", a.px(0), a.py(0));
  for (std::size_t k = 0; k < samples.size(); ++k)
    d +=
        fmt::format("H{:.1f}V{:.1f}", a.px(samples[k]),
                    a.py(100.0 * static_cast<double>(k + 1) / static_cast<double>(samples.size())));
  if (!samples.empty())
    d += fmt::format("H{:.1f}", a.px(a.x_hi));
  return fmt::format("<path class=\"cdf\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" "
                     "d=\"{}\"/>\n",
                     c, d);
}

} // namespace

std::string line_chart_svg(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<chart_series>& series,
                           double threshold) {
  constexpr double w = 640, h = 420;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  bool whole = true;
  for (const auto& s : series)
    for (const auto& [x, y] : s.points) {
      lo = std::min(lo, x);
      hi = std::max(hi, x);
      whole = whole && x == std::round(x);
    }
  if (!std::isfinite(lo)) {
    lo = 0;
    hi = 1;
  }
  if (hi == lo) { // one point: centred in a span around it
    lo -= 0.5;
    hi += 0.5;
  }
  const double pad = (hi - lo) * 0.04; // no point on the frame
  lo -= pad;
  hi += pad;
  const plot_area a{64, 40, w - 64 - 150, h - 40 - 56, lo, hi, 0, 100, whole};
  std::string svg = open_svg(w, h, title) + axes(a, x_label, y_label);
  svg += fmt::format("<line class=\"threshold\" x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" "
                     "y2=\"{2:.1f}\" stroke=\"black\" stroke-dasharray=\"6,4\"/><text x=\"{3}\" "
                     "y=\"{4:.1f}\">{5:g}%</text>\n",
                     a.left, a.left + a.width, a.py(threshold), a.left + 4, a.py(threshold) + 14,
                     threshold);
  for (std::size_t i = 0; i < series.size(); ++i) {
    const auto& s = series[i];
    const std::string c = colour(i);
    std::string points;
    for (const auto& [x, y] : s.points)
      points += fmt::format("{:.1f},{:.1f} ", a.px(x), a.py(y));
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" "
                       "points=\"{}\"/>\n",
                       c, points);
    for (const auto& [x, y] : s.points)
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", a.px(x),
                         a.py(y), c);
    if (s.marker_x)
      svg += fmt::format("<line class=\"goodput\" x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" "
                         "y2=\"{2}\" stroke=\"{3}\" stroke-width=\"1.5\" "
                         "stroke-dasharray=\"2,3\"/>\n",
                         a.px(*s.marker_x), a.top, a.top + a.height, c);
    svg += legend_entry(a.left + a.width + 10, a.top + 14 + 18 * static_cast<double>(i), c, s.name);
  }
  if (std::any_of(series.begin(), series.end(), [](const auto& s) { return s.marker_x; }))
    svg += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#555\">dotted: goodput</text>\n",
                       a.left + a.width + 10, a.top + 24 + 18 * static_cast<double>(series.size()));
  svg += "</svg>\n";
  return svg;
}

std::string cdf_chart_svg(const std::string& title, const std::string& x_label,
                          const std::string& y_label, const std::vector<cdf_series>& series,
                          std::optional<double> slo_x) {
  constexpr double w = 640, h = 420;
  double hi = 0;
  for (const auto& s : series)
    for (const double v : s.samples)
      hi = std::max(hi, v);
  // An SLO far right of every sample would squeeze them into the left edge: it is named
  // instead of drawn.
  const bool slo_drawn = slo_x && (*slo_x <= 1.5 * hi || !(hi > 0));
  if (slo_drawn)
    hi = std::max(hi, *slo_x);
  if (!(hi > 0))
    hi = 1;
  const double step = tick_step(hi, 8);
  const plot_area a{64, 40, w - 64 - 24, h - 40 - 56, 0, std::ceil(hi / step) * step};
  std::string svg = open_svg(w, h, title) + axes(a, x_label, y_label);
  if (slo_drawn)
    svg += fmt::format("<line class=\"slo\" x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" "
                       "stroke=\"black\" stroke-dasharray=\"6,4\"/><text x=\"{3:.1f}\" y=\"{4}\" "
                       "text-anchor=\"end\">SLO {5:g} s</text>\n",
                       a.px(*slo_x), a.top, a.top + a.height, a.px(*slo_x) - 4, a.top + 14, *slo_x);
  else if (slo_x)
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#555\">SLO {:g} s, "
                       "off the axis &#8594;</text>\n",
                       a.left + a.width, a.top + a.height + 38, *slo_x);
  // The legend sits inside the frame, bottom right, where a CDF has no line.
  std::size_t longest = 0;
  for (const auto& s : series)
    longest = std::max(longest, s.name.size() + (s.note.empty() ? 0 : s.note.size() + 3));
  const double lx = a.left + a.width - 40 - 7 * static_cast<double>(longest);
  const double ly = a.top + a.height - 12 - 18 * static_cast<double>(series.size());
  if (!series.empty())
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{}\" "
                       "fill=\"white\" fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n",
                       lx - 6, ly - 4, a.left + a.width - 4 - (lx - 6), 18 * series.size() + 4);
  for (std::size_t i = 0; i < series.size(); ++i) {
    const auto& s = series[i];
    svg += cdf_path(a, s.samples, colour(i));
    svg += legend_entry(lx, ly + 9 + 18 * static_cast<double>(i), colour(i),
                        s.note.empty() ? s.name : s.name + " (" + s.note + ")");
  }
  svg += "</svg>\n";
  return svg;
}

std::string stacked_bar_svg(const std::string& title, const std::string& y_label,
                            const std::vector<std::string>& parts,
                            const std::vector<stacked_bar>& bars) {
  constexpr double w = 640, h = 420;
  const double n = static_cast<double>(std::max<std::size_t>(bars.size(), 1));
  // Bars on slots 1..n: x ticks would fall between them, so each is labelled under itself.
  const plot_area a{64, 40, w - 64 - 170, h - 40 - 56, 0.5, n + 0.5};
  std::string svg = open_svg(w, h, title);
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" "
                     "stroke=\"black\"/>\n",
                     a.left, a.top, a.width, a.height);
  for (int y = 0; y <= 100; y += 20)
    svg += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"#ddd\"/>"
                       "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5}</text>\n",
                       a.left, a.left + a.width, a.py(y), a.left - 6, a.py(y) + 4, y);
  svg += fmt::format("<text transform=\"translate(18,{}) rotate(-90)\" "
                     "text-anchor=\"middle\">{}</text>\n",
                     a.top + a.height / 2, escaped(y_label));
  const double bar_w = std::min(60.0, a.width / n * 0.6);
  for (std::size_t i = 0; i < bars.size(); ++i) {
    const double cx = a.px(static_cast<double>(i + 1));
    svg += fmt::format("<g class=\"bar\"><text x=\"{:.1f}\" y=\"{}\" "
                       "text-anchor=\"middle\">{}</text>",
                       cx, a.top + a.height + 16, escaped(bars[i].label));
    double base = 0;
    for (std::size_t k = 0; k < bars[i].parts.size() && k < parts.size(); ++k) {
      const double v = std::max(bars[i].parts[k], 0.0);
      svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.2f}\" width=\"{:.1f}\" height=\"{:.2f}\" "
                         "fill=\"{}\"><title>{}: {:.1f}</title></rect>",
                         cx - bar_w / 2, a.py(base + v), bar_w, a.py(base) - a.py(base + v),
                         colour(k), escaped(parts[k]), v);
      base += v;
    }
    svg += "</g>\n";
  }
  for (std::size_t k = 0; k < parts.size(); ++k) // top part first, as the bars stack
    svg += legend_entry(a.left + a.width + 10, a.top + 14 + 18 * static_cast<double>(k),
                        colour(parts.size() - 1 - k), parts[parts.size() - 1 - k], true);
  return svg + "</svg>\n";
}

std::string step_chart_svg(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<chart_series>& series,
                           const std::vector<level_mark>& marks) {
  constexpr double w = 640, h = 420;
  double hi = 0;
  for (const auto& s : series)
    for (const auto& [x, y] : s.points)
      hi = std::max(hi, x);
  const plot_area a{64, 40, w - 64 - 150, h - 40 - 56, 0, hi > 0 ? hi : 1};
  std::string svg = open_svg(w, h, title) + axes(a, x_label, y_label);
  for (const auto& m : marks)
    svg += fmt::format("<line class=\"level\" x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" "
                       "y2=\"{2:.1f}\" stroke=\"black\" stroke-dasharray=\"6,4\"/><text x=\"{3}\" "
                       "y=\"{4:.1f}\">{5}</text>\n",
                       a.left, a.left + a.width, a.py(m.y), a.left + 4, a.py(m.y) - 4,
                       escaped(m.label));
  for (std::size_t i = 0; i < series.size(); ++i) {
    const auto& pts = series[i].points;
    std::string d;
    for (std::size_t k = 0; k < pts.size(); ++k)
      d += k == 0 ? fmt::format("M{:.1f},{:.1f}", a.px(pts[k].first), a.py(pts[k].second))
                  : fmt::format("H{:.1f}V{:.1f}", a.px(pts[k].first), a.py(pts[k].second));
    if (!pts.empty())
      d += fmt::format("H{:.1f}", a.px(a.x_hi));
    svg += fmt::format("<path class=\"steps\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.2\" "
                       "d=\"{}\"/>\n",
                       colour(i), d);
    svg += legend_entry(a.left + a.width + 10, a.top + 14 + 18 * static_cast<double>(i), colour(i),
                        series[i].name);
  }
  return svg + "</svg>\n";
}

namespace {

// The bars of one lane, inside its `<g class="lane">`.
std::string lane_svg(const plot_area& a, double y, double height, const timeline_lane& lane,
                     const std::vector<std::string>& models) {
  std::string svg =
      fmt::format("<g class=\"lane\"><text x=\"{}\" y=\"{:.1f}\" "
                  "text-anchor=\"end\">{}</text><rect x=\"{}\" y=\"{:.1f}\" "
                  "width=\"{}\" height=\"{}\" fill=\"#f3f3f3\"/>\n",
                  a.left - 8, y + height / 2 + 4, escaped(lane.name), a.left, y, a.width, height);
  for (const auto& b : lane.bars) {
    const double x0 = a.px(std::clamp(b.start, a.x_lo, a.x_hi));
    const double x1 = a.px(std::clamp(b.end, a.x_lo, a.x_hi));
    if (x1 <= x0)
      continue;
    const auto at = std::find(models.begin(), models.end(), b.model);
    const std::string fill =
        b.model.empty() ? "#bbbbbb" : colour(static_cast<std::size_t>(at - models.begin()));
    const double xl = std::min(x1, a.px(std::clamp(b.start + b.loading_seconds, a.x_lo, a.x_hi)));
    const std::string tip = fmt::format(
        "{}: {:.3f} to {:.3f} s{}", b.model.empty() ? "not known" : b.model, b.start, b.end,
        b.loading_seconds > 0 ? fmt::format(", loading {:.3f} s", b.loading_seconds)
                              : std::string{});
    if (xl > x0)
      svg += fmt::format("<rect x=\"{:.2f}\" y=\"{:.1f}\" width=\"{:.2f}\" height=\"{}\" "
                         "fill=\"{}\" fill-opacity=\"0.4\"/>",
                         x0, y, xl - x0, height, fill);
    svg += fmt::format("<rect class=\"bar\" x=\"{:.2f}\" y=\"{:.1f}\" width=\"{:.2f}\" "
                       "height=\"{}\" fill=\"{}\"><title>{}</title></rect>\n",
                       xl, y, std::max(x1 - xl, 0.0), height, fill, escaped(tip));
  }
  return svg + "</g>\n";
}

} // namespace

std::string timeline_svg(const std::string& title, const std::vector<timeline_lane>& lanes,
                         double end_seconds) {
  std::vector<std::string> models; // in order of first appearance
  bool unknown = false;
  for (const auto& l : lanes)
    for (const auto& b : l.bars) {
      unknown |= b.model.empty();
      if (!b.model.empty() && std::find(models.begin(), models.end(), b.model) == models.end())
        models.push_back(b.model);
    }
  constexpr double w = 800, lane_h = 20, lane_gap = 6, columns = 4, max_legend = 48;
  const double n = static_cast<double>(lanes.size());
  const std::size_t shown = std::min<std::size_t>(models.size(), max_legend);
  const double legend_rows = std::ceil(
      (static_cast<double>(shown) + (unknown ? 1 : 0) + (models.size() > shown ? 1 : 0)) / columns);
  std::size_t longest = 0; // lane names at about 7 pixels a character
  for (const auto& l : lanes)
    longest = std::max(longest, l.name.size());
  const double left = std::clamp(24 + 7 * static_cast<double>(longest), 80.0, 360.0);
  const double height = std::max(n, 1.0) * (lane_h + lane_gap) + lane_gap;
  const plot_area a{left, 40, w - left - 24, height, 0, end_seconds > 0 ? end_seconds : 1};
  const double h = a.top + a.height + 56 + 18 * legend_rows + 8;
  std::string svg = open_svg(w, h, title) + axes(a, "seconds since the run's start", "");
  for (std::size_t i = 0; i < lanes.size(); ++i)
    svg += lane_svg(a, a.top + lane_gap + static_cast<double>(i) * (lane_h + lane_gap), lane_h,
                    lanes[i], models);
  // The legend under the axis label, in columns; a lighter start is a model coming in.
  const double ly = a.top + a.height + 62, col_w = (w - 32) / columns;
  std::size_t k = 0;
  auto next = [&] {
    const double x = 16 + col_w * static_cast<double>(k % 4);
    const double y = ly + 18 * static_cast<double>(k / 4);
    ++k;
    return std::pair{x, y};
  };
  for (std::size_t m = 0; m < shown; ++m) {
    const auto [x, y] = next();
    svg += legend_entry(x, y, colour(m), models[m], true);
  }
  if (models.size() > shown) {
    const auto [x, y] = next();
    svg += fmt::format("<text x=\"{}\" y=\"{}\">and {} more models</text>\n", x, y + 4,
                       models.size() - shown);
  }
  if (unknown) {
    const auto [x, y] = next();
    svg += legend_entry(x, y, "#bbbbbb", "not known (switches not seen)", true);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#555\">lighter: "
                     "weights coming in</text>\n",
                     w - 24, 22);
  svg += "</svg>\n";
  return svg;
}

} // namespace aeg::apps
