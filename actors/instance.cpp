#include "actors/instance.hpp"

#include "actors/coro_actor.hpp"
#include "actors/generation.hpp"
#include "actors/instance_state.hpp"
#include "actors/instance_support.hpp"
#include "actors/step_planner.hpp"
#include "gpu/event_awaiter.hpp"
#include "models/engine.hpp"

#include <caf/actor_clock.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <chrono>
#include <set>
#include <tuple>

namespace aeg::actors {

namespace {

using clock_type = std::chrono::steady_clock;

// The instance actor: a thin shell around a plain-C++ planner. At each step boundary it builds
// a view of its state, asks its switch policy, plans, applies the plan to the engine (nothing
// here decides) and awaits the step on the device through its mailbox.
class instance final : public typed_coro_actor<instance_actor> {
public:
  instance(caf::actor_config& cfg, std::shared_ptr<gpu::device> dev,
           std::vector<served_model> models, instance_options options,
           std::shared_ptr<gpu::kv_pool> host_kv)
      : typed_coro_actor<instance_actor>(cfg), dev_(std::move(dev)), options_(std::move(options)),
        host_kv_(std::move(host_kv)), state_(std::move(models), options_.max_batch_tokens) {
    // Prefill instances take their requests in the order the dispatcher gave them.
    policy_ = options_.policy                           ? options_.policy()
              : options_.role == instance_role::prefill ? sched::make_drain_first()
                                                        : sched::make_round_robin(16);
    set_down_handler([this](caf::down_msg& m) { sink_down(m.source); });
  }

  behavior_type make_behavior() override {
    spawn(start());
    return with_coroutines([this](generate_atom, generation_request r) { admit(std::move(r)); },
                           [this](decode_atom, decode_job job) { admit_decode(std::move(job)); },
                           [this](cancel_atom, std::uint64_t id) { cancel(id); },
                           [this](stats_atom) { return stats(); });
  }

  void on_exit() override {
    // Queued device work uses the engine's memory: the engine finishes its streams before it
    // frees anything (the only wait, and only at shutdown). Then the suspended step loop goes,
    // and the actor holds nothing that must be released on a particular thread. KV in the
    // shared host pool outlives this instance: it goes back first (the device pool goes with
    // the engine).
    if (engine_)
      for (auto& [id, seq] : state_.sequences())
        if (seq->kv.where == models::kv_handle::place::host)
          engine_->release(seq->kv);
    engine_.reset();
    typed_coro_actor<instance_actor>::on_exit();
    // The reason reaches each request: "... stopped: the GPU failed: cudaErrorIllegalAddress".
    end_all(finish_reason::unavailable,
            failure().empty() ? "the instance serving this request stopped"
                              : "the instance serving this request stopped: " + failure());
    host_kv_.reset();
  }

private:
  // --- start-up ---------------------------------------------------------------------------
  coro::task<void> start() {
    try {
      std::vector<served_model> served;
      for (const auto& m : state_.models())
        served.push_back(m.served);
      engine_ = make_instance_engine(dev_, host_kv_, served, options_);
      ready_ = true;
    } catch (const std::exception& e) {
      start_error_ = e.what();
      end_all(finish_reason::error, start_error_);
      // The reason is the instance's exit reason, which its monitors (the proxy, start-up
      // code) show as it is.
      quit(caf::make_error(caf::sec::runtime_error, start_error_));
      co_return;
    }
    wake();
  }

  // --- requests ---------------------------------------------------------------------------
  // The model `r` names, or why it cannot run here.
  result<std::size_t> model_for(const generation_request& r) const {
    if (!start_error_.empty())
      return fail(errc::unavailable, "the instance failed to start: " + start_error_);
    return state_.model_for(r);
  }

  // A new request waits for its prompt to be read.
  void admit(generation_request r) {
    const auto model = model_for(r);
    if (!model)
      return refuse(r, 0, model.error().message);
    if (auto why = state_.prompt_error(r, *model, options_.role == instance_role::prefill))
      return refuse(r, 0, std::move(*why));
    auto seq = std::make_unique<sequence>();
    seq->tokens = r.prompt;
    seq->generated = r.generated_before;
    seq->request = std::move(r);
    add_sequence(std::move(seq), *model, false);
  }

