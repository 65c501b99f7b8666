#include "apps/aegaeon/plot.hpp"

#include "apps/aegaeon/report_figures.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace aeg::apps {

int run_plot(const plot_options& o) {
  std::ifstream in(o.json_path, std::ios::binary);
  std::error_code ec;
  if (!in || std::filesystem::is_directory(o.json_path, ec)) {
    fmt::print(stderr, "aegaeon plot: cannot read {}: {}\n", o.json_path,
               in ? "it is a directory; give the JSON file `--json` wrote" : std::strerror(errno));
    return 2;
  }
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() starts with the library's "[json.exception.parse_error.101] " tag: left out.
    const std::string why = e.what();
    const auto tag = why.find("] ");
    fmt::print(stderr, "aegaeon plot: {} is not JSON: {}\n", o.json_path,
               tag == std::string::npos ? why : why.substr(tag + 2));
    return 2;
  }
  auto figures = report_figures(doc);
  if (!figures) {
    fmt::print(stderr, "aegaeon plot: {}: {}\n", o.json_path, figures.error().message);
    return 2;
  }
  const auto place = figure_place::of(o.json_path, o.out_dir);
  auto written = write_figures(*figures, place);
  if (!written) {
    fmt::print(stderr, "aegaeon plot: {}\n", written.error().message);
    return 1;
  }
  for (const auto& path : *written)
    fmt::print("{}\n", path);
  const auto& runs = doc["runs"];
  const bool data = std::any_of(runs.begin(), runs.end(), [](const nlohmann::json& r) {
    return r.contains("latency") || r.contains("timeline");
  });
  if (!runs.empty() && !data && !doc.contains("url"))
    fmt::print(stderr,
               "aegaeon plot: {} carries no token times or switches (written before "
               "reports held them): only the attainment figure\n",
               o.json_path);
  return 0;
}

CLI::App* add_plot_command(CLI::App& app, plot_options& o) {
  auto* cmd = app.add_subcommand(
      "plot",
      "Redraw the figures of a report that `aegaeon bench` or `aegaeon simulate` wrote with "
      "--json: SLO attainment against the swept variable (90% line, goodput marked); TTFT and TBT "
      "CDFs and the switch-latency CDF per model count; a timeline per run of which model each "
      "instance had active. SVG files, one path per line on stdout");
  cmd->add_option("report", o.json_path, "The report (JSON) to draw")->required();
  cmd->add_option("--out", o.out_dir,
                  "Directory for the figures (made if missing); default: beside the report, "
                  "named after it (runs.json: runs-attainment.svg, ...)");
  return cmd;
}

} // namespace aeg::apps
