#include "apps/server/server.hpp"

#include "actors/pool.hpp"
#include "apps/server/http_connection.hpp"
#include "apps/server/router.hpp"
#include "apps/server/served_models.hpp"
#include "apps/server/server_state.hpp"
#include "gpu/registry.hpp"

#include <asio.hpp>
#include <caf/actor_system.hpp>
#include <caf/send.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <set>

namespace aeg::server {

using asio::ip::tcp;

namespace {

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

} // namespace

// The server: its shared state, the listening socket, the connections, and the shutdown.
struct server::impl : server_state {
  explicit impl(serve_options o) : server_state(std::move(o)) {}

  tcp::acceptor acceptor{io};
  asio::signal_set signals{io};
  asio::steady_timer grace{io};
  asio::steady_timer accept_retry{io};
  std::set<std::shared_ptr<http_connection>> connections;
  router routes{*this};
  bool cancelled_all = false, stopped = false;

  result<void> load();
  result<void> listen();
  void accept();
  void refuse_connection(tcp::socket sock);
  void begin_shutdown();
  void end_grace(const char* why);
  void finish_if_done();
  void finish();
};

// --- start-up ---------------------------------------------------------------------------------

result<void> server::impl::load() {
  AEG_TRY_ASSIGN(auto spec, spec_of(opts));
  spec.keep_finished = 0; // a server keeps totals, not every request
  spec.max_queued = std::max(spec.max_queued, opts.max_in_flight);
  AEG_TRY_ASSIGN(auto texts, text_models_of(spec));
  for (const auto& [name, text] : texts)
    if (!text.template_note().empty())
      log(fmt::format("model '{}': {}", name, text.template_note()));
  if (spec.nodes.empty())
    log(fmt::format("loading {} model(s) onto {} device(s)", spec.models.size(),
                    spec.devices.size()));
  else
    log(fmt::format("joining {} node(s) for {} model(s)", spec.nodes.size(), spec.models.size()));
  AEG_TRY_ASSIGN(pool, actors::pool::start(*sys, spec, opts.progress, opts.log));
  if (pool->remote())
    for (const auto& name : pool->instance_names())
      log(fmt::format("joined instance {}", name));
  // Not healthy with an instance that could not start: say why and do not listen.
  AEG_TRY(pool->wait_started(*sys));
  for (const auto& m : spec.models) {
    // The tighter of the server's and the model's caps on prompts; 0 is no cap.
    const auto cap = [](std::size_t a, std::size_t b) {
      return a == 0 ? b : b == 0 ? a : std::min(a, b);
    };
    models.emplace(m.name, served_text{texts.at(m.name), pool->config_of(m.name).context_length,
                                       cap(opts.max_prompt_tokens, m.max_prompt_tokens)});
    model_names.push_back(m.name);
    metrics.declare(m.name); // every model's series from the start, zeros included
  }
  return {};
}

result<void> server::impl::listen() {
  asio::error_code ec;
  tcp::endpoint ep;
  if (auto addr = asio::ip::make_address(opts.host, ec); !ec) {
    ep = tcp::endpoint(addr, opts.port);
  } else {
    // A name ("localhost"): its first address. Start-up only, so resolving may block.
    tcp::resolver resolver(io);
    auto found = resolver.resolve(opts.host, std::to_string(opts.port), ec);
    if (ec || found.empty())
      return fail(errc::invalid_argument,
                  "--host '" + opts.host + "' is neither an IP address nor a name this machine " +
                      "resolves" + (ec ? " (" + ec.message() + ")" : std::string()));
    ep = found.begin()->endpoint();
  }
  ec = {};
  acceptor.open(ep.protocol(), ec);
  if (!ec)
    acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec)
    acceptor.bind(ep, ec);
  if (!ec)
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return fail(errc::unavailable,
                fmt::format("cannot listen on {}:{}: {}{}", opts.host, opts.port, ec.message(),
                            ec == asio::error::address_in_use ? " (choose another --port)" : ""));
  return {};
}

// --- connections ------------------------------------------------------------------------------

void server::impl::accept() {
  // Handlers hold `this`, not a shared_ptr: the io_context is a member, so they never outlive it,
  // and a shared_ptr would make a cycle that keeps the pool alive past the server.
  acceptor.async_accept([this](asio::error_code ec, tcp::socket sock) {
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open())
        return;
      // Out of descriptors or memory: try again shortly instead of spinning on the error.
      log(fmt::format("accept failed: {}; retrying in 100 ms", ec.message()));
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](asio::error_code e) {
        if (!e && acceptor.is_open())
          accept();
      });
      return;
    }
    asio::error_code ignored;
    sock.set_option(tcp::no_delay(true), ignored);
    // A bounded send buffer: the kernel's would grow to megabytes, enough to swallow a whole
    // stream for a client that reads nothing, which the write timeout then never sees.
    sock.set_option(asio::socket_base::send_buffer_size(64 * 1024), ignored);
    if (connections.size() >= opts.max_connections) {
      refuse_connection(std::move(sock));
    } else {
      connection_hooks hooks;
      hooks.request = [this](http_connection& c, http_request req) { routes.handle(c, req); };
      hooks.refused = [this](http_connection& c, int status, std::string why) {
        routes.refused(c, status, std::move(why));
      };
      hooks.closed = [this](http_connection& c) {
        connections.erase(c.shared_from_this());
        finish_if_done();
      };
      hooks.log = [this](const std::string& line) { log(line); };
      auto c = std::make_shared<http_connection>(std::move(sock), opts.limits,
                                                 connection_timeouts{opts.header_timeout_seconds,
                                                                     opts.idle_timeout_seconds,
                                                                     opts.write_timeout_seconds},
                                                 std::move(hooks));
      connections.insert(c);
      c->start();
    }
    accept();
  });
}

