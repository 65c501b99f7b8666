#include "models/model_cache.hpp"

#include "gpu/sim/sim_device.hpp"
#include "models/gguf/file.hpp"
#include "models/hf/folder.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <random>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace aeg::models {

namespace {

// Bumped whenever the image layout changes, so old shared files are never mistaken for new.
// 3: Q4_1x8 and Q8_0x8 rows grouped by 4 columns; 4: Q4_K matrices transcoded to Q4_1(x8);
// 5: Q5_K matrices transcoded to Q5_1(x8), Q6_K and Q3_K ones interleaved as Q6_Kx8, Q3_Kx8;
// 6: Q2_K matrices interleaved as Q2_Kx8.
constexpr std::uint64_t layout_version = 6;
constexpr std::size_t header_bytes = 4096;
constexpr char magic[8] = {'A', 'E', 'G', 'I', 'M', 'G', '0', '1'};

struct file_header {
  char magic[8];
  std::uint64_t key;
  std::uint64_t payload_bytes;
  std::uint64_t ready; // set last, once the payload is complete
};

std::uint64_t fnv1a(std::string_view s, std::uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// What determines an image's bytes: the source (file identity or synthetic shape and seed) and
// the compute format.
result<std::uint64_t> key_of(const model_source& src, const compute_format& f) {
  std::string k = "v" + std::to_string(layout_version);
  if (src.synthetic) {
    k += "|synthetic|" + *src.synthetic + "|" + std::to_string(src.seed) + "|" +
         std::to_string(src.vocab_size);
  } else {
    // A file's identity, or that of every file in a Hugging Face folder.
    auto identity = [&](const std::string& path) -> result<std::string> {
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0)
        return fail(errc::not_found, "cannot read '" + path + "': " + std::strerror(errno));
      return "|" + path + "|" + std::to_string(st.st_size) + "|" +
             std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
    };
    const auto path = std::filesystem::absolute(src.model_path).string();
    AEG_TRY_ASSIGN(const auto model, identity(path));
    k += "|model" + model;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      std::vector<std::string> files;
      for (const auto& e : std::filesystem::directory_iterator(path, ec))
        files.push_back(e.path().string());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        AEG_TRY_ASSIGN(const auto file, identity(f));
        k += file;
      }
    }
  }
  k += "|" + std::to_string(static_cast<int>(f.backend)) + "|" +
       std::to_string(static_cast<int>(f.half_type)) + "|" +
       std::to_string(f.cpu_weight_type ? static_cast<int>(*f.cpu_weight_type) : -1) + "|" +
       std::to_string(static_cast<int>(f.cpu_kv_type));
  return fnv1a(k);
}

std::string file_name(const std::string& name, std::uint64_t key) {
  std::string safe;
  for (char c : name)
    safe += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' ? c : '_';
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(key));
  return safe + "-" + hex + ".img";
}

// A mapping that unmaps itself.
struct mapping {
  void* addr = MAP_FAILED;
  std::size_t bytes = 0;
  std::shared_ptr<void> pin;
  int unnamed_fd = -1; // an O_TMPFILE file not yet given its name
  ~mapping() {
    pin.reset(); // unpin before unmapping
    if (addr != MAP_FAILED)
      ::munmap(addr, bytes);
    if (unnamed_fd >= 0)
      ::close(unnamed_fd);
  }
};

tl::unexpected<error> io_error(const std::string& what, const std::string& path) {
  return fail(errc::unavailable, what + " '" + path + "': " + std::strerror(errno) +
                                     "; check the shared directory or run without it");
}

} // namespace

model_cache::model_cache(std::shared_ptr<gpu::device> dev, options opts)
    : dev_(std::move(dev)), opts_(std::move(opts)) {}

