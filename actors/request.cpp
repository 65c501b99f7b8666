#include "actors/request.hpp"

#include "actors/ask.hpp"
#include "actors/coro_actor.hpp"

#include <caf/actor_system.hpp>
#include <caf/send.hpp>

#include <chrono>
#include <optional>

namespace aeg::actors {

namespace {

// How long the proxy may take to find a request a new home.
constexpr std::chrono::seconds placement_timeout{30};

class pool_request final : public typed_coro_actor<request_actor> {
public:
  pool_request(caf::actor_config& cfg, pool_proxy_actor proxy, std::uint64_t id,
               generation_request client, catalog_entry model)
      : typed_coro_actor<request_actor>(cfg), proxy_(std::move(proxy)), id_(id),
        client_(std::move(client)), model_(std::move(model)) {
    tokens_ = client_.prompt;
    generated_ = client_.generated_before;
    set_down_handler([this](caf::down_msg& m) {
      if (m.source == instance_.address()) {
        instance_lost();
      } else if (parked_ && m.source == parked_->desk.address()) {
        parked_.reset(); // its node is gone, and the KV with it
        instance_lost();
      }
    });
  }

  behavior_type make_behavior() override {
    return with_coroutines(
        [this](placed_atom, instance_actor inst) { place(std::move(inst)); },
        [this](token_atom, std::uint64_t, std::int32_t token, models::token_logprobs& lp) {
          on_token(token, std::move(lp));
        },
        [this](tokens_atom, std::uint64_t, token_batch& b) { on_tokens(std::move(b)); },
        [this](done_atom, generation_result r) { on_done(std::move(r)); },
        [this](handoff_atom, decode_job job) { on_handoff(std::move(job)); },
        [this](handoff_atom, parked_job p) { on_parked(std::move(p)); },
        [this](cancel_atom) { on_cancel(); });
  }

  void on_exit() override {
    // Never leave KV behind: a job in transit is released here at the latest.
    in_transit_.reset();
    release_parked();
    typed_coro_actor<request_actor>::on_exit();
  }

private:
  void place(instance_actor inst) {
    if (instance_)
      demonitor(instance_.address());
    instance_ = std::move(inst);
    monitor(instance_);
    if (cancelled_) // cancelled while being placed: the instance must drop it
      send(instance_, cancel_atom::value, id_);
  }

  void on_token(std::int32_t token, models::token_logprobs lp) {
    if (finished_)
      return;
    take(token, clock().now());
    if (client_.sink && client_.delivery == token_delivery::each)
      send(client_.sink, token_atom::value, client_.id, token, std::move(lp));
    else if (client_.delivery == token_delivery::batched)
      forward(token_batch{{token}, {0}});
  }

  // Tokens our instance sent together, each with its age: timed as if each had come alone.
  void on_tokens(token_batch b) {
    if (finished_)
      return;
    const auto now = clock().now();
    for (std::size_t i = 0; i < b.tokens.size(); ++i) // a token without an age: made now
      take(b.tokens[i], now - std::chrono::nanoseconds(i < b.ages_ns.size() ? b.ages_ns[i] : 0));
    if (client_.delivery == token_delivery::batched)
      forward(std::move(b));
    else if (client_.sink && client_.delivery == token_delivery::each)
      for (auto t : b.tokens)
        send(client_.sink, token_atom::value, client_.id, t, models::token_logprobs{});
  }

  // Keeps `token`, made at `at`: its time for the pool's metrics, the token for a re-placement.
  void take(std::int32_t token, std::chrono::steady_clock::time_point at) {
    if (cancelled_ && instance_ && !cancel_again_) {
      // Our cancel overtook the job on its way through a desk: the decoder did not know us yet.
      cancel_again_ = true;
      send(instance_, cancel_atom::value, id_);
    }
    times_.push_back(std::chrono::duration<double>(at - client_.arrived).count());
    tokens_.push_back(token);
    ++generated_;
  }

  void forward(token_batch b) {
    if (client_.sink)
      send(client_.sink, tokens_atom::value, client_.id, std::move(b));
  }

  void on_done(generation_result r) {
    if (finished_)
      return;
    if (r.reason == finish_reason::unavailable)
      return instance_lost(); // its instance is stopping: place it again
    service_ += r.service;
    finish(r.reason, std::move(r.message));
  }

  // The prefill instance is done with us: find a decode instance for the KV we now carry.
  void on_handoff(decode_job job) {
    service_ += job.service;
    in_transit_ = std::move(job);
    after_prefill();
  }

  // The prefill instance is on another node: our KV waits there, at its node's desk.
  void on_parked(parked_job p) {
    // The desk's message may come after its instance's end, which placed us again: a hand-off
    // from an instance we no longer run on, or a second one, is dropped (its KV freed there).
    if (!instance_ || p.prefill != instance_.address() || parked_ || in_transit_) {
      caf::anon_send(p.desk, cancel_atom::value, p.ticket);
      return;
    }
    service_ += p.service;
    parked_ = std::move(p);
    monitor(parked_->desk); // should its node go, we prefill again elsewhere
    after_prefill();
  }

  // The prefill instance is no longer ours, and our KV is in hand or parked: on to decoding.
  void after_prefill() {
    if (instance_) {
      demonitor(instance_.address());
      instance_ = nullptr;
    }
    if (cancelled_)
      return finish(finish_reason::cancelled, {});
    spawn(find_decoder());
  }

