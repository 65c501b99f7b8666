#include "actors/step_planner.hpp"

#include "actors/kv_placement.hpp"
#include "kernels/kv_geometry.hpp"

#include <algorithm>

namespace aeg::actors {

namespace {

constexpr std::size_t none = step_view::none;
using kernels::kv_geometry;

// "12 MiB", or "192 KiB" for pools under a MiB (tests and tiny topologies have them).
std::string size_text(std::size_t bytes) {
  return bytes >= (std::size_t{1} << 20) ? std::to_string(bytes >> 20) + " MiB"
                                         : std::to_string(bytes >> 10) + " KiB";
}

// The batches a model's running sequences form, in id order.
std::vector<std::uint64_t> batches_of(const model_view& m, const seq_views& seqs) {
  std::vector<std::uint64_t> ids;
  for (const auto id : m.running)
    ids.push_back(seqs.at(id).batch);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

// How many batches a model's running sequences form: batches_of's size, without a list in the
// common case of one batch (the policy's view asks at every step for every busy model).
std::size_t batch_count(const model_view& m, const seq_views& seqs) {
  if (m.running.empty())
    return 0;
  const auto first = seqs.at(m.running.front()).batch;
  for (const auto id : m.running)
    if (seqs.at(id).batch != first)
      return batches_of(m, seqs).size();
  return 1;
}

// The batch after `current` among `ids` (sorted), wrapping round.
std::uint64_t batch_after(const std::vector<std::uint64_t>& ids, std::uint64_t current) {
  const auto next = std::upper_bound(ids.begin(), ids.end(), current);
  return next == ids.end() ? ids.front() : *next;
}

const sched::decode_estimator& decode_time_of(const model_view& m) {
  static const sched::decode_estimator prior;
  return m.decode_time != nullptr ? *m.decode_time : prior;
}

const sched::switch_estimator& switch_time_of(const step_view& v) {
  static const sched::switch_estimator prior;
  return v.switch_time != nullptr ? *v.switch_time : prior;
}

// One plan in the making: a scratch copy of the instance that the decisions change as they are
// taken, in the order the instance will apply them.
class planner {
public:
  // Plans on `v` itself: the view is the scratch copy that the decisions change.
  explicit planner(step_view& v)
      : v_(v), models_(v.models), seqs_(v.seqs),
        kv_(v.device, v.host, models_, seqs_, plan_.actions), active_(v.active), staged_(v.staged) {
  }

  result<step_plan> run(const sched::turn_decision& d) {
    const std::size_t next = index_of(d.run);
    if (next == none)
      return aeg::fail(errc::internal, "the policy chose an unknown model '" + d.run + "'");
    if (next != active_) {
      switch_to(next);
    } else if (d.new_turn) {
      plan_.restart_turn = true;
      if (d.next_batch)
        begin_turn(active_);
    }
    if (!d.prefetch.empty())
      prefetch(index_of(d.prefetch));
    fill_step();
    if (!plan_.step.empty()) {
      for (auto& m : models_) // this step may free room for any of them
        m.blocked = false;
    } else if (kv_.room_on_its_way()) {
      plan_.idle = idle_kind::await_room; // wait for it on the device, not by spinning
    } else {
      // Nothing of this model can run now: the policy passes it over while messages come in.
      // When every model with work is blocked, something must give.
      plan_.idle = idle_kind::yield;
      models_[active_].blocked = true;
      if (std::all_of(models_.begin(), models_.end(),
                      [](const model_view& m) { return m.blocked || !m.has_work(); }))
        last_resort();
    }
    return std::move(plan_);
  }

  // Copies every model's turns and blocked flag as the plan left them into the plan (a plan
  // made on a copy of the view; one made in place leaves them in the view).
  static void report_turns(step_plan& p, const step_view& v) {
    p.turns.reserve(v.models.size());
    p.blocked.reserve(v.models.size());
    for (const auto& m : v.models) {
      p.turns.push_back(m.turns);
      p.blocked.push_back(m.blocked);
    }
  }

private:
  std::size_t index_of(const std::string& name) const {
    for (std::size_t i : {active_, staged_}) // what a policy names most often
      if (i != none && models_[i].name == name)
        return i;
    for (std::size_t i = 0; i < models_.size(); ++i)
      if (models_[i].name == name)
        return i;
    return none;
  }

  // Model `next` becomes active: the leaving model's KV goes out first when asked (else only
  // as room is needed), the switch needs no wait (its copies are ordered on the device), and the
  // new turn's batch comes in.
  void switch_to(std::size_t next) {
    if (active_ != none && v_.limits.swap_out_on_switch)
      for (const auto id : models_[active_].running)
        if (auto& s = seqs_.at(id); s.where == kv_place::device)
          (void)kv_.swap_out(s); // no host room: it just stays on the device
    plan_.actions.push_back(activate_model{next, staged_ == next});
    active_ = next;
    staged_ = none;
    plan_.restart_turn = true;
    begin_turn(next);
  }

  void prefetch(std::size_t i) {
    if (i == none || i == active_ || i == staged_)
      return;
    plan_.actions.push_back(prefetch_model{i});
    staged_ = i;
  }

  // A turn of model `i` begins: it serves the model's next batch (the same one while there is
  // only one), whose KV comes in; other batches' KV goes out to the host as room is needed.
  void begin_turn(std::size_t i) {
    auto& m = models_[i];
    m.turns.overflow = batch_turns::no_batch;
    const auto ids = batches_of(m, seqs_);
    if (ids.empty())
      return;
    if (ids.size() > 1 || ids.front() != m.turns.current)
      m.turns.current = batch_after(ids, m.turns.current);
    for (const auto id : m.running)
      if (auto& s = seqs_.at(id); s.batch == m.turns.current && s.where == kv_place::host)
        (void)kv_.bring_in(s);
  }

  // Whether the batch steps with the sequences whose KV is in rather than wait for KV still
  // arriving. A sequence that misses a step stays a token behind its batch for the rest of the
  // turn, and those tokens cost whole steps of their own later. So the batch waits (on the
  // device: the step waits for the copies) when the KV on its way arrives sooner than a step
  // takes, and starts without it when the copies are long, as with long contexts.
  bool starts_without_arrivals(const model_view& m) const {
    bool any_in = false;
    std::size_t arriving = 0, seqs = 0, context = 0;
    for (const auto id : m.running) {
      const auto& s = seqs_.at(id);
      if (s.batch != m.turns.current)
        continue;
      ++seqs;
      context += s.tokens;
      if (s.where != kv_place::device)
        continue;
      if (s.copy != kv_copy::arriving)
        any_in = true;
      else
        arriving += s.blocks.size() * m.block_bytes;
    }
    return any_in && arriving > 0 &&
           switch_time_of(v_).predict(arriving) > decode_time_of(m).predict(context, seqs);
  }

  // The step's budgets: tokens, prompt tokens and sequences.
  struct budgets {
    std::size_t tokens, prompt, seqs, running_prompt_share;

    // How many of `s`'s pending tokens fit: one for a decode, else a chunk of its prompt.
    std::size_t feed(const seq_view& s) const {
      const std::size_t pending = s.pending();
      if (pending == 1)
        return std::min<std::size_t>(1, tokens);
      return std::min({pending, tokens, prompt});
    }
    void take(const seq_view& s, std::size_t feed) {
      tokens -= feed;
      if (s.pending() > 1)
        prompt -= std::min(prompt, feed);
    }
  };

  budgets budgets_for(const model_view& m) const {
    const auto& lim = v_.limits;
    budgets b{};
    b.tokens = lim.max_batch_tokens;
    // Prompt tokens beside decoding sequences are held to what those can spare before their
    // next tokens are due, so one long prompt does not make every stream of its model late;
    // alone, a prompt takes the whole budget.
    const bool decoding = std::any_of(m.running.begin(), m.running.end(), [&](auto id) {
      const auto& s = seqs_.at(id);
      return s.batch == m.turns.current && s.pending() == 1;
    });
    b.prompt = decoding ? lim.prompt_tokens_beside_decodes : b.tokens;
    // A prefill instance runs one request per step (the paper's prefill batch of one): prefill
    // is compute-bound, so batching prompts only delays the first of them.
    b.seqs = lim.one_sequence_per_step ? std::size_t{1} : lim.max_seqs;
    // Elsewhere a prompt already being read leaves half of each step's prompt tokens to requests
    // waiting behind it: a short request then starts at the next step instead of after the whole
    // long prompt, and the long one takes at most twice as many steps meanwhile.
    b.running_prompt_share =
        m.waiting.empty() || b.seqs == 1 ? b.tokens : std::max<std::size_t>(b.prompt / 2, 1);
    return b;
  }

  // The active model's step: every running sequence's next chunk (those whose KV is arriving
  // wait for a later step unless none is in), then waiting ones in arrival order while tokens,
  // sequences and KV blocks last.
  void fill_step() {
    auto& m = models_[active_];
    if (!m.running.empty() && std::none_of(m.running.begin(), m.running.end(), [&](auto id) {
          return seqs_.at(id).batch == m.turns.current;
        }))
      begin_turn(active_); // the batch this turn served has finished: the next one goes on
    budgets b = budgets_for(m);
    const bool start_partial = starts_without_arrivals(m);
    auto& step = plan_.step;
    // Every decoding sequence of the batch keeps its token of the step: a prompt chunk takes
    // what they leave, so a long prompt never stalls the streams beside it.
    std::size_t decodes_unfed =
        static_cast<std::size_t>(std::count_if(m.running.begin(), m.running.end(), [&](auto id) {
          const auto& s = seqs_.at(id);
          return s.batch == m.turns.current && s.pending() == 1;
        }));
    for (std::size_t i = 0; i < m.running.size() && b.tokens > 0 && step.size() < b.seqs;) {
      seq_view& s = seqs_.at(m.running[i]);
      if (s.batch != m.turns.current) {
        ++i; // another batch's turn
        continue;
      }
      if (s.copy == kv_copy::failed) {
        preempt(s); // the copy of its KV failed (a faulted device): recomputed instead
        continue;
      }
      if (s.where == kv_place::host && !kv_.bring_in(s)) {
        ++i; // no room to bring it in yet
        continue;
      }
      if (start_partial && s.copy == kv_copy::arriving) {
        ++i; // the batch starts with the sequences that are in; this one joins a later step
        continue;
      }
      const bool decode = s.pending() == 1;
      decodes_unfed -= decode ? 1 : 0;
      const std::size_t feed = decode ? b.feed(s)
                                      : std::min({b.feed(s), b.running_prompt_share,
                                                  b.tokens - std::min(b.tokens, decodes_unfed)});
      if (feed == 0) {
        ++i; // its prompt waits for a step with room for it
        continue;
      }
      if (!kv_.reserve(s, s.kv_tokens + feed)) {
        const auto next = no_room_for(m, i, s, feed, !step.empty());
        if (next == after_no_room::stop)
          break;
        i += next == after_no_room::skip;
        continue;
      }
      b.take(s, feed);
      step.push_back({s.id, feed});
      ++i;
    }
    admit_waiting(m, b);
  }

  enum class after_no_room { skip, retry, stop };

  // Sequence `s` (at `i` in its model's running list) found no device room for `feed` more
  // tokens. Room on its way back: it waits for a later step. Else the newest sequence of the
  // batch after it moves to an overflow batch (and `s` tries again), or `s` itself does when
  // the step has others or requests wait behind it. With neither, the room is held by other
  // models' KV that cannot move now: it waits. A context that can never fit ends.
  after_no_room no_room_for(model_view& m, std::size_t i, seq_view& s, std::size_t feed,
                            bool step_has_others) {
    const std::size_t total = kv_geometry::blocks_for(s.kv_tokens + feed);
    if (total > kv_.capacity(m.block_bytes)) {
      fail(s, "the KV cache cannot hold this request's context (" + size_text(kv_.device_bytes()) +
                  ")");
      return after_no_room::retry; // the next sequence is at `i` now
    }
    if (kv_.can_reserve(m.block_bytes, total - s.blocks.size()))
      return after_no_room::skip;
    for (std::size_t j = m.running.size(); j-- > i + 1;)
      if (auto& last = seqs_.at(m.running[j]); last.batch == m.turns.current) {
        split_off(m, last);
        return after_no_room::retry;
      }
    if (step_has_others || !m.waiting.empty()) {
      split_off(m, s);
      return after_no_room::stop;
    }
    return after_no_room::skip;
  }

  // Waiting requests join the step in arrival order while tokens, sequences and KV last. First
  // come, first served: one that finds no room stops the others (other models' KV that cannot
  // move to the host now counts as in use).
  void admit_waiting(model_view& m, budgets& b) {
    auto& step = plan_.step;
    while (!m.waiting.empty() && b.tokens > 0 && step.size() < b.seqs) {
      seq_view& s = seqs_.at(m.waiting.front());
      const std::size_t feed = b.feed(s);
      if (feed == 0)
        break; // no prompt room left in this step
      if (!kv_.reserve(s, s.kv_tokens + feed)) {
        if (kv_geometry::blocks_for(feed) > kv_.capacity(m.block_bytes)) {
          fail(s, "the prompt needs more KV cache than this instance has (" +
                      size_text(kv_.device_bytes()) + ")");
          continue;
        }
        break;
      }
      m.waiting.erase(m.waiting.begin());
      s.batch = m.turns.current; // a mid-round join: the batch running now
      m.running.push_back(s.id);
      plan_.actions.push_back(admit_seq{s.id, s.batch});
      b.take(s, feed);
      step.push_back({s.id, feed});
    }
  }

  // Truncates the batch this turn serves: `s` moves to the model's overflow batch with its KV
  // swapped out to the host, to decode in a turn of its own (the paper's batch split). The
  // overflow joins the batch whose turn comes next when the model already has another, so that
  // overflows in later turns do not each open a batch of a few sequences (every batch's turn
  // costs whole steps). When the host has no room either, `s` gives its KV back and is
  // recomputed later instead.
  void split_off(model_view& m, seq_view& s) {
    if (s.where == kv_place::device && !kv_.swap_out(s))
      return preempt(s);
    auto& t = m.turns;
    if (t.overflow == batch_turns::no_batch) {
      auto ids = batches_of(m, seqs_);
      std::erase(ids, t.current);
      t.overflow = ids.empty() ? ++t.last_id : batch_after(ids, t.current);
    }
    s.batch = t.overflow;
    plan_.actions.push_back(split_seq{s.id, s.batch});
  }

  // `s` goes back to the front of its model's queue without its KV: recomputed later.
  void preempt(seq_view& s) {
    plan_.actions.push_back(preempt_seq{s.id});
    kv_.release(s);
    auto& m = models_[s.model];
    std::erase(m.running, s.id);
    m.waiting.insert(m.waiting.begin(), s.id);
  }

  void fail(seq_view& s, std::string message) {
    plan_.actions.push_back(fail_seq{s.id, std::move(message)});
    kv_.release(s);
    auto& m = models_[s.model];
    std::erase(m.running, s.id);
    std::erase(m.waiting, s.id);
    seqs_.erase(s.id);
  }

  // When no model with work can run a step (each blocked for KV room on the device and the
  // host): a swapped-out sequence gives its host KV back to be recomputed later (not lost); with
  // none, the oldest waiting request ends with an error; with none waiting either, the newest
  // running one does. Something always gives, so the instance cannot spin.
  void last_resort() {
    for (auto& m : models_)
      m.blocked = false;
    for (auto& m : models_)
      for (auto it = m.running.rbegin(); it != m.running.rend(); ++it)
        if (auto& s = seqs_.at(*it); s.where == kv_place::host)
          return preempt(s);
    seq_view* oldest = nullptr;
    for (auto& m : models_)
      if (!m.waiting.empty())
        if (auto& s = seqs_.at(m.waiting.front()); !oldest || s.arrived < oldest->arrived)
          oldest = &s;
    if (oldest)
      return fail(*oldest, "no KV cache room on the device or the host for any request");
    seq_view* newest = nullptr;
    for (auto& m : models_)
      for (const auto id : m.running)
        if (auto& s = seqs_.at(id); !newest || s.arrived > newest->arrived)
          newest = &s;
    if (newest)
      fail(*newest, "the KV cache cannot hold this request's context (" +
                        size_text(kv_.device_bytes()) + " on the device, " +
                        size_text(kv_.host_bytes()) + " on the host)");
  }

  const step_view& v_;
  std::vector<model_view>& models_;
  seq_views& seqs_;
  step_plan plan_;
  kv_placement kv_;
  std::size_t active_, staged_;
};

} // namespace

sched::instance_view policy_view(const step_view& v) {
  sched::instance_view pv;
  if (v.active != none)
    pv.active = std::string(v.models[v.active].name);
  if (v.staged != none)
    pv.staged = std::string(v.models[v.staged].name);
  std::vector<const model_view*> busy;
  busy.reserve(v.models.size());
  for (const auto& m : v.models)
    if (m.has_work() && !m.blocked)
      busy.push_back(&m);
  if (busy.empty()) // every model with work is blocked: the plan's last resort decides
    for (const auto& m : v.models)
      if (m.has_work())
        busy.push_back(&m);
  std::sort(busy.begin(), busy.end(),
            [](const model_view* a, const model_view* b) { return a->work_since < b->work_since; });
  const auto& switch_time = switch_time_of(v);
  pv.models.reserve(busy.size());
  for (const auto* m : busy) {
    sched::model_load load{std::string(m->name), m->waiting.size(), m->running.size(), {}};
    if (!m->waiting.empty())
      load.oldest_wait = v.now - v.seqs.at(m->waiting.front()).arrived;
    std::size_t context = 0, kv_bytes = 0;
    load.shortest_job = std::numeric_limits<std::size_t>::max();
    for (const auto id : m->running) {
      const auto& s = v.seqs.at(id);
      context += s.tokens;
      kv_bytes += s.blocks.size() * m->block_bytes;
      load.shortest_job = std::min(load.shortest_job, s.remaining);
    }
    for (const auto id : m->waiting)
      load.shortest_job = std::min(load.shortest_job, v.seqs.at(id).remaining);
    // A model split into batches runs one per turn: each turn's steps are an average batch's.
    load.batches = std::max<std::size_t>(batch_count(*m, v.seqs), 1);
    load.step_time = decode_time_of(*m).predict(
        context / load.batches, std::max<std::size_t>(m->running.size() / load.batches, 1));
    load.switch_time = switch_time.predict(m->image_bytes);
    // Between a split model's turns its batches' KV moves out and in: the round pays that too,
    // once per batch (all of the model's KV, both ways).
    if (load.batches > 1)
      load.switch_time += switch_time.predict(2 * kv_bytes);
    load.tbt = sched::seconds{m->tbt_seconds};
    pv.models.push_back(std::move(load));
  }
  pv.turn_steps = v.turn_steps;
  pv.turn_elapsed = v.turn_elapsed;
  return pv;
}

result<step_plan> plan_step(const step_view& v, const sched::turn_decision& decision) {
  step_view scratch = v;
  auto plan = planner(scratch).run(decision);
  if (plan)
    planner::report_turns(*plan, scratch);
  return plan;
}

result<step_plan> plan_step_in_place(step_view& v, const sched::turn_decision& decision) {
  return planner(v).run(decision);
}

} // namespace aeg::actors
