#include "apps/server/server.hpp"

#include "actors/generation.hpp"
#include "actors/pool.hpp"
#include "apps/server/metrics.hpp"
#include "apps/server/openai.hpp"
#include "gpu/registry.hpp"
#include "models/gguf/file.hpp"
#include "models/tokenizer/chat_template.hpp"
#include "models/tokenizer/stream_decoder.hpp"
#include "models/tokenizer/tokenizer.hpp"

#include <asio.hpp>
#include <caf/all.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>

namespace aeg::server {

namespace fs = std::filesystem;
using asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

using bridge_cancel_atom = caf::atom_constant<caf::atom("brcancel")>;

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(s));
}

// What the server needs of a model beyond its weights: how to turn text into tokens and back.
struct model_entry {
  std::string name;
  std::shared_ptr<const models::tokenizer> tok;
  std::shared_ptr<const models::chat_template> tmpl;
  std::size_t context_length = 0;
  std::vector<std::int32_t> end_of_generation;
};

// Posts handlers onto the server's io_context from CAF threads, for as long as it exists.
class io_link {
public:
  explicit io_link(asio::io_context& io) : io_(&io) {}
  template <class F>
  void post(F&& f) {
    std::lock_guard lock(mutex_);
    if (io_ != nullptr)
      asio::post(*io_, std::forward<F>(f));
  }
  void close() {
    std::lock_guard lock(mutex_);
    io_ = nullptr;
  }

private:
  std::mutex mutex_;
  asio::io_context* io_;
};

std::string random_id(std::string_view prefix) {
  static std::atomic<std::uint64_t> counter{0};
  return fmt::format("{}{:x}{:06x}", prefix, unix_now(), counter.fetch_add(1) & 0xffffff);
}

} // namespace

// --- the server state (io thread only, except where noted) -------------------------------------

class connection;
struct generation;

struct server::impl {
  serve_options opts;
  caf::actor_system* sys = nullptr;
  std::unique_ptr<actors::pool> pool;
  std::map<std::string, model_entry> models;
  std::vector<std::string> model_names;
  std::int64_t created = unix_now();

  asio::io_context io{1};
  std::shared_ptr<io_link> link = std::make_shared<io_link>(io);
  tcp::acceptor acceptor{io};
  asio::signal_set signals{io};
  asio::steady_timer grace{io};
  asio::steady_timer accept_retry{io};
  std::set<std::shared_ptr<connection>> connections;
  std::size_t in_flight = 0;
  std::vector<caf::weak_actor_ptr> bridges; // pruned as they end
  bool shutting_down = false, cancelled_all = false, stopped = false;
  metrics_registry metrics;

  void log(const std::string& line) const {
    if (opts.log)
      opts.log(line);
  }

  result<void> load();
  result<void> listen();
  void accept();
  void begin_shutdown();
  void end_grace(const char* why);
  void maybe_finish_shutdown();
  void finish();
};

// One generation: a request in flight for a connection. Lives on the io thread; its bridge actor
// (on CAF's threads) posts tokens and the end here.
struct generation : std::enable_shared_from_this<generation> {
  completion_params params;
  const model_entry* model = nullptr;
  response_shape shape;
  models::stream_decoder decoder;
  stop_matcher stops;
  std::set<std::int32_t> stop_token_set;
  std::string text; // non-streaming: the answer so far
  std::size_t prompt_tokens = 0, completion_tokens = 0;
  clock_type::time_point start = clock_type::now(), last_token;
  bool head_sent = false, first_chunk = true, finished = false;
  caf::actor bridge;

  generation(completion_params p, const model_entry& m)
      : params(std::move(p)), model(&m), decoder(*m.tok), stops(params.stop_strings) {}
};

class connection : public std::enable_shared_from_this<connection> {
public:
  connection(server::impl& srv, tcp::socket sock)
      : srv_(srv), sock_(std::move(sock)), parser_(srv.opts.limits), timer_(srv.io),
        write_timer_(srv.io), max_input_(input_cap(srv.opts.limits)) {}

  void start() {
    arm_idle();
    read();
  }

  // Closes at once (shutdown, or a broken connection); cancels what runs for it.
  void close() {
    if (closed_)
      return;
    auto self = shared_from_this(); // the set below may hold the last reference
    closed_ = true;
    timer_.cancel();
    write_timer_.cancel();
    if (gen_) {
      // Its client is gone: the request is cancelled and its KV freed.
      cancel_generation();
      srv_.metrics.finished(gen_->model->name, "cancelled", gen_->prompt_tokens,
                            gen_->completion_tokens);
      end_generation();
    }
    asio::error_code ec;
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
    srv_.connections.erase(self);
    srv_.maybe_finish_shutdown();
  }

  // Ends a connection whose last answer is written: stops sending, then reads and drops what
  // the client still sends until it closes (at most 2 s), so that unread request bytes do not
  // make the kernel reset the connection and destroy the answer before the client reads it.
  void linger_close() {
    if (closed_ || lingering_)
      return;
    lingering_ = true;
    drop_further_input();
    asio::error_code ec;
    sock_.shutdown(tcp::socket::shutdown_send, ec);
    if (ec)
      return close();
    timer_.expires_after(std::chrono::seconds(2));
    auto self = shared_from_this();
    timer_.async_wait([this, self](asio::error_code e) {
      if (!e)
        close();
    });
  }

