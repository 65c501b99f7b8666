#include "actors/instance_support.hpp"

#include "models/sizing.hpp"

#include <caf/send.hpp>

#include <algorithm>

namespace aeg::actors {

std::unique_ptr<models::engine> make_instance_engine(const std::shared_ptr<gpu::device>& dev,
                                                     std::shared_ptr<gpu::kv_pool>& host_kv,
                                                     const std::vector<served_model>& models,
                                                     const instance_options& options) {
  if (models.empty())
    throw error_exception(error{errc::invalid_argument, "an instance needs a model"});
  std::vector<models::model_footprint> footprints;
  for (const auto& m : models)
    footprints.push_back(models::footprint_of(*m.image));
  const auto sizing = sizing_of(std::move(footprints), options);
  const auto eo = options.engine ? *options.engine : models::plan_engine(sizing, dev->free_bytes());
  if (!host_kv) {
    std::size_t host_bytes = options.host_kv_bytes;
    if (host_bytes == 0)
      host_bytes = options.kv_bytes != 0 ? options.kv_bytes : std::size_t{256} << 20;
    host_kv = std::make_shared<gpu::kv_pool>(value_or_throw(dev->allocate_pinned(host_bytes)),
                                             eo.slab_bytes);
  }
  return value_or_throw(models::engine::create(dev, host_kv, models::largest_shape_of(sizing), eo));
}

std::size_t staged_model(const instance_state& state, const models::engine& engine) {
  for (std::size_t i = 0; i < state.models().size(); ++i)
    if (engine.staged() == state.models()[i].served.image.get())
      return i;
  return step_view::none;
}

void refuse(const generation_request& r, std::size_t generated, std::string why) {
  if (r.sink)
    caf::anon_send(r.sink, done_atom::value,
                   generation_result{
                       r.id, finish_reason::error, r.prompt.size(), generated, std::move(why), {}});
}

void notify_done(sequence& seq, finish_reason reason, const std::string& message,
                 std::chrono::steady_clock::time_point now) {
  send_unsent(seq, now);
  if (seq.request.sink)
    caf::anon_send(seq.request.sink, done_atom::value,
                   generation_result{seq.request.id, reason, seq.request.prompt.size(),
                                     seq.generated, message, seq.service});
}

void deliver_token(sequence& seq, std::int32_t token, models::token_logprobs lp,
                   std::chrono::steady_clock::time_point now) {
  const auto& r = seq.request;
  if (!r.sink)
    return;
  switch (r.delivery) {
  case token_delivery::each:
    caf::anon_send(r.sink, token_atom::value, r.id, token, std::move(lp));
    return;
  case token_delivery::batched:
    seq.unsent.push_back(token);
    seq.unsent_at.push_back(now);
    if (seq.unsent.size() >= most_tokens_per_batch)
      send_unsent(seq, now);
    return;
  case token_delivery::none:
    return;
  }
}

void send_unsent(sequence& seq, std::chrono::steady_clock::time_point now) {
  if (seq.unsent.empty())
    return;
  token_batch b;
  b.tokens = std::move(seq.unsent);
  b.ages_ns.reserve(seq.unsent_at.size());
  for (const auto at : seq.unsent_at)
    b.ages_ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - at).count());
  seq.unsent.clear();
  seq.unsent_at.clear();
  if (seq.request.sink)
    caf::anon_send(seq.request.sink, tokens_atom::value, seq.request.id, std::move(b));
}

void charge_step(sequence& seq, double took, const std::optional<models::step_costs>& costs) {
  // Its prompt's steps until its first token; a copied prompt was never read here.
  const bool prefill = seq.generated == seq.request.generated_before && !seq.shared_prompt;
  if (prefill)
    seq.prefill_seconds += took;
  const double kv_wait = costs ? std::clamp(costs->kv_wait_seconds, 0.0, took) : 0.0;
  const double execute = costs ? std::clamp(costs->compute_seconds, 0.0, took - kv_wait) : took;
  const double held = took - kv_wait - execute;
  auto& s = seq.service;
  (prefill ? s.prefill_execute : s.decode_execute) += execute;
  (prefill ? s.prefill_kv_wait : s.decode_kv_wait) += kv_wait;
  (prefill ? s.prefill_held : s.decode_held) += held;
}

bool room_or_throw(result<void> r) {
  if (!r && r.error().code != errc::out_of_memory)
    throw error_exception(std::move(r.error()));
  return r.has_value();
}

