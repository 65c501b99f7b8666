#include "apps/server/completion_session.hpp"

#include "apps/server/completion_request.hpp"

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <fmt/core.h>

#include <atomic>
#include <utility>

namespace aeg::server {

namespace {

using clock_type = std::chrono::steady_clock;

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string random_id(std::string_view prefix) {
  static std::atomic<std::uint64_t> counter{0};
  return fmt::format("{}{:x}{:06x}", prefix, unix_now(), counter.fetch_add(1) & 0xffffff);
}

// Why a completion cannot even be tried now, or nothing.
std::optional<api_error> refusal(const server_state& st, const std::string& client) {
  if (st.shutting_down)
    return api_error{.status = 503,
                     .message = "the server is shutting down",
                     .type = "server_error",
                     .retry_after = 5};
  if (st.in_flight >= st.opts.max_in_flight)
    return api_error{.status = 429,
                     .message = fmt::format("the server is at its limit of {} requests in "
                                            "flight; retry shortly",
                                            st.opts.max_in_flight),
                     .type = "requests",
                     .code = "rate_limit_exceeded",
                     .retry_after = 1};
  if (const auto cap = st.opts.max_client_requests; cap != 0) {
    const auto it = st.in_flight_by_client.find(client);
    if (it != st.in_flight_by_client.end() && it->second >= cap)
      return api_error{.status = 429,
                       .message = fmt::format("this client has {} requests in flight, the most "
                                              "this server takes from one; retry when one ends",
                                              cap),
                       .type = "requests",
                       .code = "rate_limit_exceeded",
                       .retry_after = 1};
  }
  return std::nullopt;
}

} // namespace

void completion_session::start(server_state& st, http_connection& c, const http_request& req,
                               bool chat) {
  if (st.shutting_down)
    return st.respond_error(c, *refusal(st, c.client_address()));
  auto p = parse_completion(req.body, chat);
  if (!p)
    return st.respond_error(c, p.error());
  const auto it = st.models.find(p->model);
  if (it == st.models.end())
    return st.respond_error(c, st.unknown_model(p->model));
  if (auto no = refusal(st, c.client_address()))
    return st.respond_error(c, *no);
  auto plan = plan_completion(*p, it->first, it->second);
  if (!plan)
    return st.respond_error(c, plan.error());
  auto s = std::make_shared<completion_session>(st, c, std::move(*p), it->first, it->second,
                                                std::move(plan->silent_tokens),
                                                plan->request.prompt.size());
  ++st.in_flight;
  ++st.in_flight_by_client[c.client_address()];
  st.metrics.started(it->first);
  c.await_answer(s);
  s->bridge_ = start_generation(*st.sys, st.pool->proxy(), st.link, s, std::move(plan->request));
  // A weak handle keeps its ended bridge's memory: the list is pruned as it grows past what
  // runs, so that it stays the size of what is in flight.
  if (st.bridges.size() >= 2 * st.in_flight + 64)
    std::erase_if(st.bridges, [](const caf::weak_actor_ptr& w) { return w.lock() == nullptr; });
  st.bridges.push_back(caf::actor_cast<caf::weak_actor_ptr>(s->bridge_));
}

completion_session::completion_session(server_state& st, http_connection& c, completion_params p,
                                       const std::string& model, const served_text& text,
                                       std::set<std::int32_t> silent_tokens,
                                       std::size_t prompt_tokens)
    : st_(st), conn_(c.shared_from_this()), client_(c.client_address()), params_(std::move(p)),
      model_(model), shape_{params_.chat, random_id(params_.chat ? "chatcmpl-" : "cmpl-"), model,
                            unix_now()},
      decoder_(text.text.decoder()), stops_(params_.stop_strings),
      silent_(std::move(silent_tokens)), prompt_tokens_(prompt_tokens) {
  if (!params_.echo)
    return;
  // The prompt as the client gave it, or its ids written out (special tokens included).
  auto prompt = params_.prompt_tokens.empty()
                    ? params_.prompt
                    : text.text.tokens().decode(params_.prompt_tokens, true);
  (params_.stream ? echo_ : text_) = std::move(prompt);
}

void completion_session::submitted() {
  send_head();
}

// The head of a streamed answer, once, before its first event (whichever comes first: the
// pool's acceptance or a token).
void completion_session::send_head() {
  auto c = conn_.lock();
  if (!c || !params_.stream || head_sent_ || finished_)
    return;
  head_sent_ = true;
  header_list h = {{"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache"}};
  st_.add_cors(h);
  c->begin_stream(std::move(h));
}

void completion_session::refused(api_error e) {
  if (finished_)
    return;
  if (auto c = conn_.lock())
    st_.respond_error(*c, e);
  end();
}

void completion_session::token(std::int32_t token) {
  if (finished_)
    return;
  const auto now = clock_type::now();
  if (completion_tokens_ == 0)
    st_.metrics.first_token(model_, std::chrono::duration<double>(now - start_).count());
  else
    st_.metrics.between_tokens(model_, std::chrono::duration<double>(now - last_token_).count());
  last_token_ = now;
  ++completion_tokens_;
  if (silent_.count(token) != 0)
    return; // its text is not part of the answer; the instance ends the request
  const std::string piece = stops_.push(decoder_.feed(token));
  emit(piece, !stops_.stopped());
  if (stops_.stopped()) {
    caf::anon_send(bridge_, bridge_cancel_atom::value); // a stop string ends the work too
    complete("stop");
  }
}

void completion_session::done(const actors::generation_result& r) {
  if (finished_)
    return; // already answered (a stop string, or the client left)
  switch (r.reason) {
  case actors::finish_reason::stop:
  case actors::finish_reason::length: {
    // Text held back until now rides on the final chunk, so the stream keeps one event per
    // token plus the one that ends it.
    std::string rest = stops_.push(decoder_.finish());
    rest += stops_.flush();
    complete(r.reason == actors::finish_reason::stop || stops_.stopped() ? "stop" : "length", rest);
    break;
  }
  case actors::finish_reason::cancelled:
    // Only a shutdown cancels a request that is still being answered.
    fail(api_error{.status = 503,
                   .message = "the server shut down before this request finished",
                   .type = "server_error",
                   .retry_after = 5});
    break;
  default:
    fail(api_error{
        .status = 500, .message = "generation failed: " + r.message, .type = "server_error"});
  }
}

// Its client is gone: the request is cancelled and its KV freed.
void completion_session::abandon() {
  if (finished_)
    return;
  caf::anon_send(bridge_, bridge_cancel_atom::value);
  st_.metrics.finished(model_, "cancelled", prompt_tokens_, completion_tokens_);
  end();
}

void completion_session::cancel() {
  if (!finished_)
    caf::anon_send(bridge_, bridge_cancel_atom::value);
}

// Streams a piece of the answer (non-streaming: keeps it). `every_token` sends a chunk even when
// the token's text is held back (half a character, or maybe a stop string), so a client sees one
// event per token and can time each.
void completion_session::emit(const std::string& token_piece, bool every_token) {
  const std::string piece = std::exchange(echo_, {}) + token_piece;
  if (piece.empty() && !(every_token && params_.stream))
    return;
  send_head();
  if (!params_.stream) {
    text_ += piece;
    return;
  }
  if (auto c = conn_.lock())
    c->stream("data: " + shape_.chunk(piece, std::nullopt, first_chunk_, params_.include_usage) +
              "\n\n");
  first_chunk_ = false;
}

void completion_session::complete(std::string_view reason, std::string_view rest) {
  const usage_counts usage{prompt_tokens_, completion_tokens_};
  st_.metrics.finished(model_, std::string(reason), prompt_tokens_, completion_tokens_);
  auto c = conn_.lock();
  if (c && params_.stream) {
    send_head();
    std::string tail = "data: " +
                       shape_.chunk(std::exchange(echo_, {}) + std::string(rest), reason,
                                    first_chunk_, params_.include_usage) +
                       "\n\n";
    if (params_.include_usage)
      tail += "data: " + shape_.usage_chunk(usage) + "\n\n";
    tail += "data: [DONE]\n\n";
    c->end_stream(tail);
  } else if (c) {
    text_ += rest;
    st_.respond(*c, 200, shape_.full(text_, reason, usage));
  }
  end();
}

void completion_session::fail(const api_error& e) {
  st_.metrics.finished(model_, "error", prompt_tokens_, completion_tokens_);
  if (auto c = conn_.lock()) {
    if (head_sent_)
      c->end_stream("data: " + e.json() + "\n\ndata: [DONE]\n\n");
    else
      st_.respond_error(*c, e);
  }
  end();
}

void completion_session::end() {
  if (finished_)
    return;
  finished_ = true;
  --st_.in_flight;
  if (auto it = st_.in_flight_by_client.find(client_);
      it != st_.in_flight_by_client.end() && --it->second == 0)
    st_.in_flight_by_client.erase(it); // the map holds only clients with requests in flight
  if (st_.maybe_finish_shutdown)
    st_.maybe_finish_shutdown();
}

} // namespace aeg::server
