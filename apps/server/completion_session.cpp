#include "apps/server/completion_session.hpp"

#include "apps/server/completion_request.hpp"

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <random>
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
std::optional<api_error> refusal(const server_state& st, const std::string& client, std::size_t n) {
  if (st.shutting_down)
    return api_error{.status = 503,
                     .message = "the server is shutting down",
                     .type = "server_error",
                     .retry_after = 5};
  // More choices than the server ever takes at once can never run: not a reason to retry.
  const std::size_t cap = st.opts.max_client_requests;
  if (const std::size_t most =
          cap != 0 ? std::min(cap, st.opts.max_in_flight) : st.opts.max_in_flight;
      n > most)
    return api_error{.message = fmt::format("n = {} choices are more than the {} requests this "
                                            "server runs at once for one client; ask for fewer",
                                            n, most),
                     .param = "n"};
  if (st.in_flight + n > st.opts.max_in_flight)
    return api_error{.status = 429,
                     .message = fmt::format("the server is at its limit of {} requests in "
                                            "flight; retry shortly (each of a request's n "
                                            "choices counts)",
                                            st.opts.max_in_flight),
                     .type = "requests",
                     .code = "rate_limit_exceeded",
                     .retry_after = 1};
  if (cap != 0) {
    const auto it = st.in_flight_by_client.find(client);
    const std::size_t now = it != st.in_flight_by_client.end() ? it->second : 0;
    if (now + n > cap)
      return api_error{.status = 429,
                       .message = fmt::format("this client would have {} requests in flight "
                                              "(each of n choices counts), over the {} this "
                                              "server takes from one; retry when one ends",
                                              now + n, cap),
                       .type = "requests",
                       .code = "rate_limit_exceeded",
                       .retry_after = 1};
  }
  return std::nullopt;
}

// A number no other completion's choices carry (across restarts too, as workers outlive a
// front end).
std::uint64_t new_prompt_group() {
  static const std::uint64_t base =
      (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  static std::atomic<std::uint64_t> next{0};
  return (base + next.fetch_add(1)) | 1; // never 0, which means no group
}

} // namespace

void completion_session::start(server_state& st, http_connection& c, const http_request& req,
                               bool chat) {
  if (st.shutting_down)
    return st.respond_error(c, *refusal(st, c.client_address(), 1));
  auto p = parse_completion(req.body, chat);
  if (!p)
    return st.respond_error(c, p.error());
  const auto it = st.models.find(p->model);
  if (it == st.models.end())
    return st.respond_error(c, st.unknown_model(p->model));
  if (auto no = refusal(st, c.client_address(), p->n))
    return st.respond_error(c, *no);
  auto plan = plan_completion(*p, it->first, it->second);
  if (!plan)
    return st.respond_error(c, plan.error());
  auto s = std::make_shared<completion_session>(st, c, std::move(*p), it->first, it->second,
                                                std::move(plan->silent_tokens),
                                                plan->request.prompt.size());
  const std::size_t n = s->choices_.size();
  st.in_flight += n;
  st.in_flight_by_client[c.client_address()] += n;
  c.await_answer(s);
  s->submit(std::move(plan->request));
}

completion_session::completion_session(server_state& st, http_connection& c, completion_params p,
                                       const std::string& model, const served_text& text,
                                       std::set<std::int32_t> silent_tokens,
                                       std::size_t prompt_tokens)
    : st_(st), conn_(c.shared_from_this()), client_(c.client_address()), params_(std::move(p)),
      model_(model),
      tokens_(text.text.tokens()), shape_{params_.chat,
                                          random_id(params_.chat ? "chatcmpl-" : "cmpl-"), model,
                                          unix_now()},
      silent_(std::move(silent_tokens)), prompt_tokens_(prompt_tokens) {
  // With echo, each choice's text begins with the prompt as the client gave it, or its ids
  // written out (special tokens included).
  const std::string prompt = !params_.echo ? std::string()
                             : params_.prompt_tokens.empty()
                                 ? params_.prompt
                                 : tokens_.decode(params_.prompt_tokens, true);
  for (std::size_t i = 0; i < params_.n; ++i) {
    auto ch = std::make_shared<choice>(*this, i, text.text.decoder());
    (params_.stream ? ch->echo : ch->out.text) = prompt;
    if (params_.logprobs >= 0)
      ch->out.logprobs.emplace();
    choices_.push_back(std::move(ch));
  }
}

