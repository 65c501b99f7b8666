#include "actors/instance.hpp"

#include "actors/coro_actor.hpp"
#include "actors/generation.hpp"
#include "actors/sched/estimators.hpp"
#include "gpu/event_awaiter.hpp"
#include "models/engine.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <limits>
#include <set>
#include <unordered_map>

namespace aeg::actors {

namespace {

using clock_type = std::chrono::steady_clock;

struct sequence {
  generation_request request;
  std::size_t model = 0;
  std::vector<std::int32_t> tokens; // prompt, then what was generated
  std::size_t generated = 0;
  models::kv_handle kv;    // kv.tokens: leading tokens whose K and V are stored
  std::uint64_t batch = 0; // which of its model's batches it decodes in
  bool cancelled = false;
  bool in_step = false;
  std::uint64_t last_step = 0; // for picking the least recently used to swap out
  clock_type::time_point arrived = clock_type::now();
  double prefill_seconds = 0; // steps spent on its prompt (measured on a prefill instance)

  std::size_t pending() const { return tokens.size() - kv.tokens; }
};

// Per served model: its image and its requests.
struct model_state {
  served_model served;
  kernels::kv_geometry kv;
  sched::decode_estimator decode_time; // fitted from this model's measured decode steps
  std::deque<sequence*> running;       // holding KV (device or host), admission order
  std::deque<sequence*> waiting;       // not yet holding KV
  std::uint64_t work_since = 0;        // order in which models got work (for the policy's view)
  // Batches: one, until the running requests' KV outgrows the device; then the overflow becomes
  // a batch of its own, with its own turns.
  std::uint64_t batch = 0;           // the batch this model's turns serve now
  std::uint64_t batch_ids = 0;       // the last batch id given out
  std::uint64_t overflow = no_batch; // where this turn's overflow goes (none yet)
  // Its last step found nothing it could run (no KV room for any of its requests): the policy
  // passes it over until a step of some model runs, which may free room.
  bool blocked = false;
  static constexpr std::uint64_t no_batch = static_cast<std::uint64_t>(-1);
};

// "12 MiB", or "192 KiB" for pools under a MiB (tests and tiny topologies have them).
std::string size_text(std::size_t bytes) {
  return bytes >= (std::size_t{1} << 20) ? std::to_string(bytes >> 20) + " MiB"
                                         : std::to_string(bytes >> 10) + " KiB";
}

// The batches `m`'s requests with KV form, in id order.
std::vector<std::uint64_t> batches_of(const model_state& m) {
  std::vector<std::uint64_t> ids;
  for (const sequence* s : m.running)
    ids.push_back(s->batch);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

class instance final : public coro_actor {
public:
  instance(caf::actor_config& cfg, std::shared_ptr<gpu::device> dev,
           std::vector<served_model> models, instance_options options,
           std::shared_ptr<gpu::kv_pool> host_kv)
      : coro_actor(cfg), dev_(std::move(dev)), options_(std::move(options)),
        host_kv_(std::move(host_kv)) {
    for (auto& m : models) {
      model_state st;
      st.kv = m.image->config().kv(m.image->format().kv_type());
      st.served = std::move(m);
      models_.push_back(std::move(st));
    }
    // Prefill instances take their requests in the order the dispatcher gave them.
    policy_ = options_.policy                           ? options_.policy()
              : options_.role == instance_role::prefill ? sched::make_drain_first()
                                                        : sched::make_round_robin(16);
    set_down_handler([this](caf::down_msg& m) { sink_down(m.source); });
  }

  caf::behavior make_behavior() override {
    spawn(start());
    return with_coroutines([this](generate_atom, generation_request& r) { admit(std::move(r)); },
                           [this](decode_atom, decode_job& job) { admit_decode(std::move(job)); },
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
      for (auto& [id, seq] : seqs_)
        if (seq->kv.where == models::kv_handle::place::host)
          engine_->release(seq->kv);
    engine_.reset();
    coro_actor::on_exit();
    // The reason reaches each request: "... stopped: the GPU failed: cudaErrorIllegalAddress".
    const std::string why = failure().empty()
                                ? "the instance serving this request stopped"
                                : "the instance serving this request stopped: " + failure();
    for (auto& [id, seq] : seqs_)
      notify_done(*seq, finish_reason::unavailable, why);
    for (auto& m : models_) {
      m.running.clear();
      m.waiting.clear();
    }
    seqs_.clear();
    host_kv_.reset();
  }

private:
  // --- start-up -------------------------------------------------------------------------
  coro::task<void> start() {
    try {
      if (models_.empty())
        throw error_exception(error{errc::invalid_argument, "an instance needs a model"});
      std::vector<models::model_footprint> footprints;
      for (const auto& m : models_)
        footprints.push_back(models::footprint_of(*m.served.image));
      const auto eo = engine_options_for(footprints, options_, dev_->free_bytes());
      prompt_tokens_beside_decodes_ = options_.max_batch_tokens;
      if (!host_kv_) {
        std::size_t host_bytes = options_.host_kv_bytes;
        if (host_bytes == 0)
          host_bytes = options_.kv_bytes != 0 ? options_.kv_bytes : std::size_t{256} << 20;
        host_kv_ = std::make_shared<gpu::kv_pool>(value_or_throw(dev_->allocate_pinned(host_bytes)),
                                                  eo.slab_bytes);
      }
      std::vector<models::llama_config> configs;
      for (const auto& f : footprints)
        configs.push_back(f.config);
      engine_ = value_or_throw(
          models::engine::create(dev_, host_kv_, models::largest_shape(configs), eo));
      ready_ = true;
    } catch (const std::exception& e) {
      start_error_ = e.what();
      for (auto& [id, seq] : seqs_)
        notify_done(*seq, finish_reason::error, start_error_);
      seqs_.clear();
      for (auto& m : models_) {
        m.running.clear();
        m.waiting.clear();
      }
      // The reason is the instance's exit reason, which its monitors (the proxy, start-up
      // code) show as it is.
      quit(caf::make_error(caf::sec::runtime_error, start_error_));
      co_return;
    }
    wake();
    co_return;
  }

  // --- requests -------------------------------------------------------------------------
  void admit(generation_request r) {
    const auto id = r.id;
    auto reject = [&](std::string why) {
      if (r.sink)
        caf::anon_send(
            r.sink, done_atom::value,
            generation_result{id, finish_reason::error, r.prompt.size(), 0, std::move(why)});
    };
    if (!start_error_.empty())
      return reject("the instance failed to start: " + start_error_);
    std::size_t model = models_.size();
    if (r.model.empty() && models_.size() == 1)
      model = 0;
    for (std::size_t i = 0; i < models_.size() && model == models_.size(); ++i)
      if (models_[i].served.name == r.model)
        model = i;
    if (model == models_.size()) {
      std::string names;
      for (const auto& m : models_)
        names += (names.empty() ? "" : ", ") + m.served.name;
      return reject("this instance does not serve model '" + r.model + "'; it serves " + names);
    }
    const auto& cfg = models_[model].served.image->config();
    if (seqs_.count(id) != 0)
      return reject("request id " + std::to_string(id) + " is already in use on this instance");
    if (r.prompt.empty())
      return reject("the prompt is empty");
    if (r.prompt.size() >= cfg.context_length)
      return reject("the prompt has " + std::to_string(r.prompt.size()) +
                    " tokens; the context holds " + std::to_string(cfg.context_length));
    for (auto t : r.prompt)
      if (t < 0 || static_cast<std::size_t>(t) >= cfg.vocab_size)
        return reject("token id " + std::to_string(t) + " is outside the vocabulary");
    if (r.max_tokens <= r.generated_before)
      return reject("max_tokens must be at least 1 more than the tokens already generated");
    if (r.sink && monitored_.insert(r.sink.address()).second)
      monitor(r.sink);
    auto seq = std::make_unique<sequence>();
    if (r.arrived != clock_type::time_point{})
      seq->arrived = r.arrived; // deadlines count from the client's arrival, not this hop
    seq->model = model;
    seq->tokens = r.prompt;
    seq->generated = r.generated_before;
    seq->request = std::move(r);
    auto& m = models_[model];
    if (m.running.empty() && m.waiting.empty())
      m.work_since = ++work_counter_;
    m.waiting.push_back(seq.get());
    seqs_.emplace(id, std::move(seq));
    wake();
  }

  // A request prefilled elsewhere joins its model's running batch with its KV.
  void admit_decode(decode_job job) {
    auto& r = job.request;
    // A refused job's KV goes back to the host pool with the job's last copy (kv_in_flight).
    auto fail_job = [&](std::string why) {
      if (r.sink)
        caf::anon_send(r.sink, done_atom::value,
                       generation_result{r.id, finish_reason::error, r.prompt.size(), job.generated,
                                         std::move(why)});
    };
    if (!start_error_.empty() || !engine_)
      return fail_job("the instance is not serving: " + start_error_);
    const std::size_t model =
        index_of(r.model.empty() && models_.size() == 1 ? models_[0].served.name : r.model);
    if (model >= models_.size())
      return fail_job("this instance does not serve model '" + r.model + "'");
    if (seqs_.count(r.id) != 0)
      return fail_job("request id " + std::to_string(r.id) + " is already in use on this instance");
    if (!job.kv || !(job.kv->peek().geometry == models_[model].kv) ||
        job.kv->peek().where != models::kv_handle::place::host || job.tokens.empty() ||
        job.kv->peek().tokens + 1 != job.tokens.size())
      return fail_job("the prefilled request's KV cache does not fit model '" + r.model +
                      "' on this instance");
    if (r.sink && monitored_.insert(r.sink.address()).second)
      monitor(r.sink);
    auto seq = std::make_unique<sequence>();
    if (r.arrived != clock_type::time_point{})
      seq->arrived = r.arrived;
    seq->model = model;
    seq->tokens = std::move(job.tokens);
    seq->generated = job.generated;
    seq->kv = job.kv->claim();
    seq->request = std::move(r);
    auto& m = models_[model];
    if (m.running.empty() && m.waiting.empty())
      m.work_since = ++work_counter_;
    seq->batch = m.batch; // joins the batch running now; an overflow splits it later
    m.running.push_back(seq.get());
    const auto id = seq->request.id;
    seqs_.emplace(id, std::move(seq));
    wake();
  }

  void cancel(std::uint64_t id) {
    auto it = seqs_.find(id);
    if (it == seqs_.end())
      return; // already finished: nothing to free
    sequence& seq = *it->second;
    seq.cancelled = true;
    if (!seq.in_step)
      finish(seq, finish_reason::cancelled);
  }

  // A sink that is gone can receive nothing more: its requests stop and free their KV.
  void sink_down(const caf::actor_addr& sink) {
    monitored_.erase(sink);
    std::vector<std::uint64_t> ids;
    for (auto& [id, seq] : seqs_)
      if (seq->request.sink.address() == sink)
        ids.push_back(id);
    for (auto id : ids)
      cancel(id);
  }

  instance_stats stats() const {
    instance_stats s;
    if (engine_) {
      engine_->reclaim(); // blocks whose last transfer has finished are free
      s.kv_bytes_used = engine_->device_kv().allocated_bytes();
      s.host_kv_bytes_used = engine_->host_kv().allocated_bytes();
      s.kv_fragmentation = engine_->device_kv().fragmentation();
      s.swaps_out = engine_->stats().swaps_out;
      s.swaps_in = engine_->stats().swaps_in;
      s.weight_bytes_copied = engine_->stats().weight_bytes_copied;
      s.kv_bytes_swapped = engine_->stats().kv_bytes_out + engine_->stats().kv_bytes_in;
    }
    for (const auto& m : models_) {
      s.running += m.running.size();
      s.waiting += m.waiting.size();
    }
    s.steps = steps_;
    s.tokens_generated = tokens_generated_;
    s.preemptions = preemptions_;
    s.batch_splits = batch_splits_;
    s.switches = switches_;
    s.prefetches = prefetch_hits_;
    s.scale_up_seconds = scale_up_seconds_;
    s.active = active_ < models_.size() ? models_[active_].served.name : "";
    s.ready = ready_;
    return s;
  }

  // --- the step loop --------------------------------------------------------------------
  bool has_work() const {
    return std::any_of(models_.begin(), models_.end(), [](const model_state& m) {
      return !m.running.empty() || !m.waiting.empty();
    });
  }

  void wake() {
    if (ready_ && !looping_ && has_work()) {
      looping_ = true;
      spawn(step_loop());
    }
  }

  std::size_t index_of(const std::string& name) const {
    for (std::size_t i = 0; i < models_.size(); ++i)
      if (models_[i].served.name == name)
        return i;
    return models_.size();
  }

  sched::turn_decision decide() {
    sched::instance_view v;
    const auto now = clock_type::now();
    if (active_ < models_.size())
      v.active = models_[active_].served.name;
    if (const auto* staged = engine_->staged())
      for (const auto& m : models_)
        if (m.served.image.get() == staged)
          v.staged = m.served.name;
    std::vector<const model_state*> busy;
    for (const auto& m : models_)
      if ((!m.running.empty() || !m.waiting.empty()) && !m.blocked)
        busy.push_back(&m);
    if (busy.empty()) // every model with work is blocked: the step loop's last resort decides
      for (const auto& m : models_)
        if (!m.running.empty() || !m.waiting.empty())
          busy.push_back(&m);
    std::sort(busy.begin(), busy.end(), [](const model_state* a, const model_state* b) {
      return a->work_since < b->work_since;
    });
    for (const auto* m : busy) {
      sched::model_load load{m->served.name, m->waiting.size(), m->running.size(), {}};
      if (!m->waiting.empty())
        load.oldest_wait = now - m->waiting.front()->arrived;
      std::size_t context = 0;
      for (const sequence* seq : m->running)
        context += seq->tokens.size();
      // A model split into batches runs one per turn: each turn's steps are an average batch's.
      load.batches = std::max<std::size_t>(batches_of(*m).size(), 1);
      load.step_time = m->decode_time.predict(
          context / load.batches, std::max<std::size_t>(m->running.size() / load.batches, 1));
      load.switch_time = switch_time_.predict(m->served.image->bytes().size());
      if (load.batches > 1) {
        // Between a split model's turns its batches' KV moves out and in: the round pays that
        // too, once per batch (all of the model's KV, both ways).
        std::size_t kv_bytes = 0;
        for (const sequence* seq : m->running)
          kv_bytes += seq->kv.blocks.size() * m->kv.block_bytes();
        load.switch_time += switch_time_.predict(2 * kv_bytes);
      }
      load.tbt = sched::seconds{m->served.tbt_seconds};
      v.models.push_back(std::move(load));
    }
    v.turn_steps = turn_steps_;
    v.turn_elapsed = now - turn_started_;
    return policy_->decide(v);
  }

  // Makes model `next` active: scale-down, scale-up (prefetched or copied now, layer by layer),
  // KV out for the leaving model when asked, KV in for the entering one. Nothing here waits:
  // the copies are ordered on the device streams and the steps wait for what they need.
  void switch_to(std::size_t next) {
    const auto& image = models_[next].served.image;
    if (active_ < models_.size() && options_.swap_out_on_switch)
      for (sequence* seq : models_[active_].running)
        if (seq->kv.where == models::kv_handle::place::device)
          (void)engine_->swap_out(seq->kv); // on failure the KV just stays on the device
    const bool prefetched = engine_->staged() == image.get();
    if (!prefetched) {
      auto staged = engine_->stage(image);
      if (!staged) { // no room beside the active model: scale it down first
        engine_->deactivate();
        value_or_throw(engine_->stage(image));
      }
    } else {
      ++prefetch_hits_;
    }
    engine_->activate();
    active_ = next;
    ++switches_;
    turn_steps_ = 0;
    turn_started_ = clock_type::now();
    track_scale_up(prefetched);
    begin_turn(next);
  }

  // A turn of model `i` begins: it serves the model's next batch (the same one while there is
  // one), whose KV comes in; other batches' KV goes out to the host as room is needed.
  void begin_turn(std::size_t i) {
    auto& m = models_[i];
    m.overflow = model_state::no_batch;
    const auto ids = batches_of(m);
    if (ids.empty())
      return;
    if (ids.size() > 1 || ids.front() != m.batch) {
      const auto next = std::upper_bound(ids.begin(), ids.end(), m.batch);
      m.batch = next == ids.end() ? ids.front() : *next;
    }
    for (sequence* seq : m.running)
      if (seq->batch == m.batch && seq->kv.where == models::kv_handle::place::host)
        (void)bring_in(*seq);
  }

  // Truncates the batch this turn serves: `seq` moves to the model's overflow batch with its KV
  // swapped out to the host, to decode in a turn of its own (the paper's batch split). The
  // overflow joins the batch whose turn comes next when the model already has another, so that
  // overflows in later turns do not each open a batch of a few sequences (every batch's turn
  // costs whole steps). When the host pool has no room either, `seq` gives its KV back and is
  // recomputed later instead.
  void split_off(model_state& m, sequence* seq) {
    if (seq->kv.where == models::kv_handle::place::device && !engine_->swap_out(seq->kv)) {
      preempt(seq);
      return;
    }
    if (m.overflow == model_state::no_batch) {
      auto ids = batches_of(m);
      std::erase(ids, m.batch);
      const auto next = std::upper_bound(ids.begin(), ids.end(), m.batch);
      m.overflow = ids.empty() ? ++m.batch_ids : next == ids.end() ? ids.front() : *next;
    }
    seq->batch = m.overflow;
    ++batch_splits_;
  }

  // Times the scale-up that just started, without holding up the step loop; a cold one (not
  // prefetched) teaches the switch-time estimate. The turn's quota counts from when the weights
  // are in: the switch is the round's `c`, not part of the turn.
  void track_scale_up(bool prefetched) {
    spawn([](instance* self, gpu::event* ready, clock_type::time_point t0, std::size_t bytes,
             bool prefetched, std::size_t turn) -> coro::task<void> {
      co_await *ready;
      const auto now = clock_type::now();
      const auto took = std::chrono::duration<double>(now - t0);
      self->scale_up_seconds_ += took.count();
      if (!prefetched)
        self->switch_time_.add(bytes, took);
      if (self->switches_ == turn)
        self->turn_started_ = now;
    }(this, &engine_->active_ready(), clock_type::now(), engine_->active()->bytes().size(),
                                                prefetched, switches_));
  }

  void prefetch(const std::string& name) {
    const std::size_t i = index_of(name);
    if (i >= models_.size() || i == active_)
      return;
    const auto& image = models_[i].served.image;
    if (engine_->staged() == image.get())
      return;
    (void)engine_->stage(image); // no room beside the active model: no prefetch
  }

  // Swaps `seq`'s KV in, making room by swapping out other models' idle KV when needed.
  bool bring_in(sequence& seq) {
    if (engine_->swap_in(seq.kv))
      return true;
    return make_room(seq.kv.geometry, seq.kv.blocks.size(), seq.model) && engine_->swap_in(seq.kv);
  }

  // Frees device KV for `blocks` blocks of `g` by swapping out sequences outside the batch that
  // model `keep` serves now (other models', and its own other batches'), least recently used
  // first. Returns whether there is room now (blocks still being copied out count: their
  // copies are waited for on the device).
  bool make_room(const kernels::kv_geometry& g, std::size_t blocks, std::size_t keep) {
    std::vector<sequence*> idle;
    for (std::size_t i = 0; i < models_.size(); ++i)
      for (sequence* s : models_[i].running)
        if (s->kv.where == models::kv_handle::place::device && !s->in_step &&
            (i != keep || s->batch != models_[keep].batch))
          idle.push_back(s);
    std::sort(idle.begin(), idle.end(),
              [](const sequence* a, const sequence* b) { return a->last_step < b->last_step; });
    for (sequence* s : idle) {
      if (engine_->can_reserve(g, blocks))
        return true;
      if (!engine_->swap_out(s->kv))
        break; // the host pool is full too
    }
    return engine_->can_reserve(g, blocks);
  }

  // Reserves device KV for `seq` to hold `tokens` tokens, making room from other models.
  bool reserve(sequence& seq, std::size_t tokens) {
    const auto& g = models_[seq.model].kv;
    if (engine_->reserve(seq.kv, g, tokens))
      return true;
    const std::size_t need = kernels::kv_geometry::blocks_for(tokens) - seq.kv.blocks.size();
    return make_room(g, need, seq.model) && engine_->reserve(seq.kv, g, tokens).has_value();
  }

  // Recomputes a swapped-out sequence of the active model later instead of bringing its KV back
  // (frees host room when nothing can move). Returns whether there was one.
  bool give_up_host_kv() {
    for (auto& m : models_)
      for (auto it = m.running.rbegin(); it != m.running.rend(); ++it)
        if ((*it)->kv.where == models::kv_handle::place::host && !(*it)->in_step) {
          preempt(*it);
          return true;
        }
    return false;
  }

  // When no model with work can run a step (a whole rotation blocked for KV room on the device
  // and the host): a swapped-out sequence gives its host KV back to be recomputed later (not
  // lost); with none, the oldest waiting request ends with an error; with none waiting either,
  // the newest running sequence does. Something always gives, so the loop cannot spin.
  void last_resort() {
    for (auto& m : models_)
      m.blocked = false;
    if (give_up_host_kv())
      return;
    sequence* oldest = nullptr;
    for (auto& m : models_)
      if (!m.waiting.empty() && (!oldest || m.waiting.front()->arrived < oldest->arrived))
        oldest = m.waiting.front();
    if (oldest)
      return finish(*oldest, finish_reason::error,
                    "no KV cache room on the device or the host for any request");
    sequence* newest = nullptr;
    for (auto& m : models_)
      for (sequence* s : m.running)
        if (!s->in_step && (!newest || s->arrived > newest->arrived))
          newest = s;
    if (newest)
      finish(*newest, finish_reason::error,
             "the KV cache cannot hold this request's context (" +
                 size_text(engine_->device_kv().bytes()) + " on the device, " +
                 size_text(host_kv_ ? host_kv_->bytes() : 0) + " on the host)");
  }

  // Resumes the coroutine through the mailbox: messages that arrived meanwhile run first.
  struct yield {
    coro::executor exec;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) const { exec->post(h); }
    void await_resume() const noexcept {}
  };

  // Sends `seq` back to the front of its model's queue without its KV: recomputed later.
  void preempt(sequence* seq) {
    engine_->release(seq->kv);
    auto& m = models_[seq->model];
    std::erase(m.running, seq);
    m.waiting.push_front(seq);
    ++preemptions_;
  }

  struct planned {
    sequence* seq;
    std::size_t feed;
  };

  // Whether this turn's batch steps with the sequences whose KV is in rather than wait for the
  // KV still arriving. A sequence that misses a step stays a token behind its batch for the
  // rest of the turn, and those tokens cost whole steps of their own later. So the batch waits
  // (on the device: the step waits for the copies) when the KV on its way arrives sooner than
  // a step takes, and starts without it when the copies are long, as with long contexts.
  bool starts_without_arrivals(const model_state& m) const {
    bool any_in = false;
    std::size_t arriving = 0, seqs = 0, context = 0;
    for (const sequence* s : m.running) {
      if (s->batch != m.batch)
        continue;
      ++seqs;
      context += s->tokens.size();
      if (s->kv.where != models::kv_handle::place::device)
        continue;
      if (!s->kv.ready || s->kv.ready->query())
        any_in = true;
      else
        arriving += s->kv.blocks.size() * m.kv.block_bytes();
    }
    return any_in && arriving > 0 &&
           switch_time_.predict(arriving) > m.decode_time.predict(context, seqs);
  }

  // The active model's step: every running sequence's next chunk (those whose KV is arriving
  // wait for a later step unless none is in), then waiting ones in arrival order while tokens,
  // sequences and KV blocks last. When KV runs out, the most recently admitted sequences not yet
  // in this step give theirs back and are recomputed later.
  std::vector<planned> plan_step() {
    auto& m = models_[active_];
    if (!m.running.empty() && std::none_of(m.running.begin(), m.running.end(),
                                           [&](const auto* s) { return s->batch == m.batch; }))
      begin_turn(active_); // the batch this turn served has finished: the next one goes on
    std::vector<planned> chosen;
    std::size_t budget = options_.max_batch_tokens;
    // Prompt tokens beside decoding sequences are held to what those can spare before their
    // next tokens are due (learned from such steps, see fit_prompt_tokens), so one long prompt
    // does not make every stream of its model late; alone, a prompt takes the whole budget.
    const bool decoding = std::any_of(m.running.begin(), m.running.end(), [&](const sequence* s) {
      return s->batch == m.batch && s->pending() == 1;
    });
    std::size_t prompt_budget = decoding ? prompt_tokens_beside_decodes_ : budget;
    // A prefill instance runs one request per step (the paper's prefill batch of one): prefill is
    // compute-bound, so batching prompts only delays the first of them. A long prompt still
    // goes in chunks of the token budget.
    const std::size_t max_seqs =
        options_.role == instance_role::prefill ? std::size_t{1} : options_.max_seqs;
    // Elsewhere a prompt already being read leaves half of each step to requests waiting behind
    // it: a short request then starts at the next step instead of after the whole long prompt
    // (seconds on a CPU), and the long one takes at most twice as many steps meanwhile.
    const std::size_t running_prompt_share =
        m.waiting.empty() || max_seqs == 1 ? budget : std::max<std::size_t>(budget / 2, 1);
    auto feed_of = [&](const sequence* seq) {
      const std::size_t pending = seq->pending();
      if (pending == 1)
        return std::min<std::size_t>(1, budget);
      return std::min({pending, budget, prompt_budget});
    };
    const bool start_partial = starts_without_arrivals(m);
    // The newest sequence of this turn's batch after position `i` (null: none).
    auto newest_after = [&](std::size_t i) -> sequence* {
      for (std::size_t j = m.running.size(); j-- > i + 1;)
        if (m.running[j]->batch == m.batch)
          return m.running[j];
      return nullptr;
    };
    for (std::size_t i = 0; i < m.running.size() && budget > 0 && chosen.size() < max_seqs;) {
      sequence* seq = m.running[i];
      if (seq->batch != m.batch) {
        ++i; // another batch's turn
        continue;
      }
      if (seq->kv.ready && !seq->kv.ready->failure().empty()) {
        preempt(seq); // the copy of its KV failed (a faulted device): recomputed instead
        continue;
      }
      if (seq->kv.where == models::kv_handle::place::host && !bring_in(*seq)) {
        ++i; // no room to bring it in yet
        continue;
      }
      if (start_partial && seq->kv.ready && !seq->kv.ready->query()) {
        ++i; // the batch starts with the sequences that are in; this one joins a later step
        continue;
      }
      const std::size_t feed =
          seq->pending() > 1 ? std::min(feed_of(seq), running_prompt_share) : feed_of(seq);
      if (feed == 0) {
        ++i; // its prompt waits for a step with room for it
        continue;
      }
      if (!reserve(*seq, seq->kv.tokens + feed)) {
        const std::size_t total = kernels::kv_geometry::blocks_for(seq->kv.tokens + feed);
        if (total <= engine_->kv_capacity(m.kv)) { // else no room could ever hold it
          if (engine_->can_reserve(m.kv, total - seq->kv.blocks.size())) {
            ++i; // the room is on its way back from a transfer: this one joins a later step
            continue;
          }
          if (sequence* last = newest_after(i)) {
            split_off(m, last);
            continue;
          }
          if (!chosen.empty() || !m.waiting.empty()) {
            split_off(m, seq);
            break;
          }
          ++i; // the room is held by other models' KV that cannot move now: it waits
          continue;
        }
        finish(*seq, finish_reason::error,
               "the KV cache cannot hold this request's context (" +
                   size_text(engine_->device_kv().bytes()) + ")");
        continue;
      }
      budget -= feed;
      if (seq->pending() > 1)
        prompt_budget -= std::min(prompt_budget, feed);
      chosen.push_back({seq, feed});
      ++i;
    }
    while (!m.waiting.empty() && budget > 0 && chosen.size() < max_seqs) {
      sequence* seq = m.waiting.front();
      const std::size_t feed = feed_of(seq);
      if (feed == 0)
        break; // no prompt room left in this step
      if (!reserve(*seq, seq->kv.tokens + feed)) {
        engine_->release(seq->kv);
        const std::size_t total = kernels::kv_geometry::blocks_for(feed);
        if (total > engine_->kv_capacity(m.kv)) {
          finish(*seq, finish_reason::error,
                 "the prompt needs more KV cache than this instance has (" +
                     size_text(engine_->device_kv().bytes()) + ")");
          continue;
        }
        // First come, first served: wait for blocks to free up (other models' KV that cannot
        // move to the host now counts as in use).
        break;
      }
      m.waiting.pop_front();
      seq->batch = m.batch; // a mid-round join: the batch running now
      m.running.push_back(seq);
      budget -= feed;
      if (seq->pending() > 1)
        prompt_budget -= std::min(prompt_budget, feed);
      chosen.push_back({seq, feed});
    }
    return chosen;
  }

  coro::task<void> step_loop() {
    while (has_work()) {
      const auto decision = decide();
      const std::size_t next = index_of(decision.run);
      if (next >= models_.size())
        throw error_exception(
            error{errc::internal, "the policy chose an unknown model '" + decision.run + "'"});
      if (next != active_) {
        switch_to(next);
      } else if (decision.new_turn) {
        turn_steps_ = 0;
        turn_started_ = clock_type::now();
        if (decision.next_batch)
          begin_turn(active_);
      }
      if (!decision.prefetch.empty())
        prefetch(decision.prefetch);
      const auto chosen = plan_step();
      if (chosen.empty()) {
        // Nothing of this model can run now (its KV has no room): the policy passes it over
        // and messages come in. When every model with work is blocked, something must give.
        ++turn_steps_;
        if (auto on_its_way = engine_->kv_on_its_way()) {
          // Room is coming back from a transfer: wait for it on the device, not by spinning.
          co_await *on_its_way;
          continue;
        }
        models_[active_].blocked = true;
        if (std::all_of(models_.begin(), models_.end(), [](const model_state& m) {
              return m.blocked || (m.running.empty() && m.waiting.empty());
            }))
          last_resort();
        co_await yield{executor()};
        continue;
      }
      for (auto& m : models_) // this step may free room for any of them
        m.blocked = false;
      std::vector<models::sequence_step> steps;
      std::vector<models::kv_handle*> kvs;
      for (const auto& [seq, feed] : chosen) {
        const bool samples = seq->kv.tokens + feed == seq->tokens.size();
        steps.push_back({std::span(seq->tokens).subspan(seq->kv.tokens, feed), seq->kv.tokens,
                         seq->kv.blocks, samples,
                         models::sampling_row_for(seq->request.sampling, seq->generated)});
        kvs.push_back(&seq->kv);
        seq->in_step = true;
      }
      if (auto enqueued = engine_->enqueue_step(steps, kvs); !enqueued) {
        for (const auto& p : chosen) {
          p.seq->in_step = false;
          finish(*p.seq, finish_reason::error,
                 "the forward step failed: " + enqueued.error().message);
        }
        continue;
      }
      const auto step_start = clock_type::now();
      co_await engine_->step_done(); // resumes inside this actor; messages run meanwhile
      ++steps_;
      const auto took = clock_type::now() - step_start;
      learn_step_time(chosen, took);
      fit_prompt_tokens(chosen, took);
      ++turn_steps_;
      const auto sampled = engine_->sampled();
      std::size_t next_token = 0;
      for (std::size_t i = 0; i < chosen.size(); ++i) {
        sequence& seq = *chosen[i].seq;
        seq.in_step = false;
        seq.last_step = steps_;
        if (seq.generated == seq.request.generated_before)
          seq.prefill_seconds += std::chrono::duration<double>(took).count(); // its prompt's
        seq.kv.tokens += chosen[i].feed;
        const std::int32_t token = steps[i].sample ? sampled[next_token++] : -1;
        if (seq.cancelled)
          finish(seq, finish_reason::cancelled);
        else if (steps[i].sample)
          take_token(seq, token);
      }
    }
    looping_ = false;
  }

  // After a step that ran prompt tokens beside decoding sequences: steer how many it may run.
  // Such a step may take what the decoding sequences can spare: the time until the token it
  // makes is due (token k at arrival + TTFT + (k-1)·TBT, the paper's deadlines), and never less
  // than 80% of a TBT. Requests ahead of schedule absorb a long prompt; ones on the edge get
  // short chunks. Multiplicative steering: at most halving or doubling a step, never below 16.
  void fit_prompt_tokens(const std::vector<planned>& chosen, clock_type::duration took) {
    const auto& served = models_[active_].served;
    const auto step_start = clock_type::now() - took;
    double target = std::numeric_limits<double>::infinity();
    std::size_t prompt = 0;
    for (const auto& p : chosen) {
      if (p.feed == 1 && p.seq->generated > 0) {
        const double due = served.ttft_seconds +
                           static_cast<double>(p.seq->generated) * served.tbt_seconds -
                           std::chrono::duration<double>(step_start - p.seq->arrived).count();
        target = std::min(target, std::max(due, 0.8 * served.tbt_seconds));
      } else {
        prompt += p.feed;
      }
    }
    if (!std::isfinite(target) || prompt == 0)
      return; // no mix: nothing to learn
    const double seconds = std::chrono::duration<double>(took).count();
    const double scale = std::clamp(target / std::max(seconds, 1e-6), 0.5, 2.0);
    if (scale >= 1 && prompt < prompt_tokens_beside_decodes_)
      return; // fast enough, and the allowance did not hold anything back
    prompt_tokens_beside_decodes_ =
        std::clamp<std::size_t>(static_cast<std::size_t>(static_cast<double>(prompt) * scale), 16,
                                options_.max_batch_tokens);
  }

  // Decode-only steps teach the active model's step-time estimate.
  void learn_step_time(const std::vector<planned>& chosen, clock_type::duration took) {
    std::size_t context = 0;
    for (const auto& p : chosen) {
      if (p.feed != 1)
        return; // a prompt chunk in the step: not a decode step
      context += p.seq->tokens.size();
    }
    models_[active_].decode_time.add(context, chosen.size(),
                                     std::chrono::duration_cast<sched::seconds>(took));
  }

  // A prefill instance passes a request on once its first token is out: its KV goes to the
  // shared host pool and the request's sink finds it a decode instance.
  void hand_off(sequence& seq) {
    if (auto out = engine_->swap_out(seq.kv); !out)
      return finish(seq, finish_reason::error,
                    "cannot hand the request to a decode instance: " + out.error().message);
    decode_job job;
    job.tokens = std::move(seq.tokens);
    job.generated = seq.generated;
    job.prefill_seconds = seq.prefill_seconds;
    job.switch_bytes_per_second = switch_time_.samples() > 0 ? switch_time_.bytes_per_second() : 0;
    job.kv = std::make_shared<kv_in_flight>(host_kv_, std::move(seq.kv));
    seq.kv = {};
    auto& m = models_[seq.model];
    std::erase(m.running, &seq);
    std::erase(m.waiting, &seq);
    job.request = std::move(seq.request);
    const auto sink = job.request.sink;
    const auto id = job.request.id;
    seqs_.erase(id); // destroys seq
    if (sink)        // with no sink, the job's KV goes back to the pool right here
      caf::anon_send(sink, handoff_atom::value, std::move(job));
  }

  void take_token(sequence& seq, std::int32_t token) {
    ++tokens_generated_;
    const auto& r = seq.request;
    if (std::find(r.stop_tokens.begin(), r.stop_tokens.end(), token) != r.stop_tokens.end())
      return finish(seq, finish_reason::stop);
    seq.tokens.push_back(token);
    ++seq.generated;
    if (r.sink)
      caf::anon_send(r.sink, token_atom::value, r.id, token);
    const auto& cfg = models_[seq.model].served.image->config();
    if (seq.generated >= r.max_tokens || seq.tokens.size() >= cfg.context_length)
      return finish(seq, finish_reason::length);
    if (options_.role == instance_role::prefill)
      hand_off(seq);
  }

  void notify_done(const sequence& seq, finish_reason reason, const std::string& message) {
    if (seq.request.sink)
      caf::anon_send(seq.request.sink, done_atom::value,
                     generation_result{seq.request.id, reason, seq.request.prompt.size(),
                                       seq.generated, message});
  }

  // Ends `seq`: its KV goes back (once transfers and steps are done with it) and its sink hears
  // why.
  void finish(sequence& seq, finish_reason reason, const std::string& message = {}) {
    if (engine_)
      engine_->release(seq.kv);
    auto& m = models_[seq.model];
    std::erase(m.running, &seq);
    std::erase(m.waiting, &seq);
    notify_done(seq, reason, message);
    seqs_.erase(seq.request.id); // destroys seq
  }

  std::shared_ptr<gpu::device> dev_;
  instance_options options_;
  std::shared_ptr<gpu::kv_pool> host_kv_;
  std::vector<model_state> models_;
  std::unique_ptr<sched::switch_policy> policy_;
  sched::switch_estimator switch_time_; // bytes over bandwidth, corrected by measured switches
  std::unique_ptr<models::engine> engine_;
  std::unordered_map<std::uint64_t, std::unique_ptr<sequence>> seqs_;
  std::set<caf::actor_addr> monitored_;
  std::size_t active_ = static_cast<std::size_t>(-1);
  std::size_t turn_steps_ = 0;
  clock_type::time_point turn_started_ = clock_type::now();
  std::uint64_t work_counter_ = 0;
  bool ready_ = false;
  bool looping_ = false;
  std::string start_error_;
  std::size_t prompt_tokens_beside_decodes_ = 0; // set at start: the whole token budget
  std::size_t steps_ = 0, tokens_generated_ = 0, preemptions_ = 0, switches_ = 0,
              prefetch_hits_ = 0, batch_splits_ = 0;
  double scale_up_seconds_ = 0;
};

} // namespace

models::engine_options engine_options_for(std::span<const models::model_footprint> models,
                                          const instance_options& options, std::size_t free_bytes) {
  std::size_t largest = 0, second = 0, kv_block = 0;
  std::vector<models::llama_config> configs;
  for (const auto& m : models) {
    second = std::max(second, std::min(largest, m.image_bytes));
    largest = std::max(largest, m.image_bytes);
    kv_block = std::max(kv_block, m.kv_block_bytes);
    configs.push_back(m.config);
  }
  const auto shape = models::largest_shape(configs);
  if (options.device_share_bytes != 0)
    free_bytes = options.device_share_bytes;
  models::engine_options eo;
  eo.limits = {options.max_batch_tokens, options.max_seqs, 0};
  eo.slab_bytes = std::max(options.slab_bytes, 4 * kv_block);
  eo.kv_bytes = options.kv_bytes;
  // Room to prefetch when the device has it: two models side by side if they take less than
  // half of it and the KV pool still fits beside them (a sized one, or an unsized one's slab).
  // Then more memory never takes the choice back nor leaves the KV less than a plan gave it.
  eo.weight_bytes = options.weight_bytes;
  if (eo.weight_bytes == 0) {
    const std::size_t both = largest + second + 4096;
    auto with_room = eo;
    with_room.weight_bytes = both;
    const bool room = models.size() > 1 && both < free_bytes / 2 &&
                      models::engine::device_bytes(shape, with_room).total() <= free_bytes;
    eo.weight_bytes = room ? both : largest + 4096;
  }
  // On a shared device an unsized KV pool takes what the share leaves, as `engine::create` would
  // take what the device leaves: the other instances' memory is not free to take.
  if (options.device_share_bytes != 0 && eo.kv_bytes == 0) {
    const auto taken = models::engine::device_bytes(shape, eo);
    const std::size_t used = taken.weights + taken.buffers;
    eo.kv_bytes = std::max<std::size_t>(
        free_bytes > used ? models::engine::kv_bytes_of_free(free_bytes - used) : 0, 1);
  }
  return eo;
}

std::size_t kv_pool_bytes(std::span<const models::model_footprint> models,
                          const instance_options& options, std::size_t free_bytes) {
  const auto eo = engine_options_for(models, options, free_bytes);
  if (eo.kv_bytes != 0)
    return eo.kv_bytes;
  std::vector<models::llama_config> configs;
  for (const auto& m : models)
    configs.push_back(m.config);
  const auto taken = models::engine::device_bytes(models::largest_shape(configs), eo);
  const std::size_t used = taken.weights + taken.buffers;
  return free_bytes > used ? models::engine::kv_bytes_of_free(free_bytes - used) : 0;
}

models::device_plan device_bytes_needed(std::span<const models::model_footprint> models,
                                        const instance_options& options, std::size_t tokens) {
  auto alone = options;
  alone.device_share_bytes = 0; // what it needs, not what it is given
  const auto eo = engine_options_for(models, alone, 0);
  std::vector<models::llama_config> configs;
  std::size_t kv_block = 1;
  for (const auto& m : models) {
    configs.push_back(m.config);
    kv_block = std::max(kv_block, m.kv_block_bytes);
  }
  const std::size_t per_slab = std::max<std::size_t>(eo.slab_bytes / kv_block, 1);
  const std::size_t blocks = kernels::kv_geometry::blocks_for(tokens);
  const std::size_t slabs = (blocks + per_slab - 1) / per_slab;
  const auto shape = models::largest_shape(configs);
  auto plan = models::engine::device_bytes(shape, eo, slabs);
  // Given that much, the instance may keep room to prefetch a second model: then it needs that
  // room too. The choice only grows with the memory, so it makes it on the larger plan as well.
  if (const auto there = engine_options_for(models, alone, plan.total());
      there.weight_bytes != eo.weight_bytes)
    plan = models::engine::device_bytes(shape, there, slabs);
  return plan;
}

caf::actor spawn_instance(caf::actor_system& sys, std::shared_ptr<gpu::device> dev,
                          std::vector<served_model> models, instance_options options,
                          std::shared_ptr<gpu::kv_pool> host_kv) {
  return sys.spawn<instance>(std::move(dev), std::move(models), std::move(options),
                             std::move(host_kv));
}

caf::actor spawn_instance(caf::actor_system& sys, std::shared_ptr<gpu::device> dev,
                          std::shared_ptr<const models::model_image> image,
                          instance_options options) {
  std::vector<served_model> models;
  models.push_back({image->config().name, std::move(image)});
  return spawn_instance(sys, std::move(dev), std::move(models), std::move(options), nullptr);
}

} // namespace aeg::actors
