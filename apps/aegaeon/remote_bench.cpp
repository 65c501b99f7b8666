#include "actors/proxy.hpp"
#include "apps/aegaeon/interrupt.hpp"
#include "apps/aegaeon/remote.hpp"
#include "apps/aegaeon/remote_support.hpp"
#include "apps/aegaeon/report_figures.hpp"
#include "apps/aegaeon/trace.hpp"
#include "apps/server/client.hpp"

#include <asio.hpp>
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <optional>
#include <unistd.h>

namespace aeg::apps {

using json = nlohmann::json;
using asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

// --- the load generator -----------------------------------------------------------------------

namespace {

struct outcome {
  std::string model;
  std::size_t asked = 0;
  int status = 0;
  std::string error;
  std::vector<double> token_times; // from sending the request
  std::size_t completion_tokens = 0;
  bool done = false;
};

// One request over its own connection: connect, send, read the event stream, record times.
class exchange : public std::enable_shared_from_this<exchange> {
public:
  exchange(asio::io_context& io, const tcp::resolver::results_type& endpoints, std::string head,
           outcome& out, std::function<void()> on_end)
      : sock_(io), endpoints_(endpoints), request_(std::move(head)), out_(out),
        on_end_(std::move(on_end)),
        parser_(
            {.on_headers = [this](int status, const server::header_list&) { out_.status = status; },
             .on_body = [this](std::string_view d) { body(d); },
             .on_complete = [this] { complete_ = true; }}) {}

  void start() {
    start_ = clock_type::now();
    auto self = shared_from_this();
    asio::async_connect(sock_, endpoints_, [this, self](asio::error_code ec, const tcp::endpoint&) {
      if (ec)
        return end("cannot connect: " + ec.message());
      asio::error_code ignored;
      sock_.set_option(tcp::no_delay(true), ignored);
      asio::async_write(sock_, asio::buffer(request_),
                        [this, self](asio::error_code e, std::size_t) {
                          if (e)
                            return end("cannot send: " + e.message());
                          read();
                        });
    });
  }

private:
  void read() {
    auto self = shared_from_this();
    sock_.async_read_some(asio::buffer(buf_), [this, self](asio::error_code ec, std::size_t n) {
      if (n > 0)
        if (auto err = parser_.feed({buf_.data(), n}); !err.empty())
          return end(err);
      if (complete_)
        return end({});
      if (ec)
        return end(ec == asio::error::eof ? "the server closed the connection mid-answer"
                                          : ec.message());
      read();
    });
  }

  void body(std::string_view d) {
    if (out_.status != 200) {
      raw_ += d;
      return;
    }
    sse_.feed(d, [this](const std::string& data) {
      if (data == "[DONE]")
        return;
      const double t = std::chrono::duration<double>(clock_type::now() - start_).count();
      try {
        const auto j = json::parse(data);
        if (j.contains("error")) {
          out_.error = j["error"].value("message", data);
          return;
        }
        if (j.contains("usage") && j["usage"].is_object())
          out_.completion_tokens = j["usage"].value("completion_tokens", std::size_t{0});
        for (const auto& c : j.at("choices"))
          if (c.value("finish_reason", json(nullptr)).is_null())
            out_.token_times.push_back(t); // the server sends one event per token
      } catch (const std::exception& e) {
        out_.error = std::string("unexpected event: ") + e.what();
      }
    });
  }

  void end(const std::string& error) {
    if (out_.done)
      return;
    out_.done = true;
    if (!error.empty() && out_.error.empty())
      out_.error = error;
    if (out_.status != 200 && out_.error.empty())
      out_.error = fmt::format("HTTP {}: {}", out_.status, error_text(raw_));
    asio::error_code ignored;
    sock_.close(ignored);
    on_end_();
  }

  tcp::socket sock_;
  tcp::resolver::results_type endpoints_;
  std::string request_;
  outcome& out_;
  std::function<void()> on_end_;
  server::response_parser parser_;
  server::sse_reader sse_;
  std::array<char, 8192> buf_{};
  std::string raw_;
  clock_type::time_point start_;
  bool complete_ = false;
};

struct summary {
  std::string model; // "all" for the whole run
  std::size_t requests = 0, completed = 0, failed = 0, rejected = 0;
  std::size_t tokens = 0;
  double attainment = 0, token_attainment = 0;
  double ttft_p50 = 0, ttft_p90 = 0, ttft_p99 = 0, tbt_p50 = 0, tbt_p99 = 0;
  double good_requests_per_s = 0; // requests whose own attainment was at least 90%