  bool idle() const { return !gen_ && !awaiting_ && !parser_.in_progress() && out_.empty(); }
  bool busy() const { return gen_ != nullptr; }
  void cancel_generation() {
    if (gen_ && !gen_->finished && gen_->bridge)
      caf::anon_send(gen_->bridge, bridge_cancel_atom::value);
  }

  // From the bridge, on the io thread.
  void on_submitted(const std::shared_ptr<generation>& g) {
    if (g == gen_)
      send_head(*g);
  }
  // The head of a streamed answer, once, before its first event (whichever comes first: the
  // pool's acceptance or a token).
  void send_head(generation& g) {
    if (closed_ || !g.params.stream || g.head_sent)
      return;
    g.head_sent = true;
    header_list h = {{"Content-Type", "text/event-stream"},
                     {"Cache-Control", "no-cache"},
                     {"X-Request-Id", g.shape.id}};
    add_cors(h);
    if (chunked_) {
      write(format_chunked_head(200, h, keep_alive_));
      return;
    }
    keep_alive_ = false; // an HTTP/1.0 client learns the stream's end from the close
    write(format_close_delimited_head(200, h));
  }
  // A piece of a streamed body, and its end: chunks, or plain bytes before the close.
  std::string body_piece(std::string_view data) const {
    return chunked_ ? format_chunk(data) : std::string(data);
  }
  std::string body_end() const { return chunked_ ? std::string(last_chunk()) : std::string(); }
  void on_refused(const std::shared_ptr<generation>& g, api_error e) {
    if (g != gen_)
      return;
    respond_error(e); // first: the answer must be queued before the shutdown looks for idle ones
    end_generation();
  }
  void on_token(const std::shared_ptr<generation>& g, std::int32_t token) {
    if (g != gen_ || g->finished)
      return;
    const auto now = clock_type::now();
    if (g->completion_tokens == 0)
      srv_.metrics.first_token(g->model->name,
                               std::chrono::duration<double>(now - g->start).count());
    else
      srv_.metrics.between_tokens(g->model->name,
                                  std::chrono::duration<double>(now - g->last_token).count());
    g->last_token = now;
    ++g->completion_tokens;
    if (g->stop_token_set.count(token) != 0)
      return; // its text is not part of the answer; the instance ends the request
    std::string piece = g->stops.push(g->decoder.feed(token));
    emit(*g, piece, !g->stops.stopped());
    if (g->stops.stopped()) {
      // A stop string ends the work, not only the output.
      caf::anon_send(g->bridge, bridge_cancel_atom::value);
      complete(g, "stop");
    }
  }
  void on_done(const std::shared_ptr<generation>& g, const actors::generation_result& r) {
    if (g != gen_ || g->finished)
      return; // already answered (a stop string, or the client left)
    switch (r.reason) {
    case actors::finish_reason::stop:
    case actors::finish_reason::length: {
      // Text held back until now rides on the final chunk, so the stream keeps one event per
      // token plus the one that ends it.
      std::string rest = g->stops.push(g->decoder.finish());
      rest += g->stops.flush();
      complete(g, r.reason == actors::finish_reason::stop || g->stops.stopped() ? "stop" : "length",
               rest);
      break;
    }
    case actors::finish_reason::cancelled:
      // Only a shutdown cancels a request that is still being answered.
      fail(g, api_error{.status = 503,
                        .message = "the server shut down before this request finished",
                        .type = "server_error",
                        .retry_after = 5});
      break;
    default:
      fail(g, api_error{.status = 500,
                        .message = "generation failed: " + r.message,
                        .type = "server_error"});
    }
  }

private:
  // --- reading requests ---
  void read() {
    if (closed_)
      return;
    auto self = shared_from_this();
    sock_.async_read_some(asio::buffer(buf_), [this, self](asio::error_code ec, std::size_t n) {
      if (closed_)
        return;
      if (ec) {
        // The client went away: whatever runs for it is cancelled.
        close();
        return;
      }
      if (discard_input_) {
        read(); // after a refusal: what the client still sends is read and dropped
        return;
      }
      input_.append(buf_.data(), n);
      if (input_.size() > max_input_) {
        // More unread input than one largest request: a client pipelining without reading its
        // answers. Refuse to buffer more.
        close();
        return;
      }
      process();
      read();
    });
  }

  void process() {
    // One request at a time: the next is parsed once this one's answer is written.
    while (!closed_ && !gen_ && !awaiting_ && out_.empty() && keep_alive_ && !input_.empty()) {
      if (!request_timer_armed_)
        arm_request_timeout(); // once per request: bytes that trickle in do not extend it
      auto o = parser_.feed(input_);
      input_.erase(0, o.consumed);
      if (o.state == request_parser::status::error) {
        keep_alive_ = false;
        // Keep reading (and dropping) what the client sends, so that closing does not reset
        // the connection before it has read this answer.
        drop_further_input();
        respond_error(api_error{.status = o.http_status, .message = o.error});
        return;
      }
      if (o.state == request_parser::status::need_more) {
        if (o.send_continue)
          write(std::string(continue_response));
        return;
      }
      timer_.cancel();
      request_timer_armed_ = false;
      ++request_epoch_; // a wait already queued to fire belongs to the request just read
      auto req = parser_.take();
      keep_alive_ = req.keep_alive && !srv_.shutting_down;
      chunked_ = req.chunked_ok;
      head_only_ = req.method == "HEAD";
      try {
        handle(req);
      } catch (const std::exception& e) {
        // A fault in answering one request must not take the server down: drop this
        // connection (its request, if any, is cancelled) and keep serving the others.
        srv_.log(fmt::format("internal error answering {} {}: {}; closing the connection",
                             req.method, req.path, e.what()));
        close();
        return;
      }
    }
  }

