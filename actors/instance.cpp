#include "actors/instance.hpp"

#include "actors/coro_actor.hpp"
#include "actors/generation.hpp"
#include "gpu/block_allocator.hpp"
#include "gpu/event_awaiter.hpp"
#include "kernels/context.hpp"
#include "models/llama/runner.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <deque>
#include <set>
#include <unordered_map>

namespace aeg::actors {

std::string_view to_string(finish_reason r) noexcept {
  switch (r) {
  case finish_reason::stop:
    return "stop";
  case finish_reason::length:
    return "length";
  case finish_reason::cancelled:
    return "cancelled";
  case finish_reason::error:
    return "error";
  }
  return "error";
}

namespace {

// Device memory an instance leaves unused when it sizes its KV pool itself.
constexpr double kv_headroom = 0.05;

struct sequence {
  generation_request request;
  std::vector<std::int32_t> tokens; // prompt, then what was generated
  std::size_t in_kv = 0;            // leading tokens whose K and V are in the cache
  std::size_t generated = 0;
  std::vector<std::int32_t> blocks;
  bool cancelled = false;
  bool in_step = false;

  std::size_t pending() const { return tokens.size() - in_kv; }
};

class instance final : public coro_actor {
public:
  instance(caf::actor_config& cfg, std::shared_ptr<gpu::device> dev,
           std::shared_ptr<const models::model_image> image, instance_options options)
      : coro_actor(cfg), dev_(std::move(dev)), image_(std::move(image)), options_(options) {
    set_down_handler([this](caf::down_msg& m) { sink_down(m.source); });
  }

  caf::behavior make_behavior() override {
    spawn(start());
    return with_coroutines([this](generate_atom, generation_request& r) { admit(std::move(r)); },
                           [this](cancel_atom, std::uint64_t id) { cancel(id); },
                           [this](stats_atom) { return stats(); });
  }

  void on_exit() override {
    // Work still queued on the stream uses the buffers below: destroying the stream lets it
    // finish first (the only wait, and only at shutdown). Then the suspended step loop goes,
    // and the actor holds nothing that must be released on a particular thread.
    ctx_.reset();
    stream_.reset();
    coro_actor::on_exit();
    for (auto& [id, seq] : seqs_)
      notify_done(*seq, finish_reason::error, "the instance serving this request stopped");
    running_.clear();
    waiting_.clear();
    seqs_.clear();
    event_.reset();
    runner_.reset();
    blocks_.reset();
    kv_memory_ = {};
    weights_ = {};
  }

private:
  const models::llama_config& config() const { return image_->config(); }

