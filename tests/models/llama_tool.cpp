// Runs our llama forward pass outside the actors, for the NumPy reference test.
//
//   llama_tool --model FILE --tokens 1,2,3 [--steps N] [--backend cpu|cuda]
//   llama_tool --model FILE --text "..." [--special] ...
//   --f32: CPU weights and KV in f32 (no 8-bit activations): a float reference
//
// Prints JSON: {"prompt": [ids], "logits": [last prompt position's logits], "greedy": [N ids
// picked greedily after the prompt, one step at a time]}.

#include "coro/sync_wait.hpp"
#include "gpu/block_allocator.hpp"
#include "gpu/event_awaiter.hpp"
#include "gpu/registry.hpp"
#include "kernels/context.hpp"
#include "models/gguf/file.hpp"
#include "models/llama/runner.hpp"
#include "models/tokenizer/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace aeg;

int fail_with(const std::string& what) {
  std::cerr << "llama_tool: " << what << "\n";
  return 1;
}

} // namespace

int main(int argc, char** argv) {
  std::string model, text, tokens_arg, backend = "cpu";
  bool special = false, f32 = false;
  std::size_t steps = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : std::string(); };
    if (a == "--model")
      model = next();
    else if (a == "--text")
      text = next();
    else if (a == "--tokens")
      tokens_arg = next();
    else if (a == "--steps")
      steps = std::stoul(next());
    else if (a == "--backend")
      backend = next();
    else if (a == "--f32")
      f32 = true;
    else if (a == "--special")
      special = true;
    else
      return fail_with("unknown argument " + a);
  }
  auto file = models::gguf::file::open(model);
  if (!file)
    return fail_with(file.error().to_string());
  std::vector<std::int32_t> prompt;
  if (!tokens_arg.empty()) {
    std::stringstream ss(tokens_arg);
    for (std::string t; std::getline(ss, t, ',');)
      prompt.push_back(std::stoi(t));
  } else {
    auto tok = models::tokenizer::from_gguf(*file);
    if (!tok)
      return fail_with(tok.error().to_string());
    prompt = tok->encode(text, special);
  }
  if (prompt.empty())
    return fail_with("no prompt tokens");

  auto dev = gpu::make_device({.backend = backend, .ordinal = 0, .capacity_bytes = 0});
  if (!dev)
    return fail_with(dev.error().to_string());
  auto format = f32 ? models::compute_format::cpu_exact()
                    : models::compute_format::for_backend((*dev)->kind());
  auto image = models::load_llama(*file, format, **dev);
  if (!image)
    return fail_with(image.error().to_string());
  const auto& cfg = (*image)->config();
  auto stream = std::move(*(*dev)->create_stream());
  auto ctx = std::move(*kernels::context::create(*stream));
  auto event = std::move(*(*dev)->create_event());
  const std::size_t total = prompt.size() + steps;
  auto runner =
      models::llama_runner::create(**dev, *ctx, cfg, {std::max<std::size_t>(total, 16), 1, 0});
  if (!runner)
    return fail_with(runner.error().to_string());
  auto weights = std::move(*(*dev)->allocate((*image)->bytes().size()));
  (void)stream->copy(weights.data(), (*image)->bytes().data(), (*image)->bytes().size(),
                     gpu::copy_kind::host_to_device);
  const auto kv = cfg.kv((*image)->format().kv_type());
  const std::size_t num_blocks = kernels::kv_geometry::blocks_for(total + 1);
  auto kv_mem = std::move(*(*dev)->allocate(num_blocks * kv.block_bytes()));
  gpu::block_allocator blocks(num_blocks);
  std::vector<std::int32_t> table;
  (void)blocks.allocate(num_blocks, table);
  const models::device_weights w{&cfg, &(*image)->layout(), weights.as<std::byte>()};
  auto wait = [&] {
    (void)stream->record(*event);
    coro::sync_wait([](gpu::event* e) -> coro::task<void> { co_await *e; }(event.get()));
  };

  nlohmann::json out;
  out["prompt"] = prompt;
  std::vector<std::int32_t> seq = prompt;
  models::sequence_step step{seq, 0, table, true, {}};
  if (auto r = (*runner)->enqueue(w, kv.type, std::span(&step, 1), kv_mem.data(), true); !r)
    return fail_with(r.error().to_string());
  wait();
  const auto logits = (*runner)->logits();
  out["logits"] = std::vector<float>(logits.begin(), logits.end());
  std::vector<std::int32_t> greedy;
  for (std::size_t s = 0; s < steps; ++s) {
    const std::int32_t next = (*runner)->sampled()[0];
    greedy.push_back(next);
    seq.push_back(next);
    step = {std::span(seq).subspan(seq.size() - 1, 1), seq.size() - 1, table, true, {}};
    if (auto r = (*runner)->enqueue(w, kv.type, std::span(&step, 1), kv_mem.data()); !r)
      return fail_with(r.error().to_string());
    wait();
  }
  out["greedy"] = greedy;
  std::cout << out.dump() << "\n";
  return 0;
}