  void drop_further_input() {
    discard_input_ = true;
    input_.clear();
  }

  // The most unread input a connection may hold: one largest request and a read's worth.
  static std::size_t input_cap(const request_limits& lim) {
    const std::size_t read = std::tuple_size_v<decltype(buf_)>;
    return lim.max_body_bytes > SIZE_MAX - lim.max_header_bytes - read
               ? SIZE_MAX
               : lim.max_body_bytes + lim.max_header_bytes + read;
  }

  void arm_request_timeout() {
    request_timer_armed_ = true;
    timer_.expires_after(seconds(srv_.opts.header_timeout_seconds));
    auto self = shared_from_this();
    timer_.async_wait([this, self, epoch = request_epoch_](asio::error_code ec) {
      if (ec || closed_ || gen_ || epoch != request_epoch_)
        return;
      keep_alive_ = false;
      respond_error(api_error{.status = 408,
                              .message = fmt::format("the request did not arrive within {} s",
                                                     srv_.opts.header_timeout_seconds)});
    });
  }

  void arm_idle() {
    request_timer_armed_ = false;
    timer_.expires_after(seconds(srv_.opts.idle_timeout_seconds));
    auto self = shared_from_this();
    timer_.async_wait([this, self](asio::error_code ec) {
      if (!ec && !closed_ && idle())
        close();
    });
  }

  // --- routing ---
  // Whether `auth` is "Bearer KEY" with this server's key (the scheme in any case).
  bool authorized(const std::string* auth) const {
    if (auth == nullptr)
      return false;
    std::string_view v(*auth);
    const auto space = v.find(' ');
    if (space != 6 || !std::equal(v.begin(), v.begin() + 6, "bearer", [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == b;
        }))
      return false;
    v.remove_prefix(std::min(v.find_first_not_of(' ', space), v.size()));
    return v == srv_.opts.api_key;
  }

  void handle(const http_request& req) {
    const bool v1 = req.path.rfind("/v1/", 0) == 0;
    // The methods each path answers; the rest get 405 with this list.
    const bool known = req.path == "/health" || req.path == "/v1/models" ||
                       req.path.rfind("/v1/models/", 0) == 0 || req.path == "/metrics";
    const bool completion = req.path == "/v1/completions" || req.path == "/v1/chat/completions";
    const char* allow = completion ? "POST, OPTIONS" : "GET, HEAD, OPTIONS";
    if ((known || completion) && req.method == "OPTIONS") {
      header_list h = {{"Allow", allow}};
      if (!srv_.opts.cors_origin.empty()) { // a browser's preflight: what it may send
        h.emplace_back("Access-Control-Allow-Methods", allow);
        h.emplace_back("Access-Control-Allow-Headers", "Authorization, Content-Type");
        h.emplace_back("Access-Control-Max-Age", "600");
      }
      add_cors(h);
      write(format_response(204, h, "", keep_alive_));
      return;
    }
    if (v1 && !srv_.opts.api_key.empty()) {
      const auto* auth = req.header("authorization");
      if (!authorized(auth)) {
        respond_error(api_error{.status = 401,
                                .message = auth == nullptr
                                               ? "missing API key: send 'Authorization: Bearer KEY'"
                                               : "incorrect API key",
                                .type = "invalid_request_error", // as OpenAI's API says it
                                .code = "invalid_api_key"});
        return;
      }
    }
    auto method_is = [&](const char* m) {
      if (req.method == m || (req.method == "HEAD" && std::string_view(m) == "GET"))
        return true;
      respond_error(
          api_error{.status = 405,
                    .message = fmt::format("{} {} is not allowed; use {}", req.method, req.path, m),
                    .allow = allow});
      return false;
    };
    if (req.path == "/health") {
      if (method_is("GET"))
        respond_json(200, fmt::format(R"({{"status":"{}","models":{}}})",
                                      srv_.shutting_down ? "shutting_down" : "ok",
                                      srv_.model_names.size()));
    } else if (req.path == "/v1/models") {
      if (method_is("GET"))
        respond_json(200, models_list(srv_.model_names, srv_.created));
    } else if (req.path.rfind("/v1/models/", 0) == 0) {
      const auto name = req.path.substr(11);
      if (!method_is("GET"))
        return;
      if (srv_.models.count(name) == 0)
        respond_error(unknown_model(name));
      else
        respond_json(
            200, fmt::format(R"({{"id":{},"object":"model","created":{},"owned_by":"aegaeon"}})",
                             nlohmann_quote(name), srv_.created));
    } else if (req.path == "/metrics") {
      if (method_is("GET"))
        metrics();
    } else if (req.path == "/v1/completions" || req.path == "/v1/chat/completions") {
      if (method_is("POST"))
        complete_request(req, req.path == "/v1/chat/completions");
    } else {
      respond_error(api_error{.status = 404,
                              .message = fmt::format("no route for {} {}", req.method, req.path),
                              .code = "not_found"});
    }
  }

