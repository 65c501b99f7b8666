#include "models/engine.hpp"

#include "coro/assert.hpp"
#include "gpu/sim/sim_device.hpp"
#include "models/sim_costs.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

namespace aeg::models {

namespace {

// The byte ranges of an image copied as pieces: the embedding, each layer, the rest.
std::vector<std::pair<std::size_t, std::size_t>> pieces_of(const llama_layout& l) {
  std::vector<std::pair<std::size_t, std::size_t>> p;
  std::size_t start = 0;
  for (const auto& layer : l.layers) {
    p.emplace_back(start, layer.attn_norm.offset);
    start = layer.attn_norm.offset;
  }
  p.emplace_back(start, l.output_norm.offset);
  p.emplace_back(l.output_norm.offset, l.total_bytes);
  return p;
}

// Makes `s` wait for every event not yet complete (no thread waits).
result<void> wait_all(gpu::stream& s, const std::vector<std::shared_ptr<gpu::event>>& events) {
  for (const auto& e : events)
    if (e && !e->query())
      AEG_TRY(s.wait(*e));
  return {};
}

// Copies blocks `from` of `src` into blocks `to` of `dst` on `s`, after `after`, then records
// `done`. On failure `to` goes back to `dst` behind whatever may still use it.
result<void> copy_blocks(gpu::stream& s, const gpu::kv_pool& src,
                         std::span<const std::int32_t> from, gpu::kv_pool& dst,
                         std::vector<std::int32_t>& to, std::size_t bb, gpu::copy_kind kind,
                         std::vector<std::shared_ptr<gpu::event>>& after,
                         const std::shared_ptr<gpu::event>& done) {
  auto copied = wait_all(s, after);
  for (std::size_t i = 0; copied && i < from.size(); ++i)
    copied = s.copy(dst.block(bb, to[i]), src.block(bb, from[i]), bb, kind);
  if (copied)
    copied = s.record(*done);
  if (!copied) {
    if (s.record(*done))
      after.push_back(done);
    dst.free_after(bb, std::move(to), std::move(after));
  }
  return copied;
}

// A KV cache whose last copy the device failed holds nothing to read: those copies are waited
// for by querying (a failed event reads as finished), so they are checked here.
result<void> intact(const kv_handle& kv) {
  if (kv.ready)
    if (auto why = kv.ready->failure(); !why.empty())
      return fail(errc::device_error, "the copy that moved this KV cache failed: " + why);
  return {};
}

// An unsized KV pool takes this share of the memory left after the weights and buffers (the
// rest is a margin for the backend's own allocations).
constexpr double kv_share_of_free = 0.95;

} // namespace

device_plan engine::device_bytes(const llama_config& largest, const engine_options& o,
                                 std::size_t kv_slabs) {
  device_plan plan;
  plan.weights = gpu::allocation_bytes(o.weight_bytes);
  plan.buffers = llama_runner::device_bytes(largest, o.limits);
  if (o.kv_bytes != 0) {
    plan.kv = gpu::allocation_bytes(o.kv_bytes);
    return plan;
  }
  const std::size_t want = std::max<std::size_t>(kv_slabs, 1) * o.slab_bytes;
  auto left = static_cast<std::size_t>(std::ceil(static_cast<double>(want) / kv_share_of_free));
  while (static_cast<std::size_t>(static_cast<double>(left) * kv_share_of_free) < want)
    ++left; // the rounding `create` does must still give whole slabs
  plan.kv = std::max(left, gpu::allocation_bytes(want));
  return plan;
}

std::size_t engine::kv_bytes_of_free(std::size_t free_bytes) noexcept {
  return static_cast<std::size_t>(static_cast<double>(free_bytes) * kv_share_of_free);
}

result<std::unique_ptr<engine>> engine::create(std::shared_ptr<gpu::device> dev,
                                               std::shared_ptr<gpu::kv_pool> host_kv,
                                               const llama_config& largest,
                                               const engine_options& o) {
  auto e = std::unique_ptr<engine>(new engine);
  e->dev_ = std::move(dev);
  e->host_kv_ = std::move(host_kv);
  auto& d = *e->dev_;
  e->sim_ = d.kind() == gpu::backend_kind::sim;
  for (auto* s : {&e->compute_, &e->copy_, &e->swap_in_, &e->swap_out_}) {
    AEG_TRY_ASSIGN(auto stream, d.create_stream());
    *s = std::move(stream);
  }
  AEG_TRY_ASSIGN(auto ctx, kernels::context::create(*e->compute_));
  e->ctx_ = std::move(ctx);
  AEG_TRY_ASSIGN(auto runner, llama_runner::create(d, *e->ctx_, largest, o.limits));
  e->runner_ = std::move(runner);
  auto weights = d.allocate(o.weight_bytes);
  if (!weights)
    return fail(weights.error().code, "no room for " + std::to_string(o.weight_bytes >> 20) +
                                          " MiB of weight memory on " + d.name() + ": " +
                                          weights.error().message);
  e->arena_ = std::make_unique<gpu::weight_arena>(std::move(*weights));
  // The KV pool takes what is left when no size is given (less a margin for the backend).
  const std::size_t kv_bytes = o.kv_bytes != 0 ? o.kv_bytes : kv_bytes_of_free(d.free_bytes());
  auto kv = d.allocate(kv_bytes);
  if (!kv)
    return fail(kv.error().code, "no room for " + std::to_string(kv_bytes >> 20) +
                                     " MiB of KV cache on " + d.name() + ": " + kv.error().message);
  e->device_kv_ = std::make_unique<gpu::kv_pool>(std::move(*kv), o.slab_bytes);
  if (e->device_kv_->num_slabs() == 0)
    return fail(errc::out_of_memory,
                "the KV cache on " + d.name() + " (" + std::to_string(kv_bytes >> 20) +
                    " MiB) holds no slab of " + std::to_string(o.slab_bytes >> 20) +
                    " MiB; give the instance more memory or use smaller slabs");
  AEG_TRY_ASSIGN(auto ev, d.create_event());
  e->step_done_ = std::shared_ptr<gpu::event>(std::move(ev));
  return e;
}

engine::~engine() {
  // Queued work reads and writes the memory below: let every stream finish first.
  ctx_.reset();
  compute_.reset();
  copy_.reset();
  swap_in_.reset();
  swap_out_.reset();
}

result<bool> engine::prefetch(std::shared_ptr<const model_image> image) {
  if (!fits(image->config()))
    return false;
  if (staged_.image == image)
    return true;
  if (!arena_->fits_beside_active(image->bytes().size())) {
    if (staged_.image)
      unstage();
    return false;
  }
  AEG_TRY(stage(std::move(image)));
  return true;
}

result<void> engine::stage(std::shared_ptr<const model_image> image) {
  const auto& cfg = image->config();
  if (!fits(cfg))
    return fail(errc::invalid_argument,
                "model " + cfg.name + " is larger than the shapes this engine was made for");
  // Already there: a model kept resident beside the active one.
  if (staged_.image == image)
    return {};
  if (staged_.image) // replaced: its copies were enqueued before ours on the same stream
    unstage();
  const auto bytes = image->bytes();
  AEG_TRY_ASSIGN(auto base, arena_->stage(bytes.size()));
  const auto pieces = pieces_of(image->layout());
  resident r;
  if (sim_) {
    const auto& sim = static_cast<const gpu::sim_device&>(*dev_);
    r.sim_fit = sim_costs(sim.profile(), cfg, bytes.size(),
                          cfg.kv(image->format().kv_type()).block_bytes() /
                              kernels::kv_geometry::block_tokens);
    // What a scale-up takes beside its copy. Measured in a pool (`aegaeon profile
    // --switches-from`), it is mostly the copy waiting for cores that other devices' steps hold:
    // those steps are charged already, so it delays this stream and holds up no one else. It
    // runs after the copies queued before, beside a step of this device still in flight.
    static_cast<gpu::sim_stream&>(*copy_).delay(gpu::sim_seconds(sim.profile().switch_seconds));
  }
  r.image = std::move(image);
  r.base = base;
  while (r.pieces.size() < pieces.size()) {
    if (!spare_pieces_.empty()) {
      r.pieces.push_back(std::move(spare_pieces_.back()));
      spare_pieces_.pop_back();
      continue;
    }
    AEG_TRY_ASSIGN(auto ev, dev_->create_event());
    r.pieces.push_back(std::move(ev));
  }
  // The space may have held a model the steps already enqueued still read.
  AEG_TRY(copy_->wait(*step_done_));
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const auto [from, to] = pieces[i];
    if (to > from)
      AEG_TRY(copy_->copy(r.base + from, bytes.data() + from, to - from,
                          gpu::copy_kind::host_to_device));
    AEG_TRY(copy_->record(*r.pieces[i]));
  }
  ++stats_.scale_ups;
  stats_.weight_bytes_copied += bytes.size();
  staged_ = std::move(r);
  return {};
}

