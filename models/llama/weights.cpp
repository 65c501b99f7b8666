#include "models/llama/weights.hpp"

#include "kernels/cpu/dot.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/quant.hpp"
#include "models/gguf/file.hpp"
#include "models/llama/normal_floats.hpp"

#include <atomic>
#include <cstring>

namespace aeg::models {

namespace {

constexpr std::size_t image_alignment = 256;

std::size_t align_up(std::size_t x) {
  return (x + image_alignment - 1) / image_alignment * image_alignment;
}

std::string layer_name(std::size_t l, const char* what, const char* kind = "weight") {
  return "blk." + std::to_string(l) + "." + what + "." + kind;
}

// Where each dim of a head comes from once a head's halves (i, i + rot/2) are made adjacent
// pairs (2i, 2i + 1): RoPE over halves on the stored rows is then the adjacent-pair RoPE on the
// reordered ones, and q·k is unchanged because q and k are reordered alike.
std::vector<std::size_t> adjacent_order(std::size_t head_dim, std::size_t rot) {
  std::vector<std::size_t> from(head_dim);
  for (std::size_t i = 0; i < head_dim; ++i)
    from[i] = i < rot ? (i % 2 == 0 ? i / 2 : i / 2 + rot / 2) : i;
  return from;
}

// Whether `name` is a q or k tensor, whose rows (or elements) follow a head's dims.
bool follows_head_dims(const std::string& name) {
  for (const char* part : {".attn_q.", ".attn_k.", ".attn_q_norm.", ".attn_k_norm."})
    if (name.find(part) != std::string::npos)
      return true;
  return false;
}

// The row-major type the CPU kernels take for a matrix stored as `t`: as stored when they compute
// in it, Q4_K transcoded to Q4_1 and Q5_K to Q5_1 (the same 4- and 5-bit values, so that
// bandwidth), BF16 widened to F32, other quantized types re-quantized to Q8_0.
kernels::dtype cpu_plain_type(kernels::dtype t) {
  if (kernels::cpu::computes_in(t))
    return t;
  if (const auto direct = kernels::transcoded_type(t))
    return *direct;
  return t == kernels::dtype::bf16 ? kernels::dtype::f32 : kernels::dtype::q8_0;
}

// The CPU's compute type: the 8-row interleaved layout where there is one and the rows allow it,
// of the stored type itself (Q6_K → Q6_Kx8, Q3_K → Q3_Kx8, Q2_K → Q2_Kx8) or of its row-major
// type.
kernels::dtype cpu_type(kernels::dtype t, std::size_t rows) {
  if (const auto direct = kernels::interleaved_type(t); direct && rows % 8 == 0)
    return *direct;
  const auto plain = cpu_plain_type(t);
  const auto x8 = kernels::interleaved_type(plain);
  return x8 && rows % 8 == 0 ? *x8 : plain;
}

// Converts `rows` rows from `src` (type `from`) into `dst` (type `to`), on every core.
void convert_rows(kernels::dtype from, const std::byte* src, kernels::dtype to, std::byte* dst,
                  std::size_t rows, std::size_t cols) {
  if (kernels::is_interleaved(to)) {
    // Interleave from a plain type that interleaves into `to`: the stored type itself (Q4_0,
    // Q4_1, Q6_K, Q3_K, Q2_K, Q8_0) or a converted copy (Q4_K transcoded to Q4_1, Q5_K to Q5_1,
    // other types re-quantized to Q8_0, or whichever `to` asks for).
    auto plain = cpu_plain_type(from);
    if (kernels::interleaved_type(plain) != to)
      plain = kernels::deinterleaved_type(to);
    if (plain == from) {
      kernels::interleave_rows(from, src, rows, cols, dst);
      return;
    }
    std::vector<std::byte> tmp(rows * kernels::row_bytes(plain, cols));
    convert_rows(from, src, plain, tmp.data(), rows, cols);
    kernels::interleave_rows(plain, tmp.data(), rows, cols, dst);
    return;
  }
  const std::size_t in = kernels::row_bytes(from, cols), out = kernels::row_bytes(to, cols);
  if (from == to) {
    std::memcpy(dst, src, rows * in);
    return;
  }
  if (kernels::transcoded_type(from) == to) { // integers kept: no float round trip
    kernels::cpu::parallel_for(rows, 64, [&](std::size_t b, std::size_t e) {
      for (std::size_t r = b; r < e; ++r)
        kernels::transcode_row(from, src + r * in, dst + r * out, cols);
    });
    return;
  }
  kernels::cpu::parallel_for(rows, 64, [&](std::size_t b, std::size_t e) {
    std::vector<float> tmp(cols);
    for (std::size_t r = b; r < e; ++r) {
      kernels::dequantize_row(from, src + r * in, tmp.data(), cols);
      kernels::quantize_row(to, tmp.data(), dst + r * out, cols);
    }
  });
}

} // namespace

llama_layout llama_layout::plan(const llama_config& c,
                                const std::function<kernels::dtype(const std::string&)>& type_of) {
  llama_layout lay;
  std::size_t at = 0;
  auto place = [&](kernels::dtype t, std::size_t rows, std::size_t cols) {
    weight_slot s{t, rows, cols, at};
    at = align_up(at + s.bytes());
    return s;
  };
  const auto f32 = kernels::dtype::f32;
  lay.token_embd = place(type_of("token_embd.weight"), c.vocab_size, c.dim);
  if (c.rope_freq_factors) // with the embedding: in the first piece a switch copies
    lay.rope_freqs = place(f32, 1, c.n_rot / 2);
  const std::size_t q_width = c.num_heads * c.head_dim, kv_width = c.num_kv_heads * c.head_dim;
  for (std::size_t l = 0; l < c.num_layers; ++l) {
    layer ly;
    ly.attn_norm = place(f32, 1, c.dim);
    if (c.attention_bias()) {
      ly.bq = place(f32, 1, q_width);
      ly.bk = place(f32, 1, kv_width);
      ly.bv = place(f32, 1, kv_width);
    }
    if (c.qk_norm()) {
      ly.q_norm = place(f32, 1, c.head_dim);
      ly.k_norm = place(f32, 1, c.head_dim);
    }
    ly.wq = place(type_of(layer_name(l, "attn_q")), q_width, c.dim);
    ly.wk = place(type_of(layer_name(l, "attn_k")), kv_width, c.dim);
    ly.wv = place(type_of(layer_name(l, "attn_v")), kv_width, c.dim);
    ly.wo = place(type_of(layer_name(l, "attn_output")), c.dim, q_width);
    ly.ffn_norm = place(f32, 1, c.dim);
    ly.gate = place(type_of(layer_name(l, "ffn_gate")), c.ffn_dim, c.dim);
    ly.up = place(type_of(layer_name(l, "ffn_up")), c.ffn_dim, c.dim);
    ly.down = place(type_of(layer_name(l, "ffn_down")), c.dim, c.ffn_dim);
    lay.layers.push_back(ly);
  }
  lay.output_norm = place(f32, 1, c.dim);
  lay.output =
      c.tied_output ? lay.token_embd : place(type_of("output.weight"), c.vocab_size, c.dim);
  lay.total_bytes = at;
  if (c.rope_halves()) {
    lay.reorder_head_dim = c.head_dim;
    lay.reorder_rot = c.n_rot;
  }
  return lay;
}

void llama_layout::for_each(
    const std::function<void(const std::string&, const weight_slot&)>& fn) const {
  fn("token_embd.weight", token_embd);
  if (rope_freqs.rows != 0)
    fn("rope_freqs.weight", rope_freqs);
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const auto& ly = layers[l];
    fn(layer_name(l, "attn_norm"), ly.attn_norm);
    if (ly.bq.rows != 0) {
      fn(layer_name(l, "attn_q", "bias"), ly.bq);
      fn(layer_name(l, "attn_k", "bias"), ly.bk);
      fn(layer_name(l, "attn_v", "bias"), ly.bv);
    }
    if (ly.q_norm.rows != 0) {
      fn(layer_name(l, "attn_q_norm"), ly.q_norm);
      fn(layer_name(l, "attn_k_norm"), ly.k_norm);
    }
    fn(layer_name(l, "attn_q"), ly.wq);
    fn(layer_name(l, "attn_k"), ly.wk);
    fn(layer_name(l, "attn_v"), ly.wv);
    fn(layer_name(l, "attn_output"), ly.wo);
    fn(layer_name(l, "ffn_norm"), ly.ffn_norm);
    fn(layer_name(l, "ffn_gate"), ly.gate);
    fn(layer_name(l, "ffn_up"), ly.up);
    fn(layer_name(l, "ffn_down"), ly.down);
  }
  fn("output_norm.weight", output_norm);
  if (output.offset != token_embd.offset)
    fn("output.weight", output);
}