void send_handoff(decode_job job, const caf::actor& desk, const caf::actor_addr& from) {
  const auto to = job.request.handoff;
  if (!to)
    return;
  job.from = from;
  if (desk && to.node() != from.node())
    caf::anon_send(desk, handoff_atom::value, std::move(job));
  else
    caf::anon_send(to, handoff_atom::value, std::move(job));
}

decode_job decode_job_of(sequence& seq, std::shared_ptr<gpu::kv_pool> host_kv,
                         double switch_bytes_per_second) {
  decode_job job;
  job.tokens = std::move(seq.tokens);
  job.generated = seq.generated;
  job.prefill_seconds = seq.prefill_seconds;
  job.switch_bytes_per_second = switch_bytes_per_second;
  job.service = seq.service;
  job.kv = std::make_shared<kv_in_flight>(std::move(host_kv), std::move(seq.kv));
  seq.kv = {};
  job.request = std::move(seq.request); // the id stays: it is a number
  return job;
}

void add_engine_stats(instance_stats& s, models::engine& engine) {
  engine.reclaim(); // blocks whose last transfer has finished are free
  s.kv_bytes_used = engine.device_kv().allocated_bytes();
  s.host_kv_bytes_used = engine.host_kv().allocated_bytes();
  s.kv_fragmentation = engine.device_kv().fragmentation();
  s.swaps_out = engine.stats().swaps_out;
  s.swaps_in = engine.stats().swaps_in;
  s.weight_bytes_copied = engine.stats().weight_bytes_copied;
  s.kv_bytes_swapped = engine.stats().kv_bytes_out + engine.stats().kv_bytes_in;
}

void count_step(instance_stats& counts, const std::vector<step_entry>& step,
                const std::vector<sequence*>& chosen, double seconds) {
  ++counts.steps;
  counts.step_seconds += seconds;
  bool decoding = !step.empty();
  for (std::size_t i = 0; i < step.size() && decoding; ++i)
    decoding = step[i].feed == 1 && chosen[i]->kv.tokens > 0; // a one-token prompt reads
  if (decoding) {
    ++counts.decode_steps;
    counts.decode_sequences += step.size();
    counts.decode_step_seconds += seconds;
  }
}

models::token_logprobs token_logprobs_in(const models::engine& engine, std::int32_t top,
                                         const kernels::sampling_row& rule, std::int32_t token,
                                         std::size_t row, std::size_t vocab) {
  const auto logits = engine.logits();
  if (top < 0 || logits.size() < (row + 1) * vocab)
    return {};
  return models::logprobs_of(logits.subspan(row * vocab, vocab), rule, token,
                             static_cast<std::size_t>(top));
}

bool prompt_groups::join(std::unique_ptr<sequence>& seq, const instance_state& state) {
  const auto& r = seq->request;
  if (r.prompt_group == 0 || r.generated_before != 0)
    return false;
  const auto it = leaders_.find(r.prompt_group);
  const sequence* leader = it != leaders_.end() ? state.find(it->second) : nullptr;
  if (leader == nullptr) {
    leaders_[r.prompt_group] = r.id;
    return false;
  }
  if (leader->model != seq->model || leader->request.prompt != r.prompt)
    return false; // not the group's prompt after all: it reads its own, and leads nothing
  followers_.emplace(r.prompt_group, std::move(seq));
  return true;
}

std::vector<std::unique_ptr<sequence>> prompt_groups::release(const sequence& leader) {
  std::vector<std::unique_ptr<sequence>> out;
  const auto group = leader.request.prompt_group;
  const auto it = leaders_.find(group);
  if (group == 0 || it == leaders_.end() || it->second != leader.request.id)
    return out;
  leaders_.erase(it);
  auto [from, to] = followers_.equal_range(group);
  for (auto f = from; f != to; ++f)
    out.push_back(std::move(f->second));
  followers_.erase(from, to);
  return out;
}

std::unique_ptr<sequence> prompt_groups::take(std::uint64_t id) {
  for (auto it = followers_.begin(); it != followers_.end(); ++it)
    if (it->second->request.id == id) {
      auto seq = std::move(it->second);
      followers_.erase(it);
      return seq;
    }
  return nullptr;
}

std::vector<std::unique_ptr<sequence>> prompt_groups::take_all() {
  std::vector<std::unique_ptr<sequence>> out;
  for (auto& [group, seq] : followers_)
    out.push_back(std::move(seq));
  followers_.clear();
  leaders_.clear();
  return out;
}

std::vector<std::uint64_t> prompt_groups::ids_of_sink(const caf::actor_addr& sink) const {
  std::vector<std::uint64_t> out;
  for (const auto& [group, seq] : followers_)
    if (seq->request.sink.address() == sink)
      out.push_back(seq->request.id);
  return out;
}