  static std::string nlohmann_quote(const std::string& s);

  api_error unknown_model(const std::string& name) const {
    std::string list;
    for (const auto& n : srv_.model_names)
      list += (list.empty() ? "" : ", ") + n;
    return api_error{
        .status = 404,
        .message = fmt::format("the model '{}' does not exist; this server has: {}", name, list),
        .param = "model",
        .code = "model_not_found"};
  }

  void complete_request(const http_request& req, bool chat) {
    if (srv_.shutting_down) {
      respond_error(api_error{.status = 503,
                              .message = "the server is shutting down",
                              .type = "server_error",
                              .retry_after = 5});
      return;
    }
    auto p = parse_completion(req.body, chat);
    if (!p) {
      respond_error(p.error());
      return;
    }
    auto it = srv_.models.find(p->model);
    if (it == srv_.models.end()) {
      respond_error(unknown_model(p->model));
      return;
    }
    const model_entry& m = it->second;
    if (srv_.in_flight >= srv_.opts.max_in_flight) {
      respond_error(api_error{.status = 429,
                              .message = fmt::format("the server is at its limit of {} requests in "
                                                     "flight; retry shortly",
                                                     srv_.opts.max_in_flight),
                              .type = "requests",
                              .code = "rate_limit_exceeded",
                              .retry_after = 1});
      return;
    }
    // Token ids the client gave must be the model's.
    auto outside_vocabulary = [&](std::span<const std::int32_t> ids, const char* what,
                                  const char* param) {
      for (auto t : ids)
        if (static_cast<std::size_t>(t) >= m.tok->num_tokens()) {
          respond_error(api_error{.message = fmt::format("{} id {} is outside the vocabulary "
                                                         "of {} tokens",
                                                         what, t, m.tok->num_tokens()),
                                  .param = param});
          return true;
        }
      return false;
    };
    // Tokens of the prompt.
    std::vector<std::int32_t> prompt;
    if (chat) {
      std::vector<models::chat_message> msgs;
      for (const auto& t : p->messages)
        msgs.push_back({t.role, t.content});
      prompt = m.tok->encode(m.tmpl->render(msgs, true), true);
    } else if (!p->prompt_tokens.empty()) {
      prompt = p->prompt_tokens;
      if (outside_vocabulary(prompt, "token", "prompt"))
        return;
    } else {
      // Special tokens written out in a prompt are the tokens, as in other servers: a prompt
      // templated by hand (ChatML's <|im_start|> ...) reads as the model was trained.
      prompt = m.tok->encode(p->prompt, true);
      if (m.tok->add_bos() && m.tok->bos())
        prompt.insert(prompt.begin(), *m.tok->bos());
    }
    if (prompt.empty()) {
      respond_error(api_error{.message = "the prompt has no tokens", .param = "prompt"});
      return;
    }
    // Named by the field that gave the id.
    const std::span<const std::int32_t> stops(p->stop_tokens);
    if (outside_vocabulary(stops.first(p->stop_tokens_from_stop), "stop token", "stop") ||
        outside_vocabulary(stops.subspan(p->stop_tokens_from_stop), "stop token", "stop_token_ids"))
      return;
    if (prompt.size() >= m.context_length) {
      respond_error(api_error{
          .message = fmt::format("this model's context is {} tokens; the prompt has {}, leaving "
                                 "no room to generate",
                                 m.context_length, prompt.size()),
          .param = chat ? "messages" : "prompt",
          .code = "context_length_exceeded"});
      return;
    }
    const std::size_t room = m.context_length - prompt.size();
    if (p->max_tokens_given && p->max_tokens > room) {
      respond_error(api_error{
          .message = fmt::format("this model's context is {} tokens; the prompt has {} and "
                                 "max_tokens asks for {} more; ask for at most {}",
                                 m.context_length, prompt.size(), p->max_tokens, room),
          .param = "max_tokens",
          .code = "context_length_exceeded"});
      return;
    }
    const std::size_t max_tokens =
        p->max_tokens_given ? p->max_tokens : (chat ? room : std::min(room, p->max_tokens));
    if (!p->seed_given)
      p->sampling.seed = std::random_device{}();

    auto g = std::make_shared<generation>(std::move(*p), m);
    g->prompt_tokens = prompt.size();
    g->shape = {chat, random_id(chat ? "chatcmpl-" : "cmpl-"), m.name, unix_now()};
    for (auto t : g->params.stop_tokens)
      g->stop_token_set.insert(t);
    actors::generation_request r;
    r.model = m.name;
    r.prompt = std::move(prompt);
    r.sampling = g->params.sampling;
    r.max_tokens = max_tokens;
    r.stop_tokens = g->params.stop_tokens;
    if (!g->params.ignore_eos)
      r.stop_tokens.insert(r.stop_tokens.end(), m.end_of_generation.begin(),
                           m.end_of_generation.end());
    for (auto t : m.end_of_generation)
      g->stop_token_set.insert(t);
    if (g->params.ignore_eos)
      for (auto t : m.end_of_generation)
        if (std::find(g->params.stop_tokens.begin(), g->params.stop_tokens.end(), t) ==
            g->params.stop_tokens.end())
          g->stop_token_set.erase(t);
    gen_ = g;
    ++srv_.in_flight;
    srv_.metrics.started(m.name);
    g->bridge = spawn_bridge(g, std::move(r));
    auto& bridges = srv_.bridges;
    if (bridges.size() >= 1024)
      std::erase_if(bridges, [](const caf::weak_actor_ptr& w) { return w.lock() == nullptr; });
    bridges.push_back(caf::actor_cast<caf::weak_actor_ptr>(g->bridge));
  }