result<std::shared_ptr<std::byte>> model_cache::shared_memory(const std::string& name,
                                                              std::uint64_t key, std::size_t bytes,
                                                              bool& filled,
                                                              std::function<void()>& publish) {
  std::error_code ec;
  std::filesystem::create_directories(opts_.shared_dir, ec);
  const std::string path = opts_.shared_dir + "/" + file_name(name, key);
  const std::size_t total = header_bytes + bytes;
  auto map = std::make_shared<mapping>();
  // A complete file from an earlier process: map it.
  if (int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
    struct stat st {};
    if (::fstat(fd, &st) == 0 && static_cast<std::size_t>(st.st_size) == total) {
      map->addr = ::mmap(nullptr, total, PROT_READ, MAP_SHARED, fd, 0);
      map->bytes = total;
    }
    ::close(fd);
    if (map->addr != MAP_FAILED) {
      const auto* h = static_cast<const file_header*>(map->addr);
      if (std::memcmp(h->magic, magic, sizeof magic) == 0 && h->key == key &&
          h->payload_bytes == bytes && h->ready == 1) {
        AEG_TRY_ASSIGN(auto pinned, dev_->pin(map->addr, total));
        map->pin = std::move(pinned);
        filled = true;
        return std::shared_ptr<std::byte>(map, static_cast<std::byte*>(map->addr) + header_bytes);
      }
      map = std::make_shared<mapping>(); // stale or partial: build a new one
    }
  }
  // Build a new file under a private name, then rename it into place: readers never see it
  // half written. Where the file system allows, the file has no name at all until it is
  // complete (O_TMPFILE), so a process killed while building leaves nothing behind in what is
  // usually RAM (tmpfs); elsewhere it is a named temporary file.
  std::mt19937_64 rng(std::random_device{}());
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rng());
  int fd = ::open(opts_.shared_dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
  const bool unnamed = fd >= 0;
  if (!unnamed)
    fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return io_error("cannot create", tmp);
  auto drop = [&] {
    ::close(fd);
    if (!unnamed)
      ::unlink(tmp.c_str());
  };
  if (::ftruncate(fd, static_cast<off_t>(total)) != 0) {
    drop();
    return io_error("cannot size", tmp);
  }
  map->addr = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  map->bytes = total;
  if (map->addr == MAP_FAILED) {
    drop();
    return io_error("cannot map", tmp);
  }
  if (unnamed)
    map->unnamed_fd = fd; // named when published
  else
    ::close(fd);
  auto pinned = dev_->pin(map->addr, total);
  if (!pinned) {
    if (!unnamed)
      ::unlink(tmp.c_str());
    return tl::unexpected(pinned.error());
  }
  map->pin = std::move(*pinned);
  auto* h = static_cast<file_header*>(map->addr);
  std::memcpy(h->magic, magic, sizeof magic);
  h->key = key;
  h->payload_bytes = bytes;
  h->ready = 0;
  filled = false;
  // The caller fills the payload, then publishes: ready set, file renamed into place.
  // Publishing is best effort: if the name cannot be given, this process still has its image
  // and later ones build their own.
  publish = [map, tmp, path] {
    static_cast<file_header*>(map->addr)->ready = 1;
    if (map->unnamed_fd >= 0) {
      const std::string self = "/proc/self/fd/" + std::to_string(map->unnamed_fd);
      const bool linked =
          ::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, tmp.c_str(), AT_SYMLINK_FOLLOW) == 0;
      ::close(map->unnamed_fd);
      map->unnamed_fd = -1;
      if (!linked)
        return;
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      ::unlink(tmp.c_str());
  };
  return std::shared_ptr<std::byte>(map, static_cast<std::byte*>(map->addr) + header_bytes);
}

namespace {

// A source's shape and image layout in `format`, and its open file when it is a GGUF.
struct planned_source {
  std::optional<gguf::file> file;
  llama_config config;
  llama_layout layout;
};

result<planned_source> plan_source(const model_source& src, const compute_format& format) {
  planned_source p;
  if (src.synthetic) {
    AEG_TRY_ASSIGN(auto c, llama_config::synthetic(*src.synthetic));
    p.config = std::move(c);
    if (src.vocab_size != 0)
      p.config.vocab_size = src.vocab_size;
    p.layout = plan_synthetic(p.config, format);
    return p;
  }
  AEG_TRY_ASSIGN(auto f, open_model(src.model_path));
  auto plan = plan_llama(f, format);
  if (!plan)
    return fail(plan.error().code, src.model_path + ": " + plan.error().message);
  p.file.emplace(std::move(f));
  p.config = std::move(plan->first);
  p.layout = std::move(plan->second);
  return p;
}

} // namespace