  // A request prefilled elsewhere joins its model's running batch with its KV. A refused job's
  // KV goes back to the host pool with the job's last copy (kv_in_flight).
  void admit_decode(decode_job job) {
    auto& r = job.request;
    if (!engine_ && start_error_.empty())
      return refuse(r, job.generated, "the instance is not serving yet");
    const auto model = model_for(r);
    if (!model)
      return refuse(r, job.generated, model.error().message);
    if (auto why = state_.job_error(job, *model))
      return refuse(r, job.generated, std::move(*why));
    auto seq = std::make_unique<sequence>();
    seq->tokens = std::move(job.tokens);
    seq->generated = job.generated;
    seq->kv = job.kv->claim();
    seq->request = std::move(r);
    add_sequence(std::move(seq), *model, true);
  }

  void add_sequence(std::unique_ptr<sequence> seq, std::size_t model, bool running) {
    const auto& sink = seq->request.sink;
    if (sink && monitored_.insert(sink.address()).second)
      monitor(sink);
    seq->model = model;
    if (!running && groups_.join(seq, state_))
      return; // it waits for its group's leader to read the prompt
    state_.add(std::move(seq), model, running, clock().now());
    wake();
  }

  void cancel(std::uint64_t id) {
    if (auto follower = groups_.take(id))
      return notify_done(*follower, finish_reason::cancelled, {}, clock().now());
    sequence* seq = state_.find(id);
    if (seq == nullptr)
      return; // already finished: nothing to free
    seq->cancelled = true;
    if (!seq->in_step)
      finish(*seq, finish_reason::cancelled);
  }

  // A sink that is gone can receive nothing more: its requests stop and free their KV.
  void sink_down(const caf::actor_addr& sink) {
    monitored_.erase(sink);
    std::vector<std::uint64_t> ids;
    for (auto& [id, seq] : state_.sequences())
      if (seq->request.sink.address() == sink)
        ids.push_back(id);
    for (auto id : groups_.ids_of_sink(sink))
      ids.push_back(id);
    for (auto id : ids)
      cancel(id);
  }

  instance_stats stats() const {
    instance_stats s = counts_;
    if (engine_) {
      add_engine_stats(s, *engine_);
      if (const auto staged = staged_model(state_, *engine_); staged < state_.models().size())
        s.staged = state_.models()[staged].served.name;
    }
    std::tie(s.running, s.waiting) = state_.counts();
    s.waiting += groups_.followers();
    s.active = active_ < state_.models().size() ? state_.models()[active_].served.name : "";
    s.ready = ready_;
    s.recent_switches = switch_log_.report(clock().now());
    return s;
  }

  // --- the step loop ----------------------------------------------------------------------
  void wake() {
    if (ready_ && !looping_ && state_.has_work()) {
      looping_ = true;
      spawn(step_loop());
    }
  }