completion_session::choice::choice(completion_session& s, std::size_t i, models::stream_decoder d)
    : session(s), index(i), decoder(std::move(d)), stops(s.params_.stop_strings) {}

// Each choice is a request of its own in the pool, with its own random stream; together they
// are one prompt group, so that an instance they reach together reads the prompt once.
void completion_session::submit(actors::generation_request r) {
  if (choices_.size() > 1)
    r.prompt_group = new_prompt_group();
  for (auto& ch : choices_) {
    auto one = r;
    one.sampling.seed = r.sampling.seed + ch->index;
    st_.metrics.started(model_);
    ch->bridge = start_generation(*st_.sys, st_.pool->proxy(), st_.link, ch, std::move(one));
    // A weak handle keeps its ended bridge's memory: the list is pruned as it grows past what
    // runs, so that it stays the size of what is in flight.
    if (st_.bridges.size() >= 2 * st_.in_flight + 64)
      std::erase_if(st_.bridges, [](const caf::weak_actor_ptr& w) { return w.lock() == nullptr; });
    st_.bridges.push_back(caf::actor_cast<caf::weak_actor_ptr>(ch->bridge));
  }
}

// Every callback holds the session: answering may drop the connection's reference to it.
void completion_session::choice::submitted() {
  const auto keep = session.shared_from_this();
  session.send_head();
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

void completion_session::choice::refused(api_error e) {
  const auto keep = session.shared_from_this();
  if (!session.finished_)
    session.fail(e);
}

void completion_session::choice::token(std::int32_t token, const models::token_logprobs& lp) {
  const auto keep = session.shared_from_this();
  auto& s = session;
  if (s.finished_ || ended)
    return;
  const auto now = clock_type::now();
  if (tokens == 0)
    s.st_.metrics.first_token(s.model_, std::chrono::duration<double>(now - s.start_).count());
  else
    s.st_.metrics.between_tokens(s.model_, std::chrono::duration<double>(now - last_token).count());
  last_token = now;
  ++tokens;
  if (s.silent_.count(token) != 0)
    return; // its text is not part of the answer; the instance ends the request
  auto logprobs = s.entries(token, lp, *this);
  const std::string piece = stops.push(decoder.feed(token));
  s.emit(*this, piece, !stops.stopped(), std::move(logprobs));
  if (stops.stopped()) {
    caf::anon_send(bridge, bridge_cancel_atom::value); // a stop string ends the work too
    s.complete(*this, "stop");
  }
}

void completion_session::choice::done(const actors::generation_result& r) {
  const auto keep = session.shared_from_this();
  auto& s = session;
  if (s.finished_ || ended)
    return; // already answered (a stop string, or the client left)
  switch (r.reason) {
  case actors::finish_reason::stop:
  case actors::finish_reason::length: {
    // Text held back until now rides on the choice's final chunk, so the stream keeps one
    // event per token plus the one that ends it.
    std::string rest = stops.push(decoder.finish());
    rest += stops.flush();
    s.complete(*this,
               r.reason == actors::finish_reason::stop || stops.stopped() ? "stop" : "length",
               rest);
    break;
  }
  case actors::finish_reason::cancelled:
    // Only a shutdown cancels a request that is still being answered.
    s.fail(api_error{.status = 503,
                     .message = "the server shut down before this request finished",
                     .type = "server_error",
                     .retry_after = 5});
    break;
  default:
    s.fail(api_error{
        .status = 500, .message = "generation failed: " + r.message, .type = "server_error"});
  }
}

// The token's log-probabilities as the answer shows them (none when not asked).
std::vector<logprob_entry>
completion_session::entries(std::int32_t token, const models::token_logprobs& lp, choice& c) const {
  if (params_.logprobs < 0 || !lp.asked)
    return {};
  logprob_entry e{std::string(tokens_.piece(token)), lp.logprob, {}, c.characters};
  c.characters += text_characters(e.token);
  for (std::size_t i = 0; i < lp.top_tokens.size() && i < lp.top_logprobs.size(); ++i)
    e.top.emplace_back(std::string(tokens_.piece(lp.top_tokens[i])), lp.top_logprobs[i]);
  return {std::move(e)};
}

// Its client is gone: every choice is cancelled and its KV freed.
void completion_session::abandon() {
  const auto keep = shared_from_this();
  if (finished_)
    return;
  for (const auto& ch : choices_)
    if (!ch->ended)
      st_.metrics.finished(model_, "cancelled", prompt_tokens_, ch->tokens);
  cancel_all();
  end();
}

void completion_session::cancel() {
  if (!finished_)
    cancel_all();
}

void completion_session::cancel_all() {
  for (const auto& ch : choices_)
    if (!ch->ended)
      caf::anon_send(ch->bridge, bridge_cancel_atom::value);
}

// Streams a piece of a choice's answer (non-streaming: keeps it). `every_token` sends a chunk
// even when the token's text is held back (half a character, or maybe a stop string), so a
// client sees one event per token and can time each.
void completion_session::emit(choice& c, const std::string& token_piece, bool every_token,
                              std::vector<logprob_entry> logprobs) {
  const std::string piece = std::exchange(c.echo, {}) + token_piece;
  if (!params_.stream) {
    c.out.text += piece;
    if (c.out.logprobs)
      std::move(logprobs.begin(), logprobs.end(), std::back_inserter(*c.out.logprobs));
    return;
  }
  if (piece.empty() && !every_token && logprobs.empty())
    return;
  send_head();
  if (auto conn = conn_.lock())
    conn->stream("data: " +
                 shape_.chunk(c.index, piece, std::nullopt, c.first_chunk, params_.include_usage,
                              params_.logprobs >= 0 ? &logprobs : nullptr) +
                 "\n\n");
  c.first_chunk = false;
}

void completion_session::complete(choice& c, std::string_view reason, std::string_view rest) {
  c.ended = true;
  ++ended_;
  st_.metrics.finished(model_, std::string(reason), prompt_tokens_, c.tokens);
  c.out.finish_reason = reason;
  if (params_.stream) {
    send_head();
    if (auto conn = conn_.lock())
      conn->stream("data: " +
                   shape_.chunk(c.index, std::exchange(c.echo, {}) + std::string(rest), reason,
                                c.first_chunk, params_.include_usage) +
                   "\n\n");
  } else {
    c.out.text += rest;
  }
  if (ended_ == choices_.size())
    answer();
}

// Every choice has ended: the usage and the end of the stream, or the whole answer.
void completion_session::answer() {
  usage_counts usage{prompt_tokens_, 0};
  std::vector<choice_text> outs;
  for (const auto& ch : choices_) {
    usage.completion_tokens += ch->tokens;
    outs.push_back(std::move(ch->out));
  }
  if (auto c = conn_.lock()) {
    if (params_.stream) {
      std::string tail;
      if (params_.include_usage)
        tail += "data: " + shape_.usage_chunk(usage) + "\n\n";
      c->end_stream(tail + "data: [DONE]\n\n");
    } else {
      st_.respond(*c, 200, shape_.full(outs, usage));
    }
  }
  end();
}

void completion_session::fail(const api_error& e) {
  for (const auto& ch : choices_)
    if (!ch->ended)
      st_.metrics.finished(model_, "error", prompt_tokens_, ch->tokens);
  cancel_all();
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
  const std::size_t n = choices_.size();
  st_.in_flight -= n;
  if (auto it = st_.in_flight_by_client.find(client_); it != st_.in_flight_by_client.end()) {
    it->second -= std::min(it->second, n);
    if (it->second == 0)
      st_.in_flight_by_client.erase(it); // the map holds only clients with requests in flight
  }
  if (st_.maybe_finish_shutdown)
    st_.maybe_finish_shutdown();
}

} // namespace aeg::server