result<bool> engine::scale_up(std::shared_ptr<const model_image> image, bool keep_leaving) {
  const bool prefetched = staged_.image == image;
  if (!prefetched && !stage(image)) {
    deactivate(); // no room beside the active model: it goes first
    AEG_TRY(stage(std::move(image)));
  }
  if (keep_leaving && active_.image) {
    // Both stay: the leaving model's weights (and their ready events) become the staged ones.
    std::swap(active_, staged_);
    arena_->swap();
    return prefetched;
  }
  activate();
  return prefetched;
}

void engine::activate() {
  AEG_ASSERT(staged_.image != nullptr, "engine: no staged model to activate");
  for (auto& ev : active_.pieces)
    spare_pieces_.push_back(std::move(ev));
  arena_->activate();
  active_ = std::move(staged_);
  staged_ = {};
}

void engine::unstage() noexcept {
  for (auto& ev : staged_.pieces)
    spare_pieces_.push_back(std::move(ev));
  staged_ = {};
  arena_->drop_staged();
}

void engine::deactivate() noexcept {
  for (auto& ev : active_.pieces)
    spare_pieces_.push_back(std::move(ev));
  active_ = {};
  arena_->drop_active();
}

result<void> engine::reserve(kv_handle& kv, const kernels::kv_geometry& geometry,
                             std::size_t tokens) {
  if (kv.where == kv_handle::place::host)
    return fail(errc::invalid_argument, "the KV cache is on the host: swap it in first");
  if (kv.where == kv_handle::place::none) {
    kv.geometry = geometry;
    kv.where = kv_handle::place::device;
  } else if (!(kv.geometry == geometry)) {
    return fail(errc::invalid_argument, "a KV cache cannot change its geometry");
  }
  const std::size_t need = kernels::kv_geometry::blocks_for(tokens);
  if (need <= kv.blocks.size())
    return {};
  const std::size_t had = kv.blocks.size();
  std::vector<std::shared_ptr<gpu::event>> after;
  AEG_TRY(device_kv_->allocate_after(kv.block_bytes(), need - had, kv.blocks, after));
  if (after.empty())
    return {};
  // Some blocks came from the move list, still being copied out for their last owner: the steps
  // that write them wait for those copies, and so does whatever waits for this cache (a
  // swap-out, a release), through a new `ready`.
  if (kv.ready)
    after.push_back(kv.ready);
  auto ev = dev_->create_event();
  result<void> ordered = ev ? wait_all(*compute_, after) : tl::unexpected(ev.error());
  if (ordered)
    ordered = compute_->record(**ev);
  if (!ordered) { // the new blocks go back behind the transfers they were taken from
    std::vector<std::int32_t> taken(kv.blocks.begin() + static_cast<std::ptrdiff_t>(had),
                                    kv.blocks.end());
    kv.blocks.resize(had);
    device_kv_->free_after(kv.block_bytes(), std::move(taken), std::move(after));
    return ordered;
  }
  kv.ready = std::shared_ptr<gpu::event>(std::move(*ev));
  return {};
}