std::size_t switch_log::began(time_point at, std::string from, std::string to, bool prefetched) {
  if (entries_.size() == capacity) {
    entries_.pop_front();
    ++first_;
  }
  entries_.push_back({at, {0, std::move(from), std::move(to), -1, prefetched}});
  return first_ + entries_.size() - 1;
}

void switch_log::scaled_up(std::size_t n, double seconds) {
  if (n >= first_ && n - first_ < entries_.size())
    entries_[n - first_].record.scale_up_seconds = seconds;
}

std::vector<switch_record> switch_log::report(time_point now) const {
  std::vector<switch_record> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) {
    out.push_back(e.record);
    out.back().seconds_ago = std::chrono::duration<double>(now - e.at).count();
  }
  return out;
}

models::instance_sizing sizing_of(std::vector<models::model_footprint> models,
                                  const instance_options& options) {
  models::instance_sizing s;
  s.models = std::move(models);
  s.limits = {options.max_batch_tokens, options.max_seqs, 0};
  s.kv_bytes = options.kv_bytes;
  s.weight_bytes = options.weight_bytes;
  s.slab_bytes = options.slab_bytes;
  return s;
}

bool blocked_with_work(const step_view& v) {
  return std::any_of(v.models.begin(), v.models.end(),
                     [](const model_view& m) { return m.blocked && m.has_work(); });
}

bool step_in_flight::take(instance_state& state, bool logits) {
  steps.resize(step.size());
  kvs.resize(step.size());
  chosen.resize(step.size());
  bool want_logits = false;
  for (std::size_t i = 0; i < step.size(); ++i) {
    sequence& s = *(chosen[i] = &state.at(step[i].seq));
    const std::size_t feed = step[i].feed;
    const bool samples = s.kv.tokens + feed == s.tokens.size();
    steps[i] = {std::span(s.tokens).subspan(s.kv.tokens, feed), s.kv.tokens, s.kv.blocks, samples,
                models::sampling_row_for(s.request.sampling, s.generated)};
    kvs[i] = &s.kv;
    want_logits |= samples && s.request.logprobs >= 0 && logits;
    s.in_step = true;
  }
  return want_logits;
}

// --- standing_turn -------------------------------------------------------------------------

bool standing_turn::holds(std::uint64_t work, std::size_t active,
                          sched::seconds turn_elapsed) const {
  return held_ && held_->work == work && held_->active == active &&
         turn_elapsed < held_->decision.holds_below;
}

bool standing_turn::repeats(const instance_state& state, std::size_t active) const {
  return repeatable_ && state.step_repeats(last_step_, active);
}

void standing_turn::planned(const step_plan& plan, const sched::turn_decision* fresh, bool hidden,
                            std::uint64_t work, std::size_t active, std::size_t refused) {
  const bool no_change =
      plan.actions.empty() ||
      (plan.actions.size() == 1 && plan.actions.front() == plan_action{prefetch_model{refused}});
  repeatable_ = no_change && !plan.restart_turn && !plan.step.empty() &&
                std::all_of(plan.step.begin(), plan.step.end(),
                            [](const step_entry& e) { return e.feed == 1; });
  if (repeatable_) {
    last_step_ = plan.step;
    last_actions_ = plan.actions;
  }
  // A plan with no step blocked its model (or awaits room): the next view differs from the one
  // the policy saw, so only a fresh decision made on it (below) may stand.
  if (plan.step.empty())
    held_.reset();
  if (fresh == nullptr)
    return;
  held_.reset();
  if (fresh->holds_below <= sched::seconds{0} || hidden)
    return;
  held_ = held{*fresh, work, active};
  held_->decision.new_turn = held_->decision.next_batch = false;
}

void standing_turn::drop() noexcept {
  held_.reset();
  repeatable_ = false;
}

bool standing_turn::expect(const sched::turn_decision& fresh, const step_plan& plan,
                           bool repeated) const {
  const auto& d = held_->decision;
  if (fresh.run != d.run || fresh.prefetch != d.prefetch || fresh.new_turn ||
      fresh.holds_below != d.holds_below)
    throw error_exception(error{errc::internal, "the switch policy's decision to run '" + d.run +
                                                    "' stood, but asked again it decides '" +
                                                    fresh.run + "'"});
  if (repeated && (plan.actions != last_actions_ || plan.restart_turn || plan.step != last_step_))
    throw error_exception(
        error{errc::internal, "a repeated step differs from the step planned afresh"});
  return repeated;
}

} // namespace aeg::actors
