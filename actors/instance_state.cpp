#include "actors/instance_state.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

namespace aeg::actors {

namespace {

using clock_type = std::chrono::steady_clock;

std::atomic<bool> check_views_on{false};

kv_copy copy_state(const models::kv_handle& kv) {
  if (!kv.ready)
    return kv_copy::done;
  if (!kv.ready->query())
    return kv_copy::arriving;
  return kv.ready->failure().empty() ? kv_copy::done : kv_copy::failed;
}

// Tokens `s` may still generate: what a shortest-job policy reads as its length.
std::size_t remaining(const sequence& s) {
  return s.request.max_tokens > s.generated ? s.request.max_tokens - s.generated : 0;
}

kv_place place_of(const models::kv_handle& kv) {
  switch (kv.where) {
  case models::kv_handle::place::device:
    return kv_place::device;
  case models::kv_handle::place::host:
    return kv_place::host;
  default:
    return kv_place::none;
  }
}

} // namespace

instance_state::instance_state(std::vector<served_model> models, std::size_t max_batch_tokens)
    : max_batch_tokens_(max_batch_tokens), prompt_allowance_(max_batch_tokens) {
  for (auto& m : models) {
    model_state st;
    st.kv = m.image->config().kv(m.image->format().kv_type());
    st.served = std::move(m);
    models_.push_back(std::move(st));
  }
  // What never changes is written once (a plan changes only the lists, turns and flags).
  view_.models.resize(models_.size());
  for (std::size_t i = 0; i < models_.size(); ++i) {
    const auto& m = models_[i];
    model_view& mv = view_.models[i];
    mv.name = m.served.name;
    mv.block_bytes = m.kv.block_bytes();
    mv.image_bytes = m.served.image->bytes().size();
    mv.tbt_seconds = m.served.tbt_seconds;
    mv.decode_time = &m.decode_time;
  }
  is_listed_.assign(models_.size(), false);
}

// --- requests ----------------------------------------------------------------------------

result<std::size_t> instance_state::model_for(const generation_request& r) const {
  if (seqs_.count(r.id) != 0)
    return fail(errc::invalid_argument,
                "request id " + std::to_string(r.id) + " is already in use on this instance");
  if (r.model.empty() && models_.size() == 1)
    return 0;
  for (std::size_t i = 0; i < models_.size(); ++i)
    if (models_[i].served.name == r.model)
      return i;
  std::string names;
  for (const auto& m : models_)
    names += (names.empty() ? "" : ", ") + m.served.name;
  return fail(errc::not_found,
              "this instance does not serve model '" + r.model + "'; it serves " + names);
}

std::optional<std::string> instance_state::prompt_error(const generation_request& r,
                                                        std::size_t model, bool prefill) const {
  const auto& cfg = models_[model].served.image->config();
  if (r.prompt.empty())
    return "the prompt is empty";
  if (r.prompt.size() >= cfg.context_length)
    return "the prompt has " + std::to_string(r.prompt.size()) + " tokens; the context holds " +
           std::to_string(cfg.context_length);
  for (auto t : r.prompt)
    if (t < 0 || static_cast<std::size_t>(t) >= cfg.vocab_size)
      return "token id " + std::to_string(t) + " is outside the vocabulary";
  if (r.max_tokens <= r.generated_before)
    return "max_tokens must be at least 1 more than the tokens already generated";
  if (prefill && !r.handoff)
    return "a prefill instance hands each request on after its first token: the request needs "
           "a handoff sink";
  return std::nullopt;
}

std::optional<std::string> instance_state::job_error(const decode_job& job,
                                                     std::size_t model) const {
  if (!job.kv || !(job.kv->peek().geometry == models_[model].kv) ||
      job.kv->peek().where != models::kv_handle::place::host || job.tokens.empty() ||
      job.kv->peek().tokens + 1 != job.tokens.size())
    return "the prefilled request's KV cache does not fit model '" + job.request.model +
           "' on this instance";
  return std::nullopt;
}

sequence& instance_state::add(std::unique_ptr<sequence> seq, std::size_t model, bool running,
                              clock_type::time_point now) {
  const auto& r = seq->request;
  // Deadlines count from the client's arrival, not this hop.
  seq->arrived = r.arrived != clock_type::time_point{} ? r.arrived : now;
  seq->model = model;
  auto& m = models_[model];
  // Tokens made before it came here count as on time: their times are its request actor's.
  seq->deadlines =
      sched::token_deadlines::after(seq->generated, m.served.ttft_seconds, m.served.tbt_seconds);
  if (!m.has_work())
    view_.models[model].work_since = ++work_counter_; // the policy's order: kept in the view
  if (!is_listed_[model]) {
    is_listed_[model] = true;
    listed_.push_back(model);
  }
  if (running) {
    seq->batch = turns(model).current; // joins the batch running now; an overflow splits it later
    m.running.push_back(seq.get());
  } else {
    m.waiting.push_back(seq.get());
  }
  auto& placed = *seq;
  ++work_version_;
  touched_.push_back(r.id);
  seqs_.emplace(r.id, std::move(seq));
  return placed;
}

sequence* instance_state::find(std::uint64_t id) const {
  const auto it = seqs_.find(id);
  return it == seqs_.end() ? nullptr : it->second.get();
}

void instance_state::forget(sequence& seq) {
  ++work_version_;
  auto& m = models_[seq.model];
  std::erase(m.running, &seq);
  std::erase(m.waiting, &seq);
}

void instance_state::start(sequence& seq, std::uint64_t batch) {
  forget(seq);
  seq.batch = batch;
  models_[seq.model].running.push_back(&seq);
}

void instance_state::requeue(sequence& seq) {
  forget(seq);
  models_[seq.model].waiting.push_front(&seq);
}

void instance_state::erase(sequence& seq) {
  forget(seq);
  view_.seqs.erase(seq.request.id);
  seqs_.erase(seq.request.id); // destroys seq
}

bool instance_state::has_work() const {
  return !seqs_.empty(); // each is on its model's running or waiting list
}

std::pair<std::size_t, std::size_t> instance_state::counts() const {
  std::pair<std::size_t, std::size_t> n{0, 0};
  for (const auto& m : models_) {
    n.first += m.running.size();
    n.second += m.waiting.size();
  }
  return n;
}

void instance_state::clear() {
  ++work_version_;
  for (auto& m : models_) {
    m.running.clear();
    m.waiting.clear();
  }
  seqs_.clear();
  view_.seqs.clear();
}

// --- planning ----------------------------------------------------------------------------

step_view& instance_state::view(step_limits_view limits, gpu::kv_ledger_copy device,
                                gpu::kv_ledger_copy host, std::size_t active, std::size_t staged,
                                const sched::switch_estimator& switch_time, std::size_t turn_steps,
                                clock_type::time_point turn_started, clock_type::time_point now) {
  step_view& v = view_;
  v.limits = limits;
  v.limits.prompt_tokens_beside_decodes = prompt_allowance_;
  // Most served models have no work most of the time: their lists are left alone.
  std::erase_if(listed_, [&](std::size_t i) {
    const auto& m = models_[i];
    model_view& mv = v.models[i];
    mv.running.clear();
    for (const sequence* s : m.running)
      mv.running.push_back(s->request.id);
    mv.waiting.clear();
    for (const sequence* s : m.waiting)
      mv.waiting.push_back(s->request.id);
    is_listed_[i] = m.has_work();
    return !is_listed_[i]; // its view is empty now too
  });
  // The ledgers were taken first: a copy that completes meanwhile then reads as arriving
  // (waited for on the device), never the other way round.
  v.device = std::move(device);
  v.host = std::move(host);
  // Only the sequences that may have changed since the last view are rewritten (erase took
  // out those that ended), in place: neither the table's nodes nor their block lists are
  // allocated again at every step.
  std::vector<std::uint64_t> arriving;
  auto rewrite = [&](std::uint64_t id) {
    const auto it = seqs_.find(id);
    if (it == seqs_.end())
      return; // ended since it was named
    const sequence& s = *it->second;
    seq_view& sv = v.seqs[id];
    auto blocks = std::move(sv.blocks);
    blocks.assign(s.kv.blocks.begin(), s.kv.blocks.end());
    sv = seq_view{id,
                  s.model,
                  s.tokens.size(),
                  s.kv.tokens,
                  place_of(s.kv),
                  std::move(blocks),
                  copy_state(s.kv),
                  s.batch,
                  s.last_step,
                  s.arrived,
                  remaining(s)};
    if (sv.copy == kv_copy::arriving)
      arriving.push_back(id);
  };
  if (all_touched_) {
    std::erase_if(v.seqs, [&](const auto& entry) { return !seqs_.contains(entry.first); });
    for (const auto& [id, s] : seqs_)
      rewrite(id);
  } else { // each once, though a plan may name a sequence in several actions
    touched_.insert(touched_.end(), arriving_.begin(), arriving_.end());
    std::sort(touched_.begin(), touched_.end());
    touched_.erase(std::unique(touched_.begin(), touched_.end()), touched_.end());
    for (const auto id : touched_)
      rewrite(id);
  }
  touched_.clear();
  arriving_ = std::move(arriving);
  all_touched_ = false;
  if (check_views_on.load(std::memory_order_relaxed))
    expect_view_current();
  v.active = active < models_.size() ? active : step_view::none;
  v.staged = staged < models_.size() ? staged : step_view::none;
  v.switch_time = &switch_time;
  v.turn_steps = turn_steps;
  v.now = now;
  v.turn_elapsed = v.now - turn_started;
  return v;
}

void instance_state::check_views(bool on) noexcept {
  check_views_on.store(on, std::memory_order_relaxed);
}

bool instance_state::checking_views() noexcept {
  return check_views_on.load(std::memory_order_relaxed);
}

bool instance_state::step_repeats(const std::vector<step_entry>& step, std::size_t active) const {
  const auto& m = models_[active];
  if (!m.waiting.empty())
    return false;
  const auto batch = turns(active).current;
  auto entry = step.begin();
  for (const sequence* s : m.running) {
    if (s->batch != batch)
      continue;
    if (entry == step.end() || entry->seq != s->request.id || entry->feed != 1)
      return false;
    ++entry;
    if (s->cancelled || s->tokens.size() != s->kv.tokens + 1 ||
        s->kv.where != models::kv_handle::place::device || copy_state(s->kv) != kv_copy::done ||
        kernels::kv_geometry::blocks_for(s->tokens.size()) > s->kv.blocks.size())
      return false;
  }
  return entry == step.end();
}

// The kept view against the state now. A KV copy may complete between the two readings (on a
// real device's thread): a view that says arriving where the copy is over is still current.
void instance_state::expect_view_current() const {
  auto stale = [](const std::string& what) {
    throw error_exception(error{errc::internal, "the instance's kept view went stale: " + what});
  };
  if (view_.seqs.size() != seqs_.size())
    stale(std::to_string(view_.seqs.size()) + " requests in the view, " +
          std::to_string(seqs_.size()) + " held");
  for (const auto& [id, s] : seqs_) {
    const auto it = view_.seqs.find(id);
    if (it == view_.seqs.end())
      stale("request #" + std::to_string(id) + " is not in the view");
    const seq_view& v = it->second;
    const auto copy = copy_state(s->kv);
    if (v.model != s->model || v.tokens != s->tokens.size() || v.kv_tokens != s->kv.tokens ||
        v.where != place_of(s->kv) ||
        !std::equal(v.blocks.begin(), v.blocks.end(), s->kv.blocks.begin(), s->kv.blocks.end()) ||
        !(v.copy == copy || (v.copy == kv_copy::arriving && copy != kv_copy::arriving)) ||
        v.batch != s->batch || v.last_step != s->last_step || v.arrived != s->arrived ||
        v.remaining != remaining(*s))
      stale("request #" + std::to_string(id) + " changed since its view was written");
  }
  auto same_ids = [](const std::vector<std::uint64_t>& ids, const std::deque<sequence*>& seqs) {
    return std::equal(ids.begin(), ids.end(), seqs.begin(), seqs.end(),
                      [](std::uint64_t id, const sequence* s) { return id == s->request.id; });
  };
  for (std::size_t i = 0; i < models_.size(); ++i) {
    const auto& m = models_[i];
    const auto& mv = view_.models[i];
    if (!same_ids(mv.running, m.running) || !same_ids(mv.waiting, m.waiting))
      stale("model " + m.served.name + "'s lists differ from the view's");
  }
}

void instance_state::touch(const step_plan& plan) {
  for (const auto& a : plan.actions)
    std::visit(
        [&](const auto& x) {
          if constexpr (requires { x.seq; })
            touched_.push_back(x.seq);
        },
        a);
  for (const auto& e : plan.step)
    touched_.push_back(e.seq);
}

// --- learning ----------------------------------------------------------------------------

void instance_state::learn(const std::vector<step_entry>& step, const std::vector<sequence*>& seqs,
                           std::size_t active, clock_type::duration took,
                           clock_type::time_point now) {
  auto& m = models_[active];
  fit_prompt_allowance(step, seqs, m, took, now);
  std::size_t context = 0;
  for (std::size_t i = 0; i < step.size(); ++i) {
    if (step[i].feed != 1)
      return; // a prompt chunk in the step: not a decode step
    context += seqs[i]->tokens.size();
  }
  m.decode_time.add(context, step.size(), std::chrono::duration_cast<sched::seconds>(took));
}

// After a step that ran prompt tokens beside decoding sequences. Such a step may take what the
// decoding sequences can spare: the time until the token it makes is due (the pool's deadline
// rule), and never less than 80% of a TBT. Requests ahead of schedule absorb a long prompt; ones
// on the edge get short chunks. Multiplicative steering: at most halving or doubling a step,
// never below 16 tokens.
void instance_state::fit_prompt_allowance(const std::vector<step_entry>& step,
                                          const std::vector<sequence*>& seqs, const model_state& m,
                                          clock_type::duration took, clock_type::time_point now) {
  // A copied prompt is decoding; a lone token of a prompt not yet read is prompt.
  const auto decoding = [&](std::size_t i) {
    return step[i].feed == 1 && (seqs[i]->generated > 0 || seqs[i]->shared_prompt);
  };
  std::size_t prompt = 0;
  for (std::size_t i = 0; i < step.size(); ++i)
    prompt += decoding(i) ? 0 : step[i].feed;
  if (prompt == 0)
    return; // no prompt (most steps): nothing to learn
  const auto step_start = now - took;
  double target = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < step.size(); ++i) {
    if (!decoding(i))
      continue;
    const sequence& s = *seqs[i];
    const double due =
        s.deadlines.next() - std::chrono::duration<double>(step_start - s.arrived).count();
    target = std::min(target, std::max(due, 0.8 * m.served.tbt_seconds));
  }
  if (!std::isfinite(target))
    return; // no mix: nothing to learn
  const double seconds = std::chrono::duration<double>(took).count();
  const double scale = std::clamp(target / std::max(seconds, 1e-6), 0.5, 2.0);
  if (scale >= 1 && prompt < prompt_allowance_)
    return; // fast enough, and the allowance did not hold anything back
  prompt_allowance_ = std::clamp<std::size_t>(
      static_cast<std::size_t>(static_cast<double>(prompt) * scale), 16, max_batch_tokens_);
}

} // namespace aeg::actors