void engine::reclaim() {
  device_kv_->reclaim();
  host_kv_->reclaim();
}

bool engine::can_reserve(const kernels::kv_geometry& geometry, std::size_t blocks) const {
  device_kv_->reclaim();
  return device_kv_->num_available(geometry.block_bytes()) >= blocks;
}

result<void> engine::swap_out(kv_handle& kv) {
  if (kv.where != kv_handle::place::device)
    return fail(errc::invalid_argument, "swap_out: the KV cache is not on the device");
  AEG_TRY(intact(kv));
  const std::size_t bb = kv.block_bytes();
  std::vector<std::int32_t> host;
  std::vector<std::shared_ptr<gpu::event>> after; // host blocks still being read by a swap-in
  AEG_TRY(host_kv_->allocate_after(bb, kv.blocks.size(), host, after));
  auto done = dev_->create_event();
  if (!done) {
    host_kv_->free_after(bb, std::move(host), std::move(after));
    return tl::unexpected(done.error());
  }
  std::shared_ptr<gpu::event> ev(std::move(*done));
  // After the steps that wrote it, any swap-in still filling it, and the transfers still using
  // the host blocks it goes to.
  after.push_back(step_done_);
  if (kv.ready)
    after.push_back(kv.ready);
  // On failure the cache stays on the device.
  AEG_TRY(copy_blocks(*swap_out_, *device_kv_, kv.blocks, *host_kv_, host, bb,
                      gpu::copy_kind::device_to_host, after, ev));
  device_kv_->free_after(bb, std::move(kv.blocks), {ev});
  kv.blocks = std::move(host);
  kv.where = kv_handle::place::host;
  kv.ready = ev;
  ++stats_.swaps_out;
  stats_.kv_bytes_out += bb * kv.blocks.size();
  return {};
}

