#include "kernels/ops.hpp"

#include "kernels/cpu/dot.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/cuda/ops.hpp"

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace aeg::kernels {

namespace {

// Wall time per op name on CPU streams, when profiling is on (benchmarks only).
struct op_profile {
  std::atomic<bool> on{false};
  std::mutex mutex;
  std::map<std::string, std::pair<double, std::size_t>> totals;

  void add(const char* name, double seconds) {
    std::lock_guard lock(mutex);
    auto& t = totals[name];
    t.first += seconds;
    ++t.second;
  }
};

op_profile& profile() {
  static op_profile p;
  return p;
}

// Runs `cpu_op` on the stream's worker (CPU) or calls `cuda_op` with the cudaStream_t (CUDA).
template <class CpuOp, class CudaOp>
result<void> dispatch(context& ctx, const char* name, CpuOp&& cpu_op, CudaOp&& cuda_op) {
  switch (ctx.kind()) {
  case gpu::backend_kind::cpu:
    if (profile().on.load(std::memory_order_relaxed))
      return ctx.stream().host_callback([name, op = std::forward<CpuOp>(cpu_op)] {
        const auto start = std::chrono::steady_clock::now();
        op();
        profile().add(
            name, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      });
    return ctx.stream().host_callback(std::forward<CpuOp>(cpu_op));
  case gpu::backend_kind::cuda:
    AEG_TRY(ctx.stream().make_current());
    return cuda_op(ctx.stream().native_handle());
  case gpu::backend_kind::sim:
    break; // a simulated device computes nothing: its costs come from the profile
  }
  return fail(errc::unavailable, std::string(name) + ": this build has no kernel for the backend");
}

} // namespace

void profile_cpu_ops(bool on) {
  if (on) {
    std::lock_guard lock(profile().mutex);
    profile().totals.clear();
  }
  profile().on.store(on);
}

std::vector<op_time> cpu_op_times() {
  std::lock_guard lock(profile().mutex);
  std::vector<op_time> out;
  for (const auto& [name, t] : profile().totals)
    out.push_back({name, t.first, t.second});
  return out;
}

// The CUDA side of an op (its launcher; in a build without CUDA, one that says so).
#define AEG_CUDA_OP(call) [&](void* s) -> result<void> { return cuda::call; }

result<void> embed(context& ctx, const matrix& table, const std::int32_t* tokens, std::size_t n,
                   float* out) {
  return dispatch(
      ctx, "embed", [=] { cpu::embed(table, tokens, n, out); },
      AEG_CUDA_OP(embed(s, table, tokens, n, out)));
}

result<void> rmsnorm(context& ctx, const float* x, const float* weight, std::size_t rows,
                     std::size_t dim, float eps, float* out) {
  return dispatch(
      ctx, "rmsnorm", [=] { cpu::rmsnorm(x, weight, rows, dim, eps, out); },
      AEG_CUDA_OP(rmsnorm(s, x, weight, rows, dim, eps, out)));
}

std::size_t matmul_scratch_bytes(gpu::backend_kind kind, const matrix& w, std::size_t rows) {
  if (kind == gpu::backend_kind::cpu)
    return cpu::matmul_scratch_bytes(w, rows);
  return rows * w.cols * 2; // half-precision activations for cuBLAS
}

namespace {

result<void> check_matmul_type(gpu::backend_kind kind, const matrix& w) {
  const bool cpu = kind == gpu::backend_kind::cpu;
  if (cpu ? !cpu::computes_in(w.type) : (w.type != dtype::f16 && w.type != dtype::bf16))
    return fail(errc::invalid_argument,
                std::string("matmul: the ") + (cpu ? "CPU" : "CUDA") + " kernels do not take " +
                    std::string(traits(w.type).name) + " weights; convert them at load");
  if (w.cols % 32 != 0)
    return fail(errc::invalid_argument,
                "matmul: rows of " + std::to_string(w.cols) + " values are not a multiple of 32");
  return {};
}

} // namespace

result<void> matmul(context& ctx, const matrix& w, const float* x, std::size_t rows, float* y,
                    void* scratch) {
  return matmul(ctx, std::span(&w, 1), x, rows, std::span(&y, 1), scratch);
}

result<void> matmul(context& ctx, std::span<const matrix> ws, const float* x, std::size_t rows,
                    std::span<float* const> ys, void* scratch) {
  if (ws.size() != ys.size())
    return fail(errc::invalid_argument, "matmul: one output per matrix");
  for (const auto& w : ws)
    if (auto r = check_matmul_type(ctx.kind(), w); !r)
      return r;
  if (rows == 0 || ws.empty())
    return {};
  void* blas = ctx.blas();
  (void)blas;
  // The work runs later: it keeps its own copies of the matrix and output lists.
  return dispatch(
      ctx, "matmul",
      [=, ws = std::vector<matrix>(ws.begin(), ws.end()),
       ys = std::vector<float*>(ys.begin(), ys.end())] {
        cpu::matmul_many(ws, x, rows, ys, scratch);
      },
      [&](void* s) -> result<void> {
        for (std::size_t i = 0; i < ws.size(); ++i)
          AEG_TRY(cuda::matmul(s, blas, ws[i], x, rows, ys[i], scratch));
        return {};
      });
}

result<void> rope(context& ctx, float* x, std::size_t rows, std::size_t heads, std::size_t head_dim,
                  std::size_t n_rot, const std::int32_t* positions, float base,
                  const float* freq_factors) {
  if (n_rot > head_dim || n_rot % 2 != 0)
    return fail(errc::invalid_argument,
                "rope: n_rot " + std::to_string(n_rot) + " must be even and at most head_dim");
  return dispatch(
      ctx, "rope",
      [=] { cpu::rope(x, rows, heads, head_dim, n_rot, positions, base, freq_factors); },
      AEG_CUDA_OP(rope(s, x, rows, heads, head_dim, n_rot, positions, base, freq_factors)));
}

result<void> kv_store(context& ctx, const kv_geometry& g, std::size_t layer, const float* k,
                      const float* v, std::size_t rows, const std::int32_t* slots, void* kv_base) {
  return dispatch(
      ctx, "kv_store", [=] { cpu::kv_store(g, layer, k, v, rows, slots, kv_base); },
      AEG_CUDA_OP(kv_store(s, g, layer, k, v, rows, slots, kv_base)));
}

result<void> attention(context& ctx, const kv_geometry& g, std::size_t layer, const float* q,
                       std::size_t rows, std::size_t heads, const std::int32_t* positions,
                       const std::int32_t* row_seq, const std::int32_t* block_tables,
                       std::size_t max_blocks, const void* kv_base, float scale, float* out,
                       attention_hint hint) {
  if (g.kv_heads == 0 || heads % g.kv_heads != 0)
    return fail(errc::invalid_argument, "attention: " + std::to_string(heads) +
                                            " heads do not group over " +
                                            std::to_string(g.kv_heads) + " KV heads");
  return dispatch(
      ctx, "attention",
      [=] {
        cpu::attention(g, layer, q, rows, heads, positions, row_seq, block_tables, max_blocks,
                       kv_base, scale, out);
      },
      AEG_CUDA_OP(attention(s, g, layer, q, rows, heads, positions, row_seq, block_tables,
                            max_blocks, kv_base, scale, out, hint, ctx.attention_scratch())));
}

result<void> swiglu(context& ctx, const float* gate, const float* up, std::size_t n, float* out) {
  return dispatch(
      ctx, "swiglu", [=] { cpu::swiglu(gate, up, n, out); },
      AEG_CUDA_OP(swiglu(s, gate, up, n, out)));
}

result<void> add(context& ctx, float* x, const float* y, std::size_t n) {
  return dispatch(
      ctx, "add", [=] { cpu::add(x, y, n); }, AEG_CUDA_OP(add(s, x, y, n)));
}

result<void> add_bias(context& ctx, float* x, const float* bias, std::size_t rows,
                      std::size_t width) {
  return dispatch(
      ctx, "add_bias", [=] { cpu::add_bias(x, bias, rows, width); },
      AEG_CUDA_OP(add_bias(s, x, bias, rows, width)));
}

result<void> gather_rows(context& ctx, const float* x, const std::int32_t* rows, std::size_t n,
                         std::size_t dim, float* out) {
  return dispatch(
      ctx, "gather_rows", [=] { cpu::gather_rows(x, rows, n, dim, out); },
      AEG_CUDA_OP(gather_rows(s, x, rows, n, dim, out)));
}

result<void> sample(context& ctx, const float* logits, std::size_t rows, std::size_t vocab,
                    const sampling_row* params, std::int32_t* out) {
  return dispatch(
      ctx, "sample", [=] { cpu::sample(logits, rows, vocab, params, out); },
      AEG_CUDA_OP(sample(s, logits, rows, vocab, params, out)));
}

} // namespace aeg::kernels
