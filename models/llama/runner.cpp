#include "models/llama/runner.hpp"

#include "kernels/ops.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace aeg::models {

namespace {

std::size_t align_up(std::size_t x, std::size_t a) {
  return (x + a - 1) / a * a;
}

} // namespace

// Device buffers (activations, metadata, outputs) and their pinned host mirrors.
struct llama_runner::buffers {
  gpu::buffer x, h, q, k, v, att, gate, up, gathered, logits, scratch, meta, sampled;
  gpu::buffer meta_host, sampled_host, logits_host;
  // Offsets inside `meta`, in int32 units except params (bytes).
  std::size_t tokens = 0, positions = 0, slots = 0, row_seq = 0, tables = 0, gather = 0;
  std::size_t params_bytes = 0, meta_bytes = 0;

  // Lays out `meta` and calls `take(buffer, bytes, pinned)` for every buffer a runner of this
  // shape holds: the one description both allocation and `device_bytes` follow.
  template <class Take>
  void plan(const llama_config& config, const step_limits& limits, Take&& take) {
    const std::size_t T = limits.max_tokens, S = limits.max_seqs;
    const std::size_t qw = config.num_heads * config.head_dim;
    const std::size_t kvw = config.num_kv_heads * config.head_dim;
    const std::size_t widest = std::max({config.dim, config.ffn_dim, qw});
    take(x, T * config.dim * 4, false);
    take(h, T * config.dim * 4, false);
    take(q, T * qw * 4, false);
    take(k, T * kvw * 4, false);
    take(v, T * kvw * 4, false);
    take(att, T * qw * 4, false);
    take(gate, T * config.ffn_dim * 4, false);
    take(up, T * config.ffn_dim * 4, false);
    take(gathered, S * config.dim * 4, false);
    take(logits, S * config.vocab_size * 4, false);
    // Enough for either backend: CPU Q8 activation blocks (1.25 B/value) or CUDA halves (2 B).
    take(scratch, std::max(T, S) * widest * 2, false);
    tokens = 0;
    positions = T;
    slots = 2 * T;
    row_seq = 3 * T;
    tables = 4 * T;
    gather = tables + S * limits.max_blocks_per_seq;
    params_bytes = align_up((gather + S) * 4, 16);
    meta_bytes = params_bytes + S * sizeof(kernels::sampling_row);
    take(meta, meta_bytes, false);
    take(meta_host, meta_bytes, true);
    take(sampled, S * 4, false);
    take(sampled_host, S * 4, true);
    take(logits_host, S * config.vocab_size * 4, true);
  }
};

namespace {

result<void> check_shape(const llama_config& config, const step_limits& limits) {
  // The config sizes buffers only (it may be largest_shape's envelope of several models).
  if (config.dim == 0 || config.ffn_dim == 0 || config.num_heads * config.head_dim == 0 ||
      config.num_kv_heads * config.head_dim == 0 || config.vocab_size == 0)
    return fail(errc::invalid_argument, "a runner needs a model shape with no zero width");
  if (limits.max_tokens == 0 || limits.max_seqs == 0)
    return fail(errc::invalid_argument, "a runner needs room for at least one token and sequence");
  return {};
}

step_limits normalized(const llama_config& config, step_limits limits) {
  limits.max_seqs = std::min(limits.max_seqs, limits.max_tokens);
  if (limits.max_blocks_per_seq == 0)
    limits.max_blocks_per_seq = kernels::kv_geometry::blocks_for(config.context_length);
  return limits;
}

} // namespace

std::size_t llama_runner::device_bytes(const llama_config& config, const step_limits& limits) {
  std::size_t total = 0;
  buffers b;
  b.plan(config, normalized(config, limits), [&](gpu::buffer&, std::size_t bytes, bool pinned) {
    if (!pinned)
      total += gpu::allocation_bytes(std::max<std::size_t>(bytes, 1));
  });
  return total;
}

result<std::unique_ptr<llama_runner>> llama_runner::create(gpu::device& dev, kernels::context& ctx,
                                                           const llama_config& config,
                                                           const step_limits& requested) {
  AEG_TRY(check_shape(config, requested));
  const step_limits limits = normalized(config, requested);
  auto r = std::unique_ptr<llama_runner>(new llama_runner);
  r->ctx_ = &ctx;
  r->shape_ = config;
  r->limits_ = limits;
  auto b = std::make_shared<buffers>();
  std::string failed;
  b->plan(config, limits, [&](gpu::buffer& out, std::size_t bytes, bool pinned) {
    if (!failed.empty())
      return;
    auto m = pinned ? dev.allocate_pinned(std::max<std::size_t>(bytes, 1))
                    : dev.allocate(std::max<std::size_t>(bytes, 1));
    if (!m)
      failed = m.error().message;
    else
      out = std::move(*m);
  });
  if (!failed.empty())
    return fail(errc::out_of_memory, "no room for the step buffers of " + config.name + " (" +
                                         std::to_string(limits.max_tokens) + " tokens): " + failed);
  r->buf_ = std::move(b);
  return r;
}