  // Makes the model resident, then serves.
  coro::task<void> start() {
    try {
      stream_ = value_or_throw(dev_->create_stream());
      ctx_ = value_or_throw(kernels::context::create(*stream_));
      event_ = value_or_throw(dev_->create_event());
      models::step_limits limits{options_.max_batch_tokens, options_.max_seqs, 0};
      runner_ = value_or_throw(models::llama_runner::create(*dev_, *ctx_, config(), limits));
      const auto bytes = image_->bytes();
      weights_ = value_or_throw(dev_->allocate(bytes.size()));
      value_or_throw(stream_->copy(weights_.data(), bytes.data(), bytes.size(),
                                   gpu::copy_kind::host_to_device));
      value_or_throw(stream_->record(*event_));
      co_await *event_;
      kv_ = config().kv(image_->format().kv_type());
      std::size_t kv_bytes = options_.kv_bytes;
      if (kv_bytes == 0)
        kv_bytes =
            static_cast<std::size_t>(static_cast<double>(dev_->free_bytes()) * (1.0 - kv_headroom));
      const std::size_t num_blocks = kv_bytes / kv_.block_bytes();
      if (num_blocks == 0)
        throw error_exception(
            error{errc::out_of_memory, "no device memory left for a single KV block of " +
                                           config().name + " on " + dev_->name()});
      kv_memory_ = value_or_throw(dev_->allocate(num_blocks * kv_.block_bytes()));
      blocks_ = std::make_unique<gpu::block_allocator>(num_blocks);
      ready_ = true;
    } catch (const std::exception& e) {
      start_error_ = e.what();
      for (auto& [id, seq] : seqs_)
        notify_done(*seq, finish_reason::error, start_error_);
      seqs_.clear();
      waiting_.clear();
      throw;
    }
    wake();
  }

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
    if (seqs_.count(id) != 0)
      return reject("request id " + std::to_string(id) + " is already in use on this instance");
    if (r.prompt.empty())
      return reject("the prompt is empty");
    if (r.prompt.size() >= config().context_length)
      return reject("the prompt has " + std::to_string(r.prompt.size()) +
                    " tokens; the context holds " + std::to_string(config().context_length));
    for (auto t : r.prompt)
      if (t < 0 || static_cast<std::size_t>(t) >= config().vocab_size)
        return reject("token id " + std::to_string(t) + " is outside the vocabulary");
    if (r.max_tokens == 0)
      return reject("max_tokens must be at least 1");
    if (r.sink && monitored_.insert(r.sink.address()).second)
      monitor(r.sink);
    auto seq = std::make_unique<sequence>();
    seq->tokens = r.prompt;
    seq->request = std::move(r);
    waiting_.push_back(seq.get());
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
    if (blocks_) {
      s.kv_blocks = blocks_->num_blocks();
      s.kv_blocks_free = blocks_->num_free();
    }
    s.running = running_.size();
    s.waiting = waiting_.size();
    s.steps = steps_;
    s.tokens_generated = tokens_generated_;
    s.preemptions = preemptions_;
    s.ready = ready_;
    return s;
  }

  void wake() {
    if (ready_ && !looping_ && (!running_.empty() || !waiting_.empty())) {
      looping_ = true;
      spawn(step_loop());
    }
  }

  // Tries to give `seq` enough blocks for `tokens` tokens in all.
  bool reserve(sequence& seq, std::size_t tokens) {
    const std::size_t need = kernels::kv_geometry::blocks_for(tokens);
    if (need <= seq.blocks.size())
      return true;
    return blocks_->allocate(need - seq.blocks.size(), seq.blocks).has_value();
  }

  // Sends `seq` back to the front of the queue without its KV: it is recomputed when readmitted.
  void preempt(sequence* seq) {
    blocks_->free(seq->blocks);
    seq->blocks.clear();
    seq->in_kv = 0;
    std::erase(running_, seq);
    waiting_.push_front(seq);
    ++preemptions_;
  }

  struct planned {
    sequence* seq;
    std::size_t feed;
  };

  // Chooses this step's work: every running sequence's next chunk, then waiting ones in
  // arrival order while tokens, sequences and KV blocks last. When KV runs out, the most
  // recently admitted sequences not yet in this step give theirs back (recomputed later).
  std::vector<planned> plan_step() {
    std::vector<planned> chosen;
    std::size_t budget = options_.max_batch_tokens;
    for (std::size_t i = 0;
         i < running_.size() && budget > 0 && chosen.size() < options_.max_seqs;) {
      sequence* seq = running_[i];
      const std::size_t feed = std::min(seq->pending(), budget);
      if (!reserve(*seq, seq->in_kv + feed)) {
        if (running_.size() > i + 1) {
          preempt(running_.back());
          continue; // retry with the blocks it gave back
        }
        if (!chosen.empty() || !waiting_.empty()) {
          preempt(seq); // others hold the KV now; this one waits its turn
          break;
        }
        finish(*seq, finish_reason::error,
               "the KV cache (" + std::to_string(blocks_->num_blocks()) +
                   " blocks) cannot hold this request's context");
        continue;
      }
      budget -= feed;
      chosen.push_back({seq, feed});
      ++i;
    }
    while (!waiting_.empty() && budget > 0 && chosen.size() < options_.max_seqs) {
      sequence* seq = waiting_.front();
      const std::size_t feed = std::min(seq->pending(), budget);
      if (!reserve(*seq, seq->in_kv + feed)) {
        if (running_.empty() && chosen.empty()) {
          finish(*seq, finish_reason::error,
                 "the prompt needs more KV blocks than this instance has (" +
                     std::to_string(blocks_->num_blocks()) + ")");
          continue;
        }
        break; // first come, first served: wait for blocks to free up
      }
      waiting_.pop_front();
      running_.push_back(seq);
      budget -= feed;
      chosen.push_back({seq, feed});
    }
    return chosen;
  }