  coro::task<void> step_loop() {
    std::size_t lost_races = 0;
    while (state_.has_work()) {
      // While the policy's decision stands and only the last step happened since, that step is
      // what a view and plan would give again (with views checked: planned anyway, compared).
      const bool checking = instance_state::checking_views();
      const auto now = clock().now(); // one reading: the view's time is the check's
      const bool holds =
          standing_.holds(state_.work_version(), active_, sched::seconds(now - turn_started_));
      const bool repeats = holds && standing_.repeats(state_, active_);
      if (repeats && !checking) {
        engine_->reclaim(); // what making the view does beside reading: finished transfers end
        ++counts_.steps_repeated;
        running_.step = standing_.last_step();
      } else {
        auto& view = make_view(now);
        const bool hidden = blocked_with_work(view); // before the plan, which may unblock them
        const auto decision =
            holds && !checking ? standing_.decision() : policy_->decide(policy_view(view));
        const auto version = state_.work_version();
        const auto plan = value_or_throw(plan_step_in_place(view, decision));
        if (holds && checking)
          counts_.steps_repeated += standing_.expect(decision, plan, repeats);
        if (!apply(plan)) {
          // The shared host pool lost room to another instance meanwhile: plan again on what
          // is there now. A plan that keeps missing is a bug, not a race.
          standing_.drop();
          if (++lost_races > 100)
            throw error_exception(
                error{errc::internal, "step plans keep missing the KV room they counted"});
          co_await yield();
          continue;
        }
        lost_races = 0;
        standing_.planned(plan, holds ? nullptr : &decision, hidden, version, active_,
                          refused_prefetch_);
        if (plan.step.empty()) {
          ++turn_steps_;
          if (auto on_its_way = engine_->kv_on_its_way();
              on_its_way && plan.idle == idle_kind::await_room)
            co_await *on_its_way; // room is coming back from a transfer: on the device
          else
            co_await yield();
          continue;
        }
        running_.step = plan.step;
      }
      if (!start_step())
        continue;
      // Resumes inside this actor, messages handled meanwhile: through the mailbox even when the
      // step is done already, or a device that keeps up would starve cancels and new requests.
      if (engine_->step_done().query())
        co_await yield();
      else
        co_await engine_->step_done();
      end_step();
    }
    looping_ = false;
  }

  // --- the view and the plan --------------------------------------------------------------
  step_view& make_view(clock_type::time_point now) {
    const std::size_t staged = staged_model(state_, *engine_);
    return state_.view({options_.max_batch_tokens, options_.max_seqs,
                        options_.role == instance_role::prefill, options_.swap_out_on_switch, 0},
                       gpu::kv_ledger_copy(engine_->device_ledger()),
                       gpu::kv_ledger_copy(engine_->host_ledger()), active_, staged, switch_time_,
                       turn_steps_, turn_started_, now);
  }

  // Applies `plan` in order. False when the shared host pool no longer had the room the plan
  // counted (another instance took it): the rest is dropped and the loop plans again.
  bool apply(const step_plan& plan) {
    refused_prefetch_ = step_view::none;
    if (plan.restart_turn)
      restart_turn();
    for (const auto& a : plan.actions)
      if (!std::visit([this](const auto& x) { return apply(x); }, a)) {
        state_.touch_all(); // the view holds actions that did not happen
        return false;
      }
    state_.touch(plan);
    return true;
  }

  sequence& seq(std::uint64_t id) { return state_.at(id); }

  bool apply(const activate_model& a) {
    const bool prefetched = value_or_throw(
        engine_->scale_up(state_.models()[a.model].served.image, options_.keep_resident));
    counts_.prefetches += prefetched;
    const auto& models = state_.models();
    const auto logged =
        switch_log_.began(clock().now(), active_ < models.size() ? models[active_].served.name : "",
                          models[a.model].served.name, prefetched);
    active_ = a.model;
    ++counts_.switches;
    restart_turn();
    track_scale_up(prefetched, logged);
    return true;
  }
  bool apply(const prefetch_model& a) { // no room: no prefetch; an error is the device failing
    if (!value_or_throw(engine_->prefetch(state_.models()[a.model].served.image)))
      refused_prefetch_ = a.model; // refused again while the active model stays
    return true;
  }
  bool apply(const swap_out_kv& a) { return room_or_throw(engine_->swap_out(seq(a.seq).kv)); }
  bool apply(const swap_in_kv& a) { return room_or_throw(engine_->swap_in(seq(a.seq).kv)); }
  bool apply(const reserve_kv& a) {
    auto& s = seq(a.seq);
    return room_or_throw(engine_->reserve(s.kv, state_.models()[s.model].kv, a.tokens));
  }
  bool apply(const preempt_seq& a) {
    engine_->release(seq(a.seq).kv);
    state_.requeue(seq(a.seq));
    ++counts_.preemptions;
    return true;
  }
  bool apply(const split_seq& a) {
    seq(a.seq).batch = a.batch;
    state_.work_changed();
    ++counts_.batch_splits;
    return true;
  }
  bool apply(const admit_seq& a) {
    state_.start(seq(a.seq), a.batch);
    return true;
  }
  bool apply(const fail_seq& a) {
    finish(seq(a.seq), finish_reason::error, a.message);
    return true;
  }