result<void> engine::swap_in(kv_handle& kv) {
  if (kv.where != kv_handle::place::host)
    return fail(errc::invalid_argument, "swap_in: the KV cache is not on the host");
  AEG_TRY(intact(kv));
  const std::size_t bb = kv.block_bytes();
  std::vector<std::int32_t> device;
  std::vector<std::shared_ptr<gpu::event>> after; // device blocks still being copied out
  AEG_TRY(device_kv_->allocate_after(bb, kv.blocks.size(), device, after));
  auto done = dev_->create_event();
  if (!done) {
    device_kv_->free_after(bb, std::move(device), std::move(after));
    return tl::unexpected(done.error());
  }
  std::shared_ptr<gpu::event> ev(std::move(*done));
  if (kv.ready) // the swap-out that wrote the host blocks
    after.push_back(kv.ready);
  // On failure the cache stays on the host.
  AEG_TRY(copy_blocks(*swap_in_, *host_kv_, kv.blocks, *device_kv_, device, bb,
                      gpu::copy_kind::host_to_device, after, ev));
  host_kv_->free_after(bb, std::move(kv.blocks), {ev});
  kv.blocks = std::move(device);
  kv.where = kv_handle::place::device;
  kv.ready = ev;
  ++stats_.swaps_in;
  stats_.kv_bytes_in += bb * kv.blocks.size();
  return {};
}

result<void> engine::fork_kv(const kv_handle& from, kv_handle& to, std::size_t tokens) {
  if (from.where != kv_handle::place::device || to.where != kv_handle::place::none)
    return fail(errc::invalid_argument, "fork_kv copies a KV cache on the device to an empty one");
  AEG_TRY(intact(from));
  const std::size_t n = kernels::kv_geometry::blocks_for(tokens);
  if (n > from.blocks.size() || tokens > from.tokens)
    return fail(errc::invalid_argument, "fork_kv: the KV cache holds fewer tokens than asked");
  const std::size_t bb = from.block_bytes();
  std::vector<std::int32_t> blocks;
  std::vector<std::shared_ptr<gpu::event>> after; // blocks still being copied out, its own copy
  AEG_TRY(device_kv_->allocate_after(bb, n, blocks, after));
  if (from.ready)
    after.push_back(from.ready);
  // Recording step_done_ after the copies makes every release and swap-out of either cache,
  // which wait for it, wait for them too.
  AEG_TRY(copy_blocks(*compute_, *device_kv_, std::span(from.blocks).first(n), *device_kv_, blocks,
                      bb, gpu::copy_kind::device_to_device, after, step_done_));
  to.geometry = from.geometry;
  to.where = kv_handle::place::device;
  to.blocks = std::move(blocks);
  to.tokens = tokens;
  return {};
}

void engine::release(kv_handle& kv) {
  const std::size_t bb = kv.block_bytes();
  if (kv.where == kv_handle::place::device)
    device_kv_->free_after(bb, std::move(kv.blocks), {kv.ready, step_done_});
  else if (kv.where == kv_handle::place::host)
    host_kv_->free_after(bb, std::move(kv.blocks), {kv.ready});
  kv = {};
}

