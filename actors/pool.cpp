#include "actors/pool.hpp"

#include "gpu/registry.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace aeg::actors {

namespace {

using json = nlohmann::json;

std::string show(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

// Reads fields of one JSON object, remembering where it is so errors can point at it.
class reader {
public:
  reader(const json& j, std::string where) : j_(j), where_(std::move(where)) {}

  std::string at(const std::string& key) const {
    return where_ + (where_.empty() ? "" : ".") + key;
  }

  result<void> known(std::initializer_list<const char*> keys) const {
    if (!j_.is_object())
      return fail(errc::invalid_argument, where_ + ": expected an object");
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (std::none_of(keys.begin(), keys.end(), [&](const char* k) { return it.key() == k; }))
        return fail(errc::invalid_argument, at(it.key()) + ": unknown field");
    return {};
  }

  template <class T>
  result<T> get(const std::string& key, T fallback) const {
    if (!j_.contains(key))
      return fallback;
    try {
      return j_.at(key).get<T>();
    } catch (const std::exception&) {
      return fail(errc::invalid_argument, at(key) + ": wrong type");
    }
  }

  // A number from `lo` to `hi` (finite; NaN and 1e400 are not numbers here).
  result<double> number(const std::string& key, double fallback, double lo, double hi) const {
    if (!j_.contains(key))
      return fallback;
    const json& v = j_.at(key);
    if (!v.is_number() || !(v.get<double>() >= lo && v.get<double>() <= hi))
      return fail(errc::invalid_argument, at(key) + ": must be a number from " + show(lo) + " to " +
                                              show(hi) + "; it is " + v.dump());
    return v.get<double>();
  }

  // A whole number from `lo` to `hi`: negatives and fractions are refused, never wrapped.
  result<std::uint64_t> count(const std::string& key, std::uint64_t fallback, std::uint64_t lo,
                              std::uint64_t hi) const {
    if (!j_.contains(key))
      return fallback;
    const json& v = j_.at(key);
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() < lo || v.get<std::uint64_t>() > hi)
      return fail(errc::invalid_argument, at(key) + ": must be a whole number from " +
                                              std::to_string(lo) + " to " + std::to_string(hi) +
                                              "; it is " + v.dump());
    return v.get<std::uint64_t>();
  }

  // A string that is not empty.
  result<std::string> name(const std::string& key) const {
    auto s = required<std::string>(key);
    if (s && s->empty())
      return fail(errc::invalid_argument, at(key) + ": must not be empty");
    return s;
  }

  template <class T>
  result<T> required(const std::string& key) const {
    if (!j_.contains(key))
      return fail(errc::invalid_argument, at(key) + ": missing");
    return get<T>(key, T{});
  }

private:
  const json& j_;
  std::string where_;
};

// Stores a read value, or passes its error up.
template <class T>
result<void> assign(T& out, result<T> r) {
  if (!r)
    return tl::unexpected(r.error());
  out = std::move(*r);
  return {};
}

#define AEG_TRY_ASSIGN(var, expr)                                                                  \
  if (auto aeg_r_ = assign(var, expr); !aeg_r_)                                                    \
  return tl::unexpected(aeg_r_.error())

std::size_t mib(double v) {
  return static_cast<std::size_t>(v * 1048576.0);
}

result<instance_role> role_of(const std::string& s, const std::string& where) {
  if (s == "colocated")
    return instance_role::colocated;
  if (s == "prefill")
    return instance_role::prefill;
  if (s == "decode")
    return instance_role::decode;
  return fail(errc::invalid_argument,
              where + ": '" + s + "' is not a role; choose prefill, decode or colocated");
}

// Follows the parser through a document so that what the field readers never see (a key given
// twice, a number no double holds) can be named where it is, as "devices[1].memory_mib".
class path_tracker {
public:
  void on(json::parse_event_t event, const json& parsed) {
    using ev = json::parse_event_t;
    switch (event) {
    case ev::object_start:
    case ev::array_start:
      frames_.push_back({.array = event == ev::array_start});
      break;
    case ev::key: {
      auto& f = frames_.back();
      f.key = parsed.get<std::string>();
      if (!f.keys.insert(f.key).second && duplicate_.empty()) {
        const auto where = path(frames_.size() - 1);
        duplicate_ =
            (where.empty() ? "" : where + ": ") + "the key '" + f.key + "' appears twice; keep one";
      }
      break;
    }
    case ev::object_end:
    case ev::array_end:
      frames_.pop_back();
      next_element();
      break;
    case ev::value:
      next_element();
      break;
    }
  }