model_image::model_image(llama_config config, llama_layout layout, compute_format format,
                         std::shared_ptr<const std::byte> bytes)
    : config_(std::move(config)), layout_(std::move(layout)), format_(format),
      bytes_(std::move(bytes)) {}

host_allocator pinned_allocator(gpu::device& dev) {
  return [&dev](std::size_t bytes) -> result<std::shared_ptr<std::byte>> {
    AEG_TRY_ASSIGN(auto host, dev.allocate_pinned(bytes));
    auto owner = std::make_shared<gpu::buffer>(std::move(host));
    return std::shared_ptr<std::byte>(owner, owner->as<std::byte>());
  };
}

result<std::pair<llama_config, llama_layout>> plan_llama(const gguf::file& f,
                                                         const compute_format& format) {
  auto config = llama_config::from_gguf(f);
  if (!config)
    return tl::unexpected(config.error());
  if (format.layout() != gpu::backend_kind::cpu && format.half_type != kernels::dtype::f16 &&
      format.half_type != kernels::dtype::bf16)
    return fail(errc::invalid_argument, "CUDA weights must be f16 or bf16");

  // Every tensor must be there with the shape the config implies.
  std::string missing;
  auto stored = [&](const std::string& name) -> const gguf::tensor_info* {
    const auto* t = f.tensor(name);
    if (t == nullptr && missing.empty())
      missing = name;
    return t;
  };
  auto type_of = [&](const std::string& name) {
    const auto* t = stored(name);
    if (t == nullptr)
      return kernels::dtype::f32;
    const auto st = gguf::to_dtype(t->type);
    if (format.layout() != gpu::backend_kind::cpu)
      return format.half_type;
    const std::size_t rows = t->dims.size() > 1 ? t->dims[1] : 1;
    return format.cpu_weight_type.value_or(cpu_type(st, rows));
  };
  auto layout = llama_layout::plan(*config, type_of);
  if (!missing.empty())
    return fail(errc::corrupt_data, "llama model: tensor '" + missing + "' is missing");
  std::string bad;
  layout.for_each([&](const std::string& name, const weight_slot& slot) {
    const auto* t = stored(name);
    if (!bad.empty() || t == nullptr)
      return;
    const std::uint64_t rows = t->dims.size() > 1 ? t->dims[1] : 1;
    if (t->dims[0] != slot.cols || rows != slot.rows || t->num_elements != slot.rows * slot.cols)
      bad = "tensor '" + name + "' has shape [" + std::to_string(t->dims[0]) + ", " +
            std::to_string(rows) + "], expected [" + std::to_string(slot.cols) + ", " +
            std::to_string(slot.rows) + "]";
  });
  if (!missing.empty())
    return fail(errc::corrupt_data, "llama model: tensor '" + missing + "' is missing");
  if (!bad.empty())
    return fail(errc::corrupt_data, "llama model: " + bad);
  return std::pair{std::move(*config), std::move(layout)};
}