  json to_json() const {
    return {{"model", model},           {"requests", requests},
            {"completed", completed},   {"failed", failed},
            {"rejected", rejected},     {"tokens", tokens},
            {"attainment", attainment}, {"token_attainment", token_attainment},
            {"ttft_p50", ttft_p50},     {"ttft_p90", ttft_p90},
            {"ttft_p99", ttft_p99},     {"tbt_p50", tbt_p50},
            {"tbt_p99", tbt_p99},       {"good_requests_per_s", good_requests_per_s}};
  }
};

summary summarize(const std::string& name, const std::vector<const outcome*>& runs, double ttft,
                  double tbt, double seconds) {
  summary s;
  s.model = name;
  std::vector<double> ttfts, tbts;
  double attain = 0;
  std::size_t on_time = 0, asked = 0, good = 0;
  for (const auto* o : runs) {
    ++s.requests;
    asked += o->asked;
    if (o->status == 429 || o->status == 503)
      ++s.rejected;
    if (!o->error.empty()) {
      ++s.failed;
      continue;
    }
    ++s.completed;
    s.tokens += o->token_times.size();
    actors::request_metrics m;
    m.token_times = o->token_times;
    m.tokens_on_time = actors::tokens_on_time(o->token_times, ttft, tbt);
    m.seconds_on_schedule = actors::seconds_on_schedule(o->token_times, ttft, tbt);
    attain += m.time_attainment();
    good += m.time_attainment() >= 0.9;
    on_time += m.tokens_on_time;
    if (!o->token_times.empty())
      ttfts.push_back(o->token_times.front());
    for (std::size_t k = 1; k < o->token_times.size(); ++k)
      tbts.push_back(o->token_times[k] - o->token_times[k - 1]);
  }
  s.attainment = s.requests == 0 ? 1 : attain / static_cast<double>(s.requests);
  s.token_attainment = asked == 0 ? 1 : static_cast<double>(on_time) / static_cast<double>(asked);
  s.ttft_p50 = percentile(ttfts, 0.5);
  s.ttft_p90 = percentile(ttfts, 0.9);
  s.ttft_p99 = percentile(ttfts, 0.99);
  s.tbt_p50 = percentile(tbts, 0.5);
  s.tbt_p99 = percentile(tbts, 0.99);
  s.good_requests_per_s = seconds > 0 ? static_cast<double>(good) / seconds : 0;
  return s;
}

} // namespace

int run_remote_bench(const bench_options& o) {
  auto url = parse_server_url(o.url);
  if (!url) {
    fmt::print(stderr, "aegaeon bench: {}\n", url.error().message);
    return 2;
  }
  auto files = bench_files::open(o.json_path, o.csv_path, o.trace_path);
  const auto figures = figure_place::of(o.json_path, o.figures_dir);
  if (auto made = !files || o.figures_dir.empty() ? result<void>{} : figures.prepare(); !made)
    files = tl::unexpected(made.error());
  if (!files) {
    fmt::print(stderr, "aegaeon bench: {}\n", files.error().message);
    return 2;
  }
  auto& reports = files->reports;
  auto& json_out = reports.json;
  auto& csv_out = reports.csv;
  const auto& trace_file = files->trace;
  server::http_client probe(*url, o.api_key);
  auto listed = list_models(probe, !o.api_key.empty());
  if (!listed) {
    fmt::print(stderr, "aegaeon bench: {}\n", listed.error().message);
    return listed.error().code == errc::invalid_argument ? 2 : 1;
  }
  std::vector<std::string> models = o.model_names.empty() ? *listed : o.model_names;
  if (!o.trace_path.empty()) { // a trace names its own models, in order of first appearance
    models.clear();
    for (const auto& t : trace_file)
      if (std::find(models.begin(), models.end(), t.model) == models.end())
        models.push_back(t.model);
  }
  for (const auto& m : models) // checked before anything is sent
    if (std::find(listed->begin(), listed->end(), m) == listed->end()) {
      fmt::print(stderr, "aegaeon bench: the server has no model '{}'; it has: {}\n", m,
                 fmt::join(*listed, ", "));
      return 2;
    }
  std::vector<double> rates = o.rates.empty() ? std::vector<double>{o.rate} : o.rates;
  if (!o.trace_path.empty())
    rates = {0}; // the trace sets the arrivals
  const bool tty = isatty(STDERR_FILENO) != 0;

  json report = {{"url", o.url},
                 {"models", models},
                 {"ttft_slo", o.ttft},
                 {"tbt_slo", o.tbt},
                 {"runs", json::array()}};
  if (o.trace_path.empty()) {
    report["duration"] = o.duration;
    report["prompt_mean"] = o.prompt_mean;
    report["output_mean"] = o.output_mean;
  } else {
    report["trace"] = o.trace_path;
  }
  if (csv_out)
    *csv_out << "rate,model,requests,completed,failed,rejected,tokens,attainment,token_attainment,"
                "ttft_p50,ttft_p90,ttft_p99,tbt_p50,tbt_p99,good_requests_per_s\n";
  fmt::print("{} at {}; SLO TTFT {:.2f} s, TBT {:.3f} s\nattainment: mean share of each "
             "request's time on schedule; goodput: requests/s whose own attainment >= 90%\n",
             fmt::join(models, ", "), o.url, o.ttft, o.tbt);
  double best_rate = 0;
  stop_on_interrupt("aegaeon bench: stopping; the rates finished will be reported (Ctrl-C again "
                    "quits at once)");
  bool interrupted = false;
  std::size_t rates_done = 0;
  for (const double rate : rates) {
    const std::vector<trace_request> trace =
        o.trace_path.empty()
            ? make_trace(
                  {models, rate, o.duration, o.prompt_mean, o.output_mean, 1024, 1024, o.seed, {}})
            : trace_file;
    asio::io_context io;
    tcp::resolver resolver(io);
    asio::error_code ec;
    const auto endpoints = resolver.resolve(url->host, url->port, ec);
    if (ec) {
      fmt::print(stderr, "aegaeon bench: cannot resolve {}: {}\n", url->host, ec.message());
      return 1;
    }
    std::vector<outcome> outcomes(trace.size());
    std::deque<std::size_t> waiting; // arrived while max_connections were busy
    std::size_t running = 0, ended = 0;
    std::vector<std::unique_ptr<asio::steady_timer>> timers;
    const auto start = clock_type::now();
    std::function<void(std::size_t)> launch = [&](std::size_t i) {
      const auto& t = trace[i];
      json prompt = json::array();
      for (std::size_t k = 0; k < t.prompt_tokens; ++k)
        prompt.push_back(100 + (k * 7919 + i * 31) % 4000);
      const std::string body = json{{"model", t.model},
                                    {"prompt", prompt},
                                    {"max_tokens", t.output_tokens},
                                    {"temperature", 0},
                                    {"ignore_eos", true},
                                    {"stream", true},
                                    {"stream_options", {{"include_usage", true}}}}
                                   .dump();
      std::string head = "POST " + url->base + "/v1/completions HTTP/1.1\r\nHost: " + url->host +
                         "\r\nContent-Type: application/json\r\nConnection: close\r\n";
      if (!o.api_key.empty())
        head += "Authorization: Bearer " + o.api_key + "\r\n";
      head += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
      outcomes[i].model = t.model;
      outcomes[i].asked = t.output_tokens;
      ++running;
      std::make_shared<exchange>(io, endpoints, std::move(head), outcomes[i], [&] {
        --running;
        ++ended;
        if (tty)
          fmt::print(stderr, "\r  rate {:.3f}: {}/{} requests done", rate, ended, trace.size());
        if (!waiting.empty()) {
          const auto next = waiting.front();
          waiting.pop_front();
          launch(next);
        }
      })->start();
    };
    for (std::size_t i = 0; i < trace.size(); ++i) {
      auto timer = std::make_unique<asio::steady_timer>(
          io, start + std::chrono::duration_cast<clock_type::duration>(
                          std::chrono::duration<double>(trace[i].arrival)));
      timer->async_wait([&, i](asio::error_code e) {
        if (e)
          return;
        if (running >= o.max_connections)
          waiting.push_back(i);
        else
          launch(i);
      });
      timers.push_back(std::move(timer));
    }
    // Ctrl-C: the run under way is abandoned (closing its connections cancels its requests).
    asio::steady_timer watch(io);
    std::function<void()> watch_interrupt = [&] {
      watch.expires_after(std::chrono::milliseconds(100));
      watch.async_wait([&](asio::error_code e) {
        if (e)
          return;
        if (stop_requested())
          io.stop();
        else if (ended < trace.size())
          watch_interrupt();
      });
    };
    if (!trace.empty())
      watch_interrupt();
    io.run();
    if (stop_requested()) {
      if (tty)
        fmt::print(stderr, "\r\033[K");
      fmt::print(stderr, "aegaeon bench: interrupted; {} of {} rates finished\n", rates_done,
                 rates.size());
      interrupted = true;
      break;
    }
    if (tty)
      fmt::print(stderr, "\r\033[K");
    const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    // Goodput is per second of offered load: the generated trace's duration, or a trace file's
    // whole run (its arrivals may span nothing at all).
    const double span = !o.trace_path.empty() ? seconds
                        : trace.empty()       ? 0
                                              : std::max(o.duration, trace.back().arrival);

    std::vector<summary> rows;
    std::vector<const outcome*> all;
    for (const auto& out : outcomes)
      all.push_back(&out);
    for (const auto& m : models) {
      std::vector<const outcome*> mine;
      for (const auto& out : outcomes)
        if (out.model == m)
          mine.push_back(&out);
      rows.push_back(summarize(m, mine, o.ttft, o.tbt, span));
    }
    rows.push_back(summarize("all", all, o.ttft, o.tbt, span));
    if (o.trace_path.empty())
      fmt::print("\nrate {:.3f} req/s per model, {} requests in {:.0f} s\n", rate, trace.size(),
                 seconds);
    else
      fmt::print("\ntrace {}, {} requests in {:.0f} s\n", o.trace_path, trace.size(), seconds);
    fmt::print("{:>28} {:>5} {:>6} {:>10} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9}\n", "model",
               "reqs", "failed", "attainment", "tokens", "TTFT p50", "TTFT p90", "TTFT p99",
               "TBT p50", "TBT p99", "goodput");
    for (const auto& r : rows)
      fmt::print("{:>28} {:>5} {:>6} {:>9.1f}% {:>6.1f}% {:>8.2f}s {:>8.2f}s {:>8.2f}s {:>7.3f}s "
                 "{:>7.3f}s {:>7.3f}/s\n",
                 r.model, r.requests, r.failed, 100 * r.attainment, 100 * r.token_attainment,
                 r.ttft_p50, r.ttft_p90, r.ttft_p99, r.tbt_p50, r.tbt_p99, r.good_requests_per_s);
    std::map<std::string, std::size_t> errors;
    for (const auto& out : outcomes)
      if (!out.error.empty())
        ++errors[out.error];
    for (const auto& [e, n] : errors)
      fmt::print("  {} x {}\n", n, e);
    if (rows.back().attainment >= 0.9)
      best_rate = std::max(best_rate, rate);
    json run = {{"rate_per_model", rate},
                {"requests", trace.size()},
                {"seconds", seconds},
                {"summaries", json::array()}};
    for (const auto& r : rows) {
      run["summaries"].push_back(r.to_json());
      if (csv_out)
        *csv_out << fmt::format(
            "{},{},{},{},{},{},{},{:.4f},{:.4f},{:.3f},{:.3f},{:.3f},{:.4f},{:.4f},"
            "{:.4f}\n",
            rate, r.model, r.requests, r.completed, r.failed, r.rejected, r.tokens, r.attainment,
            r.token_attainment, r.ttft_p50, r.ttft_p90, r.ttft_p99, r.tbt_p50, r.tbt_p99,
            r.good_requests_per_s);
    }
    report["runs"].push_back(run);
    ++rates_done;
  }
  if (interrupted)
    report["interrupted"] = true;
  if (rates.size() > 1 && rates_done > 0)
    fmt::print("\ngoodput: the highest rate with >= 90% attainment was {:.3f} req/s per model "
               "({:.3f} req/s in all)\n",
               best_rate, best_rate * static_cast<double>(models.size()));
  if (json_out)
    *json_out << report.dump(2) << "\n";
  if (auto closed = reports.close(); !closed) {
    fmt::print(stderr, "aegaeon bench: {}\n", closed.error().message);
    return 1;
  }
  if (draw_report_figures(report, figures, "aegaeon bench") != 0)
    return 1;
  return interrupted ? 130 : 0;
}

} // namespace aeg::apps