  // Where the value being parsed now sits.
  std::string here() const { return path(frames_.size()); }

  // The first key given twice in one object, as an error; empty when none was.
  const std::string& duplicate() const { return duplicate_; }

private:
  struct frame {
    bool array = false;
    std::size_t index = 0; // array: the element being parsed
    std::string key;       // object: the member being parsed
    std::set<std::string> keys;
  };

  void next_element() {
    if (!frames_.empty() && frames_.back().array)
      ++frames_.back().index;
  }

  // The path through the outermost `n` containers.
  std::string path(std::size_t n) const {
    std::string p;
    for (std::size_t i = 0; i < n; ++i)
      p += frames_[i].array ? "[" + std::to_string(frames_[i].index) + "]"
                            : (p.empty() ? "" : ".") + frames_[i].key;
    return p;
  }

  std::vector<frame> frames_;
  std::string duplicate_;
};

} // namespace

result<pool_spec> parse_topology(std::string_view text) {
  json doc;
  // A key given twice in one object: JSON parsers keep one silently, which hides typos.
  path_tracker tracker;
  try {
    doc = json::parse(text, [&](int, json::parse_event_t event, json& parsed) {
      tracker.on(event, parsed);
      return true;
    });
  } catch (const json::out_of_range& e) {
    // The parser's only range error: a number no double holds (1e400), quoted in its message.
    const std::string what = e.what();
    const auto open = what.find('\''), close = what.rfind('\'');
    const auto number = open < close ? what.substr(open + 1, close - open - 1) : "a number there";
    const auto where = tracker.here();
    return fail(errc::invalid_argument, "topology: " + (where.empty() ? "" : where + ": ") +
                                            number + " is not a number a double holds");
  } catch (const json::exception& e) {
    return fail(errc::invalid_argument, std::string("topology: not valid JSON: ") + e.what());
  }
  if (!tracker.duplicate().empty())
    return fail(errc::invalid_argument, "topology: " + tracker.duplicate());
  pool_spec spec;
  reader top(doc, "");
  if (auto r = top.known({"devices", "instances", "models", "policy", "host_cache_mib",
                          "shared_dir", "host_kv_mib", "slab_mib", "max_queued"});
      !r)
    return tl::unexpected(r.error());
  double cache_mib = 0, host_kv_mib = 256, slab_mib = 16;
  constexpr double most_mib = 1 << 30; // a pebibyte: beyond any machine, short of overflow
  AEG_TRY_ASSIGN(cache_mib, top.number("host_cache_mib", 0, 0, most_mib));
  AEG_TRY_ASSIGN(slab_mib, top.number("slab_mib", 16, 1, 4096));
  AEG_TRY_ASSIGN(host_kv_mib, top.number("host_kv_mib", 256, slab_mib, most_mib));
  AEG_TRY_ASSIGN(spec.shared_dir, top.get<std::string>("shared_dir", ""));
  AEG_TRY_ASSIGN(spec.max_queued, top.count("max_queued", 100000, 1, 1'000'000'000));
  spec.host_cache_bytes = mib(cache_mib);
  spec.host_kv_bytes = mib(host_kv_mib);
  spec.slab_bytes = mib(slab_mib);

  if (!doc.contains("devices") || !doc["devices"].is_array() || doc["devices"].empty())
    return fail(errc::invalid_argument, "devices: a non-empty array is required");
  std::set<std::string> device_names;
  for (std::size_t i = 0; i < doc["devices"].size(); ++i) {
    const std::string where = "devices[" + std::to_string(i) + "]";
    reader d(doc["devices"][i], where);
    if (auto r = d.known({"name", "backend", "ordinal", "memory_mib"}); !r)
      return tl::unexpected(r.error());
    device_spec dev;
    double memory = 0;
    std::uint64_t ordinal = 0;
    AEG_TRY_ASSIGN(dev.name, d.name("name"));
    AEG_TRY_ASSIGN(dev.backend, d.get<std::string>("backend", "cpu"));
    AEG_TRY_ASSIGN(ordinal, d.count("ordinal", 0, 0, 1024));
    AEG_TRY_ASSIGN(memory, d.number("memory_mib", 0, 0, most_mib));
    dev.ordinal = static_cast<int>(ordinal);
    if (dev.backend != "cpu" && dev.backend != "cuda")
      return fail(errc::invalid_argument,
                  d.at("backend") + ": '" + dev.backend + "' is not a backend; choose cpu or cuda");
    if (!device_names.insert(dev.name).second)
      return fail(errc::invalid_argument, d.at("name") + ": '" + dev.name + "' is used twice");
    dev.memory_bytes = mib(memory);
    spec.devices.push_back(std::move(dev));
  }

  if (!doc.contains("models") || !doc["models"].is_array() || doc["models"].empty())
    return fail(errc::invalid_argument, "models: a non-empty array is required");
  std::set<std::string> model_names;
  for (std::size_t i = 0; i < doc["models"].size(); ++i) {
    const std::string where = "models[" + std::to_string(i) + "]";
    reader m(doc["models"][i], where);
    if (auto r = m.known({"name", "gguf", "synthetic", "seed", "vocab_size", "ttft_s", "tbt_s"});
        !r)
      return tl::unexpected(r.error());
    model_spec ms;
    std::string synthetic;
    AEG_TRY_ASSIGN(ms.name, m.name("name"));
    AEG_TRY_ASSIGN(ms.source.gguf_path, m.get<std::string>("gguf", ""));
    AEG_TRY_ASSIGN(synthetic, m.get<std::string>("synthetic", ""));
    AEG_TRY_ASSIGN(ms.source.seed, m.count("seed", 1, 0, UINT64_MAX));
    AEG_TRY_ASSIGN(ms.source.vocab_size, m.count("vocab_size", 0, 0, 1 << 24));
    AEG_TRY_ASSIGN(ms.ttft_seconds, m.number("ttft_s", 10, 1e-3, 1e6));
    AEG_TRY_ASSIGN(ms.tbt_seconds, m.number("tbt_s", 0.1, 1e-3, 1e6));
    if (ms.source.gguf_path.empty() == synthetic.empty())
      return fail(errc::invalid_argument, where + ": give exactly one of gguf or synthetic");
    if (!synthetic.empty()) {
      if (auto c = models::llama_config::synthetic(synthetic); !c)
        return fail(errc::invalid_argument, m.at("synthetic") + ": " + c.error().message);
      ms.source.synthetic = synthetic;
    } else if (ms.source.vocab_size != 0) {
      return fail(errc::invalid_argument, m.at("vocab_size") +
                                              ": only a synthetic model takes a vocabulary size (a "
                                              "GGUF model has its own)");
    }
    if (!model_names.insert(ms.name).second)
      return fail(errc::invalid_argument, m.at("name") + ": '" + ms.name + "' is used twice");
    spec.models.push_back(std::move(ms));
  }

  if (!doc.contains("instances") || !doc["instances"].is_array() || doc["instances"].empty())
    return fail(errc::invalid_argument, "instances: a non-empty array is required");
  for (std::size_t i = 0; i < doc["instances"].size(); ++i) {
    const std::string where = "instances[" + std::to_string(i) + "]";
    reader n(doc["instances"][i], where);
    if (auto r = n.known(
            {"device", "role", "models", "kv_mib", "weight_mib", "max_batch_tokens", "max_seqs"});
        !r)
      return tl::unexpected(r.error());
    instance_spec is;
    std::string role;
    double kv = 0, weights = 0;
    AEG_TRY_ASSIGN(is.device, n.name("device"));
    AEG_TRY_ASSIGN(role, n.get<std::string>("role", "colocated"));
    AEG_TRY_ASSIGN(is.models, n.get<std::vector<std::string>>("models", {}));
    AEG_TRY_ASSIGN(kv, n.number("kv_mib", 0, 0, most_mib));
    AEG_TRY_ASSIGN(weights, n.number("weight_mib", 0, 0, most_mib));
    AEG_TRY_ASSIGN(is.max_batch_tokens, n.count("max_batch_tokens", 512, 1, 1 << 20));
    AEG_TRY_ASSIGN(is.max_seqs, n.count("max_seqs", 64, 1, 4096));
    auto r = role_of(role, n.at("role"));
    if (!r)
      return tl::unexpected(r.error());
    is.role = *r;
    if (!device_names.count(is.device))
      return fail(errc::invalid_argument,
                  n.at("device") + ": no device is named '" + is.device + "'");
    for (std::size_t k = 0; k < is.models.size(); ++k)
      if (!model_names.count(is.models[k]))
        return fail(errc::invalid_argument, n.at("models") + "[" + std::to_string(k) +
                                                "]: no model is named '" + is.models[k] + "'");
    is.kv_bytes = mib(kv);
    is.weight_bytes = mib(weights);
    spec.instances.push_back(std::move(is));
  }

  if (doc.contains("policy")) {
    reader p(doc["policy"], "policy");
    if (auto r = p.known({"routing", "decode", "max_group", "max_quota_s", "turn_steps"}); !r)
      return tl::unexpected(r.error());
    std::string route;
    AEG_TRY_ASSIGN(route, p.get<std::string>("routing", "aegaeon"));
    AEG_TRY_ASSIGN(spec.policy.decode, p.get<std::string>("decode", "weighted_round_robin"));
    AEG_TRY_ASSIGN(spec.policy.max_group, p.count("max_group", 8, 1, 1'000'000));
    AEG_TRY_ASSIGN(spec.policy.max_quota_seconds, p.number("max_quota_s", 4, 1e-3, 3600));
    AEG_TRY_ASSIGN(spec.policy.turn_steps, p.count("turn_steps", 16, 1, 1'000'000));
    if (route == "aegaeon")
      spec.policy.route = routing::aegaeon;
    else if (route == "request_level")
      spec.policy.route = routing::request_level;
    else if (route == "dedicated")
      spec.policy.route = routing::dedicated;
    else
      return fail(errc::invalid_argument, p.at("routing") + ": '" + route +
                                              "' is not a routing; choose aegaeon, "
                                              "request_level or dedicated");
    if (!sched::make_switch_policy(spec.policy.decode, sched::seconds{1}, 1))
      return fail(errc::invalid_argument,
                  p.at("decode") + ": '" + spec.policy.decode +
                      "' is not a policy; choose weighted_round_robin, round_robin or drain_first");
  }
  // Every model needs an instance (an instance with no list serves them all).
  for (std::size_t i = 0; i < spec.models.size(); ++i) {
    const auto& name = spec.models[i].name;
    if (std::none_of(spec.instances.begin(), spec.instances.end(), [&](const instance_spec& is) {
          return is.models.empty() || std::count(is.models.begin(), is.models.end(), name) > 0;
        }))
      return fail(errc::invalid_argument, "models[" + std::to_string(i) +
                                              "]: no instance serves '" + name +
                                              "'; add it to an instance's models");
  }
  // Roles must make a whole pipeline.
  bool prefill = false, decode = false;
  for (const auto& is : spec.instances) {
    prefill |= is.role == instance_role::prefill;
    decode |= is.role == instance_role::decode;
  }
  if (prefill != decode)
    return fail(errc::invalid_argument, std::string("instances: ") +
                                            (prefill ? "prefill instances need a decode instance"
                                                     : "decode instances need a prefill instance"));
  return spec;
}

result<pool_spec> load_topology(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return fail(errc::not_found, "cannot read topology '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  auto spec = parse_topology(ss.str());
  if (!spec)
    return fail(spec.error().code, path + ": " + spec.error().message);
  return spec;
}

instance_options instance_options_for(const pool_spec& spec, const instance_spec& is) {
  instance_options o;
  o.role = is.role;
  o.kv_bytes = is.kv_bytes;
  o.weight_bytes = is.weight_bytes;
  o.max_batch_tokens = is.max_batch_tokens;
  o.max_seqs = is.max_seqs;
  o.slab_bytes = spec.slab_bytes;
  const auto policy = spec.policy;
  if (is.role != instance_role::prefill) {
    const std::string decode =
        policy.route == routing::aegaeon ? policy.decode : std::string("drain_first");
    o.policy = [decode, policy] {
      return sched::make_switch_policy(decode, sched::seconds{policy.max_quota_seconds},
                                       policy.turn_steps);
    };
  }
  return o;
}

result<std::vector<models::device_plan>> device_memory_needed(const pool_spec& spec,
                                                              const models::compute_format& format,
                                                              std::size_t tokens) {
  std::map<std::string, models::model_footprint> footprints;
  for (const auto& m : spec.models) {
    auto f = models::plan_footprint(m.source, format);
    if (!f)
      return fail(f.error().code, "model '" + m.name + "': " + f.error().message);
    footprints[m.name] = std::move(*f);
  }
  std::vector<models::device_plan> plans(spec.devices.size());
  for (std::size_t d = 0; d < spec.devices.size(); ++d)
    for (const auto& is : spec.instances) {
      if (is.device != spec.devices[d].name)
        continue;
      std::vector<models::model_footprint> served;
      for (const auto& m : spec.models)
        if (is.models.empty() ||
            std::find(is.models.begin(), is.models.end(), m.name) != is.models.end())
          served.push_back(footprints.at(m.name));
      const auto plan = device_bytes_needed(served, instance_options_for(spec, is), tokens);
      plans[d].weights += plan.weights;
      plans[d].buffers += plan.buffers;
      plans[d].kv += plan.kv;
    }
  return plans;
}

result<void> check_device_memory(const pool_spec& spec, const models::compute_format& format,
                                 std::span<const std::size_t> capacities) {
  auto plans = device_memory_needed(spec, format, 0);
  if (!plans)
    return tl::unexpected(plans.error());
  auto mib = [](std::size_t b) { return std::to_string((b + (1 << 20) - 1) >> 20); };
  for (std::size_t d = 0; d < spec.devices.size(); ++d) {
    const auto& dev = spec.devices[d];
    const std::size_t have = d < capacities.size() ? capacities[d] : dev.memory_bytes;
    const auto& need = (*plans)[d];
    if (have != 0 && need.total() > have)
      return fail(errc::out_of_memory,
                  "device '" + dev.name + "' has " + std::to_string(have >> 20) +
                      " MiB; its instances take " + mib(need.total()) + " MiB (weights " +
                      mib(need.weights) + ", step buffers " + mib(need.buffers) + ", KV " +
                      mib(need.kv) +
                      "); give it more memory_mib, or lower max_batch_tokens, kv_mib or slab_mib");
  }
  return {};
}

result<std::unique_ptr<pool>>
pool::start(caf::actor_system& sys, const pool_spec& spec,
            const std::function<void(const std::string&, std::size_t, std::size_t)>& progress) {
  auto p = std::unique_ptr<pool>(new pool);
  p->spec_ = spec;
  std::map<std::string, std::shared_ptr<gpu::device>> by_name;
  std::string backend;
  for (const auto& d : spec.devices) {
    auto dev = gpu::make_device(
        {.backend = d.backend, .ordinal = d.ordinal, .capacity_bytes = d.memory_bytes});
    if (!dev)
      return fail(dev.error().code, "device '" + d.name + "': " + dev.error().message);
    if (!backend.empty() && backend != d.backend)
      return fail(errc::invalid_argument,
                  "device '" + d.name + "': a pool runs one backend; the others are " + backend);
    backend = d.backend;
    by_name[d.name] = *dev;
    p->devices_.push_back(*dev);
  }
  auto& first = p->devices_.front();
  // Said before any model loads, not by an instance after minutes of loading.
  {
    std::vector<std::size_t> capacities;
    for (const auto& d : p->devices_)
      capacities.push_back(d->capacity_bytes());
    if (auto fits = check_device_memory(spec, models::compute_format::for_backend(first->kind()),
                                        capacities);
        !fits)
      return tl::unexpected(fits.error());
  }
  p->cache_ = std::make_unique<models::model_cache>(
      first, models::model_cache::options{spec.host_cache_bytes, spec.shared_dir});
  const auto format = models::compute_format::for_backend(first->kind());
  std::vector<catalog_entry> catalog;
  std::map<std::string, served_model> served;
  for (const auto& m : spec.models) {
    auto image = p->cache_->add(m.name, m.source, format, [&](std::size_t done, std::size_t all) {
      if (progress)
        progress(m.name, done, all);
    });
    if (!image)
      return fail(image.error().code, "model '" + m.name + "': " + image.error().message);
    const auto& cfg = (*image)->config();
    catalog.push_back({m.name, m.ttft_seconds, m.tbt_seconds, cfg.context_length, cfg.vocab_size,
                       (*image)->bytes().size(), models::footprint_of(**image).kv_block_bytes});
    served[m.name] = {m.name, *image, m.tbt_seconds, m.ttft_seconds};
  }
  auto host = first->allocate_pinned(spec.host_kv_bytes);
  if (!host)
    return fail(host.error().code, "no pinned memory for the host KV pool (" +
                                       std::to_string(spec.host_kv_bytes >> 20) +
                                       " MiB): " + host.error().message);
  p->host_kv_ = std::make_shared<gpu::kv_pool>(std::move(*host), spec.slab_bytes);

  // Instances that share a device start at once: each is given its planned share (and an even
  // part of what the plans leave, to the unsized KV pools first), not whatever is free when it
  // starts, so none takes what the others were planned to get.
  std::vector<instance_options> options;
  std::vector<std::vector<std::string>> served_names;
  for (const auto& is : spec.instances) {
    options.push_back(instance_options_for(spec, is));
    served_names.push_back(is.models);
    if (served_names.back().empty())
      for (const auto& m : spec.models)
        served_names.back().push_back(m.name);
  }
  for (const auto& [device, dev] : by_name) {
    std::vector<std::size_t> on, unsized;
    std::size_t planned = 0;
    std::vector<std::size_t> plan(spec.instances.size(), 0);
    for (std::size_t i = 0; i < spec.instances.size(); ++i) {
      if (spec.instances[i].device != device)
        continue;
      std::vector<models::model_footprint> footprints;
      for (const auto& n : served_names[i])
        footprints.push_back(models::footprint_of(*served.at(n).image));
      plan[i] = device_bytes_needed(footprints, options[i], 0).total();
      planned += plan[i];
      on.push_back(i);
      if (options[i].kv_bytes == 0)
        unsized.push_back(i);
    }
    if (on.size() < 2)
      continue;
    const auto& takers = unsized.empty() ? on : unsized;
    const std::size_t free = dev->free_bytes();
    const std::size_t extra = free > planned ? (free - planned) / takers.size() : 0;
    for (const auto i : on)
      options[i].device_share_bytes = plan[i];
    for (const auto i : takers)
      options[i].device_share_bytes += extra;
  }

  std::vector<pool_member> members;
  for (std::size_t i = 0; i < spec.instances.size(); ++i) {
    const auto& is = spec.instances[i];
    std::vector<served_model> models;
    const auto& names = served_names[i];
    std::vector<models::model_footprint> footprints;
    for (const auto& n : names) {
      models.push_back(served.at(n));
      footprints.push_back(models::footprint_of(*served.at(n).image));
    }
    // The KV pool it will make, for decode placement.
    const std::size_t kv_bytes =
        kv_pool_bytes(footprints, options[i], by_name.at(is.device)->free_bytes());
    auto actor = spawn_instance(sys, by_name.at(is.device), std::move(models),
                                std::move(options[i]), p->host_kv_);
    const char* role = is.role == instance_role::prefill  ? "prefill"
                       : is.role == instance_role::decode ? "decode"
                                                          : "colocated";
    const std::string name = is.device + "/" + role + "#" + std::to_string(i);
    p->instances_.push_back(actor);
    p->names_.push_back(name);
    members.push_back({actor, is.role, names, name, kv_bytes});
  }
  proxy_options po;
  po.route = spec.policy.route;
  po.max_group = spec.policy.max_group;
  po.max_queued = spec.max_queued;
  po.keep_finished = spec.keep_finished;
  p->proxy_ = spawn_proxy(sys, std::move(members), std::move(catalog), po);
  return p;
}

namespace {

// The words of an actor's exit reason: the message a failed coroutine left, else CAF's.
std::string reason_text(caf::actor_system& sys, const caf::error& e) {
  if (e.context().match_elements<std::string>())
    return e.context().get_as<std::string>(0);
  return sys.render(e);
}

} // namespace

result<void> pool::wait_started(caf::actor_system& sys, std::chrono::seconds timeout) const {
  caf::scoped_actor self{sys};
  for (std::size_t i = 0; i < instances_.size(); ++i) {
    // An instance makes its engine before it reads its first message: once it answers, it
    // is up; one that could not make it stops with the reason.
    self->monitor(instances_[i]);
    std::string failure;
    self->request(instances_[i], timeout, stats_atom::value)
        .receive([](const instance_stats&) {},
                 [&](const caf::error& e) { failure = reason_text(sys, e); });
    if (failure.empty()) {
      self->demonitor(instances_[i]);
      continue;
    }
    self->receive(
        [&](const caf::down_msg& d) {
          if (d.reason)
            failure = reason_text(sys, d.reason);
        },
        caf::after(std::chrono::seconds(1)) >> [] {});
    return fail(errc::unavailable, "instance '" + names_[i] + "' did not start: " + failure);
  }
  return {};
}

pool::~pool() {
  caf::anon_send_exit(proxy_, caf::exit_reason::user_shutdown);
  for (auto& a : instances_)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

} // namespace aeg::actors