  // Tells the desk to drop our parked job, if we have one (its KV goes back to its node's pool).
  void release_parked() {
    if (!parked_)
      return;
    demonitor(parked_->desk.address());
    caf::anon_send(parked_->desk, cancel_atom::value, parked_->ticket);
    parked_.reset();
  }

  coro::task<void> find_decoder() {
    const bool parked = parked_.has_value();
    const std::size_t prompt = parked ? parked_->prompt_tokens : in_transit_->request.prompt.size();
    const double seconds = parked ? parked_->prefill_seconds : in_transit_->prefill_seconds;
    const double rate =
        parked ? parked_->switch_bytes_per_second : in_transit_->switch_bytes_per_second;
    auto decoder = co_await ask<instance_actor>(
        this, proxy_, placement_timeout, place_decode_atom::value, id_, prompt, seconds, rate);
    if (finished_ || (parked ? !parked_ : !in_transit_))
      co_return;
    if (!decoder) {
      // The prefill's node lost its decode instances: prefill once more on another node.
      if (!decode_retried_) {
        decode_retried_ = true;
        release_parked();
        in_transit_.reset();
        instance_lost();
        co_return;
      }
      finish(finish_reason::error,
             "no decode instance took the request: " + decoder.error().message);
      co_return;
    }
    if (parked) { // the desk gives the job to the decoder, on their node
      demonitor(parked_->desk.address());
      caf::anon_send(parked_->desk, decode_atom::value, parked_->ticket, *decoder);
      parked_.reset();
    } else {
      in_transit_->request.sink = handle();
      in_transit_->request.handoff = handle();
      // Should the decoder stop before reading it, the dropped job frees its KV.
      send(*decoder, decode_atom::value, std::move(*in_transit_));
      in_transit_.reset();
    }
    place(std::move(*decoder));
  }

  void on_cancel() {
    if (finished_)
      return;
    cancelled_ = true;
    if (in_transit_ || parked_)
      return finish(finish_reason::cancelled, {});
    if (instance_)
      send(instance_, cancel_atom::value, id_); // it answers with done(cancelled)
    else
      // Nowhere to run: queued (the proxy took it off its queue before telling us), or between
      // a lost instance and the next. An instance that gets it later sees its sink is gone.
      finish(finish_reason::cancelled, {});
  }

  // Our instance died mid-request: prefill our prompt and the tokens so far again elsewhere.
  void instance_lost() {
    if (finished_)
      return;
    instance_ = nullptr;
    if (cancelled_)
      return finish(finish_reason::cancelled, {});
    rerouted_ = true;
    generation_request again = client_;
    again.id = id_;
    again.prompt = tokens_;
    again.generated_before = generated_;
    again.sink = handle();
    again.delivery = relayed(client_.delivery);
    again.handoff = handle();
    if (again.generated_before >= again.max_tokens)
      return finish(finish_reason::length, {});
    spawn(place_again(std::move(again)));
  }

  coro::task<void> place_again(generation_request again) {
    auto placed =
        co_await ask<void>(this, proxy_, placement_timeout, replace_atom::value, id_, again);
    if (!placed)
      finish(finish_reason::error,
             "its instance stopped and it could not be placed again: " + placed.error().message);
  }

  void finish(finish_reason reason, std::string message) {
    if (finished_)
      return;
    finished_ = true;
    in_transit_.reset(); // the job's KV goes back to the host pool with its last copy
    release_parked();
    if (instance_ && reason == finish_reason::cancelled)
      send(instance_, cancel_atom::value, id_);
    // A monitor is registered with the instance, and keeps this actor's memory alive there
    // until the instance ends: a long-running instance would gather one per request.
    if (instance_)
      demonitor(instance_.address());
    request_metrics m;
    m.id = client_.id;
    m.model = model_.name;
    m.reason = reason;
    m.prompt_tokens = client_.prompt.size();
    m.token_times = times_;
    m.ttft_slo = model_.ttft_seconds;
    m.tbt_slo = model_.tbt_seconds;
    m.tokens_on_time = tokens_on_time(times_, m.ttft_slo, m.tbt_slo);
    m.seconds_on_schedule = seconds_on_schedule(times_, m.ttft_slo, m.tbt_slo);
    m.rerouted = rerouted_;
    m.message = message;
    m.end_seconds = std::chrono::duration<double>(clock().now() - client_.arrived).count();
    m.service = service_;
    // The proxy first: a client that asks it for metrics once it heard the end finds this one.
    send(proxy_, finished_atom::value, id_, std::move(m));
    if (client_.sink)
      send(client_.sink, done_atom::value,
           generation_result{client_.id, reason, client_.prompt.size(),
                             generated_ - client_.generated_before, std::move(message), service_});
    quit();
  }

  pool_proxy_actor proxy_;
  std::uint64_t id_;
  generation_request client_;
  catalog_entry model_;
  instance_actor instance_;
  std::optional<decode_job> in_transit_;
  std::optional<parked_job> parked_; // our decode job waits at another node's desk
  std::vector<std::int32_t> tokens_;
  std::size_t generated_ = 0;
  std::vector<double> times_;
  service_times service_; // the steps of every instance that told us
  bool finished_ = false, cancelled_ = false, rerouted_ = false;
  bool decode_retried_ = false, cancel_again_ = false;
};

} // namespace

request_actor spawn_request(caf::actor_system& sys, pool_proxy_actor proxy, std::uint64_t id,
                            generation_request client, const catalog_entry& model) {
  return sys.spawn<pool_request>(std::move(proxy), id, std::move(client), model);
}

} // namespace aeg::actors