  coro::task<void> step_loop() {
    while (!running_.empty() || !waiting_.empty()) {
      const auto chosen = plan_step();
      if (chosen.empty())
        continue; // everything left ended with an error while planning
      std::vector<models::sequence_step> steps;
      for (const auto& [seq, feed] : chosen) {
        const bool samples = seq->in_kv + feed == seq->tokens.size();
        steps.push_back({std::span(seq->tokens).subspan(seq->in_kv, feed), seq->in_kv, seq->blocks,
                         samples, models::sampling_row_for(seq->request.sampling, seq->generated)});
        seq->in_step = true;
      }
      const models::device_weights w{&config(), &image_->layout(), weights_.as<std::byte>()};
      auto enqueued = runner_->enqueue(w, kv_.type, steps, kv_memory_.data());
      if (enqueued)
        enqueued = stream_->record(*event_);
      if (!enqueued) {
        for (const auto& p : chosen) {
          p.seq->in_step = false;
          finish(*p.seq, finish_reason::error,
                 "the forward step failed: " + enqueued.error().message);
        }
        continue;
      }
      co_await *event_; // resumes inside this actor; other messages are handled meanwhile
      ++steps_;
      const auto sampled = runner_->sampled();
      std::size_t next = 0;
      for (std::size_t i = 0; i < chosen.size(); ++i) {
        sequence& seq = *chosen[i].seq;
        seq.in_step = false;
        seq.in_kv += chosen[i].feed;
        const std::int32_t token = steps[i].sample ? sampled[next++] : -1;
        if (seq.cancelled)
          finish(seq, finish_reason::cancelled);
        else if (steps[i].sample)
          take_token(seq, token);
      }
    }
    looping_ = false;
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
    if (seq.generated >= r.max_tokens || seq.tokens.size() >= config().context_length)
      finish(seq, finish_reason::length);
  }

  void notify_done(const sequence& seq, finish_reason reason, const std::string& message) {
    if (seq.request.sink)
      caf::anon_send(seq.request.sink, done_atom::value,
                     generation_result{seq.request.id, reason, seq.request.prompt.size(),
                                       seq.generated, message});
  }

  // Ends `seq`: its blocks go back to the pool and its sink hears why.
  void finish(sequence& seq, finish_reason reason, const std::string& message = {}) {
    if (blocks_)
      blocks_->free(seq.blocks);
    seq.blocks.clear();
    std::erase(running_, &seq);
    std::erase(waiting_, &seq);
    notify_done(seq, reason, message);
    seqs_.erase(seq.request.id); // destroys seq
  }

  std::shared_ptr<gpu::device> dev_;
  std::shared_ptr<const models::model_image> image_;
  instance_options options_;
  std::unique_ptr<gpu::stream> stream_;
  std::unique_ptr<kernels::context> ctx_;
  std::unique_ptr<gpu::event> event_;
  std::unique_ptr<models::llama_runner> runner_;
  gpu::buffer weights_;
  gpu::buffer kv_memory_;
  kernels::kv_geometry kv_;
  std::unique_ptr<gpu::block_allocator> blocks_;
  std::unordered_map<std::uint64_t, std::unique_ptr<sequence>> seqs_;
  std::deque<sequence*> running_; // admission order
  std::deque<sequence*> waiting_;
  std::set<caf::actor_addr> monitored_;
  bool ready_ = false;
  bool looping_ = false;
  std::string start_error_;
  std::size_t steps_ = 0, tokens_generated_ = 0, preemptions_ = 0;
};

} // namespace

caf::actor spawn_instance(caf::actor_system& sys, std::shared_ptr<gpu::device> dev,
                          std::shared_ptr<const models::model_image> image,
                          instance_options options) {
  return sys.spawn<instance>(std::move(dev), std::move(image), options);
}

} // namespace aeg::actors