bool llama_runner::fits(const llama_config& c) const noexcept {
  return c.dim <= shape_.dim && c.ffn_dim <= shape_.ffn_dim &&
         c.num_heads * c.head_dim <= shape_.num_heads * shape_.head_dim &&
         c.num_kv_heads * c.head_dim <= shape_.num_kv_heads * shape_.head_dim &&
         c.vocab_size <= shape_.vocab_size &&
         kernels::kv_geometry::blocks_for(c.context_length) <= limits_.max_blocks_per_seq;
}

std::span<const std::int32_t> llama_runner::sampled() const noexcept {
  return {buf_->sampled_host.as<const std::int32_t>(), num_sampled_};
}

std::span<const float> llama_runner::logits() const noexcept {
  if (!have_logits_)
    return {};
  return {buf_->logits_host.as<const float>(), num_sampled_ * shape_.vocab_size};
}

result<void> llama_runner::enqueue(const device_weights& w, kernels::dtype kv_type,
                                   std::span<const sequence_step> steps, void* kv_base,
                                   bool want_logits, std::span<gpu::event* const> layer_ready) {
  const llama_config& c = *w.config;
  if (!layer_ready.empty() && layer_ready.size() != c.num_layers + 2)
    return fail(errc::invalid_argument, "layer_ready needs one event per layer and two more");
  if (!fits(c))
    return fail(errc::invalid_argument,
                "model " + c.name + " is larger than this runner's buffers");
  buffers& b = *buf_;
  const std::size_t MB = limits_.max_blocks_per_seq;
  if (steps.size() > limits_.max_seqs)
    return fail(errc::invalid_argument, "a step of " + std::to_string(steps.size()) +
                                            " sequences exceeds the limit of " +
                                            std::to_string(limits_.max_seqs));

  // Lay out the step's metadata in pinned memory, then copy it to the device in one piece.
  auto* meta = b.meta_host.as<std::int32_t>();
  auto* params =
      reinterpret_cast<kernels::sampling_row*>(b.meta_host.as<std::byte>() + b.params_bytes);
  std::size_t rows = 0, num_sampled = 0;
  constexpr std::size_t bt = kernels::kv_geometry::block_tokens;
  kernels::attention_hint hint{0, steps.size()}; // how a GPU's attention divides the work
  for (std::size_t s = 0; s < steps.size(); ++s) {
    const auto& st = steps[s];
    const std::size_t end = st.start_pos + st.tokens.size();
    hint.longest = std::max(hint.longest, end);
    if (st.tokens.empty())
      return fail(errc::invalid_argument, "sequence " + std::to_string(s) + " brings no tokens");
    if (end > c.context_length)
      return fail(errc::invalid_argument,
                  "sequence " + std::to_string(s) + " reaches " + std::to_string(end) +
                      " tokens, past the context length " + std::to_string(c.context_length));
    if (st.blocks.size() < kernels::kv_geometry::blocks_for(end) || st.blocks.size() > MB)
      return fail(errc::invalid_argument, "sequence " + std::to_string(s) + " has " +
                                              std::to_string(st.blocks.size()) + " KV blocks for " +
                                              std::to_string(end) + " tokens");
    if (rows + st.tokens.size() > limits_.max_tokens)
      return fail(errc::invalid_argument,
                  "a step of more than " + std::to_string(limits_.max_tokens) + " tokens");
    for (std::size_t i = 0; i < st.tokens.size(); ++i, ++rows) {
      const std::size_t pos = st.start_pos + i;
      if (st.tokens[i] < 0 || static_cast<std::size_t>(st.tokens[i]) >= c.vocab_size)
        return fail(errc::invalid_argument, "token id " + std::to_string(st.tokens[i]) +
                                                " is outside the vocabulary of " + c.name);
      meta[b.tokens + rows] = st.tokens[i];
      meta[b.positions + rows] = static_cast<std::int32_t>(pos);
      meta[b.slots + rows] =
          st.blocks[pos / bt] * static_cast<std::int32_t>(bt) + static_cast<std::int32_t>(pos % bt);
      meta[b.row_seq + rows] = static_cast<std::int32_t>(s);
    }
    std::copy(st.blocks.begin(), st.blocks.end(), meta + b.tables + s * MB);
    if (st.sample) {
      meta[b.gather + num_sampled] = static_cast<std::int32_t>(rows - 1);
      params[num_sampled] = st.sampling;
      ++num_sampled;
    }
  }
  num_sampled_ = num_sampled;
  have_logits_ = want_logits;
  if (rows == 0)
    return {};

  auto& ctx = *ctx_;
  auto& s = ctx.stream();
  AEG_TRY(s.copy(b.meta.data(), b.meta_host.data(), b.meta_bytes, gpu::copy_kind::host_to_device));
  const auto* dm = b.meta.as<std::int32_t>();
  const auto* dparams =
      reinterpret_cast<const kernels::sampling_row*>(b.meta.as<std::byte>() + b.params_bytes);
  const auto& L = *w.layout;
  const auto kv = c.kv(kv_type);
  float* x = b.x.as<float>();
  float* h = b.h.as<float>();
  float* q = b.q.as<float>();
  float* k = b.k.as<float>();
  float* v = b.v.as<float>();
  float* att = b.att.as<float>();
  float* gate = b.gate.as<float>();
  float* up = b.up.as<float>();
  void* scratch = b.scratch.data();
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));

  // Waits for a piece of a model still being copied in (nothing when it is resident).
  auto ready = [&](std::size_t piece) -> result<void> {
    return layer_ready.empty() ? result<void>{} : s.wait(*layer_ready[piece]);
  };
  AEG_TRY(ready(0));
  const float* factors = c.rope_freq_factors ? L.rope_freqs.vector_at(w.base) : nullptr;
  AEG_TRY(kernels::embed(ctx, L.token_embd.at(w.base), dm + b.tokens, rows, x));
  for (std::size_t l = 0; l < c.num_layers; ++l) {
    AEG_TRY(ready(l + 1));
    const auto& ly = L.layers[l];
    AEG_TRY(kernels::rmsnorm(ctx, x, ly.attn_norm.vector_at(w.base), rows, c.dim, c.rms_eps, h));
    const kernels::matrix qkv[] = {ly.wq.at(w.base), ly.wk.at(w.base), ly.wv.at(w.base)};
    float* const qkv_out[] = {q, k, v};
    AEG_TRY(kernels::matmul(ctx, qkv, h, rows, qkv_out, scratch));
    if (c.attention_bias()) {
      AEG_TRY(kernels::add_bias(ctx, q, ly.bq.vector_at(w.base), rows, ly.bq.cols));
      AEG_TRY(kernels::add_bias(ctx, k, ly.bk.vector_at(w.base), rows, ly.bk.cols));
      AEG_TRY(kernels::add_bias(ctx, v, ly.bv.vector_at(w.base), rows, ly.bv.cols));
    }
    if (c.qk_norm()) { // every head of every row is a row of head_dim here
      AEG_TRY(kernels::rmsnorm(ctx, q, ly.q_norm.vector_at(w.base), rows * c.num_heads, c.head_dim,
                               c.rms_eps, q));
      AEG_TRY(kernels::rmsnorm(ctx, k, ly.k_norm.vector_at(w.base), rows * c.num_kv_heads,
                               c.head_dim, c.rms_eps, k));
    }
    AEG_TRY(kernels::rope(ctx, q, rows, c.num_heads, c.head_dim, c.n_rot, dm + b.positions,
                          c.rope_base, factors));
    AEG_TRY(kernels::rope(ctx, k, rows, c.num_kv_heads, c.head_dim, c.n_rot, dm + b.positions,
                          c.rope_base, factors));
    AEG_TRY(kernels::kv_store(ctx, kv, l, k, v, rows, dm + b.slots, kv_base));
    AEG_TRY(kernels::attention(ctx, kv, l, q, rows, c.num_heads, dm + b.positions, dm + b.row_seq,
                               dm + b.tables, MB, kv_base, scale, att, hint));
    AEG_TRY(kernels::matmul(ctx, ly.wo.at(w.base), att, rows, h, scratch));
    AEG_TRY(kernels::add(ctx, x, h, rows * c.dim));
    AEG_TRY(kernels::rmsnorm(ctx, x, ly.ffn_norm.vector_at(w.base), rows, c.dim, c.rms_eps, h));
    const kernels::matrix gate_up[] = {ly.gate.at(w.base), ly.up.at(w.base)};
    float* const gate_up_out[] = {gate, up};
    AEG_TRY(kernels::matmul(ctx, gate_up, h, rows, gate_up_out, scratch));
    AEG_TRY(kernels::swiglu(ctx, gate, up, rows * c.ffn_dim, gate));
    AEG_TRY(kernels::matmul(ctx, ly.down.at(w.base), gate, rows, h, scratch));
    AEG_TRY(kernels::add(ctx, x, h, rows * c.dim));
  }
  if (num_sampled == 0)
    return {};
  AEG_TRY(ready(c.num_layers + 1));
  // Only the rows that pick a token need the final norm and the (large) output projection.
  float* g = b.gathered.as<float>();
  float* logits = b.logits.as<float>();
  AEG_TRY(kernels::gather_rows(ctx, x, dm + b.gather, num_sampled, c.dim, g));
  AEG_TRY(
      kernels::rmsnorm(ctx, g, L.output_norm.vector_at(w.base), num_sampled, c.dim, c.rms_eps, g));
  AEG_TRY(kernels::matmul(ctx, L.output.at(w.base), g, num_sampled, logits, scratch));
  AEG_TRY(kernels::sample(ctx, logits, num_sampled, c.vocab_size, dparams,
                          b.sampled.as<std::int32_t>()));
  AEG_TRY(s.copy(b.sampled_host.data(), b.sampled.data(), num_sampled * 4,
                 gpu::copy_kind::device_to_host));
  if (want_logits)
    AEG_TRY(s.copy(b.logits_host.data(), logits, num_sampled * c.vocab_size * 4,
                   gpu::copy_kind::device_to_host));
  return {};
}

} // namespace aeg::models
