#include "apps/server/served_models.hpp"

#include "actors/pool.hpp"
#include "gpu/registry.hpp"
#include "models/hf/folder.hpp"
#include "models/sizing.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <filesystem>

namespace aeg::server {

namespace fs = std::filesystem;

namespace {

// The models in `dir`: its .gguf files and its Hugging Face model folders (with config.json).
result<std::vector<fs::path>> model_files(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::error_code ignored; // an entry that vanished or cannot be read is not a model
    if (e.path().extension() == ".gguf" ||
        (e.is_directory(ignored) && fs::exists(e.path() / "config.json", ignored)))
      files.push_back(e.path());
  }
  if (ec)
    return fail(errc::not_found, "cannot read the models directory '" + dir + "': " + ec.message() +
                                     " (scripts/fetch-model fetches the reference model, or "
                                     "give --config)");
  if (files.empty())
    return fail(errc::not_found, "no .gguf models or Hugging Face model folders in '" + dir +
                                     "' (scripts/fetch-model fetches the reference model, or "
                                     "give --config)");
  std::sort(files.begin(), files.end());
  return files;
}

// Said in this command's terms (the pool's own check speaks of topology fields).
result<void> check_memory_flag(const actors::pool_spec& spec, const serve_options& opts) {
  if (opts.memory_mib == 0)
    return {};
  const auto format = models::compute_format::for_backend(
      spec.devices.front().backend == "cuda" ? gpu::backend_kind::cuda : gpu::backend_kind::cpu);
  AEG_TRY_ASSIGN(const auto plans, actors::device_memory_needed(spec, format));
  const auto& need = plans.front();
  if (need.total() <= (opts.memory_mib << 20))
    return {};
  return tl::unexpected(models::does_not_fit(
      fmt::format("the device of --memory-mib {}", opts.memory_mib), opts.memory_mib << 20, need,
      fmt::format("give --memory-mib {} or more (0: the backend's default)",
                  models::mib_ceil(need.total()))));
}

} // namespace

result<actors::pool_spec> spec_of(const serve_options& opts) {
  if (!opts.config.empty())
    return actors::load_topology(opts.config);
  AEG_TRY_ASSIGN(const auto files, model_files(opts.models_dir));
  actors::pool_spec spec;
  std::string backend = opts.backend;
  if (backend.empty())
    backend = gpu::make_device({.backend = "cuda"}) ? "cuda" : "cpu";
  const std::string device = backend == "cuda" ? "gpu0" : "cpu0";
  spec.devices.push_back({device, backend, 0, opts.memory_mib << 20});
  for (const auto& f : files) {
    actors::model_spec m;
    m.name = fs::is_directory(f) ? f.filename().string() : f.stem().string();
    m.source.model_path = f.string();
    m.chat_template = opts.chat_template;
    spec.models.push_back(m);
  }
  actors::instance_spec is;
  is.device = device;
  spec.instances.push_back(is);
  AEG_TRY(check_memory_flag(spec, opts));
  return spec;
}

result<std::map<std::string, models::text_model>> text_models_of(const actors::pool_spec& spec) {
  std::map<std::string, models::text_model> out;
  std::map<std::size_t, std::string> by_vocab; // a GGUF model with each vocabulary size
  for (const auto& m : spec.models) {
    if (m.source.synthetic)
      continue;
    auto file = models::open_model(m.source.model_path);
    if (!file)
      return fail(file.error().code, "model '" + m.name + "': " + file.error().message);
    auto text = models::text_model::from_gguf(*file, m.chat_template);
    if (!text)
      return fail(text.error().code, "model '" + m.name + "': " + text.error().message);
    by_vocab.emplace(text->vocab_size(), m.name);
    out.emplace(m.name, std::move(*text));
  }
  const auto format = models::compute_format::for_backend(gpu::backend_kind::cpu);
  for (const auto& m : spec.models) {
    if (!m.source.synthetic)
      continue;
    auto f = models::plan_footprint(m.source, format);
    if (!f)
      return fail(f.error().code, "model '" + m.name + "': " + f.error().message);
    if (auto donor = by_vocab.find(f->config.vocab_size); donor != by_vocab.end()) {
      out.emplace(m.name, out.at(donor->second));
      continue;
    }
    std::string hint = "add a GGUF model with that vocabulary to the topology";
    if (!by_vocab.empty())
      hint = "give it \"vocab_size\": " + std::to_string(by_vocab.begin()->first) +
             " to use the tokenizer of '" + by_vocab.begin()->second + "', or " + hint;
    return fail(errc::invalid_argument, "model '" + m.name +
                                            "' has synthetic weights and no tokenizer of its " +
                                            std::to_string(f->config.vocab_size) +
                                            "-token vocabulary to serve text with; " + hint);
  }
  return out;
}

} // namespace aeg::server
