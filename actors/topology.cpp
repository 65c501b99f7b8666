#include "actors/topology.hpp"

#include "actors/cluster.hpp"
#include "actors/json_fields.hpp"
#include "actors/sched/switch_policy.hpp"
#include "models/llama/config.hpp"
#include "models/tokenizer/chat_template.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

namespace aeg::actors {

namespace {

using namespace json_fields;

std::size_t mib(double v) {
  return static_cast<std::size_t>(v * 1048576.0);
}

result<instance_role> role_of(const std::string& s, const std::string& where) {
  if (const auto r = role_named(s))
    return *r;
  return fail(errc::invalid_argument,
              where + ": '" + s + "' is not a role; choose prefill, decode or colocated");
}

constexpr double most_mib = 1 << 30; // a pebibyte: beyond any machine, short of overflow

// The top level's own fields.
result<void> parse_pool_fields(const json& doc, pool_spec& spec) {
  reader top(doc, "");
  AEG_TRY(top.known({"devices", "instances", "models", "policy", "host_cache_mib", "shared_dir",
                     "host_kv_mib", "slab_mib", "max_queued", "nodes", "cluster_key_file",
                     "cluster_tls"}));
  AEG_TRY_ASSIGN(spec.cluster_key_file, top.get<std::string>("cluster_key_file", ""));
  double cache_mib = 0, host_kv_mib = 256, slab_mib = 16;
  AEG_TRY_ASSIGN(cache_mib, top.number("host_cache_mib", 0, 0, most_mib));
  AEG_TRY_ASSIGN(slab_mib, top.number("slab_mib", 16, 1, 4096));
  AEG_TRY_ASSIGN(host_kv_mib, top.number("host_kv_mib", 256, slab_mib, most_mib));
  AEG_TRY_ASSIGN(spec.shared_dir, top.get<std::string>("shared_dir", ""));
  AEG_TRY_ASSIGN(spec.max_queued, top.count("max_queued", 100000, 1, 1'000'000'000));
  spec.host_cache_bytes = mib(cache_mib);
  spec.host_kv_bytes = mib(host_kv_mib);
  spec.slab_bytes = mib(slab_mib);
  return {};
}

// The elements of the array `key`, which must be there and not empty.
result<const json*> array_of(const json& doc, const char* key) {
  if (!doc.contains(key) || !doc[key].is_array() || doc[key].empty())
    return fail(errc::invalid_argument, std::string(key) + ": a non-empty array is required");
  return &doc[key];
}

result<device_spec> parse_device(const json& j, const std::string& where) {
  reader d(j, where);
  AEG_TRY(d.known({"name", "backend", "ordinal", "memory_mib"}));
  device_spec dev;
  double memory = 0;
  std::uint64_t ordinal = 0;
  AEG_TRY_ASSIGN(dev.name, d.name("name"));
  AEG_TRY_ASSIGN(dev.backend, d.get<std::string>("backend", "cpu"));
  AEG_TRY_ASSIGN(ordinal, d.count("ordinal", 0, 0, 1024));
  AEG_TRY_ASSIGN(memory, d.number("memory_mib", 0, 0, most_mib));
  dev.ordinal = static_cast<int>(ordinal);
  if (dev.backend != "cpu" && dev.backend != "cuda" && dev.backend != "sim")
    return fail(errc::invalid_argument, d.at("backend") + ": '" + dev.backend +
                                            "' is not a backend; choose cpu or cuda (or sim, "
                                            "for `aegaeon simulate`)");
  dev.memory_bytes = mib(memory);
  return dev;
}

result<model_spec> parse_model(const json& j, const std::string& where) {
  reader m(j, where);
  AEG_TRY(m.known({"name", "gguf", "hf", "synthetic", "seed", "vocab_size", "ttft_s", "tbt_s",
                   "max_prompt_tokens", "chat_template"}));
  model_spec ms;
  std::string synthetic;
  AEG_TRY_ASSIGN(ms.name, m.name("name"));
  std::string gguf, hf;
  AEG_TRY_ASSIGN(gguf, m.get<std::string>("gguf", ""));
  AEG_TRY_ASSIGN(hf, m.get<std::string>("hf", ""));
  ms.source.model_path = gguf.empty() ? hf : gguf;
  AEG_TRY_ASSIGN(synthetic, m.get<std::string>("synthetic", ""));
  AEG_TRY_ASSIGN(ms.source.seed, m.count("seed", 1, 0, UINT64_MAX));
  AEG_TRY_ASSIGN(ms.source.vocab_size, m.count("vocab_size", 0, 0, 1 << 24));
  AEG_TRY_ASSIGN(ms.ttft_seconds, m.number("ttft_s", 10, 1e-3, 1e6));
  AEG_TRY_ASSIGN(ms.tbt_seconds, m.number("tbt_s", 0.1, 1e-3, 1e6));
  AEG_TRY_ASSIGN(ms.max_prompt_tokens, m.count("max_prompt_tokens", 0, 0, 1 << 24));
  AEG_TRY_ASSIGN(ms.chat_template, m.get<std::string>("chat_template", ""));
  if (!ms.chat_template.empty())
    if (auto t = models::chat_template::named(ms.chat_template); !t)
      return fail(errc::invalid_argument, m.at("chat_template") + ": " + t.error().message);
  if (!gguf.empty() + !hf.empty() + !synthetic.empty() != 1)
    return fail(errc::invalid_argument,
                where + ": give exactly one of gguf (a file), hf (a Hugging Face model folder) "
                        "or synthetic");
  if (!synthetic.empty()) {
    if (auto c = models::llama_config::synthetic(synthetic); !c)
      return fail(errc::invalid_argument, m.at("synthetic") + ": " + c.error().message);
    ms.source.synthetic = synthetic;
  } else if (ms.source.vocab_size != 0) {
    return fail(errc::invalid_argument, m.at("vocab_size") +
                                            ": only a synthetic model takes a vocabulary size (a "
                                            "GGUF model has its own)");
  }
  return ms;
}

result<instance_spec> parse_instance(const json& j, const std::string& where,
                                     const std::set<std::string>& devices,
                                     const std::set<std::string>& models) {
  reader n(j, where);
  AEG_TRY(n.known({"device", "role", "models", "kv_mib", "weight_mib", "max_batch_tokens",
                   "max_seqs", "node"}));
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
  AEG_TRY_ASSIGN(is.node, n.get<std::string>("node", ""));
  AEG_TRY_ASSIGN(is.role, role_of(role, n.at("role")));
  if (!devices.count(is.device))
    return fail(errc::invalid_argument,
                n.at("device") + ": no device is named '" + is.device + "'");
  for (std::size_t k = 0; k < is.models.size(); ++k)
    if (!models.count(is.models[k]))
      return fail(errc::invalid_argument, n.at("models") + "[" + std::to_string(k) +
                                              "]: no model is named '" + is.models[k] + "'");
  is.kv_bytes = mib(kv);
  is.weight_bytes = mib(weights);
  return is;
}

result<policy_spec> parse_policy(const json& j) {
  reader p(j, "policy");
  AEG_TRY(p.known({"routing", "decode", "max_group", "max_quota_s", "turn_steps", "scale_queue",
                   "max_replicas", "keep_resident"}));
  policy_spec policy;
  std::string route;
  AEG_TRY_ASSIGN(route, p.get<std::string>("routing", "aegaeon"));
  AEG_TRY_ASSIGN(policy.decode, p.get<std::string>("decode", ""));
  AEG_TRY_ASSIGN(policy.max_group, p.count("max_group", 8, 1, 1'000'000));
  AEG_TRY_ASSIGN(policy.max_quota_seconds, p.number("max_quota_s", 4, 1e-3, 3600));
  AEG_TRY_ASSIGN(policy.turn_steps, p.count("turn_steps", 16, 1, 1'000'000));
  AEG_TRY_ASSIGN(policy.scale_queue, p.count("scale_queue", 4, 0, 1'000'000));
  AEG_TRY_ASSIGN(policy.max_replicas, p.count("max_replicas", 1, 0, 1'000'000));
  AEG_TRY_ASSIGN(policy.keep_resident, p.get<bool>("keep_resident", false));
  if (route == "aegaeon")
    policy.route = routing::aegaeon;
  else if (route == "request_level")
    policy.route = routing::request_level;
  else if (route == "dedicated")
    policy.route = routing::dedicated;
  else
    return fail(errc::invalid_argument, p.at("routing") + ": '" + route +
                                            "' is not a routing; choose aegaeon, "
                                            "request_level or dedicated");
  if (!policy.decode.empty() && !sched::make_switch_policy(policy.decode, sched::seconds{1}, 1)) {
    std::string known;
    for (const auto& name : sched::switch_policy_names())
      known += (known.empty() ? "" : ", ") + name;
    return fail(errc::invalid_argument,
                p.at("decode") + ": '" + policy.decode + "' is not a policy; choose " + known);
  }
  return policy;
}

// Every model needs an instance, and the roles must make a whole pipeline.
result<void> check_coverage(const pool_spec& spec) {
  for (std::size_t i = 0; i < spec.models.size(); ++i) {
    const auto& name = spec.models[i].name;
    if (std::none_of(spec.instances.begin(), spec.instances.end(), [&](const instance_spec& is) {
          return is.models.empty() || std::count(is.models.begin(), is.models.end(), name) > 0;
        }))
      return fail(errc::invalid_argument, "models[" + std::to_string(i) +
                                              "]: no instance serves '" + name +
                                              "'; add it to an instance's models");
  }
  bool prefill = false, decode = false;
  for (const auto& is : spec.instances) {
    prefill |= is.role == instance_role::prefill;
    decode |= is.role == instance_role::decode;
  }
  if (prefill != decode)
    return fail(errc::invalid_argument, std::string("instances: ") +
                                            (prefill ? "prefill instances need a decode instance"
                                                     : "decode instances need a prefill instance"));
  // A prefill instance hands a model's requests to a decode instance of its own node.
  for (std::size_t i = 0; i < spec.instances.size(); ++i) {
    const auto& p = spec.instances[i];
    if (p.role != instance_role::prefill)
      continue;
    for (const auto& model : spec.models_of(p))
      if (std::none_of(spec.instances.begin(), spec.instances.end(), [&](const auto& d) {
            const auto served = spec.models_of(d);
            return d.role == instance_role::decode && d.node == p.node &&
                   std::count(served.begin(), served.end(), model) > 0;
          }))
        return fail(errc::invalid_argument,
                    "instances[" + std::to_string(i) + "]: no decode instance of node '" + p.node +
                        "' serves '" + model + "', so its prefills could go nowhere");
  }
  return {};
}

} // namespace

std::optional<instance_role> role_named(std::string_view name) noexcept {
  for (auto r : {instance_role::colocated, instance_role::prefill, instance_role::decode})
    if (name == to_string(r))
      return r;
  return std::nullopt;
}

const char* to_string(instance_role r) noexcept {
  switch (r) {
  case instance_role::prefill:
    return "prefill";
  case instance_role::decode:
    return "decode";
  default:
    return "colocated";
  }
}

std::vector<std::string> pool_spec::models_of(const instance_spec& is) const {
  if (!is.models.empty())
    return is.models;
  std::vector<std::string> all;
  for (const auto& m : models)
    all.push_back(m.name);
  return all;
}

namespace {

// "models": each one's source and promises; names unique.
result<void> parse_models(const json& doc, pool_spec& spec, std::set<std::string>& names) {
  AEG_TRY_ASSIGN(const json* models, array_of(doc, "models"));
  for (std::size_t i = 0; i < models->size(); ++i) {
    AEG_TRY_ASSIGN(auto m, parse_model((*models)[i], "models[" + std::to_string(i) + "]"));
    if (!names.insert(m.name).second)
      return fail(errc::invalid_argument,
                  "models[" + std::to_string(i) + "].name: '" + m.name + "' is used twice");
    spec.models.push_back(std::move(m));
  }
  return {};
}

// A front end's "nodes": [{"address": "HOST:PORT"}, ...], instead of devices and instances.
result<std::vector<node_spec>> parse_nodes(const json& doc) {
  AEG_TRY_ASSIGN(const json* nodes, array_of(doc, "nodes"));
  if (doc.contains("devices") || doc.contains("instances"))
    return fail(errc::invalid_argument, "nodes: a front end's topology names its workers, not "
                                        "devices or instances (those are in each worker's)");
  if (!doc.contains("cluster_key_file"))
    return fail(errc::invalid_argument,
                "cluster_key_file: required with nodes (the key the workers were started with)");
  std::vector<node_spec> out;
  for (std::size_t i = 0; i < nodes->size(); ++i) {
    const auto where = "nodes[" + std::to_string(i) + "]";
    reader n((*nodes)[i], where);
    AEG_TRY(n.known({"address"}));
    std::string address;
    AEG_TRY_ASSIGN(address, n.get<std::string>("address", ""));
    auto parsed = parse_address(address);
    if (!parsed)
      return fail(errc::invalid_argument, n.at("address") + ": " + parsed.error().message);
    out.push_back({parsed->first, parsed->second});
  }
  return out;
}

// A front end's "cluster_tls": {"certificate", "key", "ca"}, PEM files (cluster::check_tls).
result<cluster_tls> parse_tls(const json& doc) {
  if (!doc.contains("cluster_tls"))
    return cluster_tls{};
  if (!doc.contains("nodes") || !doc["cluster_tls"].is_object())
    return fail(errc::invalid_argument, "cluster_tls: a front end's (with nodes) {\"certificate\", "
                                        "\"key\", \"ca\"}: PEM files; a worker takes --tls-*");
  reader t(doc["cluster_tls"], "cluster_tls");
  AEG_TRY(t.known({"certificate", "key", "ca"}));
  cluster_tls tls;
  for (auto [name, file] :
       {std::pair{"certificate", &tls.certificate}, {"key", &tls.key}, {"ca", &tls.ca}}) {
    AEG_TRY_ASSIGN(*file, t.get<std::string>(name, ""));
    if (file->empty())
      return fail(errc::invalid_argument, t.at(name) + ": required (a PEM file)");
  }
  return tls;
}

} // namespace

result<pool_spec> parse_topology(std::string_view text) {
  AEG_TRY_ASSIGN(const json doc, parse_json(text, "topology"));
  pool_spec spec;
  AEG_TRY(parse_pool_fields(doc, spec));
  AEG_TRY_ASSIGN(spec.tls, parse_tls(doc));
  if (doc.contains("policy")) {
    AEG_TRY_ASSIGN(spec.policy, parse_policy(doc["policy"]));
  }
  std::set<std::string> device_names, model_names;
  if (doc.contains("nodes")) {
    AEG_TRY_ASSIGN(spec.nodes, parse_nodes(doc));
    AEG_TRY(parse_models(doc, spec, model_names));
    return spec;
  }
  AEG_TRY_ASSIGN(const json* devices, array_of(doc, "devices"));
  for (std::size_t i = 0; i < devices->size(); ++i) {
    AEG_TRY_ASSIGN(auto dev, parse_device((*devices)[i], "devices[" + std::to_string(i) + "]"));
    if (!device_names.insert(dev.name).second)
      return fail(errc::invalid_argument,
                  "devices[" + std::to_string(i) + "].name: '" + dev.name + "' is used twice");
    spec.devices.push_back(std::move(dev));
  }
  AEG_TRY(parse_models(doc, spec, model_names));
  AEG_TRY_ASSIGN(const json* instances, array_of(doc, "instances"));
  for (std::size_t i = 0; i < instances->size(); ++i) {
    AEG_TRY_ASSIGN(auto is, parse_instance((*instances)[i], "instances[" + std::to_string(i) + "]",
                                           device_names, model_names));
    spec.instances.push_back(std::move(is));
  }
  AEG_TRY(check_coverage(spec));
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

} // namespace aeg::actors