  caf::actor spawn_bridge(const std::shared_ptr<generation>& g, actors::generation_request r);

  // --- responses ---
  // Streams a piece of the answer (non-streaming: keeps it). `every_token` sends a chunk even
  // when the token's text is held back (half a character, or maybe a stop string), so a client
  // sees one event per token and can time each.
  void emit(generation& g, const std::string& piece, bool every_token = false) {
    if (piece.empty() && !(every_token && g.params.stream))
      return;
    send_head(g);
    if (!g.params.stream) {
      g.text += piece;
      return;
    }
    write(body_piece(
        "data: " + g.shape.chunk(piece, std::nullopt, g.first_chunk, g.params.include_usage) +
        "\n\n"));
    g.first_chunk = false;
  }

  void complete(const std::shared_ptr<generation>& g, std::string_view reason,
                std::string_view rest = {}) {
    const usage_counts usage{g->prompt_tokens, g->completion_tokens};
    srv_.metrics.finished(g->model->name, std::string(reason), g->prompt_tokens,
                          g->completion_tokens);
    if (g->params.stream) {
      send_head(*g);
      std::string tail =
          "data: " + g->shape.chunk(rest, reason, g->first_chunk, g->params.include_usage) + "\n\n";
      if (g->params.include_usage)
        tail += "data: " + g->shape.usage_chunk(usage) + "\n\n";
      tail += "data: [DONE]\n\n";
      write(body_piece(tail) + body_end());
    } else {
      g->text += rest;
      respond_json(200, g->shape.full(g->text, reason, usage));
    }
    end_generation();
  }

  void fail(const std::shared_ptr<generation>& g, const api_error& e) {
    srv_.metrics.finished(g->model->name, "error", g->prompt_tokens, g->completion_tokens);
    if (g->head_sent) {
      write(body_piece("data: " + e.json() + "\n\ndata: [DONE]\n\n") + body_end());
      end_generation();
    } else {
      respond_error(e);
      end_generation();
    }
  }

  void end_generation() {
    if (!gen_)
      return;
    gen_->finished = true;
    gen_.reset();
    --srv_.in_flight;
    srv_.maybe_finish_shutdown();
  }

  // CORS: which web origin may read the answer (when the server was told one).
  void add_cors(header_list& h) const {
    const auto& origin = srv_.opts.cors_origin;
    if (origin.empty())
      return;
    h.emplace_back("Access-Control-Allow-Origin", origin);
    if (origin != "*")
      h.emplace_back("Vary", "Origin");
  }
  void respond(int status, const char* content_type, const std::string& body,
               header_list extra = {}) {
    extra.emplace_back("Content-Type", content_type);
    add_cors(extra);
    if (srv_.shutting_down)
      keep_alive_ = false; // the client learns not to send more on this connection
    std::string out = format_response(status, extra, body, keep_alive_);
    if (head_only_)
      out.resize(out.size() - body.size()); // the head a GET would get, no body
    write(std::move(out));
  }
  void respond_json(int status, const std::string& body, header_list extra = {}) {
    respond(status, "application/json", body, std::move(extra));
  }
  void respond_error(const api_error& e) {
    srv_.metrics.refused(e.status);
    header_list h;
    if (e.retry_after > 0)
      h.emplace_back("Retry-After", std::to_string(e.retry_after));
    if (e.status == 401)
      h.emplace_back("WWW-Authenticate", "Bearer");
    if (!e.allow.empty())
      h.emplace_back("Allow", e.allow);
    if (e.status >= 500 || e.status == 408 || e.status == 413 || e.status == 431)
      keep_alive_ = false;
    respond_json(e.status, e.json(), std::move(h));
  }

  void metrics();