void fill_llama(const gguf::file& f, const llama_layout& layout, std::byte* dst,
                const progress_fn& progress) {
  std::size_t done = 0;
  const auto order = layout.reorder_head_dim == 0
                         ? std::vector<std::size_t>{}
                         : adjacent_order(layout.reorder_head_dim, layout.reorder_rot);
  layout.for_each([&](const std::string& name, const weight_slot& slot) {
    const auto* t = f.tensor(name);
    const auto from = gguf::to_dtype(t->type);
    if (order.empty() || !follows_head_dims(name)) {
      convert_rows(from, t->data, slot.type, dst + slot.offset, slot.rows, slot.cols);
    } else if (slot.rows == 1) { // a bias or a norm: f32 elements in the new order
      std::vector<float> v(slot.cols);
      kernels::dequantize_row(from, t->data, v.data(), slot.cols);
      auto* out = reinterpret_cast<float*>(dst + slot.offset);
      for (std::size_t i = 0; i < slot.cols; ++i)
        out[i] = v[i / order.size() * order.size() + order[i % order.size()]];
    } else { // a matrix: its rows in the new order, then converted as usual
      const std::size_t rb = kernels::row_bytes(from, slot.cols);
      std::vector<std::byte> rows(slot.rows * rb);
      for (std::size_t r = 0; r < slot.rows; ++r)
        std::memcpy(rows.data() + r * rb,
                    t->data + (r / order.size() * order.size() + order[r % order.size()]) * rb, rb);
      convert_rows(from, rows.data(), slot.type, dst + slot.offset, slot.rows, slot.cols);
    }
    done = slot.offset + slot.bytes();
    if (progress)
      progress(done, layout.total_bytes);
  });
  if (progress && done != layout.total_bytes)
    progress(layout.total_bytes, layout.total_bytes); // the alignment padding at the end
}