result<model_footprint> plan_footprint(const model_source& src, const compute_format& format) {
  AEG_TRY_ASSIGN(auto p, plan_source(src, format));
  return model_footprint{p.config, p.layout.total_bytes,
                         p.config.kv(format.kv_type()).block_bytes()};
}

model_footprint footprint_of(const model_image& image) {
  return {image.config(), image.bytes().size(),
          image.config().kv(image.format().kv_type()).block_bytes()};
}

result<std::shared_ptr<const model_image>> model_cache::add(const std::string& name,
                                                            const model_source& src,
                                                            const compute_format& format,
                                                            const progress_fn& progress) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = entries_.find(name); it != entries_.end())
      return it->second.image;
  }
  // Plan first: the size decides whether the budget can take the model.
  AEG_TRY_ASSIGN(auto planned, plan_source(src, format));
  std::optional<gguf::file> file = std::move(planned.file);
  llama_config config = std::move(planned.config);
  llama_layout layout = std::move(planned.layout);
  const std::size_t bytes = layout.total_bytes;
  {
    std::lock_guard lock(mutex_);
    if (opts_.budget_bytes != 0 && used_ + bytes > opts_.budget_bytes)
      return fail(errc::out_of_memory,
                  "the host model cache holds " + std::to_string(used_ >> 20) + " of its " +
                      std::to_string(opts_.budget_bytes >> 20) + " MiB; model '" + name +
                      "' needs " + std::to_string((bytes + (1 << 20) - 1) >> 20) +
                      " MiB more; raise the cache budget or register fewer models");
    used_ += bytes; // reserved while loading
  }
  auto release_reservation = [&] {
    std::lock_guard lock(mutex_);
    used_ -= bytes;
  };
  bool reused = false;
  std::shared_ptr<std::byte> memory;
  std::function<void()> publish;
  if (format.backend == gpu::backend_kind::sim) {
    // A simulated device copies nothing: the image is address space, one per size, shared.
    std::lock_guard lock(mutex_);
    auto& hollow = hollow_[bytes];
    if (!hollow)
      hollow = gpu::hollow_memory(bytes);
    if (!hollow) {
      used_ -= bytes;
      return fail(errc::out_of_memory, "no address space left for model '" + name + "'");
    }
    memory = hollow;
  } else if (!opts_.shared_dir.empty()) {
    auto key = key_of(src, format);
    if (!key) {
      release_reservation();
      return tl::unexpected(key.error());
    }
    auto m = shared_memory(name, *key, bytes, reused, publish);
    if (!m) {
      release_reservation();
      return tl::unexpected(m.error());
    }
    memory = std::move(*m);
  } else {
    auto m = pinned_allocator(*dev_)(bytes);
    if (!m) {
      release_reservation();
      return fail(m.error().code, "cannot hold model '" + name + "' (" +
                                      std::to_string(bytes >> 20) +
                                      " MiB) in pinned memory: " + m.error().message);
    }
    memory = std::move(*m);
  }
  if (format.backend == gpu::backend_kind::sim) {
    if (progress)
      progress(bytes, bytes);
  } else if (!reused) {
    if (file)
      fill_llama(*file, layout, memory.get(), progress);
    else
      fill_synthetic(config, layout, src.seed, memory.get(), progress);
    if (publish)
      publish();
  } else if (progress) {
    progress(bytes, bytes);
  }
  auto image = std::make_shared<const model_image>(std::move(config), std::move(layout), format,
                                                   std::move(memory));
  std::lock_guard lock(mutex_);
  auto [it, inserted] = entries_.emplace(name, entry{image, reused});
  if (!inserted) { // another thread added it meanwhile
    used_ -= bytes;
    return it->second.image;
  }
  return image;
}

std::shared_ptr<const model_image> model_cache::find(std::string_view name) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : it->second.image;
}

std::vector<std::string> model_cache::names() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_)
    out.push_back(name);
  return out;
}

std::size_t model_cache::used_bytes() const {
  std::lock_guard lock(mutex_);
  return used_;
}

bool model_cache::reused_shared_file(std::string_view name) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(name);
  return it != entries_.end() && it->second.reused;
}

} // namespace aeg::models