  void write(std::string data) {
    if (closed_ || data.empty())
      return;
    out_.push_back(std::move(data));
    if (!writing_)
      flush();
  }
  void flush() {
    if (out_.empty()) {
      writing_ = false;
      if (!gen_ && !awaiting_) {
        if (srv_.shutting_down) {
          close();
          return;
        }
        if (!keep_alive_) {
          linger_close();
          return;
        }
        arm_idle();
        process(); // the next pipelined request
        if (parser_.in_progress() && !request_timer_armed_)
          arm_request_timeout(); // a body still to come after "100 Continue"
      }
      return;
    }
    writing_ = true;
    auto self = shared_from_this();
    // A client that stops reading would pin this connection (and its request) for ever.
    write_timer_.expires_after(seconds(srv_.opts.write_timeout_seconds));
    write_timer_.async_wait([this, self, epoch = ++write_epoch_](asio::error_code ec) {
      if (!ec && !closed_ && epoch == write_epoch_) {
        srv_.log(fmt::format("a client read nothing for {} s; dropping its connection",
                             srv_.opts.write_timeout_seconds));
        close();
      }
    });
    asio::async_write(sock_, asio::buffer(out_.front()),
                      [this, self](asio::error_code ec, std::size_t) {
                        ++write_epoch_;
                        write_timer_.cancel();
                        if (closed_)
                          return;
                        if (ec) {
                          close();
                          return;
                        }
                        out_.pop_front();
                        flush();
                      });
  }

  server::impl& srv_;
  tcp::socket sock_;
  request_parser parser_;
  asio::steady_timer timer_;
  asio::steady_timer write_timer_;
  std::uint64_t write_epoch_ = 0;
  std::array<char, 16384> buf_{};
  std::string input_;
  std::size_t max_input_;
  bool request_timer_armed_ = false;
  bool discard_input_ = false, lingering_ = false;
  std::uint64_t request_epoch_ = 0;
  std::deque<std::string> out_;
  bool writing_ = false, closed_ = false, keep_alive_ = true;
  bool chunked_ = true;    // the client reads chunked bodies (HTTP/1.1)
  bool head_only_ = false; // a HEAD request: the head of the answer without its body
  bool awaiting_ = false;  // an answer is being gathered from the actors (metrics)
  std::shared_ptr<generation> gen_;
};

std::string connection::nlohmann_quote(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The bridge: a CAF actor per generation that submits it to the proxy, receives its tokens and
// its end, and posts them to the connection on the io thread. A cancel from the connection goes
// to the proxy once the request has its id.
caf::actor connection::spawn_bridge(const std::shared_ptr<generation>& g,
                                    actors::generation_request r) {
  std::weak_ptr<connection> weak = shared_from_this();
  auto link = srv_.link;
  auto proxy = srv_.pool->proxy();
  return srv_.sys->spawn([weak, link, proxy, g,
                          r = std::move(r)](caf::event_based_actor* self) mutable -> caf::behavior {
    struct state {
      std::optional<std::uint64_t> id;
      bool cancel_pending = false;
    };
    auto st = std::make_shared<state>();
    r.sink = caf::actor_cast<caf::actor>(self);
    self->request(proxy, caf::infinite, actors::submit_atom::value, std::move(r))
        .then(
            [=](std::uint64_t id) {
              st->id = id;
              if (st->cancel_pending)
                self->send(proxy, actors::cancel_atom::value, id);
              link->post([weak, g] {
                if (auto c = weak.lock())
                  c->on_submitted(g);
              });
            },
            [=](caf::error& e) {
              const std::string why = self->system().render(e);
              const bool full = why.find(actors::overloaded_prefix) != std::string::npos;
              api_error err{.status = full ? 429 : 503,
                            .message = "the pool refused the request: " + why,
                            .type = full ? "requests" : "server_error",
                            .code = full ? "rate_limit_exceeded" : "",
                            .retry_after = 1};
              link->post([weak, g, err] {
                if (auto c = weak.lock())
                  c->on_refused(g, err);
              });
              self->quit();
            });
    return {
        [=](actors::token_atom, std::uint64_t, std::int32_t token) {
          link->post([weak, g, token] {
            if (auto c = weak.lock())
              c->on_token(g, token);
          });
        },
        [=](actors::done_atom, const actors::generation_result& res) {
          link->post([weak, g, res] {
            if (auto c = weak.lock())
              c->on_done(g, res);
          });
          self->quit();
        },
        [=](bridge_cancel_atom) {
          if (st->id)
            self->send(proxy, actors::cancel_atom::value, *st->id);
          else
            st->cancel_pending = true;
        },
    };
  });
}

void connection::metrics() {
  // Ask the proxy and every instance, without blocking anyone; answer when all replied.
  awaiting_ = true;
  std::weak_ptr<connection> weak = shared_from_this();
  auto link = srv_.link;
  auto proxy = srv_.pool->proxy();
  auto instances = srv_.pool->instances();
  auto names = srv_.pool->instance_names();
  srv_.sys->spawn([=](caf::event_based_actor* self) {
    struct state {
      actors::pool_metrics pool;
      std::vector<std::optional<actors::instance_stats>> stats;
      std::size_t pending = 0;
    };
    auto st = std::make_shared<state>();
    st->stats.resize(instances.size());
    st->pending = instances.size() + 1;
    auto done = [=] {
      if (--st->pending != 0)
        return;
      link->post([weak, st, names] {
        auto c = weak.lock();
        if (!c)
          return;
        std::vector<instance_report> inst;
        for (std::size_t i = 0; i < names.size(); ++i)
          inst.push_back({names[i], st->stats[i]});
        c->awaiting_ = false;
        c->respond(200, "text/plain; version=0.0.4; charset=utf-8",
                   c->srv_.metrics.render(st->pool, inst));
      });
    };
    self->request(proxy, std::chrono::seconds(5), actors::metrics_atom::value)
        .then(
            [=](actors::pool_metrics& m) {
              st->pool = std::move(m);
              done();
            },
            [=](caf::error&) { done(); });
    for (std::size_t i = 0; i < instances.size(); ++i)
      self->request(instances[i], std::chrono::seconds(5), actors::stats_atom::value)
          .then(
              [=](actors::instance_stats& s) {
                st->stats[i] = s;
                done();
              },
              [=](caf::error&) { done(); });
  });
}

// --- start-up ---------------------------------------------------------------------------------

namespace {

// The pool a server runs: the topology file's, or every model in the models directory on one
// colocated instance. Checked as far as it can be before anything starts.
result<actors::pool_spec> spec_of(const serve_options& opts) {
  actors::pool_spec spec;
  if (!opts.config.empty()) {
    auto s = actors::load_topology(opts.config);
    if (!s)
      return tl::unexpected(s.error());
    spec = std::move(*s);
  } else {
    std::error_code ec;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(opts.models_dir, ec))
      if (e.path().extension() == ".gguf")
        files.push_back(e.path());
    if (ec)
      return fail(errc::not_found, "cannot read the models directory '" + opts.models_dir +
                                       "': " + ec.message() +
                                       " (scripts/fetch-model fetches the reference model, or "
                                       "give --config)");
    if (files.empty())
      return fail(errc::not_found, "no .gguf models in '" + opts.models_dir +
                                       "' (scripts/fetch-model fetches the reference model, or "
                                       "give --config)");
    std::sort(files.begin(), files.end());
    std::string backend = opts.backend;
    if (backend.empty())
      backend = gpu::make_device({.backend = "cuda"}) ? "cuda" : "cpu";
    const std::string device = backend == "cuda" ? "gpu0" : "cpu0";
    spec.devices.push_back({device, backend, 0, opts.memory_mib << 20});
    for (const auto& f : files) {
      actors::model_spec m;
      m.name = f.stem().string();
      m.source.gguf_path = f.string();
      spec.models.push_back(m);
    }
    actors::instance_spec is;
    is.device = device;
    spec.instances.push_back(is);
    // Said in this command's terms (the pool's own check speaks of topology fields).
    if (opts.memory_mib != 0) {
      const auto format = models::compute_format::for_backend(
          backend == "cuda" ? gpu::backend_kind::cuda : gpu::backend_kind::cpu);
      auto plans = actors::device_memory_needed(spec, format);
      if (!plans)
        return tl::unexpected(plans.error());
      const auto& need = plans->front();
      auto mib = [](std::size_t b) { return (b + (1 << 20) - 1) >> 20; };
      if (need.total() > (opts.memory_mib << 20))
        return fail(errc::out_of_memory,
                    fmt::format("--memory-mib {}: the models' weights ({} MiB), the step buffers "
                                "({} MiB) and the KV cache ({} MiB, one slab) need {} MiB; give "
                                "--memory-mib {} or more (0: the backend's default)",
                                opts.memory_mib, mib(need.weights), mib(need.buffers), mib(need.kv),
                                mib(need.total()), mib(need.total())));
    }
  }
  return spec;
}

} // namespace