result<std::shared_ptr<const model_image>> load_llama(const gguf::file& f,
                                                      const compute_format& format,
                                                      const host_allocator& alloc,
                                                      const progress_fn& progress) {
  AEG_TRY_ASSIGN(auto plan, plan_llama(f, format));
  auto& [config, layout] = plan;
  auto host = alloc(layout.total_bytes);
  if (!host)
    return fail(host.error().code, "cannot hold the weights of '" + config.name + "' (" +
                                       std::to_string(layout.total_bytes >> 20) +
                                       " MiB) in host memory: " + host.error().message);
  fill_llama(f, layout, host->get(), progress);
  return std::make_shared<const model_image>(std::move(config), std::move(layout), format,
                                             std::move(*host));
}

result<std::shared_ptr<const model_image>> load_llama(const gguf::file& f,
                                                      const compute_format& format,
                                                      gpu::device& dev,
                                                      const progress_fn& progress) {
  return load_llama(f, format, pinned_allocator(dev), progress);
}

namespace {

// The types a quantized GGUF would have (SmolLM2's: Q8_0 embedding, Q4_1 matrices).
kernels::dtype synthetic_stored_type(const std::string& name) {
  return name == "token_embd.weight" || name == "output.weight" ? kernels::dtype::q8_0
                                                                : kernels::dtype::q4_1;
}

} // namespace

llama_layout plan_synthetic(const llama_config& config, const compute_format& format) {
  const bool cpu = format.layout() == gpu::backend_kind::cpu;
  return llama_layout::plan(config, [&](const std::string& name) {
    if (!cpu)
      return format.half_type;
    const std::size_t rows = name == "token_embd.weight" || name == "output.weight"
                                 ? config.vocab_size
                                 : 8; // every llama matrix has a multiple of 8 rows
    return cpu_type(synthetic_stored_type(name), rows);
  });
}

void fill_synthetic(const llama_config& config, const llama_layout& layout, std::uint64_t seed,
                    std::byte* base, const progress_fn& progress) {
  (void)config;
  std::size_t done = 0, index = 0;
  layout.for_each([&](const std::string& name, const weight_slot& slot) {
    const std::uint64_t tensor_seed = seed * 1000003u + index++;
    const bool is_norm = slot.rows == 1 && name.find("norm") != std::string::npos;
    // Random values written in the plain type, then laid out as the CPU computes with them.
    const bool x8 = kernels::is_interleaved(slot.type);
    const auto plain = x8 ? synthetic_stored_type(name) : slot.type;
    std::vector<std::byte> staging(x8 ? slot.bytes() : 0);
    std::byte* out = x8 ? staging.data() : base + slot.offset;
    kernels::cpu::parallel_for(slot.rows, 64, [&](std::size_t b, std::size_t e) {
      std::vector<float> row(slot.cols);
      for (std::size_t r = b; r < e; ++r) {
        normal_floats d(tensor_seed * 0x9E3779B97F4A7C15ull + r, is_norm ? 1.0f : 0.0f, 0.02f);
        for (auto& v : row)
          v = d();
        kernels::quantize_row(plain, row.data(), out + r * kernels::row_bytes(plain, slot.cols),
                              slot.cols);
      }
    });
    if (x8)
      kernels::interleave_rows(plain, staging.data(), slot.rows, slot.cols, base + slot.offset);
    done = slot.offset + slot.bytes();
    if (progress)
      progress(done, layout.total_bytes);
  });
  if (progress && done != layout.total_bytes)
    progress(layout.total_bytes, layout.total_bytes); // the alignment padding at the end
}

result<std::shared_ptr<const model_image>>
synthetic_llama(const llama_config& config, const compute_format& format,
                const host_allocator& alloc, std::uint64_t seed, const progress_fn& progress) {
  AEG_TRY(config.validate());
  auto layout = plan_synthetic(config, format);
  auto host = alloc(layout.total_bytes);
  if (!host)
    return fail(host.error().code, "cannot hold synthetic weights of " + config.name + " (" +
                                       std::to_string(layout.total_bytes >> 20) +
                                       " MiB) in host memory: " + host.error().message);
  fill_synthetic(config, layout, seed, host->get(), progress);
  return std::make_shared<const model_image>(config, std::move(layout), format, std::move(*host));
}

result<std::shared_ptr<const model_image>> synthetic_llama(const llama_config& config,
                                                           const compute_format& format,
                                                           gpu::device& dev, std::uint64_t seed,
                                                           const progress_fn& progress) {
  return synthetic_llama(config, format, pinned_allocator(dev), seed, progress);
}

} // namespace aeg::models