  void restart_turn() {
    turn_steps_ = 0;
    turn_started_ = clock().now();
  }

  // Times the scale-up that just started, without holding up the step loop; a cold one (not
  // prefetched) teaches the switch-time estimate. The turn's quota counts from when the weights
  // are in: the switch is the round's `c`, not part of the turn.
  void track_scale_up(bool prefetched, std::size_t logged) {
    spawn([](instance* self, gpu::event* ready, clock_type::time_point t0, std::size_t bytes,
             bool prefetched, std::size_t turn, std::size_t logged) -> coro::task<void> {
      co_await *ready;
      const auto now = self->clock().now();
      const auto took = std::chrono::duration<double>(now - t0);
      self->counts_.scale_up_seconds += took.count();
      self->switch_log_.scaled_up(logged, took.count());
      if (!prefetched)
        self->switch_time_.add(bytes, took);
      if (self->counts_.switches == turn)
        self->turn_started_ = now;
    }(this, &engine_->active_ready(), clock().now(), engine_->active()->bytes().size(), prefetched,
                                                                    counts_.switches, logged));
  }

  // --- the step ---------------------------------------------------------------------------
  // Enqueues `running_.step` (buffers kept from step to step); false when it failed (its
  // requests end with the error).
  bool start_step() {
    auto& r = running_;
    const bool want_logits = r.take(state_, engine_->computes_logits());
    if (auto enqueued = engine_->enqueue_step(r.steps, r.kvs, want_logits); !enqueued) {
      for (sequence* s : r.chosen) {
        s->in_step = false;
        finish(*s, finish_reason::error, "the forward step failed: " + enqueued.error().message);
      }
      return false;
    }
    r.started = clock().now();
    return true;
  }

  // The step's event came: its tokens go out.
  void end_step() {
    const auto& r = running_;
    const auto now = clock().now();
    const auto took = now - r.started;
    const double took_seconds = std::chrono::duration<double>(took).count();
    count_step(counts_, r.step, r.chosen, took_seconds);
    const auto costs = engine_->last_step_costs();
    state_.learn(r.step, r.chosen, active_, took, now);
    ++turn_steps_;
    const auto sampled = engine_->sampled();
    std::size_t next_token = 0;
    for (std::size_t i = 0; i < r.chosen.size(); ++i) {
      sequence& s = *r.chosen[i];
      s.in_step = false;
      s.last_step = counts_.steps;
      charge_step(s, took_seconds, costs);
      s.kv.tokens += r.step[i].feed;
      if (s.cancelled)
        finish(s, finish_reason::cancelled);
      else if (r.steps[i].sample)
        take_token(s, sampled[next_token],
                   token_logprobs_in(*engine_, s.request.logprobs, r.steps[i].sampling,
                                     sampled[next_token], next_token,
                                     state_.models()[s.model].served.image->config().vocab_size));
      next_token += r.steps[i].sample;
    }
  }

  // A prefill instance passes a request on once its first token is out: its KV goes to the
  // shared host pool and the request's sink finds it a decode instance.
  void hand_off(sequence& seq) {
    if (auto out = engine_->swap_out(seq.kv); !out)
      return finish(seq, finish_reason::error,
                    "cannot hand the request to a decode instance: " + out.error().message);
    send_unsent(seq, clock().now()); // its first token reaches the sink before the job
    auto job = decode_job_of(seq, host_kv_,
                             switch_time_.samples() > 0 ? switch_time_.bytes_per_second() : 0);
    state_.erase(seq);
    send_handoff(std::move(job), options_.handoff_desk, address());
  }