result<void> server::check(const serve_options& options) {
  auto spec = spec_of(options);
  if (!spec)
    return tl::unexpected(spec.error());
  if (spec->devices.empty())
    return {}; // the pool says what is missing
  const auto kind =
      spec->devices.front().backend == "cuda" ? gpu::backend_kind::cuda : gpu::backend_kind::cpu;
  const auto format = models::compute_format::for_backend(kind);
  // A synthetic model speaks through the tokenizer of a GGUF model with its vocabulary: said
  // now, from the headers, rather than after minutes of loading.
  std::map<std::size_t, std::string> tokenizers; // vocabulary size -> a GGUF model with it
  for (const auto& m : spec->models)
    if (!m.source.synthetic)
      if (auto f = models::plan_footprint(m.source, format))
        tokenizers.emplace(f->config.vocab_size, m.name);
  for (const auto& m : spec->models) {
    if (!m.source.synthetic)
      continue;
    auto f = models::plan_footprint(m.source, format);
    if (!f)
      return fail(f.error().code, "model '" + m.name + "': " + f.error().message);
    if (tokenizers.count(f->config.vocab_size) != 0)
      continue;
    std::string hint = "add a GGUF model with that vocabulary to the topology";
    if (!tokenizers.empty())
      hint = "give it \"vocab_size\": " + std::to_string(tokenizers.begin()->first) +
             " to use the tokenizer of '" + tokenizers.begin()->second + "', or " + hint;
    return fail(errc::invalid_argument, "model '" + m.name +
                                            "' has synthetic weights and no tokenizer of its " +
                                            std::to_string(f->config.vocab_size) +
                                            "-token vocabulary to serve text with; " + hint);
  }
  return actors::check_device_memory(*spec, format);
}

