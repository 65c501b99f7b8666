#pragma once

#include "coro/error.hpp"
#include "gpu/device.hpp"
#include "models/llama/weights.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace aeg::models {

/// What a model is made from: a GGUF file, or random weights of a known shape.
struct model_source {
  std::string model_path;               ///< a GGUF file or a Hugging Face model folder, or
  std::optional<std::string> synthetic; ///< a shape llama_config::synthetic knows
  std::uint64_t seed = 1;               ///< synthetic weights' seed
  /// Synthetic: the vocabulary size in place of the shape's own (0: the shape's), so that the
  /// model can use the tokenizer of a GGUF model with that vocabulary.
  std::size_t vocab_size = 0;
};

/// What a model takes on a device besides its KV, known before its weights load: its shape, its
/// image in the compute layout, and one 16-token KV block in the layout's KV type.
struct model_footprint {
  llama_config config;
  std::size_t image_bytes = 0;
  std::size_t kv_block_bytes = 0;
};

/// `src`'s footprint in `format`, from the GGUF's header or the synthetic shape (nothing is
/// converted).
result<model_footprint> plan_footprint(const model_source& src, const compute_format& format);
/// A loaded image's footprint.
model_footprint footprint_of(const model_image& image);

/// The host model cache: every registered model's weights loaded once, already in its backend's
/// compute layout, in memory the devices copy from without staging. Scaling a model up is then a
/// copy at bus speed, never a file read or a conversion.
///
/// With a shared directory (a tmpfs such as /dev/shm), each image lives in a file there: the first
/// process to need a model converts it into a new file and renames it into place; later
/// processes, and later runs, map that file instead, so the processes of a node hold one copy.
/// A budget bounds the bytes the cache holds. Thread-safe.
class model_cache {
public:
  struct options {
    std::size_t budget_bytes = 0; ///< 0: no limit
    std::string shared_dir;       ///< empty: private pinned memory
  };

  /// A cache whose images `dev` copies from (pinned for it).
  model_cache(std::shared_ptr<gpu::device> dev, options opts);

  /// Loads `src` as `name` in `format` (once: a second call with the same name returns the same
  /// image). `errc::out_of_memory` when the budget cannot hold it, naming both; `progress` sees
  /// the bytes converted.
  result<std::shared_ptr<const model_image>> add(const std::string& name, const model_source& src,
                                                 const compute_format& format,
                                                 const progress_fn& progress = {});

  /// The image registered as `name`, or null.
  std::shared_ptr<const model_image> find(std::string_view name) const;
  std::vector<std::string> names() const;

  std::size_t used_bytes() const;
  std::size_t budget_bytes() const noexcept { return opts_.budget_bytes; }
  /// Whether `name` was mapped from a file that was already filled (by another process or run).
  bool reused_shared_file(std::string_view name) const;

private:
  struct entry {
    std::shared_ptr<const model_image> image;
    bool reused = false;
  };
  result<std::shared_ptr<std::byte>> shared_memory(const std::string& name, std::uint64_t key,
                                                   std::size_t bytes, bool& filled,
                                                   std::function<void()>& publish);

  std::shared_ptr<gpu::device> dev_;
  options opts_;
  mutable std::mutex mutex_;
  std::map<std::string, entry, std::less<>> entries_;
  std::map<std::size_t, std::shared_ptr<std::byte>> hollow_; // a simulation's images, by size
  std::size_t used_ = 0;
};

} // namespace aeg::models