// Past the connection limit: say why, then close; the client may retry.
void server::impl::refuse_connection(tcp::socket sock) {
  metrics.refused(503);
  auto msg = std::make_shared<std::string>(format_response(
      503,
      {{"Retry-After", "1"},
       {"Content-Type", "application/json"},
       {"X-Request-Id", http_connection::make_request_id()}},
      api_error{.status = 503,
                .message = fmt::format("the server has its limit of {} connections open",
                                       opts.max_connections),
                .type = "server_error"}
          .json(),
      false));
  auto s = std::make_shared<tcp::socket>(std::move(sock));
  asio::async_write(*s, asio::buffer(*msg), [s, msg](asio::error_code, std::size_t) {
    asio::error_code e;
    s->shutdown(tcp::socket::shutdown_both, e);
  });
}

// --- shutdown ---------------------------------------------------------------------------------

// Stop accepting; idle connections go now, busy ones when their answer is written; requests in
// flight get the grace period to finish.
void server::impl::begin_shutdown() {
  if (shutting_down)
    return;
  shutting_down = true;
  log(fmt::format("shutting down: {} request(s) in flight, {} s to finish", in_flight,
                  opts.grace_seconds));
  asio::error_code ec;
  acceptor.close(ec);
  for (auto c :
       std::vector<std::shared_ptr<http_connection>>(connections.begin(), connections.end()))
    if (c->idle())
      c->close();
    else
      c->end_after_answer();
  grace.expires_after(seconds(opts.grace_seconds));
  grace.async_wait([this](asio::error_code e) {
    if (!e)
      end_grace("the grace period is over");
  });
  finish_if_done();
}

// Cancels what is left; their ends arrive as cancellations and are answered.
void server::impl::end_grace(const char* why) {
  if (cancelled_all || stopped)
    return;
  cancelled_all = true;
  log(fmt::format("{}: cancelling {} request(s)", why, in_flight));
  for (auto& c : connections)
    if (auto* answer = c->pending())
      answer->cancel();
  grace.expires_after(std::chrono::seconds(5));
  grace.async_wait([this](asio::error_code e) {
    if (!e)
      finish(); // ends that never came: close regardless
  });
}

void server::impl::finish_if_done() {
  if (!shutting_down || stopped || in_flight != 0)
    return;
  // Let written answers leave, then close.
  for (auto c :
       std::vector<std::shared_ptr<http_connection>>(connections.begin(), connections.end()))
    if (c->idle())
      c->close();
  if (connections.empty())
    finish();
}

void server::impl::finish() {
  if (stopped)
    return;
  stopped = true;
  asio::error_code ec;
  signals.cancel(ec);
  grace.cancel();
  for (auto c :
       std::vector<std::shared_ptr<http_connection>>(connections.begin(), connections.end()))
    c->close();
  io.stop();
}

// --- the public face --------------------------------------------------------------------------

server::server() = default;

server::~server() {
  if (!impl_)
    return;
  impl_->link->close(); // no more handlers from the actors
  // Bridges still waiting for an end that will not come (a forced shutdown) stop now.
  for (auto& w : impl_->bridges)
    if (auto a = caf::actor_cast<caf::actor>(w.lock()))
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  impl_->connections.clear();
}

result<void> server::check(const serve_options& options) {
  AEG_TRY_ASSIGN(const auto spec, spec_of(options));
  if (spec.devices.empty())
    return {}; // the pool says what is missing
  // A synthetic model speaks through the tokenizer of a GGUF model with its vocabulary: said
  // now, rather than after minutes of loading.
  AEG_TRY(text_models_of(spec));
  const auto kind =
      spec.devices.front().backend == "cuda" ? gpu::backend_kind::cuda : gpu::backend_kind::cpu;
  return actors::check_device_memory(spec, models::compute_format::for_backend(kind));
}

result<std::unique_ptr<server>> server::create(caf::actor_system& sys, serve_options options) {
  auto s = std::unique_ptr<server>(new server);
  s->impl_ = std::make_shared<impl>(std::move(options));
  auto& i = *s->impl_;
  i.sys = &sys;
  i.created = std::chrono::duration_cast<std::chrono::seconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  i.maybe_finish_shutdown = [&i] { i.finish_if_done(); };
  // The address first: a port in use or a bad host is said at once, not after loading models.
  // Connections wait in the backlog until `run` accepts them.
  AEG_TRY(i.listen());
  AEG_TRY(i.load());
  return s;
}

std::uint16_t server::port() const noexcept {
  asio::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

int server::run() {
  auto& i = *impl_;
  if (i.opts.handle_signals) {
    i.signals.add(SIGINT);
    i.signals.add(SIGTERM);
    i.signals.async_wait([&i](asio::error_code ec, int) {
      if (ec)
        return;
      i.begin_shutdown();
      // A second signal does not wait for the grace period.
      i.signals.async_wait([&i](asio::error_code e, int) {
        if (!e)
          i.end_grace("a second signal");
      });
    });
  }
  i.accept();
  // An IPv6 literal is bracketed in a URL ("http://[::1]:8000"), so that the line can be pasted.
  const bool v6 = i.opts.host.find(':') != std::string::npos && i.opts.host.front() != '[';
  i.log(fmt::format("listening on http://{}{}{}:{} ({} model(s))", v6 ? "[" : "", i.opts.host,
                    v6 ? "]" : "", port(), i.model_names.size()));
  i.io.run();
  i.log("stopped");
  return 0;
}

void server::stop() {
  asio::post(impl_->io, [i = impl_.get()] { i->begin_shutdown(); });
}

} // namespace aeg::server
