#pragma once

#include <string>

namespace CLI {
class App;
}

namespace aeg::apps {

/// Settings of `aegaeon plot`: redraw the figures of a report that `aegaeon bench` or `aegaeon
/// simulate` wrote with --json.
struct plot_options {
  std::string json_path;
  std::string out_dir; ///< empty: beside the report, named after it (as bench draws them)
};

/// Adds the `plot` subcommand to `app`, its options writing into `o`.
CLI::App* add_plot_command(CLI::App& app, plot_options& o);

/// Reads the report and writes its figures; 2 for a report that cannot be read or is not one, 1
/// for figures that cannot be written.
int run_plot(const plot_options& o);

} // namespace aeg::apps