result<void> server::impl::load() {
  auto made = spec_of(opts);
  if (!made)
    return tl::unexpected(made.error());
  actors::pool_spec spec = std::move(*made);
  spec.keep_finished = 0; // a server keeps totals, not every request
  spec.max_queued = std::max(spec.max_queued, opts.max_in_flight);

  // Tokenizers: a GGUF model's own; a synthetic model borrows one with its vocabulary size.
  std::vector<std::pair<std::size_t, const model_entry*>> by_vocab;
  for (const auto& m : spec.models) {
    if (m.source.gguf_path.empty())
      continue;
    auto file = models::gguf::file::open(m.source.gguf_path);
    if (!file)
      return fail(file.error().code, "model '" + m.name + "': " + file.error().message);
    auto tok = models::tokenizer::from_gguf(*file);
    if (!tok)
      return fail(tok.error().code, "model '" + m.name + "': " + tok.error().message);
    auto tmpl = models::chat_template::from_gguf(*file);
    model_entry e;
    e.name = m.name;
    e.tok = std::make_shared<const models::tokenizer>(std::move(*tok));
    e.tmpl = std::make_shared<const models::chat_template>(tmpl ? std::move(*tmpl)
                                                                : models::chat_template::chatml());
    for (std::size_t i = 0; i < e.tok->num_tokens(); ++i)
      if (e.tok->is_end_of_generation(static_cast<std::int32_t>(i)))
        e.end_of_generation.push_back(static_cast<std::int32_t>(i));
    models[m.name] = std::move(e);
  }
  for (const auto& [name, e] : models)
    by_vocab.emplace_back(e.tok->num_tokens(), &e);

  log(fmt::format("loading {} model(s) onto {} device(s)", spec.models.size(),
                  spec.devices.size()));
  auto p = actors::pool::start(*sys, spec, opts.progress);
  if (!p)
    return tl::unexpected(p.error());
  pool = std::move(*p);
  // Not healthy with an instance that could not start: say why and do not listen.
  if (auto started = pool->wait_started(*sys); !started)
    return tl::unexpected(started.error());

  for (const auto& m : spec.models) {
    auto image = pool->cache().find(m.name);
    const auto& cfg = image->config();
    if (models.count(m.name) == 0) {
      const model_entry* donor = nullptr;
      for (const auto& [vocab, e] : by_vocab)
        if (vocab == cfg.vocab_size)
          donor = e;
      if (donor == nullptr)
        return fail(errc::invalid_argument,
                    "model '" + m.name +
                        "' has synthetic weights and no tokenizer; add a GGUF "
                        "model with its vocabulary (" +
                        std::to_string(cfg.vocab_size) +
                        " tokens) to the topology so it can borrow that one");
      model_entry e = *donor;
      e.name = m.name;
      models[m.name] = std::move(e);
    }
    models[m.name].context_length = cfg.context_length;
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
      // Say why, then close; the client may retry.
      metrics.refused(503);
      auto msg = std::make_shared<std::string>(format_response(
          503, {{"Retry-After", "1"}, {"Content-Type", "application/json"}},
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
    } else {
      auto c = std::make_shared<connection>(*this, std::move(sock));
      connections.insert(c);
      c->start();
    }
    accept();
  });
}

void server::impl::begin_shutdown() {
  if (shutting_down)
    return;
  shutting_down = true;
  log(fmt::format("shutting down: {} request(s) in flight, {} s to finish", in_flight,
                  opts.grace_seconds));
  asio::error_code ec;
  acceptor.close(ec);
  // Idle connections go now; busy ones when their answer is written.
  for (auto c : std::vector<std::shared_ptr<connection>>(connections.begin(), connections.end()))
    if (c->idle())
      c->close();
  grace.expires_after(seconds(opts.grace_seconds));
  grace.async_wait([this](asio::error_code e) {
    if (!e)
      end_grace("the grace period is over");
  });
  maybe_finish_shutdown();
}

void server::impl::end_grace(const char* why) {
  if (cancelled_all || stopped)
    return;
  // Cancel what is left; their ends arrive as cancellations.
  cancelled_all = true;
  log(fmt::format("{}: cancelling {} request(s)", why, in_flight));
  for (auto& c : connections)
    c->cancel_generation();
  grace.expires_after(std::chrono::seconds(5));
  grace.async_wait([this](asio::error_code e) {
    if (!e)
      finish(); // ends that never came: close regardless
  });
}

void server::impl::maybe_finish_shutdown() {
  if (!shutting_down || stopped)
    return;
  if (in_flight == 0) {
    // Let written answers leave, then close.
    for (auto c : std::vector<std::shared_ptr<connection>>(connections.begin(), connections.end()))
      if (c->idle())
        c->close();
    if (connections.empty())
      finish();
  }
}

void server::impl::finish() {
  if (stopped)
    return;
  stopped = true;
  asio::error_code ec;
  signals.cancel(ec);
  grace.cancel();
  for (auto c : std::vector<std::shared_ptr<connection>>(connections.begin(), connections.end()))
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

result<std::unique_ptr<server>> server::create(caf::actor_system& sys, serve_options options) {
  auto s = std::unique_ptr<server>(new server);
  s->impl_ = std::make_shared<impl>();
  auto& i = *s->impl_;
  i.opts = std::move(options);
  i.sys = &sys;
  // The address first: a port in use or a bad host is said at once, not after loading models.
  // Connections wait in the backlog until `run` accepts them.
  if (auto r = i.listen(); !r)
    return tl::unexpected(r.error());
  if (auto r = i.load(); !r)
    return tl::unexpected(r.error());
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