result<void> engine::enqueue_step(std::span<const sequence_step> steps,
                                  std::span<kv_handle* const> kv, bool want_logits) {
  if (!active_.image)
    return fail(errc::invalid_argument, "no active model: scale one up first");
  if (steps.size() != kv.size())
    return fail(errc::invalid_argument, "one KV cache per sequence");
  sim_costs_.reset();
  // On a simulated device: where the step could start, before the waits for its KV.
  auto kv_from = sim_ ? std::make_shared<gpu::sim_clock::time_point>() : nullptr;
  if (kv_from)
    static_cast<gpu::sim_stream&>(*compute_).when_reached([kv_from](auto t) { *kv_from = t; });
  for (auto* k : kv) {
    if (k->where != kv_handle::place::device)
      return fail(errc::invalid_argument, "a sequence's KV cache is not on the device");
    AEG_TRY(intact(*k));
    if (k->ready && !k->ready->query())
      AEG_TRY(compute_->wait(*k->ready)); // rule 1: a sequence computes once its KV is in
  }
  std::vector<gpu::event*> pieces;
  if (!active_.copied) {
    active_.copied = active_.pieces.back()->query();
    if (!active_.copied)
      for (auto& ev : active_.pieces)
        pieces.push_back(ev.get());
  }
  if (sim_) {
    if (want_logits)
      return fail(errc::invalid_argument, "a simulated device computes no logits");
    auto costs = std::make_shared<step_costs>();
    static_cast<gpu::sim_stream&>(*compute_).when_reached([costs, kv_from](auto kv_in) {
      costs->kv_wait_seconds = std::chrono::duration<double>(kv_in - *kv_from).count();
    });
    AEG_TRY(enqueue_sim_step(steps, pieces, *costs));
    sim_costs_ = std::move(costs);
    return compute_->record(*step_done_);
  }
  const auto& image = *active_.image;
  const device_weights w{&image.config(), &image.layout(), active_.base};
  AEG_TRY(runner_->enqueue(w, image.format().kv_type(), steps, device_kv_->base(), want_logits,
                           pieces));
  return compute_->record(*step_done_);
}

result<void> engine::enqueue_sim_step(std::span<const sequence_step> steps,
                                      std::span<gpu::event* const> pieces, step_costs& costs) {
  auto& s = static_cast<gpu::sim_stream&>(*compute_);
  const double seconds = sim_step_seconds(active_.sim_fit, steps);
  costs.compute_seconds = seconds;
  // The first layer computes once it is in and the last once the copy has ended: a step of a
  // model still arriving ends no earlier than its last layer's share after the copy.
  const double last_share =
      pieces.empty() ? 0 : 1.0 / static_cast<double>(active_.image->config().num_layers);
  if (!pieces.empty())
    AEG_TRY(s.wait(*pieces.front()));
  s.busy(gpu::sim_seconds(seconds * (1 - last_share)));
  if (!pieces.empty()) {
    AEG_TRY(s.wait(*pieces.back()));
    s.busy(gpu::sim_seconds(seconds * last_share));
  }
  const auto token = static_cast<std::int32_t>(active_.image->config().vocab_size / 2);
  sim_sampled_.clear();
  for (const auto& st : steps)
    if (st.sample)
      sim_sampled_.push_back(token);
  return {};
}

llama_config largest_shape(std::span<const llama_config> configs) {
  llama_config out;
  out.name = "largest";
  out.head_dim = 32; // widths below are in units of 32; only the products matter to buffers
  std::size_t q_width = 0, kv_width = 0;
  for (const auto& c : configs) {
    out.num_layers = std::max(out.num_layers, c.num_layers);
    out.dim = std::max(out.dim, c.dim);
    out.ffn_dim = std::max(out.ffn_dim, c.ffn_dim);
    out.vocab_size = std::max(out.vocab_size, c.vocab_size);
    out.context_length = std::max(out.context_length, c.context_length);
    q_width = std::max(q_width, c.num_heads * c.head_dim);
    kv_width = std::max(kv_width, c.num_kv_heads * c.head_dim);
  }
  out.num_heads = (q_width + 31) / 32;
  out.num_kv_heads = (kv_width + 31) / 32;
  out.n_rot = out.head_dim;
  return out;
}

} // namespace aeg::models