  void take_token(sequence& seq, std::int32_t token, models::token_logprobs lp) {
    if (seq.generated == seq.request.generated_before)
      share_prompt(seq); // its prompt is read: the rest of its group copy it
    ++counts_.tokens_generated;
    const auto& r = seq.request;
    if (std::find(r.stop_tokens.begin(), r.stop_tokens.end(), token) != r.stop_tokens.end())
      return finish(seq, finish_reason::stop);
    seq.tokens.push_back(token);
    ++seq.generated;
    const auto now = clock().now();
    (void)seq.deadlines.on_token(std::chrono::duration<double>(now - seq.arrived).count());
    deliver_token(seq, token, std::move(lp), now);
    const auto& cfg = state_.models()[seq.model].served.image->config();
    if (seq.generated >= r.max_tokens || seq.tokens.size() >= cfg.context_length)
      return finish(seq, finish_reason::length);
    if (options_.role == instance_role::prefill)
      hand_off(seq);
  }

  // The group `leader` read the prompt for copies its KV, all but the last prompt token's, which
  // each reads itself to draw its own first token; one that finds no room reads the prompt.
  void share_prompt(sequence& leader) {
    for (auto& f : groups_.release(leader)) {
      // No room is no copy; a device failure ends the instance, as everywhere.
      const bool forked = f->tokens.size() > 1 &&
                          leader.kv.where == models::kv_handle::place::device &&
                          room_or_throw(engine_->fork_kv(leader.kv, f->kv, f->tokens.size() - 1));
      f->shared_prompt = forked;
      add_sequence(std::move(f), leader.model, forked);
      counts_.prompts_shared += forked;
    }
  }

  // Ends `seq`: its KV goes back (once transfers and steps are done with it) and its sink hears
  // why.
  void finish(sequence& seq, finish_reason reason, const std::string& message = {}) {
    for (auto& f : groups_.release(seq)) // it ended before reading the prompt for them
      add_sequence(std::move(f), seq.model, false);
    if (engine_)
      engine_->release(seq.kv);
    notify_done(seq, reason, message, clock().now());
    state_.erase(seq);
  }

  // Ends every request without touching the engine (it failed to start, or is gone).
  void end_all(finish_reason reason, const std::string& why) {
    const auto now = clock().now();
    for (auto& [id, seq] : state_.sequences())
      notify_done(*seq, reason, why, now);
    for (const auto& follower : groups_.take_all())
      notify_done(*follower, reason, why, now);
    state_.clear();
  }

  std::shared_ptr<gpu::device> dev_;
  instance_options options_;
  std::shared_ptr<gpu::kv_pool> host_kv_;
  instance_state state_;
  std::unique_ptr<sched::switch_policy> policy_;
  step_in_flight running_;                         // the step on the device
  standing_turn standing_;                         // the policy's last decision while it stands
  std::size_t refused_prefetch_ = step_view::none; // by the engine, in the last plan applied
  sched::switch_estimator switch_time_; // bytes over bandwidth, corrected by measured switches
  std::unique_ptr<models::engine> engine_;
  std::set<caf::actor_addr> monitored_;
  std::size_t active_ = static_cast<std::size_t>(-1);
  std::size_t turn_steps_ = 0;
  clock_type::time_point turn_started_{}; // on the actor clock, set as each turn starts
  bool ready_ = false;
  bool looping_ = false;
  std::string start_error_;
  instance_stats counts_; // its counters (steps, switches, ...), the rest filled in when asked
  switch_log switch_log_;
  prompt_groups groups_;
};

} // namespace

instance_actor spawn_instance(caf::actor_system& sys, std::shared_ptr<gpu::device> dev,
                              std::vector<served_model> models, instance_options options,
                              std::shared_ptr<gpu::kv_pool> host_kv) {
  return sys.spawn<instance>(std::move(dev), std::move(models), std::move(options),
                             std::move(host_kv));
}

instance_actor spawn_instance(caf::actor_system& sys, std::shared_ptr<gpu::device> dev,
                              std::shared_ptr<const models::model_image> image,
                              instance_options options) {
  std::vector<served_model> models;
  models.push_back({image->config().name, std::move(image)});
  return spawn_instance(sys, std::move(dev), std::move(models), std::move(options), nullptr);
}

} // namespace aeg::actors
